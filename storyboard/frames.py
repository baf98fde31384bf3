"""A clip's first and last frames, exactly as a decoder shows them, and a hash of their pixels.

Every finished take keeps both (`Generation.first_frame` / `last_frame`): the last one starts
the next shot of a chain, and the seam check compares a joint's two frames. They are taken once,
when the take completes: during the house-format normalise pass where that decodes the clip
anyway (`house.normalize(..., ends=...)`), otherwise with `last_still`, which seeks near the end
and decodes forward to the true last frame — right with B-frames (display order is not file
order) and with a variable frame rate, and never the keyframe before it.

A frame is "the same frame" when `pixel_hash` agrees: the SHA-256 of its RGB24 pixels, row by
row, as PyAV converts a decoded frame (turned upright as a player would show it). Stored PNGs
are lossless, so the file a provider receives hashes the same as the frame it came from.

Pure PyAV + Pillow, no Django and nothing of ours: house.py and workers use it alike.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image

# Inputs open with the MP4/QuickTime demuxer only and no network protocols (as house.py does).
# Everything we need is in the `moov` index, so FFmpeg's stream analysis (which decodes frames
# of its own on open: most of the cost of a one-frame read) is cut to the minimum.
DEMUXER = "mov"
DEMUXER_OPTIONS = {"protocol_whitelist": "file", "probesize": "32", "analyzeduration": "0"}
# Decoding more frames than this after the seek is worth the decoder's threads; one frame (the
# house format's final keyframe) is not worth starting them.
THREADED_FROM = 8


@dataclass(frozen=True)
class Still:
    """One decoded frame of a clip, upright, in RGB."""

    image: Image.Image
    seconds: Fraction  # when it is shown, from the clip's first frame
    sha256: str  # pixel_hash(image)

    def index(self, fps: float) -> int:
        """The frame's number (0-based) at `fps`."""
        return round(self.seconds * Fraction(fps).limit_denominator(1001))

    def png(self) -> bytes:
        buf = io.BytesIO()
        # Level 1: a 1080p frame in a tenth of the time of the default, a little larger.
        self.image.save(buf, "PNG", compress_level=1)
        return buf.getvalue()


class FrameError(Exception):
    """The file has no decodable video frame."""


def pixel_hash(image: Image.Image) -> str:
    """SHA-256 of the picture's RGB24 pixels, with its size, so equal hashes mean equal frames."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()


def upright(frame: av.VideoFrame) -> Image.Image:
    """The frame as RGB, turned the way players show it (phones record portrait sideways)."""
    image = frame.to_image()
    return image.rotate(frame.rotation, expand=True) if frame.rotation else image


def still_of(frame: av.VideoFrame, *, origin: Fraction) -> Still:
    image = upright(frame)
    return Still(image=image, seconds=max(Fraction(0), frame_time(frame) - origin),
                 sha256=pixel_hash(image))


def frame_time(frame: av.VideoFrame) -> Fraction:
    if frame.pts is None or frame.time_base is None:
        return Fraction(0)
    return Fraction(frame.pts) * frame.time_base


def _open(path: Path) -> av.container.InputContainer:
    return av.open(str(path), format=DEMUXER, options=DEMUXER_OPTIONS)


def first_still(path: Path) -> Still:
    """The first frame shown: the first the decoder outputs (display order)."""
    with _open(Path(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            return still_of(frame, origin=frame_time(frame))
    raise FrameError(f"{Path(path).name} has no decodable video frame")


def last_still(path: Path) -> Still:
    """The last frame shown, by seeking near the end and decoding forward to the end.

    The seek lands on the keyframe at or before a point one frame short of the end (in the
    house format the final frame is itself a keyframe, so one frame is decoded), and every
    frame after it is decoded, so B-frames come out in display order and the final one is the
    true last frame. If the header's duration is
    missing or wrong (nothing decodes after the seek) the whole clip is decoded instead.
    """
    path = Path(path)
    with _open(path) as container:
        stream = container.streams.video[0]
        origin = _origin(container, stream)
        found = None
        end = _declared_end(container, stream)
        if end is not None:
            try:
                container.seek(end, stream=stream, backward=True, any_frame=False)
                found = _latest(_decode_from_seek(stream, container.demux(stream), end))
            except av.FFmpegError:
                found = None
        if found is None:
            container.seek(0)
            stream.thread_type = "AUTO"
            found = _latest(container.decode(stream))
        if found is None:
            raise FrameError(f"{path.name} has no decodable video frame")
        return still_of(found, origin=origin)


def _decode_from_seek(stream: av.VideoStream, packets: Iterator[av.Packet],
                      end: int) -> Iterator[av.VideoFrame]:
    first = next(packets, None)
    if first is None:
        return
    rate = stream.average_rate or stream.guessed_rate
    step = int(1 / (rate * stream.time_base)) if rate and stream.time_base else 1
    if first.dts is not None and end - first.dts > THREADED_FROM * max(1, step):
        stream.thread_type = "AUTO"
    yield from first.decode()
    for packet in packets:
        yield from packet.decode()


def decode_every_frame_last(path: Path) -> Still:
    """The naive way: decode the whole clip and keep the final frame (tests and benchmarks
    check `last_still` against it)."""
    with _open(Path(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        first = last = None
        for frame in container.decode(stream):
            first = first or frame
            if last is None or frame_time(frame) >= frame_time(last):
                last = frame
        if last is None or first is None:
            raise FrameError(f"{Path(path).name} has no decodable video frame")
        return still_of(last, origin=frame_time(first))


def _origin(container: av.container.InputContainer, stream: av.VideoStream) -> Fraction:
    """When the first frame is shown: the stream's start time (edit lists shift it)."""
    if stream.start_time is not None and stream.time_base:
        return Fraction(stream.start_time) * stream.time_base
    return Fraction(0)


def _declared_end(container: av.container.InputContainer, stream: av.VideoStream) -> int | None:
    """A timestamp (in the stream's time base) one frame before the declared end, or None."""
    if not stream.time_base:
        return None
    start = stream.start_time or 0
    if stream.duration:
        duration = stream.duration
    elif container.duration:
        duration = int(Fraction(container.duration, av.time_base) / stream.time_base)
    else:
        return None
    rate = stream.average_rate or stream.guessed_rate
    step = int(1 / (rate * stream.time_base)) if rate else 1
    return max(start, start + duration - max(1, step))


def _latest(frames: Iterator[av.VideoFrame]) -> av.VideoFrame | None:
    # Decoders output display order; taking the latest timestamp also survives one that
    # doesn't (a damaged file's stray frame).
    latest = None
    for frame in frames:
        if latest is None or frame_time(frame) >= frame_time(latest):
            latest = frame
    return latest


def timecode(seconds: Fraction | float, fps: float) -> str:
    """HH:MM:SS:FF at the clip's frame rate (what editors read off a player)."""
    rate = round(fps) or 1
    frames = round(Fraction(seconds).limit_denominator(100_000) * rate)
    whole, frame = divmod(frames, rate)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02}:{minutes:02}:{secs:02}:{frame:02}"
