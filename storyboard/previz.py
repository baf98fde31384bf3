"""Offline preview ("previz") renderer: an honest animatic that stands in for a Seedance endpoint.

When no provider key is configured a shot still gets a real MP4 in the house format (H.264
yuv420p BT.709, a keyframe every second and on the last frame, AAC 48 kHz stereo (silent when
the shot's audio is off: every house clip has a track, so clips join by stream copy), faststart,
exact size and frame count), but nothing in it pretends to be generated: a still is moved with a
Ken Burns camera, a text-only shot becomes a title card, references become a labelled collage,
and every frame it makes carries a "PREVIZ" badge and a timecode.

The camera comes from the prompt (`parse_camera`). "Cut scene to …" / "cut to …" splits it into
segments that share the frame count evenly, with a hard cut (and an audible tick) between them.
Choices worth knowing:

- "handheld" is its own move: a slight zoom with a seeded, smooth wobble (no rotation).
- With an end image the last segment crossfades into it; the start still moves away from
  identity and the end still arrives at identity, in the same direction where a move has one
  (pans, tilts, orbit). A push in is carried by the start still, a pull out by the end still.
- A start image opens the clip (even when there are references too): frame 0 is that image as
  given, without the badge (it is the input, not a preview), and the camera sets off from it —
  so a chain rendered offline continues exactly from the frame the shot before ended on. Later
  segments have no picture of their own: they show the reference collage again, or else a card
  with their text.
- Audio references can't be shown and are left out of the collage.

Pure Python + PyAV + Pillow, no Django: it runs in workers and in the benchmark alike.
"""

from __future__ import annotations

import array
import colorsys
import math
import os
import random
import re
import unicodedata
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache, partial
from pathlib import Path
from typing import NamedTuple

import av
from av.video.reformatter import VideoReformatter
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps, UnidentifiedImageError

from storyboard import house
from storyboard.house import AUDIO_CHUNK, FPS, MAX_SIDE, SAMPLE_RATE

MAX_OVERSAMPLE = 1.35
LOOKAHEAD = 3
PROGRESS_STEPS = 48
LABEL = "Offline preview · not AI-generated"
STILL_FORMATS = ("JPEG", "PNG", "WEBP")

KINDS = ("push_in", "pull_out", "pan_left", "pan_right", "tilt_up", "tilt_down", "orbit",
         "static", "handheld")
DEFAULT_KIND = "push_in"


@dataclass(frozen=True)
class RenderSpec:
    width: int
    height: int
    frames: int  # total frames at `fps` (e.g. 5 s → 120; Seedance 1.0 num_frames 29–289)
    prompt: str
    seed: int
    audio: bool = True  # a soundtrack; off, the clip still carries a silent track
    title: str = ""
    start_image: Path | None = None
    end_image: Path | None = None  # the clip must end on this image
    references: tuple[Path, ...] = ()  # images, or videos (their first frame is used)
    fps: int = FPS


@dataclass(frozen=True)
class RenderResult:
    path: Path
    width: int
    height: int
    frames: int
    duration: float
    has_audio: bool  # a soundtrack was rendered (the file always has an audio track)
    camera: list[str]


@dataclass(frozen=True)
class Move:
    kind: str  # one of KINDS
    text: str  # the segment of the prompt it was read from


# ---------------------------------------------------------------------------------------------
# Camera language

_VERB = r"(?:s|es|ed|ing)?"
_DOLLY = r"(?:dolly|dollies|dollied|dollying)"
_RISE = r"(?:tilt(?:s|ed|ing)?|crane[sd]?|craning|boom(?:s|ed|ing)?)"
_ADVERB = r"(?:\w+ly\s+)?"  # "pans slowly left", "tilts gently up"
_MOVE_PATTERNS = {
    # At one position the first alternative wins, so "zoom out" must come before a bare "zoom"
    # and "pans from right to left" before "pans right" and a bare "pans".
    "pull_out": rf"pull{_VERB}\s+{_ADVERB}(?:out|back|away)|{_DOLLY}\s+{_ADVERB}(?:out|back)"
                rf"|zoom{_VERB}\s+{_ADVERB}out|track{_VERB}\s+{_ADVERB}(?:out|back)",
    "push_in": rf"push{_VERB}\s+{_ADVERB}(?:in(?:to)?|forward|toward)|slow\s+push"
               rf"|{_DOLLY}\s+{_ADVERB}(?:in(?:to)?|forward)|zoom{_VERB}\s+{_ADVERB}in"
               rf"|track{_VERB}\s+{_ADVERB}in|zoom{_VERB}",
    "pan_left": rf"pan{_VERB}\s+{_ADVERB}(?:to\s+the\s+)?left"
                rf"|pan{_VERB}\s+{_ADVERB}(?:from\s+)?right\s+to\s+left",
    # A bare "pans" (but not the noun "pan") goes right, the way we read.
    "pan_right": rf"pan{_VERB}\s+{_ADVERB}(?:to\s+the\s+)?right"
                 rf"|pan{_VERB}\s+{_ADVERB}(?:from\s+)?left\s+to\s+right|pans|panned|panning",
    "tilt_up": rf"{_RISE}\s+{_ADVERB}up(?:ward)?",
    "tilt_down": rf"{_RISE}\s+{_ADVERB}down(?:ward)?",
    "orbit": rf"orbit{_VERB}|circl{_VERB}\s+(?:a)?round|circling|arc{_VERB}\s+(?:a)?round"
             r"|360",
    "static": r"static|lock(?:ed)?[\s-]*off|camera\s+(?:is\s+|stays\s+|remains\s+)?"
              r"(?:fixed|still|stationary)|fixed\s+camera|still\s+camera|tripod"
              r"|no\s+camera\s+(?:movement|motion|move)",
    "handheld": r"hand[\s-]?held|shaky\s+cam(?:era)?",
}
_MOVE_RE = re.compile(
    r"\b(?:" + "|".join(f"(?P<{kind}>{rx})" for kind, rx in _MOVE_PATTERNS.items()) + r")\b",
    re.IGNORECASE,
)
_CUT_RE = re.compile(r"\bcut(?:\s+scene)?\s+to\b:?", re.IGNORECASE)


