"""The Seedance endpoints a shot can be generated with, as the provider documents describe them.

One declarative table: everything that offers a choice (project defaults, the shot editor) or
checks one reads it from here, so a new endpoint or a changed limit is one edit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

ASPECT_RATIOS = ("auto", "21:9", "16:9", "4:3", "1:1", "3:4", "9:16")

# The one output size the documents fix: 720p 16:9 is 1280×720, which with the token formula
# gives fal's documented $0.3024/s on Seedance 2.0 standard.
DOCUMENTED_SIZES: dict[tuple[str, str], tuple[int, int]] = {("720p", "16:9"): (1280, 720)}
# Sizes from Seedance's published tables (unverified against fal; they differ from what a
# provider that keeps the short side delivers, e.g. 1470×630 vs 1680×720 at 720p 21:9).
PUBLISHED_SIZES: dict[str, dict[str, tuple[int, int]]] = {
    "480p": {
        "21:9": (992, 432), "16:9": (864, 496), "4:3": (752, 560), "1:1": (640, 640),
        "3:4": (560, 752), "9:16": (496, 864),
    },
    "720p": {
        "21:9": (1470, 630), "16:9": (1280, 720), "4:3": (1112, 834), "1:1": (960, 960),
        "3:4": (834, 1112), "9:16": (720, 1280),
    },
    "1080p": {
        "21:9": (2206, 946), "16:9": (1920, 1080), "4:3": (1664, 1248), "1:1": (1440, 1440),
        "3:4": (1248, 1664), "9:16": (1080, 1920),
    },
}
SHORT_SIDES = {"480p": 480, "720p": 720, "1080p": 1080}
# Encoders work in 16×16 macroblocks and may pad up to them (1080 → 1088).
MACROBLOCK = 16


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def short_side_size(resolution: str, aspect_ratio: str) -> tuple[int, int]:
    """The size a provider delivers when it keeps the resolution's short side and lets the
    long side follow the ratio, both padded up to whole macroblocks (1080p 16:9 → 1920×1088)."""
    a, b = (int(n) for n in aspect_ratio.split(":"))
    short = SHORT_SIDES[resolution]
    long = -(-short * max(a, b) // min(a, b))
    long, short = _round_up(long, MACROBLOCK), _round_up(short, MACROBLOCK)
    return (long, short) if a >= b else (short, long)


def _upper_bound(resolution: str, aspect_ratio: str) -> tuple[int, int]:
    """Where no document fixes the size, the largest of every plausible delivery, per side, so
    a hold is never smaller than what can come back."""
    documented = DOCUMENTED_SIZES.get((resolution, aspect_ratio))
    if documented:
        return documented
    published = PUBLISHED_SIZES[resolution][aspect_ratio]
    kept = short_side_size(resolution, aspect_ratio)
    return max(published[0], kept[0]), max(published[1], kept[1])


# Output pixel sizes (width, height) per resolution and aspect ratio that holds and estimates
# assume (and the offline renderer draws): documented where the seeds say, else the safe
# upper bound above. Captures never use these: they measure the delivered file.
PIXEL_SIZES: dict[str, dict[str, tuple[int, int]]] = {
    resolution: {ratio: _upper_bound(resolution, ratio) for ratio in ratios}
    for resolution, ratios in PUBLISHED_SIZES.items()
}


class Mode:
    TEXT = "text"
    IMAGE = "image"
    REFERENCE = "reference"


@dataclass(frozen=True)
class Endpoint:
    id: str
    label: str
    family: str
    mode: str
    resolutions: tuple[str, ...]
    durations: tuple[str, ...]
    default_duration: str
    # Price in micro-dollars per million output tokens.
    micros_per_million_tokens: int
    supports_audio: bool = False
    supports_end_frame: bool = False
    extra: tuple[str, ...] = field(default=())

    @property
    def default_resolution(self) -> str:
        return "720p"


_V2_DURATIONS = ("auto", *(str(n) for n in range(4, 16)))
_V1_DURATIONS = tuple(str(n) for n in range(2, 13))


def _v2(tier: str, mode: str) -> Endpoint:
    standard = tier == "standard"
    path = {"text": "text-to-video", "image": "image-to-video",
            "reference": "reference-to-video"}[mode]
    return Endpoint(
        id=f"bytedance/seedance-2.0/{'' if standard else 'fast/'}{path}",
        label=f"Seedance 2.0 {'' if standard else 'Fast '}· {path.replace('-', ' ')}",
        family="seedance-2.0",
        mode=mode,
        resolutions=("480p", "720p", "1080p") if standard else ("480p", "720p"),
        durations=_V2_DURATIONS,
        default_duration="auto",
        micros_per_million_tokens=14_000_000 if standard else 11_200_000,
        supports_audio=True,
        supports_end_frame=mode == Mode.IMAGE,
        extra=("end_user_id",),
    )


def _v1(tier: str, mode: str) -> Endpoint:
    path = {"text": "text-to-video", "image": "image-to-video"}[mode]
    return Endpoint(
        id=f"fal-ai/bytedance/seedance/v1/{tier}/{path}",
        label=f"Seedance 1.0 {tier.title()} · {path.replace('-', ' ')}",
        family="seedance-1.0",
        mode=mode,
        resolutions=("480p", "720p", "1080p"),
        durations=_V1_DURATIONS,
        default_duration="5",
        micros_per_million_tokens=1_800_000 if tier == "lite" else 2_500_000,
        supports_end_frame=mode == Mode.IMAGE,
        extra=("camera_fixed", "num_frames", "enable_safety_checker"),
    )


ENDPOINTS: dict[str, Endpoint] = {
    e.id: e
    for e in [
        *(_v2(tier, mode) for tier in ("standard", "fast")
          for mode in ("text", "image", "reference")),
        *(_v1(tier, mode) for tier in ("lite", "pro") for mode in ("text", "image")),
    ]
}

DEFAULT_ENDPOINT = "bytedance/seedance-2.0/fast/text-to-video"


def image_endpoint_for(endpoint: str) -> Endpoint | None:
    """The image-to-video endpoint of the same model and tier: where a continuing shot belongs."""
    spec = ENDPOINTS.get(endpoint)
    if spec is None:
        return None
    if spec.mode == Mode.IMAGE:
        return spec
    for mode in ("text-to-video", "reference-to-video"):
        if spec.id.endswith(mode):
            return ENDPOINTS.get(spec.id.removesuffix(mode) + "image-to-video")
    return None


def endpoint_choices() -> list[tuple[str, str]]:
    return [(e.id, e.label) for e in ENDPOINTS.values()]


def all_durations() -> list[tuple[str, str]]:
    values = ["auto", *(str(n) for n in range(2, 16))]
    return [(v, "Auto (up to 15 s)" if v == "auto" else f"{v} s") for v in values]


def validate_parameters(*, endpoint: str, resolution: str, duration: str,
                        aspect_ratio: str) -> dict[str, str]:
    """Return {field: message} for every combination this endpoint does not accept."""
    errors: dict[str, str] = {}
    spec = ENDPOINTS.get(endpoint)
    if spec is None:
        return {"endpoint": "Choose one of the listed Seedance endpoints."}
    if resolution not in spec.resolutions:
        if resolution == "1080p" and spec.family == "seedance-2.0":
            errors["resolution"] = "1080p needs the standard tier; the fast tier stops at 720p."
        else:
            errors["resolution"] = f"{spec.label} offers {', '.join(spec.resolutions)}."
    if duration not in spec.durations:
        allowed = f"{spec.durations[1] if spec.durations[0] == 'auto' else spec.durations[0]}–" \
                  f"{spec.durations[-1]} s"
        errors["duration"] = f"{spec.label} takes {allowed}" + (
            " or auto." if "auto" in spec.durations else "."
        )
    if aspect_ratio not in ASPECT_RATIOS:
        errors["aspect_ratio"] = "Choose one of the listed aspect ratios."
    return errors


# ---------------------------------------------------------------------------------------------
# Pricing. Providers bill per output token: tokens = height × width × duration × 24 / 1024, at
# the endpoint's price per million tokens. Money is integer micro-dollars throughout.

FPS = 24
# What `duration=auto` may come back as; estimates and holds assume the longest clip.
WORST_CASE_SECONDS = 15
# Seedance 1.0 delivers 24 frames a second plus one (a 5 s clip has 121 frames): its
# document's "~$0.62 per 1080p 5-second video" is 1920×1088×121 frames at $2.50 per million
# tokens. Holds for 1.0 count that frame too.
EXTRA_FRAMES = {"seedance-1.0": 1}
# Reference-to-video with video inputs is billed at 0.6×; kept as a fraction for exact maths.
VIDEO_REFERENCE_DISCOUNT = (3, 5)


@dataclass(frozen=True)
class Estimate:
    micros: int
    width: int
    height: int
    frames: int
    worst_case: bool

    @property
    def seconds(self) -> float:
        return self.frames / FPS

    @property
    def tokens(self) -> float:
        return self.width * self.height * self.frames / 1024


def output_size(resolution: str, aspect_ratio: str) -> tuple[int, int]:
    """Pixel size a hold assumes (documented, else a safe upper bound); for `auto` the largest
    the provider may choose."""
    sizes = PIXEL_SIZES[resolution]
    if aspect_ratio == "auto":
        return max(sizes.values(), key=lambda wh: wh[0] * wh[1])
    return sizes[aspect_ratio]


def price_micros(*, endpoint: str, width: int, height: int, frames: int,
                 video_references: bool = False) -> int:
    """The price of one delivered clip, rounded up to the next micro-dollar."""
    numerator = width * height * frames * ENDPOINTS[endpoint].micros_per_million_tokens
    denominator = 1024 * 1_000_000
    if video_references:
        numerator *= VIDEO_REFERENCE_DISCOUNT[0]
        denominator *= VIDEO_REFERENCE_DISCOUNT[1]
    return -(-numerator // denominator)


def per_second_micros(*, rates: dict[str, int], resolution: str, seconds: Fraction) -> int:
    """The price of a clip from a provider that bills per second of output by resolution
    (eachlabs), to the nearest micro-dollar, halves up as eachlabs rounds. `rates` are
    micro-dollars per second by resolution; an unlisted resolution takes the dearest rate, so
    an estimate never comes out low."""
    rate = rates.get(resolution) or max(rates.values())
    numerator, denominator = rate * seconds.numerator, seconds.denominator
    return (2 * numerator + denominator) // (2 * denominator)


def estimate(*, endpoint: str, resolution: str, aspect_ratio: str, duration: str,
             num_frames: int | None = None, video_references: bool = False,
             rates: dict[str, int] | None = None) -> Estimate:
    """Worst-case price of a generation with these parameters (what a budget hold reserves).

    `rates`: the provider's own per-second table (see per_second_micros), when it has one."""
    width, height = output_size(resolution, aspect_ratio)
    if num_frames:
        frames = num_frames
    elif duration == "auto":
        frames = WORST_CASE_SECONDS * FPS + EXTRA_FRAMES.get(ENDPOINTS[endpoint].family, 0)
    else:
        frames = int(duration) * FPS + EXTRA_FRAMES.get(ENDPOINTS[endpoint].family, 0)
    if rates:
        micros = per_second_micros(rates=rates, resolution=resolution,
                                   seconds=Fraction(frames, FPS))
    else:
        micros = price_micros(endpoint=endpoint, width=width, height=height, frames=frames,
                              video_references=video_references)
    worst_case = duration == "auto" or aspect_ratio == "auto"
    return Estimate(micros=micros, width=width, height=height, frames=frames,
                    worst_case=worst_case)
