"""The house format: provider videos are re-encoded to exactly what previz writes.

Inputs are made here with PyAV, each breaking a different house rule (frame rate, codec,
container, odd size, audio rate and layout, timing, rotation), and the result is checked from
its packets and decoded pictures, not from what the encoder was asked for.
"""

from __future__ import annotations

import array
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat

from storyboard import house, previz
from storyboard.house import HouseError, is_house_format, normalize, probe
from tests.hostile_files import oversized_house_video


@dataclass(frozen=True)
class Source:
    name: str
    fps: int
    frames: int
    size: tuple[int, int]
    codec: str = "libx264"
    container: str = "mp4"
    audio_rate: int | None = None
    audio_layout: str = "mono"
    pix_fmt: str = "yuv420p"

    @property
    def suffix(self) -> str:
        return "mov" if self.container == "mov" else "mp4"


SOURCES = [
    Source("h264-30fps-aac-44k-mono", fps=30, frames=60, size=(320, 240), audio_rate=44_100),
    Source("mpeg4-25fps-mov-silent", fps=25, frames=50, size=(320, 240), codec="mpeg4",
           container="mov"),
    Source("odd-321x241-yuv444", fps=30, frames=45, size=(321, 241), pix_fmt="yuv444p"),
]


def picture(index: int, size: tuple[int, int]) -> Image.Image:
    """A frame that changes visibly over time: a colour ramp and a moving block."""
    w, h = size
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    image = Image.blend(image, Image.new("RGB", size, (index * 4 % 256, 60, 160)), 0.6)
    draw = ImageDraw.Draw(image)
    x = index * 4 % max(1, w - 60)
    draw.rectangle((x, h // 4, x + 60, h // 4 + 80), fill=(250, 220, 40))
    return image


def tone(rate: int, layout: str, start: int, count: int) -> av.AudioFrame:
    frame = av.AudioFrame(format="fltp", layout=layout, samples=count)
    samples = array.array("f", (0.3 * math.sin(math.tau * 440 * (start + k) / rate)
                                for k in range(count)))
    for plane in frame.planes:
        plane.update(samples.tobytes() + bytes(plane.buffer_size - count * 4))
    frame.sample_rate = rate
    frame.time_base = Fraction(1, rate)
    frame.pts = start
    return frame


def make(path: Path, source: Source) -> Path:
    with av.open(str(path), "w", format=source.container) as container:
        video = container.add_stream(source.codec, rate=source.fps)
        video.width, video.height = source.size
        video.pix_fmt = source.pix_fmt
        audio = None
        if source.audio_rate:
            audio = container.add_stream("aac", rate=source.audio_rate,
                                         layout=source.audio_layout)
        sent = 0
        for index in range(source.frames):
            frame = av.VideoFrame.from_image(picture(index, source.size))
            frame.pts = index
            frame.time_base = Fraction(1, source.fps)
            container.mux(video.encode(frame))
            if audio and source.audio_rate:
                upto = round((index + 1) * source.audio_rate / source.fps)
                while sent < upto:
                    count = min(1024, upto - sent)
                    container.mux(audio.encode(tone(source.audio_rate, source.audio_layout,
                                                    sent, count)))
                    sent += count
        container.mux(video.encode(None))
        if audio:
            container.mux(audio.encode(None))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mad(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference over all pixels and channels, 0–255."""
    return sum(ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB"))).mean) / 3


def decoded_audio_samples(path: Path) -> tuple[int, float]:
    """(samples, peak) of the first audio track, decoded."""
    samples, peak = 0, 0.0
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            samples += frame.samples
            left = array.array("f", bytes(frame.planes[0])[:frame.samples * 4])
            peak = max(peak, max(map(abs, left), default=0.0))
    return samples, peak


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sources")
    return {s.name: make(folder / f"{s.name}.{s.suffix}", s) for s in SOURCES}


@pytest.fixture(scope="module")
def previz_render(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("previz") / "render.mp4"
    spec = previz.RenderSpec(width=160, height=90, frames=30, prompt="A pier, slow push in",
                             seed=3)
    return previz.render(spec, out).path


# ---------------------------------------------------------------------------------------------
# Normalising real inputs


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.name)
def test_normalize_produces_the_house_format(source, sources, tmp_path) -> None:
    src = sources[source.name]
    before = sha256(src)
    original = probe(src)
    out = tmp_path / "house.mp4"

    result = normalize(src, out)

    assert sha256(src) == before  # the original is kept as it was
    assert result == probe(out)
    assert (result.video_codec, result.pix_fmt, result.fps) == ("h264", "yuv420p", 24.0)
    assert result.constant_rate
    assert not result.reordered
    assert result.faststart
    assert result.keyframe_interval <= 24
    assert (result.width, result.height) == (source.size[0] // 2 * 2, source.size[1] // 2 * 2)
    assert abs(result.duration - original.duration) <= 1 / 24
    assert result.frames == round(original.duration * 24)
    if source.audio_rate:
        assert (result.audio_codec, result.sample_rate, result.channels) == ("aac", 48_000, 2)
        samples, peak = decoded_audio_samples(out)
        assert samples == result.frames * 2000  # the soundtrack ends with the picture
        assert peak > 0.1  # and it is the tone, not silence
    else:
        # No sound in: a silent track of the picture's length all the same, so the clip joins
        # others by stream copy.
        assert (result.audio_codec, result.sample_rate, result.channels) == ("aac", 48_000, 2)
        samples, peak = decoded_audio_samples(out)
        assert samples == result.frames * 2000
        assert peak == 0.0
    assert is_house_format(out)
    assert not is_house_format(src)


@pytest.mark.parametrize("source", SOURCES[:2], ids=lambda s: s.name)
def test_the_final_frame_is_a_keyframe_so_the_last_frame_decodes_alone(source, sources,
                                                                       tmp_path) -> None:
    out = tmp_path / "house.mp4"
    normalize(sources[source.name], out)
    with av.open(str(out)) as container:
        keys = [p.is_keyframe for p in container.demux(video=0) if p.size]
    assert keys[0]
    assert keys[-1]
    # Still one a second, not more: the final one is the only extra.
    assert sum(keys) <= len(keys) // 24 + 2


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.name)
def test_first_and_last_frames_survive(source, sources, tmp_path) -> None:
    src, out = sources[source.name], tmp_path / "house.mp4"
    normalize(src, out)
    even = (source.size[0] // 2 * 2, source.size[1] // 2 * 2)
    first_src = previz.first_frame(src).crop((0, 0, *even))
    last_src = previz.last_frame(src).crop((0, 0, *even))
    first_out, last_out = previz.first_frame(out), previz.last_frame(out)
    assert first_out.size == last_out.size == even
    assert mad(first_out, first_src) < 4
    assert mad(last_out, last_src) < 4
    # Sanity: the measure does tell the two ends apart.
    assert mad(first_out, last_src) > 10


def test_frames_are_retimed_by_timestamp(tmp_path) -> None:
    # Variable frame rate: ten frames at 10 fps, then twenty at 20 fps; each a flat grey that
    # names its index. 2 s in all, so 48 output frames.
    times_ms = [k * 100 for k in range(10)] + [1000 + k * 50 for k in range(20)]
    src = tmp_path / "vfr.mp4"
    with av.open(str(src), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=20)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for index, ms in enumerate(times_ms):
            frame = av.VideoFrame.from_image(Image.new("RGB", (64, 64), (grey(index),) * 3))
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))

    result = normalize(src, tmp_path / "house.mp4")

    assert result.frames == 48
    assert result.constant_rate
    shown = frame_indices(tmp_path / "house.mp4")
    assert len(shown) == 48
    assert shown == sorted(shown)  # never back in time
    assert shown[0] == 0
    assert shown[-1] == len(times_ms) - 1
    for n, index in enumerate(shown):
        # Each output frame shows a source frame from within one source interval of its time.
        assert abs(times_ms[index] / 1000 - n / 24) <= 0.1, (n, index)
    # The slow part is repeated (10 → 24 fps), the fast part thinned out (20 → 24 fps keeps all
    # but the frames are still each shown at least once).
    assert len(shown) > len(set(shown))
    assert set(shown) == set(range(len(times_ms)))


def grey(index: int) -> int:
    return 10 + index * 8


def frame_indices(path: Path) -> list[int]:
    indices = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            level = ImageStat.Stat(frame.to_image().convert("L")).mean[0]
            indices.append(round((level - 10) / 8))
    return indices


def test_rotated_video_is_stored_upright(tmp_path) -> None:
    src = tmp_path / "phone.mp4"
    with av.open(str(src), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.set_display_rotation(90)
        for index in range(12):
            image = Image.new("RGB", (64, 48), (200, 20, 20))
            image.paste((20, 20, 200), (0, 0, 32, 48))
            frame = av.VideoFrame.from_image(image)
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    assert probe(src).rotation == 90

    result = normalize(src, tmp_path / "house.mp4")

    assert (result.width, result.height, result.rotation) == (48, 64, 0)
    assert mad(previz.first_frame(tmp_path / "house.mp4"), previz.first_frame(src)) < 4


# ---------------------------------------------------------------------------------------------
# Recognising the house format


def test_a_previz_render_is_already_house_format(previz_render) -> None:
    facts = probe(previz_render)
    assert is_house_format(previz_render), facts
    assert facts.frames == 30
    assert facts.has_audio


def test_the_encoder_settings_are_previz_s(previz_render, tmp_path) -> None:
    # Until previz builds its streams with house.add_video_stream/add_audio_stream, make sure
    # the two agree on everything a probe can see.
    ours = normalize(previz_render, tmp_path / "again.mp4")
    theirs = probe(previz_render)
    fields: Sequence[str] = ("width", "height", "frames", "fps", "video_codec", "pix_fmt",
                             "audio_codec", "sample_rate", "channels", "keyframe_interval",
                             "constant_rate", "reordered", "faststart", "rotation")
    assert {f: getattr(ours, f) for f in fields} == {f: getattr(theirs, f) for f in fields}
    assert (house.FPS, house.SAMPLE_RATE) == (previz.FPS, previz.SAMPLE_RATE)
    with av.open(str(tmp_path / "again.mp4")) as a, av.open(str(previz_render)) as b:
        mine, reference = a.streams.video[0].codec_context, b.streams.video[0].codec_context
        assert (mine.colorspace, mine.color_range, mine.color_primaries, mine.color_trc) == (
            reference.colorspace, reference.color_range, reference.color_primaries,
            reference.color_trc)


@pytest.mark.parametrize("content", [b"", b"not a video at all", b"\x00\x00\x00\x18ftypisom"])
def test_unreadable_files_are_not_house_format(tmp_path, content) -> None:
    path = tmp_path / "junk.mp4"
    path.write_bytes(content)
    assert not is_house_format(path)
    with pytest.raises(HouseError):
        probe(path)


# ---------------------------------------------------------------------------------------------
# Failures


def test_a_truncated_video_fails_cleanly(sources, tmp_path) -> None:
    src = tmp_path / "truncated.mp4"
    data = sources["h264-30fps-aac-44k-mono"].read_bytes()
    src.write_bytes(data[: len(data) // 3])
    dest = tmp_path / "out" / "house.mp4"
    dest.parent.mkdir()
    with pytest.raises(HouseError):
        normalize(src, dest)
    assert list(dest.parent.iterdir()) == []  # no partial file left behind


def test_a_playlist_is_not_opened(tmp_path) -> None:
    # Auto-detection would read this as HLS and open the file it names; we only demux MP4/MOV.
    secret = tmp_path / "secret.ts"
    secret.write_bytes(b"\x47" + bytes(187))
    playlist = tmp_path / "video.mp4"
    playlist.write_text(f"#EXTM3U\n#EXTINF:1,\n{secret}\n#EXT-X-ENDLIST\n")
    with pytest.raises(HouseError):
        normalize(playlist, tmp_path / "house.mp4")
    assert not (tmp_path / "house.mp4").exists()


def test_normalize_never_overwrites_its_source(sources, tmp_path) -> None:
    src = tmp_path / "source.mp4"
    src.write_bytes(sources["odd-321x241-yuv444"].read_bytes())
    before = sha256(src)
    with pytest.raises(HouseError):
        normalize(src, src)
    assert sha256(src) == before


# The header check that runs before anything is decoded


def test_it_refuses_a_house_format_file_that_declares_8192_a_side(tmp_path):
    path = tmp_path / "big.mp4"
    path.write_bytes(oversized_house_video(8192, 8192, frames=3))
    with pytest.raises(house.Refused, match="at most 4096 pixels a side") as refused:
        house.check(path)
    declared = refused.value.declared
    assert (declared.width, declared.height, declared.frames) == (8192, 8192, 3)
    assert declared.duration == pytest.approx(3 / 24)


def test_it_refuses_more_pixels_a_frame_than_4k(tmp_path):
    path = tmp_path / "wide.mp4"
    path.write_bytes(oversized_house_video(4096, 4096, frames=1))
    with pytest.raises(house.Refused, match="million pixels a frame"):
        house.check(path)


def test_it_passes_an_allowed_header_on_as_declared(tmp_path):
    path = tmp_path / "ok.mp4"
    path.write_bytes(oversized_house_video(1280, 720, frames=3))
    declared = house.check(path)
    assert (declared.width, declared.height, declared.frames) == (1280, 720, 3)
    assert declared.size == path.stat().st_size


def test_a_file_without_a_readable_header_is_not_a_refusal(tmp_path):
    path = tmp_path / "junk.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(64))
    with pytest.raises(HouseError) as failed:
        house.check(path)
    # Nothing was declared, so nothing can be measured (or charged) from it.
    assert not isinstance(failed.value, house.Refused)


def test_a_clip_without_an_audio_track_is_not_house_format(tmp_path) -> None:
    # Otherwise one silent clip would force a whole animatic's audio to be re-encoded.
    path = tmp_path / "mute.mp4"
    with av.open(str(path), "w", format="mp4", options=dict(house.MUXER_OPTIONS)) as container:
        stream = house.add_video_stream(container, 64, 36)
        for index in range(24):
            frame = av.VideoFrame.from_image(Image.new("RGB", (64, 36), (90, 90, 90)))
            frame.pts = index
            if index == 23:
                frame.pict_type = house.FINAL_KEYFRAME
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    assert not probe(path).has_audio
    assert not is_house_format(path)
    normalize(path, tmp_path / "house.mp4")
    assert is_house_format(tmp_path / "house.mp4")
