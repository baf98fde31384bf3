"""What a Seedance provider plausibly delivers for a request, written from the documents alone.

The seeds fix one output size: fal's Seedance 2.0 page charges "$0.3024/second" for 720p, which
the token formula (h × w × duration × 24 / 1024 at $0.014 per 1000 tokens) makes 1280×720 at
16:9. Nothing else is documented, so this emulator delivers what an encoder that keeps the
resolution's short side would: the long side follows the aspect ratio, and both are padded up to
16-pixel macroblocks (1080p 16:9 → 1920×1088, as the Seedance 1.0 page's "~$0.62 per 1080p
5-second video" at $2.50 per million tokens implies). Seedance 1.0 clips carry one frame more
than 24 a second (121 frames for 5 s; same source), or exactly `num_frames` when asked.

`clip()` makes such a file cheaply (flat frames, already in the house format) so tests can push
real videos of every size through the download path.
"""

from __future__ import annotations

import tempfile
from fractions import Fraction
from functools import cache
from pathlib import Path

import av

FPS = 24
SHORT_SIDE = {"480p": 480, "720p": 720, "1080p": 1080}
# A provider choosing for `auto`: the widest ratio and the longest clip it offers.
AUTO_RATIO = "21:9"
AUTO_SECONDS = 15


def _pad(value: int) -> int:
    return -(-value // 16) * 16


def delivered_size(endpoint: str, arguments: dict) -> tuple[int, int]:
    resolution = arguments.get("resolution", "720p")
    ratio = arguments.get("aspect_ratio", "16:9")
    if ratio == "auto":
        ratio = AUTO_RATIO
    if (resolution, ratio) == ("720p", "16:9"):
        return 1280, 720  # the documented size
    a, b = (int(n) for n in ratio.split(":"))
    short = SHORT_SIDE[resolution]
    long = round(short * max(a, b) / min(a, b))
    long, short = _pad(long), _pad(short)
    return (long, short) if a >= b else (short, long)


def delivered_frames(endpoint: str, arguments: dict) -> int:
    if arguments.get("num_frames"):
        return int(arguments["num_frames"])
    duration = arguments.get("duration", "5")
    seconds = AUTO_SECONDS if duration == "auto" else int(duration)
    extra = 1 if "/seedance/v1/" in endpoint else 0
    return seconds * FPS + extra


@cache
def clip(width: int, height: int, frames: int) -> bytes:
    """A grey H.264 clip of exactly this size and frame count, a keyframe every second."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "clip.mp4"
        with av.open(str(out), "w", format="mp4", options={"movflags": "+faststart"}) as target:
            stream = target.add_stream("libx264", rate=FPS, options={
                "preset": "ultrafast", "g": str(FPS), "bf": "0"})
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.time_base = Fraction(1, FPS)
            frame = av.VideoFrame(width, height, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([128]) * plane.buffer_size)
            for index in range(frames):
                frame.pts = index
                target.mux(stream.encode(frame))
            target.mux(stream.encode(None))
        return out.read_bytes()
