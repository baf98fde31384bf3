"""How fast the previz renderer is, and what a keyframe every second buys last_frame.

    .venv/bin/python -m bench.render_speed [--repeat N] [--sizes 480p,720p]

Prints three tables: render time per size and path for 5 s clips; last-frame extraction on a
10 s 720p clip by seeking vs decoding everything; and the same seek on that clip re-encoded with a
single keyframe. Times are the best of --repeat runs (wall clock, plus the process's CPU time,
which shared machines disturb less).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
from av.video.frame import PictureType
from PIL import Image, ImageDraw

from storyboard.previz import FPS, RenderSpec, last_frame, render

SIZES = {"480p": (864, 496), "720p": (1280, 720), "1080p": (1920, 1080)}
PROMPT = "A lighthouse keeper climbs the stairs at dusk, slow push in"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="best of N runs (default 1)")
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated, e.g. 720p")
    args = parser.parse_args()
    sizes = [name.strip() for name in args.sizes.split(",") if name.strip()]

    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; "
          f"PyAV {av.__version__}, best of {args.repeat}\n")
    with tempfile.TemporaryDirectory(prefix="previz-bench-") as tmp:
        folder = Path(tmp)
        plate = photo(folder / "plate.jpg")
        render_table(folder, plate, sizes, args.repeat)
        seek_table(folder, plate, args.repeat)


def render_table(folder: Path, plate: Path, sizes: list[str], repeat: int) -> None:
    seconds = 5
    print(f"Render, {seconds} s clips at {FPS} fps with audio")
    row = "{:<7} {:<15} {:>9} {:>9} {:>13}"
    print(row.format("size", "path", "wall s", "CPU s", "× real time"))
    for name in sizes:
        width, height = SIZES[name]
        for path, start in (("image-to-video", plate), ("text-to-video", None)):
            spec = RenderSpec(width, height, seconds * FPS, PROMPT, seed=1, title="Lighthouse",
                              start_image=start)
            wall, cpu = best(lambda spec=spec: render(spec, folder / "clip.mp4"), repeat)
            print(row.format(name, path, f"{wall:.2f}", f"{cpu:.2f}", f"{seconds / wall:.2f}×"))
    print()


def seek_table(folder: Path, plate: Path, repeat: int) -> None:
    clip = folder / "ten.mp4"
    render(RenderSpec(1280, 720, 10 * FPS, PROMPT, seed=2, start_image=plate), clip)
    single = folder / "single-keyframe.mp4"
    reencode(clip, single, gop=100_000)

    seek, _ = best(lambda: last_frame(clip), repeat)
    naive, _ = best(lambda: decode_to_end(clip), repeat)
    single_seek, _ = best(lambda: last_frame(single), repeat)
    assert last_frame(clip).tobytes() == decode_to_end(clip).tobytes()

    print("Last frame of a 10 s 720p clip")
    row = "{:<44} {:>9} {:>9}"
    print(row.format("method", "seconds", "ratio"))
    print(row.format("decode every frame to the end", f"{naive:.3f}", "1.0×"))
    print(row.format("last_frame: seek, decode the last GOP (g=24)", f"{seek:.3f}",
                     f"{naive / seek:.1f}× faster"))
    print(row.format("last_frame on a single-keyframe encode", f"{single_seek:.3f}",
                     f"{single_seek / seek:.1f}× slower than g=24"))
    print(f"\nKeyframes: {keyframes(clip)} with g=24, {keyframes(single)} in the single-keyframe "
          f"encode; sizes {clip.stat().st_size // 1024} KiB vs {single.stat().st_size // 1024} KiB")


def best(run: Callable[[], object], repeat: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(max(1, repeat)):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def decode_to_end(path: Path) -> Image.Image:
    """The naive way: decode every frame and keep the last."""
    with av.open(str(path)) as container:
        last = None
        for frame in container.decode(video=0):
            last = frame
        assert last is not None
        return last.to_image()


def reencode(source: Path, target: Path, gop: int) -> None:
    # Same frames and settings as the house format except the keyframe interval; scenecut=0 so
    # x264 adds no keyframes of its own.
    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        stream = out.add_stream("libx264", rate=FPS, options={
            "preset": "veryfast", "g": str(gop), "bf": "0", "x264-params": "scenecut=0"})
        video = inp.streams.video[0]
        stream.width, stream.height = video.codec_context.width, video.codec_context.height
        stream.pix_fmt = "yuv420p"
        for index, frame in enumerate(inp.decode(video)):
            frame.pts = index
            frame.time_base = Fraction(1, FPS)
            # A decoded keyframe keeps its picture type, which x264 would honour as a forced
            # keyframe: clear it so only `gop` decides.
            frame.pict_type = PictureType.NONE
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def keyframes(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for p in container.demux(video=0) if p.size and p.is_keyframe)


def photo(path: Path) -> Path:
    """A stand-in photograph: gradient, shapes and grain, so x264 has real detail to code."""
    size = (2048, 1365)
    rng = random.Random(1)
    grain = Image.frombytes("L", size, rng.randbytes(size[0] * size[1])).convert("RGB")
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    image = Image.blend(image, Image.new("RGB", size, (40, 70, 120)), 0.5)
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        x, y, r = rng.uniform(0, size[0]), rng.uniform(0, size[1]), rng.uniform(20, 200)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    Image.blend(image, grain, 0.08).save(path, quality=90)
    return path


if __name__ == "__main__":
    main()
