"""Joining house-format clips by stream copy (storyboard/animatic.py, issue #13).

Tiny local-renderer clips of different lengths, with and without a soundtrack, so every join
meets a different AAC padding. The cut is checked from its packets and its decoded pictures and
samples, against the sources.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import av
import numpy as np
import pytest

from storyboard import animatic, house, previz

SIZE = (64, 36)
# Frames per clip: 24 and 30 leave different paddings in the last AAC packet (48 000 and
# 60 000 samples), 50 another; the second clip has no soundtrack (a silent track).
LENGTHS = (24, 30, 24, 50)


def render(path: Path, *, frames: int, seed: int, audio: bool = True,
           size: tuple[int, int] = SIZE) -> Path:
    previz.render(previz.RenderSpec(width=size[0], height=size[1], frames=frames,
                                    prompt="Pan right across the bay", seed=seed,
                                    audio=audio), path)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("clips")
    return [render(folder / f"clip-{n}.mp4", frames=frames, seed=n, audio=n != 1)
            for n, frames in enumerate(LENGTHS)]


@pytest.fixture(scope="module")
def cut(clips, tmp_path_factory) -> tuple[Path, animatic.Join]:
    out = tmp_path_factory.mktemp("cut") / "cut.mp4"
    return out, animatic.join(clips, out)


def packets(path: Path, kind: str) -> list[av.Packet]:
    with av.open(str(path)) as container:
        stream = getattr(container.streams, kind)[0]
        return [p for p in container.demux(stream) if p.size]


def samples(path: Path) -> np.ndarray:
    """The decoded audio (left channel), as a player hears it: edit lists applied."""
    with av.open(str(path)) as container:
        return np.concatenate([frame.to_ndarray()[0] for frame in container.decode(audio=0)])


def pictures(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def starts(lengths) -> list[int]:
    """Where each clip starts in the cut, in frames."""
    return [sum(lengths[:n]) for n in range(len(lengths))]


def test_the_cut_lasts_the_sum_of_its_clips_with_one_video_and_one_audio_stream(cut):
    out, result = cut
    assert result.frames == sum(LENGTHS)
    with av.open(str(out)) as container:
        assert (len(container.streams.video), len(container.streams.audio)) == (1, 1)
        video, _audio = container.streams.video[0], container.streams.audio[0]
        assert float(video.duration * video.time_base) == pytest.approx(sum(LENGTHS) / 24,
                                                                        abs=1 / 24)
    assert len(pictures(out)) == sum(LENGTHS)
    # The sound ends with the picture (the last packet's duration trims what runs past it),
    # or as early as the last clip's sound plays early.
    assert len(samples(out)) == sum(LENGTHS) * 2000 + min(0, result.audio_shift[-1])
    # And it is a house-format clip itself.
    assert house.is_house_format(out)


def test_every_packet_s_timestamps_increase(cut):
    out, _ = cut
    for kind in ("video", "audio"):
        found = packets(out, kind)
        assert all(a.dts < b.dts and a.pts < b.pts for a, b in pairwise(found)), kind


def test_the_video_is_copied_byte_for_byte(clips, cut):
    out, result = cut
    copied = [bytes(p) for p in packets(out, "video")]
    sources = [bytes(p) for clip in clips for p in packets(clip, "video")]
    assert result.video_packets == len(sources)
    assert copied == sources  # nothing was decoded or encoded


def test_the_audio_packets_are_the_sources_less_the_ones_it_dropped_on_purpose(clips, cut):
    out, result = cut
    kept = [bytes(p) for n, clip in enumerate(clips)
            for index, p in enumerate(packets(clip, "audio")) if index not in result.dropped[n]]
    assert [bytes(p) for p in packets(out, "audio")] == kept
    # The first clip keeps its priming packet (the edit list hides it); every later clip's
    # priming packet is dropped unless keeping it put the sound nearer the picture.
    assert 0 not in result.dropped[0]


def test_frames_at_each_join_are_the_source_clips_first_frames(clips, cut):
    out, _ = cut
    decoded = pictures(out)
    for clip, start in zip(clips, starts(LENGTHS), strict=True):
        source = pictures(clip)
        assert np.array_equal(decoded[start], source[0])
        # ... and the frame before the join is the previous clip's last.
        if start:
            assert not np.array_equal(decoded[start - 1], source[0])
        assert np.array_equal(decoded[start + len(source) - 1], source[-1])


def test_audio_stays_with_the_picture_at_every_join(clips, cut):
    out, result = cut
    heard = samples(out)
    for n, (clip, start) in enumerate(zip(clips, starts(LENGTHS), strict=True)):
        shift = result.audio_shift[n]
        # Never more than half an AAC packet (10.7 ms) from the picture, and no drift.
        assert abs(shift) <= animatic.AAC_FRAME // 2, (n, shift)
        source = samples(clip)
        at = start * 2000 + shift
        # The first packet after a join is decoded against the previous clip's last packet;
        # from the second on, every sample is exactly the source's.
        skip = animatic.AAC_FRAME if n else 0
        end = len(source)
        if result.dropped[n] and result.dropped[n][-1] != 0:
            end = (len(packets(clip, "audio")) - 2) * animatic.AAC_FRAME  # its tail was dropped
        end = min(end, len(heard) - at)
        assert end - skip > 20_000
        assert np.array_equal(heard[at + skip:at + end], source[skip:end]), n
    # The soundtrack of the clips with sound is really there (not silence).
    assert np.abs(heard[: LENGTHS[0] * 2000]).max() > 0.01
    silent = starts(LENGTHS)[1] * 2000 + result.audio_shift[1]
    assert np.abs(heard[silent + 1024:silent + LENGTHS[1] * 2000 - 1024]).max() == 0


def test_a_clip_of_another_size_is_refused_until_conformed(clips, tmp_path):
    big = render(tmp_path / "big.mp4", frames=24, seed=9, size=(128, 72))
    with pytest.raises(animatic.JoinError, match=r"big\.mp4 does not share"):
        animatic.join([clips[0], big], tmp_path / "cut.mp4")
    assert not (tmp_path / "cut.mp4").exists()
    animatic.conform(big, tmp_path / "small.mp4", size=SIZE)
    result = animatic.join([clips[0], tmp_path / "small.mp4"], tmp_path / "cut.mp4")
    assert result.frames == 48


def test_a_slate_is_a_silent_house_clip_of_the_shot_s_length(clips, tmp_path):
    out = tmp_path / "slate.mp4"
    animatic.slate(out, size=SIZE, frames=36, number=3, title="Harbour at night")
    facts = house.probe(out)
    assert house.is_house_format(out)
    assert facts.frames == 36
    assert animatic.signature(out) == animatic.signature(clips[0])
    assert np.abs(samples(out)).max() == 0
    assert len(samples(out)) == 36 * 2000


def test_captions_are_burnt_in(clips, tmp_path):
    out = tmp_path / "captioned.mp4"
    animatic.conform(clips[0], out, size=(128, 72), caption="1 · Harbour")
    assert house.probe(out).frames == LENGTHS[0]
    plain = tmp_path / "plain.mp4"
    animatic.conform(clips[0], plain, size=(128, 72))
    first, second = pictures(out)[0], pictures(plain)[0]
    # The caption sits in the lower left corner; the top of the picture is untouched.
    assert np.abs(first[-20:, :60].astype(int) - second[-20:, :60]).mean() > 5
    assert np.abs(first[:20].astype(int) - second[:20]).mean() < 1


def test_sizes_scale_to_even_sides():
    assert animatic.fitted((1280, 720), 480) == (854, 480)
    assert animatic.fitted((864, 496), 1080) == (1882, 1080)
    assert animatic.fitted((720, 1280), 720) == (404, 720)
