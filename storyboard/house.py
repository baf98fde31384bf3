"""The house video format, and turning any decodable video into it.

Every clip we store plays the same way everywhere: H.264 yuv420p (tagged BT.709, limited
range), 24 frames a second at a constant rate, a keyframe every second, no B-frames, always an
AAC 48 kHz stereo track (silent when the source had no sound), even pixel sizes, and the index
(`moov`) before the media so a browser can start playing at once. That is what
`storyboard.previz` writes; provider downloads go through `normalize` so exports, chains and
frame grabs never meet a surprise.

The audio track is there even when silent because clips are joined by stream copy (the
animatic, storyboard/export.py): two clips concatenate without re-encoding only when both have
the same streams with the same codec parameters, time base and pixel format. One clip without a
track would force the whole cut's audio to be re-encoded.

`normalize(src, dest)` re-encodes into a new file and leaves `src` untouched (callers keep the
original). `is_house_format(path)` lets files that already comply skip the generation loss.

Pure PyAV + Pillow, no Django: it runs in workers and tests alike.
"""

from __future__ import annotations

import array
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import av
from av.video.frame import PictureType
from av.video.reformatter import VideoReformatter
from PIL import Image, ImageOps

from storyboard import frames

# The frame and sample grid every stored clip is on; previz renders onto it too.
FPS = 24
SAMPLE_RATE = 48_000
AUDIO_CHUNK = 1024  # the AAC frame size: chunks this long go to the encoder without re-slicing
MAX_SIDE = 4096

# The encoder settings of every clip we write (normalised downloads and previz renders alike,
# through `add_video_stream`/`add_audio_stream`).
VIDEO_CODEC = "libx264"
# One keyframe per second keeps seeking cheap; no B-frames keeps pts = dts (no edit list).
VIDEO_OPTIONS = {"preset": "veryfast", "g": str(FPS), "bf": "0"}
# ...and the final frame is a keyframe as well, so the last frame (what a chain starts from, and
# what a seam compares) decodes on its own: a seek lands on it, not up to a second before it.
# It costs one intra frame per clip. Encoders mark it with `PictureType.I`.
FINAL_KEYFRAME = PictureType.I
PIX_FMT = "yuv420p"
BT709 = 1  # AVCOL_SPC/PRI/TRC_BT709
LIMITED_RANGE = 1  # AVCOL_RANGE_MPEG: what players expect
AUDIO_CODEC = "aac"
AUDIO_LAYOUT = "stereo"
# The default "twoloop" coder is 5× slower for no audible gain at this bit rate.
AUDIO_OPTIONS = {"aac_coder": "fast"}
AUDIO_BIT_RATE = 128_000
MUXER_OPTIONS = {"movflags": "+faststart"}

# Inputs are opened with the MP4/QuickTime demuxer only: auto-detection would let a hostile
# file pick a playlist demuxer (HLS, concat) that reads other files. No network protocols.
DEMUXER = "mov"
DEMUXER_OPTIONS = {"protocol_whitelist": "file"}
# A frame stamped hours after the previous one would make us write hours of duplicates.
MAX_SECONDS = 600
# Limits read from the header before anything is decoded: a decoder allocates what the header
# declares, so a small file saying 8192×8192 costs a gigabyte of memory. Seedance's largest
# output is 1920×1080; these leave room for 4K without letting a file take the server down.
MAX_PIXELS = 4096 * 2160  # per frame
MAX_FRAME_RATE = 240
MAX_BIT_RATE = 400_000_000  # bits per second; a provider's 1080p clip is about 10 Mb/s
# FFmpeg's stream analysis (inside av.open) decodes up to seven H.264 frames to learn their
# delay, at whatever size the header declares; skipping every frame keeps it to the header.
HEADER_ONLY_OPTIONS = {**DEMUXER_OPTIONS, "skip_frame": "all"}
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS
FLOAT_BYTES = 4  # fltp samples are 32-bit floats


class HouseError(Exception):
    """The file could not be read as a video, or is one we refuse to convert."""


@dataclass(frozen=True)
class Probe:
    width: int
    height: int
    duration: float  # seconds of video
    frames: int  # counted, not taken from the header
    fps: float
    has_audio: bool
    video_codec: str
    pix_fmt: str
    audio_codec: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    keyframe_interval: int = 0  # the longest run of frames that starts with a keyframe
    constant_rate: bool = False  # every frame lasts exactly 1/fps
    reordered: bool = False  # frames are stored out of display order (B-frames)
    faststart: bool = False  # the index comes before the media data
    rotation: int = 0  # degrees a player turns the picture


