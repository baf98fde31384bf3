"""Joining house-format clips into one MP4 by stream copy, and making the clips that cannot be.

Every stored take is in the house format (storyboard/house.py): the same H.264 and AAC
parameters, time bases and pixel format, so a cut of N takes is one remux: packets are copied
and only their timestamps change. Nothing is decoded or encoded. Clips that do not share the
cut's parameters (another size, a take stored before the house format had its audio track),
slates for shots without a take, and every clip when captions or another size are asked for,
are first encoded into house-format clips of the cut's size by `conform` and `slate`, and then
joined like the rest.

Pure PyAV + Pillow, no Django: it runs in the export task and in the benchmark alike.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
from av.video.frame import PictureType
from PIL import Image, ImageDraw

from storyboard import house, previz
from storyboard.house import FPS, SAMPLE_RATE

# Samples in one AAC packet. The encoder's first packet of every clip is "priming": it holds
# the encoder's delay, starts 1024 samples before the clip (pts -1024), and the MP4 edit list
# hides its output. The last packet is padded to a whole 1024 and its duration says how much of
# it is real.
AAC_FRAME = 1024


class JoinError(Exception):
    """A clip that cannot be joined as it is; the message names it."""


@dataclass(frozen=True)
class Signature:
    """What two clips must share to be joined by stream copy."""

    width: int
    height: int
    pix_fmt: str
    video_extradata: bytes  # H.264 SPS/PPS: one per track in MP4
    video_time_base: Fraction
    audio_extradata: bytes  # the AAC AudioSpecificConfig
    sample_rate: int
    channels: int
    audio_time_base: Fraction


def signature(path: Path) -> Signature | None:
    """The clip's stream-copy parameters, or None if it is not a house-format clip at all."""
    if not house.is_house_format(path):
        return None
    return _header_signature(path)


def _header_signature(path: Path) -> Signature:
    with _open(path) as container:
        return _signature_of(container, path)


def _open(path: Path) -> av.container.InputContainer:
    # Header only: opening a file otherwise decodes a few frames to learn what the MP4 header
    # already says, which would cost more than copying all of its packets.
    return av.open(str(path), format=house.DEMUXER, options=house.HEADER_ONLY_OPTIONS)


def _signature_of(container: av.container.InputContainer, path: Path) -> Signature:
    if not (container.streams.video and container.streams.audio):
        raise JoinError(f"{path.name} needs one video and one audio track.")
    video, audio = container.streams.video[0], container.streams.audio[0]
    return Signature(
        width=video.codec_context.width, height=video.codec_context.height,
        pix_fmt=video.codec_context.pix_fmt or "",
        video_extradata=bytes(video.codec_context.extradata or b""),
        video_time_base=video.time_base,
        audio_extradata=bytes(audio.codec_context.extradata or b""),
        sample_rate=audio.sample_rate, channels=audio.codec_context.channels,
        audio_time_base=audio.time_base)


@dataclass
class Join:
    """What `join` did: the cut's length, and where each clip's audio landed.

    `audio_shift[i]` is how many samples late (negative: early) clip i's sound plays against
    its picture; `dropped[i]` the source audio packets of clip i left out, by index in that
    clip's audio packets (0 is its priming packet).
    """

    frames: int = 0
    video_packets: int = 0
    audio_shift: list[int] = field(default_factory=list)
    dropped: list[list[int]] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.frames / FPS


def join(paths: Sequence[Path], out: Path, *,
         progress: Callable[[int], None] | None = None) -> Join:
    """Write `paths` one after another into `out` by stream copy; JoinError when a clip does
    not share the first clip's Signature (conform it first).

    `progress(n)` is called after each clip; an exception raised from it stops the join and
    leaves nothing at `out` (the file is written beside it and renamed at the end).
    """
    if not paths:
        raise JoinError("There is nothing to join.")
    out = Path(out)
    partial = out.with_name(f".{out.name}.part")
    try:
        result = _join(list(paths), partial, progress)
        os.replace(partial, out)
    except (av.FFmpegError, OSError) as e:
        partial.unlink(missing_ok=True)
        raise JoinError(f"The clips could not be joined: {e}") from e
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return result