def parse_camera(prompt: str) -> list[Move]:
    """One Move per segment; the first camera phrase in a segment decides, else a gentle push."""
    parts = [part.strip(" \t\r\n.,;:-") for part in _CUT_RE.split(prompt)]
    # "Cut to …" at the very start opens no empty segment before it.
    parts = [part for part in parts if part] or [prompt.strip()]
    return [Move(_read_move(part), part) for part in parts]


def _read_move(text: str) -> str:
    match = _MOVE_RE.search(text)
    return match.lastgroup if match and match.lastgroup else DEFAULT_KIND


# ---------------------------------------------------------------------------------------------
# Views: where the camera looks on a plate


class View(NamedTuple):
    zoom: float = 1.0  # 1 = the whole fitted picture
    x: float = 0.0  # -1…1: share of the spare room left/right of the window
    y: float = 0.0  # -1…1: share of the spare room above/below
    angle: float = 0.0  # degrees of camera roll (the picture turns the other way)


IDENTITY = View()
ORBIT_DEGREES = 5.0

# A whole segment goes from the first view to the second.
_PATHS = {
    "push_in": (View(1.0), View(1.15)),
    "pull_out": (View(1.15), View(1.0)),
    "pan_left": (View(1.15, 1.0), View(1.15, -1.0)),
    "pan_right": (View(1.15, -1.0), View(1.15, 1.0)),
    "tilt_up": (View(1.15, 0, 1.0), View(1.15, 0, -1.0)),
    "tilt_down": (View(1.15, 0, -1.0), View(1.15, 0, 1.0)),
    # The zoom needed to hide the corners is added by _window, so the orbit also pushes in.
    "orbit": (View(1.02, -0.6), View(1.02, 0.6, 0, ORBIT_DEGREES)),
    "static": (IDENTITY, IDENTITY),
    "handheld": (View(1.06), View(1.06)),
}
# Start → end clips: the start still leaves identity towards DEPART, the end still arrives at
# identity from ARRIVE, so a pan keeps its direction through the crossfade.
_DEPART = {
    "push_in": View(1.1), "pull_out": IDENTITY, "pan_left": View(1.08, -1.0),
    "pan_right": View(1.08, 1.0), "tilt_up": View(1.08, 0, -1.0), "tilt_down": View(1.08, 0, 1.0),
    "orbit": View(1.0, 0, 0, ORBIT_DEGREES / 2), "static": IDENTITY, "handheld": IDENTITY,
}
_ARRIVE = {
    "push_in": IDENTITY, "pull_out": View(1.1), "pan_left": View(1.08, 1.0),
    "pan_right": View(1.08, -1.0), "tilt_up": View(1.08, 0, 1.0), "tilt_down": View(1.08, 0, -1.0),
    "orbit": View(1.0, 0, 0, -ORBIT_DEGREES / 2), "static": IDENTITY, "handheld": IDENTITY,
}


def smoothstep(t: float) -> float:
    t = min(max(t, 0.0), 1.0)
    return t * t * (3 - 2 * t)


def lerp_view(a: View, b: View, t: float) -> View:
    return View(*(p + (q - p) * t for p, q in zip(a, b, strict=True)))


def camera_view(kind: str, t: float, seconds: float, seed: int) -> View:
    if kind == "handheld":
        return _shake(_PATHS[kind][0], seconds, seed, 1.0)
    start, end = _PATHS[kind]
    return lerp_view(start, end, smoothstep(t))


def opening_view(kind: str, t: float, seconds: float, seed: int) -> View:
    """The camera of a clip that opens on its start image: identity at t=0, then the move.

    It heads where a start → end clip's start still goes (_DEPART). A pull out has nowhere to
    go from the whole picture, so it holds; the handheld wobble grows in over the first quarter.
    """
    if kind == "handheld":
        return _shake(IDENTITY, seconds, seed, smoothstep(t * 4))
    return lerp_view(IDENTITY, _DEPART[kind], smoothstep(t))


