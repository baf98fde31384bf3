"""An animatic of 20 five-second 720p takes: stream copy against decoding and re-encoding.

    .venv/bin/python -m bench.animatic [--takes 20] [--seconds 5] [--quick]

Renders the takes offline (previz image-to-video from a grainy photograph, house format, each
with its own soundtrack), then times `storyboard.animatic.join` (remux: packets copied,
timestamps rebased, the AAC priming handled at each join) against the naive way, decoding
every clip and encoding one new file with the house encoder settings. Prints both, the ratio,
and what each produced: duration in frames, and for the remux the largest audio offset at a
join. `--quick` uses 4 takes of 2 s at 480p, so a run takes seconds.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av

from bench.render_speed import photo
from storyboard import animatic, house
from storyboard.previz import FPS, RenderSpec, render

PROMPTS = ("Slow push in on the harbour", "Pan right across the bay", "Static, locked off",
           "Tilt up to the lighthouse", "Orbit around the keeper")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--takes", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="4 takes of 2 s at 480p")
    args = parser.parse_args()
    takes, seconds, size = args.takes, args.seconds, (1280, 720)
    if args.quick:
        takes, seconds, size = 4, 2, (864, 496)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; "
          f"PyAV {av.__version__}")
    print(f"{takes} takes of {seconds} s at {size[0]}×{size[1]}, {FPS} fps, AAC 48 kHz stereo\n")
    with tempfile.TemporaryDirectory(prefix="animatic-bench-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        # A grainy photograph under a moving camera: detail x264 has to code, like real takes.
        plate = photo(folder / "plate.jpg")
        clips = []
        for n in range(takes):
            path = folder / f"take-{n}.mp4"
            render(RenderSpec(size[0], size[1], seconds * FPS, PROMPTS[n % len(PROMPTS)],
                              seed=n, title=f"Shot {n + 1}", start_image=plate), path)
            clips.append(path)
        print(f"(rendered the takes in {time.perf_counter() - started:.1f} s)\n")

        started = time.perf_counter()
        joined = animatic.join(clips, folder / "remux.mp4")
        remux = time.perf_counter() - started

        started = time.perf_counter()
        reencode_frames = reencode(clips, folder / "reencode.mp4")
        naive = time.perf_counter() - started

    expected = takes * seconds * FPS
    row = "{:<34} {:>9} {:>9} {:>14} {:>10}"
    print(row.format("method", "seconds", "frames", "duration s", "ratio"))
    print(row.format("decode + re-encode (naive)", f"{naive:.2f}", reencode_frames,
                     f"{reencode_frames / FPS:.3f}", "1.0×"))
    print(row.format("stream copy (animatic.join)", f"{remux:.3f}", joined.frames,
                     f"{joined.duration:.3f}", f"{naive / remux:.0f}× faster"))
    print(f"\nexpected {expected} frames ({expected / FPS:.3f} s); largest audio offset at a "
          f"join {max(map(abs, joined.audio_shift))} samples "
          f"({max(map(abs, joined.audio_shift)) / house.SAMPLE_RATE * 1000:.1f} ms)")


def reencode(clips: list[Path], out: Path) -> int:
    """The naive animatic: decode every clip, encode everything again into one file."""
    written = 0
    with av.open(str(out), "w", format="mp4", options=dict(house.MUXER_OPTIONS)) as target:
        video = audio = None
        sent = 0
        for clip in clips:
            with av.open(str(clip)) as source:
                video_in, audio_in = source.streams.video[0], source.streams.audio[0]
                video_in.thread_type = "AUTO"
                if video is None:
                    video = house.add_video_stream(target, video_in.codec_context.width,
                                                   video_in.codec_context.height)
                    audio = house.add_audio_stream(target)
                for packet in source.demux(video_in, audio_in):
                    for frame in packet.decode():
                        if packet.stream is video_in:
                            frame.pts, frame.time_base = written, Fraction(1, FPS)
                            frame.pict_type = av.video.frame.PictureType.NONE
                            target.mux(video.encode(frame))
                            written += 1
                        else:
                            frame.pts = sent
                            frame.time_base = Fraction(1, house.SAMPLE_RATE)
                            target.mux(audio.encode(frame))
                            sent += frame.samples
        target.mux(video.encode(None))
        target.mux(audio.encode(None))
    return written


if __name__ == "__main__":
    main()