def _join(paths: list[Path], out: Path, progress: Callable[[int], None] | None) -> Join:
    # The caller has made sure every clip is in the house format (storyboard/export.py checks
    # each with `signature`); what must match here is what a stream copy carries over.
    reference: Signature | None = None
    result = Join()
    with av.open(str(out), "w", format="mp4", options=dict(house.MUXER_OPTIONS)) as target:
        audio = _AudioSplicer(target)
        video_out = None
        video_at = 0  # where the next clip's picture starts, in the video time base
        for index, path in enumerate(paths):
            with _open(path) as source:
                found = _signature_of(source, path)
                if reference is None:
                    reference = found
                elif found != reference:
                    raise JoinError(f"{path.name} does not share the first clip's codec "
                                    "parameters; it must be re-encoded first.")
                video_in, audio_in = source.streams.video[0], source.streams.audio[0]
                if video_out is None:
                    video_out = target.add_stream_from_template(video_in)
                    audio.open(audio_in)
                end = video_at
                audio.start_clip(video_seconds=Fraction(video_at) * reference.video_time_base)
                for packet in source.demux(video_in, audio_in):
                    if packet.size == 0 or packet.pts is None:
                        continue  # the demuxer's flush packets
                    if packet.stream is audio_in:
                        audio.add(packet)
                        continue
                    # No B-frames in the house format, so dts = pts and both move together.
                    packet.pts += video_at
                    packet.dts = packet.pts
                    end = max(end, packet.pts + (packet.duration or 0))
                    packet.stream = video_out
                    target.mux(packet)
                    result.video_packets += 1
            audio.end_clip()
            video_at = end
            if progress:
                progress(index + 1)
        assert reference is not None
        audio.finish(video_seconds=Fraction(video_at) * reference.video_time_base)
    result.frames = round(Fraction(video_at) * reference.video_time_base * FPS)
    result.audio_shift, result.dropped = audio.shifts, audio.dropped
    return result


class _AudioSplicer:
    """Copies AAC packets clip after clip so that the sound stays with the picture.

    Why packets cannot simply follow each other with shifted timestamps: each clip's audio is
    one priming packet (pts -1024, output hidden by the clip's edit list) and then its real
    packets, the last one padded to 1024 samples. Shifted by the clip's start, the next clip's
    priming packet (start − 1024) lies before the end of the previous clip's padded last
    packet, so the muxer refuses the timestamps; and an MP4 track has one edit list, which can
    hide the first clip's priming but nothing in the middle. A decoder plays a track's packets
    back to back, 1024 samples each, whatever their timestamps say.

    So timestamps here are the truth a decoder will act on: packets are written contiguously,
    each 1024 samples after the previous one (monotonic by construction), and what is left to
    decide is which packets to write at each join. The choices, each whole packets:

    - drop the next clip's priming packet (the usual case: it carries no sound of the clip);
      that clip's real audio then starts right after the previous clip's padding, late by the
      padding (0–1023 samples, less any lateness carried in);
    - also drop the previous clip's padded last packet (early by up to 1024 − padding, losing
      that many samples of the previous clip's final moment), or
    - keep the priming packet (late by padding + 1024).

    The option that puts the next clip's sound nearest its picture wins, so the offset never
    grows along the cut: it stays within half a packet (±512 samples, ±10.7 ms, well inside
    what anyone can see as lip-sync error), and `shifts` records it per clip. A dropped priming
    packet means the first 1024 samples of a clip are decoded against the previous clip's last
    packet instead (MDCT overlap), a 21 ms blend at the cut; everything after is decoded exactly
    as in the source clip.
    """

    def __init__(self, target: av.container.OutputContainer) -> None:
        self.target = target
        self.stream: av.AudioStream | None = None
        self.next_pts = -AAC_FRAME  # the first clip's priming packet keeps its place
        self.held: av.Packet | None = None  # the latest packet, written once the next is known
        self.clip = -1
        self.clip_start = 0  # samples: where this clip's real audio belongs
        self.packets_seen = 0
        self.shifts: list[int] = []
        self.dropped: list[list[int]] = []
        self.pending_choice = False

    def open(self, template: av.AudioStream) -> None:
        self.stream = self.target.add_stream_from_template(template)

    def start_clip(self, *, video_seconds: Fraction) -> None:
        self.clip += 1
        self.clip_start = int(video_seconds * SAMPLE_RATE)
        self.packets_seen = 0
        self.dropped.append([])
        self.pending_choice = self.clip > 0

    def add(self, packet: av.Packet) -> None:
        index = self.packets_seen
        self.packets_seen += 1
        if self.pending_choice:
            self.pending_choice = False
            if index == 0 and packet.pts < 0:
                if self._choose_at_join():
                    self._write(packet)  # the priming packet, kept
                else:
                    self.dropped[self.clip].append(0)
                return
            # A clip without a priming packet (never made by our encoder): no choice to make.
            self._flush_held()
            self.shifts.append(self.next_pts - self.clip_start - packet.pts)
        elif self.clip == 0 and not self.shifts:
            self.shifts.append(0)
        self._flush_held()
        self.held = packet

    def _choose_at_join(self) -> bool:
        """Decide the join before the next clip's first real packet; True: keep its priming."""
        # Lateness of the next clip's real audio, per choice (see the class docstring).
        after_held = self.next_pts + (AAC_FRAME if self.held is not None else 0)
        options = {"drop priming": after_held - self.clip_start,
                   "keep priming": after_held + AAC_FRAME - self.clip_start}
        if self.held is not None:
            options["drop padded tail"] = self.next_pts - self.clip_start
        choice = min(options, key=lambda name: (abs(options[name]), name != "drop priming"))
        if choice == "drop padded tail":
            self.dropped[self.clip - 1].append(self.last_index_of_previous)
            self.held = None
        else:
            self._flush_held()
        self.shifts.append(options[choice])
        return choice == "keep priming"

    def end_clip(self) -> None:
        # The packet held back is this clip's last: the next join decides whether it is kept.
        self.last_index_of_previous = self.packets_seen - 1

    def _flush_held(self) -> None:
        if self.held is not None:
            self._write(self.held)
            self.held = None

    def _write(self, packet: av.Packet, duration: int = AAC_FRAME) -> None:
        packet.pts = packet.dts = self.next_pts
        packet.duration = duration
        packet.stream = self.stream
        self.target.mux(packet)
        self.next_pts += AAC_FRAME

    def finish(self, *, video_seconds: Fraction) -> None:
        if self.held is None:
            return
        # The cut's last packet says how much of it is real: up to the end of the picture
        # (the muxer's edit list then ends the track there), and never more than it holds.
        real = int(video_seconds * SAMPLE_RATE) - self.next_pts
        self._write(self.held, duration=max(1, min(AAC_FRAME, real)))
        self.held = None