def _shake(view: View, seconds: float, seed: int, amount: float) -> View:
    # Three incommensurate sines per axis read as a person breathing, not as a loop.
    rng = random.Random(f"shake-{seed}")
    wobble = []
    for _axis in range(2):
        phases = [rng.uniform(0, math.tau) for _ in range(3)]
        wobble.append(sum(weight * math.sin(math.tau * hz * seconds + phase) for weight, hz, phase
                          in zip((0.55, 0.3, 0.15), (0.37, 0.93, 2.1), phases, strict=True)))
    # Zoom grows with the wobble so there is always room for it, and fades with it too.
    zoom = max(view.zoom, 1 + 0.06 * amount)
    return View(zoom, view.x + amount * wobble[0], view.y + amount * wobble[1], view.angle)


def _window(view: View, w: int, h: int) -> tuple[float, float, float]:
    """Centre and zoom of the camera window, in pixels of the frame-sized picture.

    Zoom is raised until the (rotated) window fits inside the picture, and the offsets only
    spend the room that is left, so no view can ever show a border.
    """
    rad = math.radians(abs(view.angle))
    cos, sin = math.cos(rad), math.sin(rad)
    zoom = max(view.zoom, cos + h / w * sin, w / h * sin + cos, 1.0)
    half_x = (w * cos + h * sin) / zoom / 2
    half_y = (w * sin + h * cos) / zoom / 2
    x = min(max(view.x, -1.0), 1.0)
    y = min(max(view.y, -1.0), 1.0)
    return w / 2 + x * max(0.0, w / 2 - half_x), h / 2 + y * max(0.0, h / 2 - half_y), zoom


# ---------------------------------------------------------------------------------------------
# Pictures