@dataclass(frozen=True)
class Declared:
    """What a file's header says about its video, read without decoding a single frame."""

    width: int
    height: int
    duration: float  # seconds
    frames: int  # as the sample table lists them (0 when it does not say)
    size: int  # bytes on disk

    @property
    def pixels(self) -> int:
        return self.width * self.height


class Refused(HouseError):
    """A video whose header we could read, and whose declared size we will not decode.

    `reason` completes "the provider delivered a W×H video; …", and `declared` is what the
    header said (what the provider billed for).
    """

    def __init__(self, reason: str, *, declared: Declared) -> None:
        super().__init__(f"the video is {declared.width}×{declared.height}: {reason}")
        self.reason = reason
        self.declared = declared


# ---------------------------------------------------------------------------------------------
# Checking the header before decoding


def check(path: Path) -> Declared:
    """The header's facts if a video within the limits; Refused (carrying the facts) if not;
    HouseError if not even the header can be read. Nothing is decoded either way."""
    declared = read_header(path)
    reason = _beyond_limits(declared)
    if reason:
        raise Refused(reason, declared=declared)
    return declared


def read_header(path: Path) -> Declared:
    path = Path(path)
    try:
        with av.open(str(path), format=DEMUXER, options=HEADER_ONLY_OPTIONS) as container:
            if not container.streams.video:
                raise HouseError(f"{path.name} has no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            frames = int(stream.frames or 0)
            duration = _declared_duration(container, stream, frames)
    except (av.FFmpegError, OSError, ValueError, ZeroDivisionError) as e:
        raise HouseError(f"{path.name} is not a readable video: {e}") from e
    if width <= 0 or height <= 0:
        raise HouseError(f"{path.name} does not say how large its picture is")
    return Declared(width=width, height=height, duration=duration, frames=frames,
                    size=path.stat().st_size)


def _declared_duration(container: av.container.InputContainer, stream: av.VideoStream,
                       frames: int) -> float:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if frames and stream.average_rate:
        return frames / float(stream.average_rate)
    if container.duration:
        return container.duration / av.time_base
    raise ValueError("the header gives no duration")


def _beyond_limits(declared: Declared) -> str:
    """Why a video with these declared facts is refused, in words; "" when it is not."""
    if declared.width > MAX_SIDE or declared.height > MAX_SIDE:
        return f"at most {MAX_SIDE} pixels a side are accepted"
    if declared.pixels > MAX_PIXELS:
        return (f"that is {declared.pixels / 1e6:.1f} million pixels a frame, and at most "
                f"{MAX_PIXELS / 1e6:.1f} million are accepted")
    if declared.duration > MAX_SECONDS:
        return f"it lasts {declared.duration:.0f} s, and at most {MAX_SECONDS} s are accepted"
    if declared.duration <= 0:
        return "its header says it lasts no time at all"
    if declared.frames / declared.duration > MAX_FRAME_RATE:
        return (f"it lists {declared.frames} frames in {declared.duration:.2f} s, more than "
                f"{MAX_FRAME_RATE} a second")
    if declared.size * 8 / declared.duration > MAX_BIT_RATE:
        return (f"{declared.size} bytes for {declared.duration:.2f} s is a bit rate no "
                "video needs")
    return ""


# ---------------------------------------------------------------------------------------------
# Probing


def probe(path: Path) -> Probe:
    """Facts about a video file, from its packets (no full decode); HouseError if unreadable."""
    try:
        return _probe(Path(path))
    except (av.FFmpegError, OSError, ValueError, ZeroDivisionError) as e:
        raise HouseError(f"{Path(path).name} is not a readable video: {e}") from e


def _probe(path: Path) -> Probe:
    with _open(path) as container:
        if not container.streams.video:
            raise HouseError(f"{path.name} has no video stream")
        stream = container.streams.video[0]
        context = stream.codec_context
        timing = _packet_timing(container.demux(stream), stream.time_base)
        audio = container.streams.audio[0] if container.streams.audio else None
        fps = float(stream.average_rate) if stream.average_rate else 0.0
        return Probe(
            width=context.width,
            height=context.height,
            duration=_duration(container, stream, timing.frames, fps),
            frames=timing.frames,
            fps=fps,
            has_audio=audio is not None,
            video_codec=context.name,
            pix_fmt=context.pix_fmt or "",
            audio_codec=audio.codec_context.name if audio else None,
            sample_rate=audio.sample_rate if audio else None,
            channels=audio.codec_context.channels if audio else None,
            keyframe_interval=timing.keyframe_interval,
            constant_rate=_constant_rate(timing, stream.average_rate),
            reordered=timing.reordered,
            faststart=_moov_first(path),
            rotation=_rotation(path),
        )


def _open(path: Path) -> av.container.InputContainer:
    return av.open(str(path), format=DEMUXER, options=DEMUXER_OPTIONS)


@dataclass(frozen=True)
class _Timing:
    frames: int
    keyframe_interval: int
    constant_rate: bool
    step: Fraction | None
    reordered: bool


def _packet_timing(packets: Iterator[av.Packet], time_base: Fraction | None) -> _Timing:
    stamps: list[tuple[int, bool]] = []
    reordered = False
    for packet in packets:
        if not packet.size:  # the flush packet at the end
            continue
        if packet.pts is None:
            raise ValueError("a video packet has no timestamp")
        if packet.dts is not None and packet.dts != packet.pts:
            reordered = True
        stamps.append((packet.pts, bool(packet.is_keyframe)))
    if not stamps:
        raise ValueError("no video frames")
    stamps.sort()
    deltas = {b[0] - a[0] for a, b in pairwise(stamps)}
    step = deltas.pop() * time_base if len(deltas) == 1 and time_base else None
    return _Timing(
        frames=len(stamps),
        keyframe_interval=_longest_gop([key for _pts, key in stamps]),
        constant_rate=len(stamps) == 1 or step is not None,
        step=step if len(stamps) > 1 else None,
        reordered=reordered,
    )


def _constant_rate(timing: _Timing, rate: Fraction | None) -> bool:
    # Every frame exactly one tick of the nominal rate apart.
    if not rate or not timing.constant_rate:
        return False
    return timing.step is None or timing.step == 1 / Fraction(rate)


def _longest_gop(keys: list[bool]) -> int:
    # A file that doesn't open on a keyframe can't be decoded from its start: report it as one
    # endless group so no limit is ever met.
    if not keys[0]:
        return len(keys) + 1
    starts = [index for index, key in enumerate(keys) if key] + [len(keys)]
    return max(b - a for a, b in pairwise(starts))


def _duration(container: av.container.InputContainer, stream: av.VideoStream, frames: int,
              fps: float) -> float:
    # The video stream's own length: the container's may include a longer audio track.
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if fps:
        return frames / fps
    if container.duration:
        return container.duration / av.time_base
    raise ValueError("no duration")


def _moov_first(path: Path) -> bool:
    """True when the top-level `moov` box precedes `mdat` (what +faststart arranges)."""
    with path.open("rb") as fp:
        size = os.fstat(fp.fileno()).st_size
        offset = 0
        while offset + 8 <= size:
            fp.seek(offset)
            box_size, kind = struct.unpack(">I4s", fp.read(8))
            if kind == b"moov":
                return True
            if kind == b"mdat":
                return False
            if box_size == 1:  # a 64-bit size follows the type
                box_size = struct.unpack(">Q", fp.read(8))[0]
            if box_size < 8:  # 0 means "to the end of the file"; anything else is damage
                return False
            offset += box_size
    return False


def _rotation(path: Path) -> int:
    with _open(path) as container:
        for frame in container.decode(video=0):
            return int(frame.rotation or 0)
    raise ValueError("no decodable video frame")


def is_house_format(path: Path) -> bool:
    """True when `path` can be stored as it is: everything `normalize` would produce."""
    try:
        facts = probe(path)
    except HouseError:
        return False
    return (
        facts.video_codec == "h264"
        and facts.pix_fmt == PIX_FMT
        and facts.fps == FPS
        and facts.constant_rate
        and not facts.reordered
        and facts.keyframe_interval <= FPS
        and facts.width % 2 == 0
        and facts.height % 2 == 0
        and facts.rotation == 0
        and facts.faststart
        # A silent track rather than none: see the module docstring.
        and facts.has_audio
        and facts.audio_codec == AUDIO_CODEC
        and facts.sample_rate == SAMPLE_RATE
        and facts.channels == 2
    )


# ---------------------------------------------------------------------------------------------
# Output streams (the house encoder settings)


def add_video_stream(container: av.container.OutputContainer, width: int,
                     height: int, *, fps: int = FPS) -> av.VideoStream:
    # One keyframe per second at any rate keeps seeking (and last-frame grabs) cheap.
    stream = container.add_stream(VIDEO_CODEC, rate=fps,
                                  options={**VIDEO_OPTIONS, "g": str(fps)})
    stream.width = width
    stream.height = height
    stream.pix_fmt = PIX_FMT
    context = stream.codec_context
    context.colorspace = context.color_primaries = context.color_trc = BT709
    context.color_range = LIMITED_RANGE
    return stream


def add_audio_stream(container: av.container.OutputContainer) -> av.AudioStream:
    stream = container.add_stream(AUDIO_CODEC, rate=SAMPLE_RATE, layout=AUDIO_LAYOUT,
                                  options=dict(AUDIO_OPTIONS))
    stream.bit_rate = AUDIO_BIT_RATE
    return stream


# ---------------------------------------------------------------------------------------------
# Normalising


@dataclass
class Ends:
    """The source's first and last frames, as `normalize` decoded them on its way (no second
    decode). `last.seconds` is when that frame shows in the house copy."""

    first: frames.Still | None = None
    last: frames.Still | None = None


# Draws on a frame's picture (burnt-in captions): called with each output picture, in place.
Paint = Callable[[Image.Image], None]


def normalize(src: Path, dest: Path, *, ends: Ends | None = None,
              size: tuple[int, int] | None = None, paint: Paint | None = None) -> Probe:
    """Re-encode `src` into the house format at `dest`; `src` is never written to.

    `dest` appears only once complete (written beside it, then renamed). Raises HouseError
    for anything that cannot be read as a video. With `ends`, the first and last decoded
    frames are kept in it. With `size` (even sides) the picture is scaled to fit it, with
    black bars if the shape differs; `paint` draws on every frame (the animatic's captions).
    """
    src, dest = Path(src), Path(dest)
    if dest.exists() and src.exists() and os.path.samefile(src, dest):
        raise HouseError("normalize writes a new file; the original must be kept")
    partial = dest.with_name(f".{dest.name}.part")
    try:
        _transcode(src, partial, ends=ends, size=size, paint=paint)
        os.replace(partial, dest)
    except (av.FFmpegError, OSError, ValueError) as e:
        partial.unlink(missing_ok=True)
        raise HouseError(f"{src.name} could not be converted: {e}") from e
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return probe(dest)


def _transcode(src: Path, out: Path, *, ends: Ends | None = None,
               size: tuple[int, int] | None = None, paint: Paint | None = None) -> None:
    with _open(src) as source:
        if not source.streams.video:
            raise HouseError(f"{src.name} has no video stream")
        video_in = source.streams.video[0]
        video_in.thread_type = "AUTO"
        audio_in = source.streams.audio[0] if source.streams.audio else None
        with av.open(str(out), "w", format="mp4", options=dict(MUXER_OPTIONS)) as target:
            writer = _Writer(target, size=size, paint=paint)
            streams = [video_in, audio_in] if audio_in else [video_in]
            for packet in source.demux(*streams):
                for frame in packet.decode():
                    if packet.stream is video_in:
                        writer.video(frame)
                    else:
                        writer.audio(frame)
            writer.finish()
            if ends is not None:
                writer.keep_ends(ends)


class _Writer:
    """Retimes decoded frames onto the 24 fps grid and encodes them as they arrive.

    Each source frame takes the output slot nearest its timestamp (the later frame wins a
    shared slot, empty slots repeat the previous frame), as FFmpeg's fps filter does. Audio is
    resampled to 48 kHz stereo, lined up with the first video frame, and written only up to the
    video written so far, so the file is interleaved and ends with the picture. A source without
    sound gets a silent track of the same length (finish pads it), so every clip has one.
    """

    def __init__(self, target: av.container.OutputContainer, *,
                 size: tuple[int, int] | None = None, paint: Paint | None = None) -> None:
        self.target = target
        self.fit = size
        self.paint = paint
        self.video_out: av.VideoStream | None = None
        self.audio_out: av.AudioStream | None = None
        self.size = (0, 0)  # as first displayed (possibly odd); every frame is scaled to it
        self.reformatter = VideoReformatter()
        self.origin: Fraction | None = None  # time of the first video frame
        self.current: av.VideoFrame | None = None  # prepared, waiting for its last slot
        self.end = Fraction(0)  # when the latest video frame stops showing, from origin
        self.written = 0  # output video frames encoded
        # The first and latest decoded source frames (references only; converted at the end).
        self.first_source: av.VideoFrame | None = None
        self.last_source: av.VideoFrame | None = None
        self.resampler = av.AudioResampler(format="fltp", layout=AUDIO_LAYOUT, rate=SAMPLE_RATE)
        self.left = array.array("f")
        self.right = array.array("f")
        self.audio_start: Fraction | None = None  # time of the first buffered sample
        self.aligned = False
        self.skip = 0  # samples from before the first video frame, still to drop
        self.sent = 0  # audio samples encoded

    # Video

    def video(self, frame: av.VideoFrame) -> None:
        if self.origin is None:
            self._open_outputs(frame)
        at = self._time(frame)
        assert self.origin is not None
        slot = round((at - self.origin) * FPS)
        if slot > MAX_SECONDS * FPS:
            raise HouseError(f"the video is longer than {MAX_SECONDS} seconds")
        self._emit_until(slot)
        if self.first_source is None:
            self.first_source = frame
        self.last_source = frame
        self.current = self._prepare(frame)
        self.end = max(self.end, at - self.origin + self._frame_length(frame))

    def _open_outputs(self, frame: av.VideoFrame) -> None:
        width, height = _display_size(frame)
        if width > MAX_SIDE or height > MAX_SIDE:
            raise HouseError(f"the video is {width}×{height}; at most {MAX_SIDE} a side")
        if width < 2 or height < 2:
            raise HouseError(f"the video is only {width}×{height} pixels")
        self.size = (width, height)
        self.origin = self._time(frame)
        if self.fit:
            width, height = self.size = self.fit
        self.video_out = add_video_stream(self.target, width - width % 2, height - height % 2)
        self.audio_out = add_audio_stream(self.target)

    def _time(self, frame: av.VideoFrame) -> Fraction:
        if frame.pts is None or frame.time_base is None:
            # Untimed frames follow the previous one at the nominal rate.
            return (self.origin or Fraction(0)) + self.end
        return Fraction(frame.pts) * frame.time_base

    def _frame_length(self, frame: av.VideoFrame) -> Fraction:
        if frame.duration and frame.time_base:
            return Fraction(frame.duration) * frame.time_base
        return Fraction(1, FPS)

    def _prepare(self, frame: av.VideoFrame) -> av.VideoFrame:
        if frame.rotation or self.fit or self.paint:
            # Players turn phone video on display; we store it the way it is seen.
            image = frame.to_image()
            if frame.rotation:
                image = image.rotate(frame.rotation, expand=True)
            if self.fit and image.size != self.fit:
                image = ImageOps.pad(image, self.fit, color=(0, 0, 0))
            if self.paint:
                self.paint(image)
            frame = av.VideoFrame.from_image(image)
        width, height = self.size
        picture = self.reformatter.reformat(
            frame, width=width, height=height, format=PIX_FMT,
            src_color_range=frame.color_range, dst_colorspace="ITU709",
            dst_color_range="MPEG", dst_color_trc=BT709, dst_color_primaries=BT709,
        )
        if width % 2 or height % 2:
            picture = _crop_even(picture)
        # Otherwise x264 would copy the source's keyframe placement.
        picture.pict_type = PictureType.NONE
        return picture

    def _emit_until(self, slot: int) -> None:
        if self.current is None:
            return
        assert self.video_out is not None
        while self.written < slot:
            self.current.pts = self.written
            self.current.time_base = Fraction(1, FPS)
            self.target.mux(self.video_out.encode(self.current))
            self.written += 1
            self._send_audio(self.written * SAMPLES_PER_FRAME)

    # Audio

    def audio(self, frame: av.AudioFrame) -> None:
        if self.audio_start is None and frame.pts is not None and frame.time_base:
            self.audio_start = Fraction(frame.pts) * frame.time_base
        for out in self.resampler.resample(frame):
            self._buffer(out)

    def _buffer(self, frame: av.AudioFrame) -> None:
        length = frame.samples * FLOAT_BYTES
        # Planes are padded for SIMD; only the first `samples` floats are audio.
        self.left.frombytes(bytes(frame.planes[0])[:length])
        self.right.frombytes(bytes(frame.planes[1])[:length])
        if self.skip:
            count = min(self.skip, len(self.left))
            del self.left[:count]
            del self.right[:count]
            self.skip -= count

    def _align(self) -> None:
        """Pad or trim the buffered audio so sample 0 plays with the first video frame."""
        self.aligned = True
        if self.audio_start is None or self.origin is None:
            return
        lead = round((self.audio_start - self.origin) * SAMPLE_RATE)
        if lead > 0:
            silence = array.array("f", bytes(lead * FLOAT_BYTES))
            self.left[:0] = silence
            self.right[:0] = silence
        elif lead < 0:
            count = min(-lead, len(self.left))
            del self.left[:count]
            del self.right[:count]
            self.skip = -lead - count

    def _send_audio(self, upto: int) -> None:
        if self.audio_out is None:
            return
        if not self.aligned:
            # Lined up once the first samples are here (the first video frame always is).
            if not self.left:
                return
            self._align()
        while self.sent < upto and self.left:
            count = min(AUDIO_CHUNK, upto - self.sent, len(self.left))
            frame = av.AudioFrame(format="fltp", layout=AUDIO_LAYOUT, samples=count)
            frame.planes[0].update(self.left[:count].tobytes())
            frame.planes[1].update(self.right[:count].tobytes())
            del self.left[:count]
            del self.right[:count]
            frame.sample_rate = SAMPLE_RATE
            frame.time_base = Fraction(1, SAMPLE_RATE)
            frame.pts = self.sent
            self.target.mux(self.audio_out.encode(frame))
            self.sent += count

    # End

    def finish(self) -> None:
        if self.video_out is None:
            raise HouseError("the video has no decodable frames")
        total = max(self.written + 1, round(self.end * FPS))
        self._emit_until(total - 1)
        # The final frame is a keyframe too (see FINAL_KEYFRAME).
        assert self.current is not None
        self.current.pict_type = FINAL_KEYFRAME
        self._emit_until(total)
        if self.audio_out is not None:
            for out in self.resampler.resample(None):
                self._buffer(out)
            upto = total * SAMPLES_PER_FRAME
            self._send_audio(upto)
            self._pad_audio(upto)
            self.target.mux(self.audio_out.encode(None))
        self.target.mux(self.video_out.encode(None))

    def keep_ends(self, ends: Ends) -> None:
        if self.first_source is None or self.last_source is None:
            return  # finish() refused a clip without frames already
        ends.first = frames.still_of(self.first_source,
                                     origin=frames.frame_time(self.first_source))
        # Shown in the house copy's final slot, whenever the source showed it.
        last = frames.still_of(self.last_source, origin=Fraction(0))
        ends.last = replace(last, seconds=Fraction(self.written - 1, FPS))

    def _pad_audio(self, upto: int) -> None:
        # A short (or empty) soundtrack is made up with silence, so audio ends with the video.
        missing = upto - self.sent
        if missing > 0:
            silence = array.array("f", bytes(missing * FLOAT_BYTES))
            self.left.extend(silence)
            self.right.extend(silence)
            self._send_audio(upto)


def _display_size(frame: av.VideoFrame) -> tuple[int, int]:
    if frame.rotation and frame.rotation % 180:
        return frame.height, frame.width
    return frame.width, frame.height


def _crop_even(frame: av.VideoFrame) -> av.VideoFrame:
    """Drop the last column and/or row so both sides are even (yuv420p needs 2×2 blocks)."""
    width, height = frame.width - frame.width % 2, frame.height - frame.height % 2
    out = av.VideoFrame(width, height, PIX_FMT)
    for index, (cols, rows) in enumerate(((width, height), (width // 2, height // 2),
                                          (width // 2, height // 2))):
        source, target = frame.planes[index], out.planes[index]
        data, stride, pitch = memoryview(source), source.line_size, target.line_size
        buffer = bytearray(target.buffer_size)
        for row in range(rows):
            buffer[row * pitch:row * pitch + cols] = data[row * stride:row * stride + cols]
        target.update(buffer)
    out.colorspace, out.color_range = frame.colorspace, frame.color_range
    out.color_primaries, out.color_trc = frame.color_primaries, frame.color_trc
    return out