# ---------------------------------------------------------------------------------------------
# Clips that must be encoded


def slate(out: Path, *, size: tuple[int, int], frames: int, number: int, title: str,
          note: str = "No take yet") -> None:
    """A house-format clip of `frames` frames showing the shot's number and title, silent."""
    image = slate_picture(size, number=number, title=title, note=note)
    partial = out.with_name(f".{out.name}.part")
    try:
        _still_clip(image, partial, frames=frames)
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def slate_picture(size: tuple[int, int], *, number: int, title: str,
                  note: str) -> Image.Image:
    w, h = size
    image = Image.new("RGB", size, (18, 20, 26))
    draw = ImageDraw.Draw(image)
    unit = min(w, h)
    big, small = previz.font(max(10, round(unit / 6))), previz.font(max(8, round(unit / 16)))
    draw.text((w / 2, h * 0.38), f"Shot {number}", font=big, fill=(246, 246, 240), anchor="mm")
    lines = previz.wrap(title, small, w * 0.8, 2) if title else []
    y = h * 0.58
    for line in lines:
        draw.text((w / 2, y), line, font=small, fill=(212, 214, 220), anchor="mm")
        y += small.size * 1.3
    draw.text((w / 2, h * 0.85), note, font=small, fill=(255, 196, 61), anchor="mm")
    return image


def _still_clip(image: Image.Image, out: Path, *, frames: int) -> None:
    with av.open(str(out), "w", format="mp4", options=dict(house.MUXER_OPTIONS)) as target:
        video = house.add_video_stream(target, *image.size)
        audio = house.add_audio_stream(target)
        picture = av.VideoFrame.from_image(image).reformat(
            format=house.PIX_FMT, dst_colorspace="ITU709", dst_color_range="MPEG",
            dst_color_trc=house.BT709, dst_color_primaries=house.BT709)
        silence = av.AudioFrame(format="fltp", layout=house.AUDIO_LAYOUT,
                                samples=house.SAMPLES_PER_FRAME)
        for plane in silence.planes:
            plane.update(bytes(plane.buffer_size))
        silence.sample_rate = SAMPLE_RATE
        silence.time_base = Fraction(1, SAMPLE_RATE)
        for index in range(frames):
            picture.pts = index
            picture.time_base = Fraction(1, FPS)
            picture.pict_type = house.FINAL_KEYFRAME if index == frames - 1 else \
                PictureType.NONE
            target.mux(video.encode(picture))
            silence.pts = index * house.SAMPLES_PER_FRAME
            target.mux(audio.encode(silence))
        target.mux(video.encode(None))
        target.mux(audio.encode(None))


def conform(src: Path, out: Path, *, size: tuple[int, int],
            caption: str = "") -> None:
    """Re-encode one clip into a house-format clip of `size` (scaled to fit, black bars if its
    shape differs), with `caption` burnt into its lower left corner if given."""
    paint = _captioner(caption, size) if caption else None
    try:
        house.normalize(src, out, size=size, paint=paint)
    except house.HouseError as e:
        raise JoinError(str(e)) from e


def _captioner(caption: str, size: tuple[int, int]) -> house.Paint:
    w, h = size
    face = previz.font(max(9, round(min(w, h) / 22)))
    margin = max(4, round(min(w, h) / 40))
    pad = max(2, round(face.size * 0.4))
    box_w = min(w - 2 * margin, round(face.getlength(caption)) + 2 * pad)
    box_h = round(face.size * 1.5)
    top = h - margin - box_h

    def paint(image: Image.Image) -> None:
        draw = ImageDraw.Draw(image, "RGBA")
        draw.rectangle((margin, top, margin + box_w, top + box_h), fill=(0, 0, 0, 170))
        draw.text((margin + pad, top + box_h / 2), caption, font=face, fill=(255, 255, 255),
                  anchor="lm")

    return paint


def fitted(size: tuple[int, int], height: int) -> tuple[int, int]:
    """`size` scaled to `height` lines, both sides even."""
    w, h = size
    width = round(w * height / h / 2) * 2
    return max(2, width), height