def fit_cover(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale to cover `size` and crop the centre: how any still becomes a frame, without borders.

    Renders and tests both go through this, so "frame 0 is the start image" is comparable.
    """
    image = _rgb(image)
    w, h = size
    scale = max(w / image.width, h / image.height)
    # Clamped: when the aspect ratios match, float rounding can put the crop a hair outside the
    # image, and Pillow refuses a box with a negative offset.
    crop_w, crop_h = min(image.width, w / scale), min(image.height, h / scale)
    left, top = max(0.0, (image.width - crop_w) / 2), max(0.0, (image.height - crop_h) / 2)
    box = (left, top, left + crop_w, top + crop_h)
    return image.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)


def _rgb(image: Image.Image) -> Image.Image:
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (0, 0, 0))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")


def open_still(path: Path) -> Image.Image:
    with Image.open(path, formats=STILL_FORMATS) as image:
        image.load()
        return _rgb(image)


def _open_reference(path: Path) -> tuple[str, Image.Image] | None:
    """("Image" or "Video", picture), or None for a file with no picture (an audio reference)."""
    try:
        return "Image", open_still(path)
    except UnidentifiedImageError:
        pass
    with av.open(str(path)) as container:
        if not container.streams.video:
            return None
    return "Video", first_frame(path)


@dataclass
class _Plate:
    """A picture prepared once, larger than the frame by the segment's deepest zoom, so that
    every frame is a downscale (sharp) and costs one resize."""

    image: Image.Image
    size: tuple[int, int]

    def shoot(self, view: View) -> Image.Image:
        w, h = self.size
        cx, cy, zoom = _window(view, w, h)
        kx, ky = self.image.width / w, self.image.height / h
        if view.angle == 0:
            half_w, half_h = w / zoom / 2, h / zoom / 2
            box = (max(0.0, (cx - half_w) * kx), max(0.0, (cy - half_h) * ky),
                   min(float(self.image.width), (cx + half_w) * kx),
                   min(float(self.image.height), (cy + half_h) * ky))
            return self.image.resize(self.size, Image.Resampling.BILINEAR, box=box)
        # Output pixel p maps to centre + R(angle)·(p − frame centre)/zoom, scaled to the plate.
        rad = math.radians(view.angle)
        c, s = math.cos(rad) / zoom, math.sin(rad) / zoom
        coeffs = (kx * c, -kx * s, kx * (cx - c * w / 2 + s * h / 2),
                  ky * s, ky * c, ky * (cy - s * w / 2 - c * h / 2))
        return self.image.transform(self.size, Image.Transform.AFFINE, coeffs,
                                    Image.Resampling.BILINEAR)


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Not cached across renders: a FreeType face must not be shared by threads, and loading
    # the built-in one costs 0.2 ms.
    return ImageFont.load_default(size=size)


def backdrop(seed: int, size: tuple[int, int]) -> Image.Image:
    """A dark, seed-specific wash of colour with a few out-of-focus blobs."""
    rng = random.Random(f"backdrop-{seed}")
    hue = rng.random()
    w, h = size
    tiny = (48, max(2, round(48 * h / w))) if w >= h else (max(2, round(48 * w / h)), 48)
    corners = Image.new("RGB", (3, 2))
    corners.putdata([_colour(hue + rng.uniform(-0.08, 0.08), rng.uniform(0.4, 0.7),
                             rng.uniform(0.08, 0.26)) for _ in range(6)])
    # Upscaling a 3×2 image bicubically is a smooth multi-point gradient for free.
    wash = corners.resize(tiny, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(wash, "RGBA")
    for _ in range(7):
        r = rng.uniform(2, 7)
        x, y = rng.uniform(0, tiny[0]), rng.uniform(0, tiny[1])
        light = _colour(hue + rng.uniform(-0.15, 0.15), 0.35, rng.uniform(0.35, 0.6))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(*light, rng.randint(25, 60)))
    wash = wash.filter(ImageFilter.GaussianBlur(1.5))
    return wash.resize(size, Image.Resampling.BICUBIC)


def _colour(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return round(r * 255), round(g * 255), round(b * 255)


def card(size: tuple[int, int], *, seed: int, title: str, text: str,
         kicker: str = "") -> Image.Image:
    """The text-to-video picture: title, prompt and an unmissable "not AI-generated" label."""
    image = backdrop(seed, size)
    draw = ImageDraw.Draw(image)
    w, h = size
    unit = min(w, h)
    # Narrow enough that a pan or tilt at its far end still shows the whole block.
    width = w * 0.64
    title_font = font(max(12, round(unit / 10)))
    body_font = font(max(9, round(unit / 24)))
    small_font = font(max(8, round(unit / 36)))
    blocks = [
        (wrap(kicker.upper(), small_font, width, 1), small_font, (170, 175, 185)),
        (wrap(title or "Untitled shot", title_font, width, 2), title_font, (246, 246, 240)),
        (wrap(text, body_font, width, 7), body_font, (212, 214, 220)),
    ]
    label_h = round(small_font.size * 1.9)
    pad = round(small_font.size * 0.6)
    label_w = small_font.getlength(LABEL) + 2 * pad
    gap = round(unit / 40)
    heights = [len(lines) * round(f.size * 1.25) for lines, f, _ in blocks]
    total = sum(heights) + gap * sum(1 for lines, _, _ in blocks if lines) + label_h
    widest = max([label_w] + [f.getlength(line) for lines, f, _ in blocks for line in lines])
    # A left-aligned block, centred as a whole.
    left, y = (w - widest) / 2, (h - total) / 2
    for lines, block_font, fill in blocks:
        if not lines:
            continue
        for line in lines:
            draw.text((left, y), line, font=block_font, fill=fill)
            y += round(block_font.size * 1.25)
        y += gap
    draw.rounded_rectangle((left, y, left + label_w, y + label_h), radius=label_h // 2,
                           outline=(255, 196, 61), width=max(1, unit // 400))
    draw.text((left + pad, y + label_h / 2), LABEL, font=small_font, fill=(255, 196, 61),
              anchor="lm")
    return image


def wrap(text: str, face: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: float,
         max_lines: int) -> list[str]:
    lines: list[str] = []
    for word in printable(text, face).split():
        if not word:
            continue
        if lines and face.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        while lines[-1] and face.getlength(lines[-1] + " …") > width:
            lines[-1] = lines[-1].rsplit(" ", 1)[0] if " " in lines[-1] else lines[-1][:-1]
        lines[-1] += " …"
    return lines


# The built-in font (Aileron) covers ASCII and little else: fold what has an obvious stand-in.
_SUBSTITUTES = str.maketrans({
    "—": "-", "–": "-", "−": "-", "×": "x", "•": "·", "→": "->", "←": "<-", "€": "EUR",
    "ß": "ss", "ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ł": "l",
    "Ł": "L", "đ": "d", "Đ": "D", "ı": "i", "¿": "", "¡": "",
})
_GLYPHS: dict[str, bool] = {}


def printable(text: str, face: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> str:
    """`text` in characters the font can draw: accents folded (é → e), typographic marks
    simplified, and one "?" per run of anything else (CJK, emoji) rather than tofu boxes."""
    out: list[str] = []
    for char in unicodedata.normalize("NFC", text).translate(_SUBSTITUTES):
        if char.isspace():
            char = " "
        elif unicodedata.category(char) in ("Cc", "Cf"):  # invisible anyway: NUL, ZWSP, …
            continue
        elif not _has_glyph(face, char):
            folded = "".join(c for c in unicodedata.normalize("NFKD", char)
                             if not unicodedata.combining(c))
            char = folded if folded and all(_has_glyph(face, c) for c in folded) else "?"
            if char == "?" and out and out[-1] == "?":
                continue
        out.append(char)
    return "".join(out)


def _has_glyph(face: ImageFont.FreeTypeFont | ImageFont.ImageFont, char: str) -> bool:
    # Pillow can't ask the font; a missing glyph renders as the .notdef box, so compare with
    # that of a private-use code point. Coverage doesn't depend on size: cache by character.
    if char not in _GLYPHS:
        if unicodedata.category(char).startswith("C"):  # controls, private use, unassigned
            _GLYPHS[char] = False
        else:
            missing, mask = face.getmask("\ue000"), face.getmask(char)
            _GLYPHS[char] = (mask.size, bytes(mask)) != (missing.size, bytes(missing))
    return _GLYPHS[char]


def collage(size: tuple[int, int], *, seed: int,
            tiles: tuple[tuple[str, Image.Image], ...]) -> Image.Image:
    """Reference-to-video: the references in a grid, each labelled the way prompts cite them."""
    image = backdrop(seed, size)
    w, h = size
    cols = _grid_columns(len(tiles), w / h)
    rows = math.ceil(len(tiles) / cols)
    gap = max(2, round(min(w, h) * 0.025))
    cell_w, cell_h = (w - gap * (cols + 1)) / cols, (h - gap * (rows + 1)) / rows
    label_font = font(max(9, round(min(cell_w, cell_h) / 16)))
    draw = ImageDraw.Draw(image, "RGBA")
    for index, (label, still) in enumerate(tiles):
        row, col = divmod(index, cols)
        # A short last row is centred rather than left-aligned.
        in_row = min(cols, len(tiles) - row * cols)
        x = gap + (cols - in_row) * (cell_w + gap) / 2 + col * (cell_w + gap)
        y = gap + row * (cell_h + gap)
        image.paste(fit_cover(still, (max(1, int(cell_w)), max(1, int(cell_h)))),
                    (round(x), round(y)))
        pad = round(label_font.size * 0.4)
        text_w = label_font.getlength(label)
        box = (x + pad, y + cell_h - pad - label_font.size * 1.5,
               x + 3 * pad + text_w, y + cell_h - pad)
        draw.rounded_rectangle(box, radius=pad, fill=(0, 0, 0, 170))
        draw.text((box[0] + pad, (box[1] + box[3]) / 2), label, font=label_font,
                  fill=(255, 255, 255), anchor="lm")
    return image


def _grid_columns(count: int, aspect: float) -> int:
    # Fewest empty cells first, then tiles closest to square.
    def cost(cols: int) -> float:
        rows = math.ceil(count / cols)
        return rows * cols - count + abs(math.log(aspect * rows / cols))

    return min(range(1, count + 1), key=cost)


# ---------------------------------------------------------------------------------------------
# Segments: which plate, which move, which frames

Source = Callable[[tuple[int, int]], Image.Image]


@dataclass
class _Segment:
    move: Move
    start: int  # index of its first frame in the clip
    count: int
    plate: _Plate
    end_plate: _Plate | None  # set on the last segment of a start → end clip
    opens: bool = False  # the first segment of a clip with a start image (and no end plate)

    def picture(self, local: int, seconds: float, seed: int) -> Image.Image:
        t = local / (self.count - 1) if self.count > 1 else 0.0
        kind = self.move.kind
        if self.opens:
            return self.plate.shoot(opening_view(kind, t, seconds, seed))
        if self.end_plate is None:
            return self.plate.shoot(camera_view(kind, t, seconds, seed))
        eased = smoothstep(t)
        leave = lerp_view(IDENTITY, _DEPART[kind], eased)
        arrive = lerp_view(_ARRIVE[kind], IDENTITY, eased)
        if kind == "handheld":
            # The wobble dies out at both ends so the bookend frames stay exact.
            amount = math.sin(math.pi * t)
            leave = _shake(leave, seconds, seed, amount)
            arrive = _shake(arrive, seconds, seed, amount)
        alpha = smoothstep((t - 0.25) / 0.5)
        if alpha <= 0.0:
            return self.plate.shoot(leave)
        if alpha >= 1.0:
            return self.end_plate.shoot(arrive)
        return Image.blend(self.plate.shoot(leave), self.end_plate.shoot(arrive), alpha)


def _segments(spec: RenderSpec) -> list[_Segment]:
    moves = parse_camera(spec.prompt)
    size = (spec.width, spec.height)
    plates: dict[tuple[Source, tuple[int, int]], _Plate] = {}

    def plate(source: Source, views: list[View]) -> _Plate:
        w, h = size
        scale = min(MAX_OVERSAMPLE, max(_window(v, w, h)[2] for v in views))
        plate_size = (math.ceil(w * scale - 1e-6), math.ceil(h * scale - 1e-6))
        if (source, plate_size) not in plates:
            plates[source, plate_size] = _Plate(source(plate_size), size)
        return plates[source, plate_size]

    sources = _sources(spec, moves)
    end_source = partial(_fit_path, spec.end_image) if spec.end_image else None
    samples = [i / 16 for i in range(17)]
    segments = []
    for index, move in enumerate(moves):
        start = round(index * spec.frames / len(moves))
        count = round((index + 1) * spec.frames / len(moves)) - start
        if count == 0:
            continue
        kind = move.kind
        if end_source and index == len(moves) - 1:
            shake = [_shake(IDENTITY, 0.0, spec.seed, 1.0)] if kind == "handheld" else []
            leave = [lerp_view(IDENTITY, _DEPART[kind], t) for t in samples] + shake
            arrive = [lerp_view(_ARRIVE[kind], IDENTITY, t) for t in samples] + shake
            segments.append(_Segment(move, start, count, plate(sources[index], leave),
                                     plate(end_source, arrive)))
        elif spec.start_image and index == 0:
            # Frame 0 is the start image itself, so a chain continues exactly where the shot
            # before it ended; the camera sets off from there.
            path = [opening_view(kind, t, 0.0, spec.seed) for t in samples]
            if kind == "handheld":
                path.append(_shake(IDENTITY, 0.0, spec.seed, 1.0))
            segments.append(_Segment(move, start, count, plate(sources[index], path), None,
                                     opens=True))
        else:
            path = [camera_view(kind, t, 0.0, spec.seed) for t in samples]
            segments.append(_Segment(move, start, count, plate(sources[index], path), None))
    return segments


def _sources(spec: RenderSpec, moves: list[Move]) -> list[Source]:
    count = len(moves)
    cards = [
        partial(card, seed=spec.seed + index, title=spec.title, text=move.text,
                kicker=f"Cut {index + 1} of {count}" if count > 1 else "Text to video")
        for index, move in enumerate(moves)
    ]
    tiles = _tiles(spec.references)
    pictures = [partial(collage, seed=spec.seed, tiles=tiles)] * count if tiles else cards
    if spec.start_image:
        return [partial(_fit_path, spec.start_image), *pictures[1:]]
    return pictures


def _tiles(paths: tuple[Path, ...]) -> tuple[tuple[str, Image.Image], ...]:
    tiles = []
    numbers = {"Image": 0, "Video": 0}
    for path in paths:
        found = _open_reference(path)
        if found is None:
            continue
        kind, still = found
        numbers[kind] += 1
        tiles.append((f"@{kind}{numbers[kind]}", still))
    return tuple(tiles)


def _fit_path(path: Path, size: tuple[int, int]) -> Image.Image:
    return fit_cover(open_still(path), size)


# ---------------------------------------------------------------------------------------------
# Burnt-in overlays


class _Overlay:
    """The PREVIZ badge (with the segment's move) and the timecode, drawn over every frame."""

    def __init__(self, size: tuple[int, int], fps: int, frames: int):
        w, h = size
        self.fps = fps
        self.frames = frames
        self.font = font(max(9, round(min(w, h) / 45)))
        self.margin = max(4, round(min(w, h) / 60))
        self.pad = max(2, round(self.font.size * 0.4))
        self.height = round(self.font.size * 1.5)
        widest = self.clock(frames - 1).translate(str.maketrans("0123456789", "8888888888"))
        box_w = round(self.font.getlength(widest)) + 2 * self.pad
        self.clock_xy = (w - self.margin - box_w, h - self.margin - self.height)
        self.clock_mask = self._pill((box_w, self.height), 150)
        self.badges: dict[str, Image.Image] = {}

    def clock(self, index: int) -> str:
        seconds, frame = divmod(index, self.fps)
        minutes, seconds = divmod(seconds, 60)
        hours, minutes = divmod(minutes, 60)
        return f"{hours:02}:{minutes:02}:{seconds:02}:{frame:02} · {index + 1}/{self.frames}"

    def _pill(self, size: tuple[int, int], alpha: int) -> Image.Image:
        mask = Image.new("L", size, 0)
        ImageDraw.Draw(mask).rounded_rectangle((0, 0, size[0] - 1, size[1] - 1),
                                               radius=self.pad, fill=alpha)
        return mask

    def badge(self, kind: str) -> Image.Image:
        if kind not in self.badges:
            first, second = "PREVIZ", kind.replace("_", " ")
            first_w = round(self.font.getlength(first)) + 2 * self.pad
            second_w = round(self.font.getlength(second)) + 2 * self.pad
            image = Image.new("RGBA", (first_w + second_w, self.height), (0, 0, 0, 0))
            draw = ImageDraw.Draw(image)
            draw.rounded_rectangle((0, 0, image.width - 1, self.height - 1), radius=self.pad,
                                   fill=(0, 0, 0, 150))
            draw.rounded_rectangle((0, 0, first_w - 1, self.height - 1), radius=self.pad,
                                   fill=(255, 196, 61, 255))
            middle = self.height / 2
            draw.text((self.pad, middle), first, font=self.font, fill=(0, 0, 0), anchor="lm")
            draw.text((first_w + self.pad, middle), second, font=self.font,
                      fill=(255, 255, 255), anchor="lm")
            self.badges[kind] = image
        return self.badges[kind]

    def apply(self, image: Image.Image, index: int, kind: str) -> None:
        badge = self.badge(kind)
        image.paste(badge, (self.margin, self.margin), badge)
        image.paste((0, 0, 0), self.clock_xy, self.clock_mask)
        x, y = self.clock_xy
        ImageDraw.Draw(image).text((x + self.pad, y + self.height / 2), self.clock(index),
                                   font=self.font, fill=(255, 255, 255), anchor="lm")


# ---------------------------------------------------------------------------------------------
# Audio: a soft pad, some wind, a tick on every cut

# Whole hertz, so one second of each chord is a seamless loop.
CHORDS = (
    (110, 165, 262, 330),  # A minor
    (131, 196, 330, 392),  # C major
    (147, 220, 349, 440),  # D minor
    (87, 131, 220, 262),  # F major
    (98, 147, 247, 294),  # G major
    (82, 123, 196, 247),  # E minor
)
LOOP_SECONDS = 4


@lru_cache(maxsize=len(CHORDS))
def _pad(chord: tuple[int, int, int, int]) -> array.array:
    a, b, c, d = (math.tau * hz / SAMPLE_RATE for hz in chord)
    sin = math.sin
    return array.array("f", [sin(a * k) + 0.7 * sin(b * k) + 0.5 * sin(c * k) + 0.35 * sin(d * k)
                             for k in range(SAMPLE_RATE)])


def _wind(rng: random.Random, length: int) -> list[float]:
    raw = array.array("b", rng.randbytes(length))
    level = 0.0
    # Running the low-pass over the tail first makes the loop's seam continuous.
    for x in raw[-4000:]:
        level += 0.03 * (x - level)
    out = []
    append = out.append
    for x in raw:
        level += 0.03 * (x - level)
        append(level)
    return out


def soundtrack(seed: int, samples: int, cuts: list[int]) -> tuple[array.array, array.array]:
    """Left and right float samples: a loop of pad + wind, faded at the ends, ticked at cuts."""
    rng = random.Random(f"audio-{seed}")
    chord = CHORDS[rng.randrange(len(CHORDS))]
    length = LOOP_SECONDS * SAMPLE_RATE
    pad = _pad(chord) * LOOP_SECONDS
    swell = math.tau / (2 * SAMPLE_RATE)
    gust, phase = math.tau / length, rng.uniform(0, math.tau)
    sin = math.sin
    loop = array.array("f", [
        0.065 * p * (0.7 + 0.3 * sin(swell * k)) + 0.0016 * n * (0.6 + 0.4 * sin(gust * k + phase))
        for k, (p, n) in enumerate(zip(pad, _wind(rng, length), strict=True))
    ])
    # The right channel is the same loop two seconds on: whole seconds keep the whole-hertz pad
    # in phase (a centred, mono-safe chord) while the wind and its gusts differ: free stereo.
    shift = 2 * SAMPLE_RATE
    right_loop = loop[shift:] + loop[:shift]
    repeats = samples // length + 1
    left, right = (loop * repeats)[:samples], (right_loop * repeats)[:samples]
    for channel in (left, right):
        _fade(channel, fade_in=SAMPLE_RATE // 50, fade_out=min(SAMPLE_RATE * 3 // 10, samples // 4))
        for cut in cuts:
            _tick(channel, cut)
    return left, right


def _fade(channel: array.array, fade_in: int, fade_out: int) -> None:
    fade_in = min(fade_in, len(channel))
    for k in range(fade_in):
        channel[k] *= k / fade_in
    end = len(channel)
    for k in range(max(0, end - fade_out), end):
        channel[k] *= (end - 1 - k) / fade_out


def _tick(channel: array.array, at: int) -> None:
    for k in range(min(480, len(channel) - at)):
        channel[at + k] += 0.25 * math.exp(-k / 80) * math.sin(math.tau * 1800 * k / SAMPLE_RATE)


# ---------------------------------------------------------------------------------------------
# Encoding


def check_spec(spec: RenderSpec) -> None:
    if spec.fps < 1:
        raise ValueError(f"fps must be positive, not {spec.fps}")
    if spec.frames < 1:
        raise ValueError(f"a clip needs at least one frame, not {spec.frames}")
    for name, side in (("width", spec.width), ("height", spec.height)):
        if side < 2 or side > MAX_SIDE:
            raise ValueError(f"{name} must be 2–{MAX_SIDE} pixels, not {side}")
        # yuv420p stores colour per 2×2 block: H.264 players reject odd sides.
        if side % 2:
            raise ValueError(f"{name} must be even for yuv420p, not {side}")


def render(spec: RenderSpec, out: Path, *,
           progress: Callable[[float], None] | None = None) -> RenderResult:
    """Write the clip to `out`, replacing it only once complete.

    `progress` gets 0.0, then ≤ 48 rising fractions, then 1.0 once the file is in place; an
    exception raised from it cancels the render and leaves `out` untouched.
    """
    check_spec(spec)
    report = progress or _ignore
    report(0.0)
    out = Path(out)
    segments = _segments(spec)
    cuts = [round(s.start * SAMPLE_RATE / spec.fps) for s in segments[1:]]
    samples = round(spec.frames * SAMPLE_RATE / spec.fps)
    track = soundtrack(spec.seed, samples, cuts) if spec.audio else _silence(samples)
    # Written beside the target and renamed at the end: nobody ever serves half a file.
    partial_path = out.with_name(f".{out.name}.part")
    try:
        _encode(spec, partial_path, _painter(spec, segments), track, report)
        os.replace(partial_path, out)
    except BaseException:
        partial_path.unlink(missing_ok=True)
        raise
    report(1.0)
    return RenderResult(out, spec.width, spec.height, spec.frames, spec.frames / spec.fps,
                        spec.audio, [s.move.kind for s in segments])


def _ignore(_fraction: float) -> None:
    pass


def _silence(samples: int) -> tuple[array.array, array.array]:
    quiet = array.array("f", bytes(samples * 4))
    return quiet, array.array("f", quiet)


def _painter(spec: RenderSpec, segments: list[_Segment]) -> Callable[[int], av.VideoFrame]:
    by_frame = [(segment, local) for segment in segments for local in range(segment.count)]
    overlay = _Overlay((spec.width, spec.height), spec.fps, spec.frames)
    reformatter = VideoReformatter()

    def paint(index: int) -> av.VideoFrame:
        segment, local = by_frame[index]
        image = segment.picture(local, index / spec.fps, spec.seed)
        if not (index == 0 and segment.opens):
            # The start image is shown as it was given: it is the input, not a preview.
            overlay.apply(image, index, segment.move.kind)
        frame = reformatter.reformat(av.VideoFrame.from_image(image), format="yuv420p",
                                     dst_colorspace="ITU709", dst_color_range="MPEG",
                                     dst_color_trc=1, dst_color_primaries=1)
        frame.pts = index
        return frame

    return paint


def _encode(spec: RenderSpec, path: Path, paint: Callable[[int], av.VideoFrame],
            track: tuple[array.array, array.array],
            report: Callable[[float], None]) -> None:
    every = math.ceil(spec.frames / PROGRESS_STEPS)
    with av.open(str(path), "w", format="mp4", options=dict(house.MUXER_OPTIONS)) as container:
        container.metadata["title"] = spec.title
        container.metadata["comment"] = LABEL
        video = house.add_video_stream(container, spec.width, spec.height, fps=spec.fps)
        audio = house.add_audio_stream(container)
        sent = 0
        for index, frame in enumerate(_ahead(paint, spec.frames, LOOKAHEAD)):
            if index == spec.frames - 1:
                frame.pict_type = house.FINAL_KEYFRAME
            container.mux(video.encode(frame))
            # Audio follows the picture closely so the file is interleaved.
            upto = round((index + 1) * SAMPLE_RATE / spec.fps)
            sent = _send_audio(container, audio, track, sent, upto)
            if (index + 1) % every == 0 and index + 1 < spec.frames:
                report(0.97 * (index + 1) / spec.frames)
        container.mux(video.encode(None))
        container.mux(audio.encode(None))


def _send_audio(container: av.container.OutputContainer, stream: av.AudioStream,
                track: tuple[array.array, array.array], sent: int, upto: int) -> int:
    left, right = track
    while sent < min(upto, len(left)):
        count = min(AUDIO_CHUNK, len(left) - sent)
        frame = av.AudioFrame(format="fltp", layout="stereo", samples=count)
        frame.planes[0].update(left[sent:sent + count].tobytes())
        frame.planes[1].update(right[sent:sent + count].tobytes())
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = Fraction(1, SAMPLE_RATE)
        frame.pts = sent
        # The muxer's edit list hides the encoder's priming and padding, so the decoded
        # track is exactly `samples` long.
        container.mux(stream.encode(frame))
        sent += count
    return sent


def _ahead[T](make: Callable[[int], T], count: int, depth: int) -> Iterator[T]:
    """make(0), make(1), … in order, a few computed ahead on a worker thread: Pillow, swscale
    and x264 all release the GIL, so drawing the next frame overlaps encoding this one."""
    # One worker: the reformatter (an swscale context) is not safe to share between threads.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="previz") as pool:
        pending: deque = deque()
        for index in range(count):
            pending.append(pool.submit(make, index))
            if len(pending) > depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


# ---------------------------------------------------------------------------------------------
# Reading frames back


def first_frame(path: Path) -> Image.Image:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            return _upright(frame)
    raise ValueError(f"{path} has no decodable video frame")


def last_frame(path: Path) -> Image.Image:
    """The final frame, found by seeking to the last keyframe and decoding forward from it.

    With a keyframe every second that is at most a second of decoding whatever the length.
    Falls back to decoding from the start if the container's duration is missing or wrong.
    """
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frame = None
        if stream.duration and stream.time_base:
            start = stream.start_time or 0
            step = int(1 / (stream.average_rate * stream.time_base)) if stream.average_rate else 1
            try:
                container.seek(max(start, start + stream.duration - step), stream=stream)
                frame = _final(container.decode(stream))
            except av.FFmpegError:
                frame = None
        if frame is None:
            container.seek(0)
            frame = _final(container.decode(stream))
        if frame is None:
            raise ValueError(f"{path} has no decodable video frame")
        return _upright(frame)


def _final(frames: Iterator[av.VideoFrame]) -> av.VideoFrame | None:
    last = None
    for frame in frames:
        last = frame
    return last


def _upright(frame: av.VideoFrame) -> Image.Image:
    # Phones record portrait video sideways and say how to turn it (as media.probe_video does).
    image = frame.to_image()
    return image.rotate(frame.rotation, expand=True) if frame.rotation else image
