"""Last frame of a 15 s 1080p H.264 clip with audio: seek and decode forward, or decode it all.

    .venv/bin/python -m bench.last_frame [--repeat N] [--seconds 15]

Two clips of the same pictures, with an AAC track: a provider-like encode (x264's defaults: a
keyframe every 250 frames, B-frames) and the house-format copy `house.normalize` makes of it (a
keyframe every second and on the final frame, no B-frames).
For each, `frames.last_still` (seek near the end, decode forward) against
`frames.decode_every_frame_last` (decode every frame, keep the final one); it asserts both give
the same pixels. Then the chain wait: how long a continuing shot waits for its start frame after
its upstream take completed — with the frame captured at completion (what takes do now) and
captured on first need (what chains did before). Times are the best of --repeat runs.
"""

from __future__ import annotations

import argparse
import array
import math
import os
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image, ImageChops, ImageDraw

from storyboard import frames, house

WIDTH, HEIGHT = 1920, 1080


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs (default 3)")
    parser.add_argument("--seconds", type=int, default=15, help="clip length (default 15)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; "
          f"PyAV {av.__version__}; {args.seconds} s {WIDTH}×{HEIGHT} H.264 + AAC, "
          f"best of {args.repeat}\n")
    with tempfile.TemporaryDirectory(prefix="last-frame-bench-") as tmp:
        folder = Path(tmp)
        provider_clip = encode(folder / "provider.mp4", args.seconds)
        house_clip = folder / "house.mp4"
        house.normalize(provider_clip, house_clip)
        describe(house_clip)
        seek_table([("house format (g=24, final keyframe)", house_clip),
                    ("provider-like (g=250, B-frames)", provider_clip)], args.repeat)
        wait_table(folder, house_clip, args.repeat)


def encode(path: Path, seconds: int) -> Path:
    """Moving pictures with some texture, so the encoder does real work, and a soundtrack."""
    grain = Image.effect_noise((WIDTH, HEIGHT), 24).convert("RGB")
    ramp = Image.linear_gradient("L").resize((WIDTH, HEIGHT)).rotate(90, expand=False)
    base = ImageChops.add(Image.merge("RGB", (ramp, ramp.point(lambda v: v // 2),
                                               ramp.point(lambda v: 255 - v))), grain, 2.0)
    count = seconds * house.FPS
    tone = array.array("f", [0.1 * math.sin(math.tau * 220 * k / house.SAMPLE_RATE)
                             for k in range(house.SAMPLE_RATE)])
    with av.open(str(path), "w", format="mp4", options=dict(house.MUXER_OPTIONS)) as out:
        video = out.add_stream("libx264", rate=house.FPS, options={"preset": "veryfast"})
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        audio = house.add_audio_stream(out)
        samples = 0
        for index in range(count):
            picture = ImageChops.offset(base, index * 12, 0)
            bar = (index * 37) % (WIDTH - 80)
            ImageDraw.Draw(picture).rectangle((bar, 200, bar + 80, 880), fill=(250, 240, 230))
            frame = av.VideoFrame.from_image(picture)
            frame.pts = index
            out.mux(video.encode(frame))
            upto = (index + 1) * house.SAMPLES_PER_FRAME
            while samples < upto:
                n = min(house.AUDIO_CHUNK, upto - samples)
                at = samples % house.SAMPLE_RATE
                piece = (tone[at:] + tone[:at])[:n].tobytes()
                chunk = av.AudioFrame(format="fltp", layout="stereo", samples=n)
                chunk.planes[0].update(piece)
                chunk.planes[1].update(piece)
                chunk.sample_rate, chunk.pts = house.SAMPLE_RATE, samples
                chunk.time_base = Fraction(1, house.SAMPLE_RATE)
                out.mux(audio.encode(chunk))
                samples += n
        out.mux(video.encode(None))
        out.mux(audio.encode(None))
    return describe(path)


def describe(path: Path) -> Path:
    facts = house.probe(path)
    print(f"{path.name}: {facts.frames} frames, keyframe interval "
          f"{facts.keyframe_interval}, B-frames {'yes' if facts.reordered else 'no'}, "
          f"audio {facts.audio_codec}")
    return path


def best(run: Callable[[], object], repeat: int) -> tuple[float, object]:
    return timed(run, repeat)[0], timed(run, 1)[2]


def timed(run: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    """Best wall time and best CPU time (all threads of this process) of `repeat` runs."""
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus), result


def seek_table(clips: list[tuple[str, Path]], repeat: int) -> None:
    print("\nLast frame: seek near the end and decode forward vs decode the whole clip")
    print("(wall clock, and CPU time of all threads, which other people's load disturbs less)")
    row = "{:<36} {:>8} {:>8} {:>7} {:>8} {:>8} {:>7} {:>6}"
    print(row.format("clip", "seek s", "full s", "ratio", "seek CPU", "full CPU", "ratio",
                     "same"))
    for name, path in clips:
        seek, seek_cpu, still = timed(lambda path=path: frames.last_still(path), repeat)
        full, full_cpu, truth = timed(lambda path=path: frames.decode_every_frame_last(path),
                                      repeat)
        assert still.sha256 == truth.sha256, f"{name}: the seek found another frame"
        assert still.seconds == truth.seconds
        print(row.format(name, f"{seek:.3f}", f"{full:.3f}", f"{full / seek:.1f}×",
                         f"{seek_cpu:.3f}", f"{full_cpu:.3f}", f"{full_cpu / seek_cpu:.1f}×",
                         "yes"))


def wait_table(folder: Path, clip: Path, repeat: int) -> None:
    """From "the upstream take completed" to "the continuing take has its start frame"."""
    os.environ["VAR_DIR"] = str(folder / "var")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "storyboard.settings")
    os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    from django.core.files import File
    from django.core.management import call_command

    from accounts.models import Team
    from storyboard import generation
    from storyboard.models import Generation, Project, Shot

    call_command("migrate", verbosity=0)
    project = Project.objects.create(team=Team.objects.create(name="Bench"), name="Chain")
    shot = Shot.objects.create(project=project, prompt="Upstream")
    take = Generation.objects.create(shot=shot, project=project, provider="local",
                                     endpoint=shot.endpoint, state=Generation.State.COMPLETED)
    with clip.open("rb") as fh:
        take.video.save("video.mp4", File(fh), save=True)

    def captured_on_first_need() -> object:
        Generation.objects.filter(pk=take.pk).update(last_frame="", last_frame_sha256="")
        take.last_frame, take.last_frame_sha256 = "", ""
        return generation.chain_frame(take)

    def capture_at_completion() -> object:
        # What completing a take now adds (in _store): both frames, read and kept as PNGs.
        first, last = frames.first_still(clip), frames.last_still(clip)
        return first.png(), last.png()

    lazy, _ = best(captured_on_first_need, repeat)
    # The frame is in place now, as it is from the moment a take completes.
    take.refresh_from_db()
    assert take.last_frame
    ready, _ = best(lambda: generation.chain_frame(take), max(repeat, 20))
    capture, _ = best(capture_at_completion, repeat)
    print("\nChain wait: upstream take completed → continuing take has its start frame")
    row = "{:<44} {:>12}"
    print(row.format("", "seconds"))
    print(row.format("captured at completion (now): the wait", f"{ready:.6f}"))
    print(row.format("captured on first need (before): the wait", f"{lazy:.3f}"))
    print(row.format("…what completion now spends instead, once", f"{capture:.3f}"))


if __name__ == "__main__":
    main()
