"""Seam score time per joint at 1080p: storyboard.seams (numpy) against the same measure
written pixel by pixel in plain Python.

    .venv/bin/python -m bench.seam [--repeat 5] [--calibrate]

Both sides score the same two 1080p frames (a stand-in photograph and the same picture graded
warmer, as a drifting take would start). The naive side gets the same Pillow downscale, so
the table compares the arithmetic, which is where a per-pixel implementation spends its time;
its numbers must equal numpy's (asserted). A last row times the numpy score on the full 1080p
frames, to show what the downscale buys. CPU time of this process is reported, so other load
on the machine moves the numbers less.

`--calibrate` renders chains with the offline renderer and scores each joint: continued from
the true last frame, and from the same frame graded, exposed, reframed or replaced. The
default thresholds (SeamThresholds) were set from this table.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "storyboard.settings")
# One core, as a worker scoring a joint would have it: no BLAS thread pool.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bench.render_speed import photo  # noqa: E402
from storyboard import seams  # noqa: E402

SIZE = (1920, 1080)


# ---------------------------------------------------------------------------------------------
# The naive implementation: the same formulas, one pixel at a time.


def naive_lab(r: float, g: float, b: float) -> tuple[float, float, float]:
    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = linear(r), linear(g), linear(b)
    x = (0.4124564 * r + 0.3575761 * g + 0.1804375 * b) / 0.95047
    y = (0.2126729 * r + 0.7151522 * g + 0.0721750 * b) / 1.0
    z = (0.0193339 * r + 0.1191920 * g + 0.9503041 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 216 / 24389 else (24389 / 27 * t + 16) / 116

    fx, fy, fz = f(x), f(y), f(z)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def naive_ciede2000(lab1: tuple[float, float, float], lab2: tuple[float, float, float]) -> float:
    L1, a1, b1 = lab1
    L2, a2, b2 = lab2
    C1, C2 = math.hypot(a1, b1), math.hypot(a2, b2)
    c7 = ((C1 + C2) / 2) ** 7
    G = 0.5 * (1 - math.sqrt(c7 / (c7 + 25 ** 7)))
    a1p, a2p = (1 + G) * a1, (1 + G) * a2
    C1p, C2p = math.hypot(a1p, b1), math.hypot(a2p, b2)
    h1p = math.degrees(math.atan2(b1, a1p)) % 360
    h2p = math.degrees(math.atan2(b2, a2p)) % 360
    dLp, dCp = L2 - L1, C2p - C1p
    if C1p * C2p == 0:
        dh = 0.0
    elif abs(h2p - h1p) <= 180:
        dh = h2p - h1p
    elif h2p - h1p > 180:
        dh = h2p - h1p - 360
    else:
        dh = h2p - h1p + 360
    dHp = 2 * math.sqrt(C1p * C2p) * math.sin(math.radians(dh / 2))
    Lp, Cp = (L1 + L2) / 2, (C1p + C2p) / 2
    if C1p * C2p == 0:
        hp = h1p + h2p
    elif abs(h1p - h2p) <= 180:
        hp = (h1p + h2p) / 2
    elif h1p + h2p < 360:
        hp = (h1p + h2p + 360) / 2
    else:
        hp = (h1p + h2p - 360) / 2
    T = (1 - 0.17 * math.cos(math.radians(hp - 30)) + 0.24 * math.cos(math.radians(2 * hp))
         + 0.32 * math.cos(math.radians(3 * hp + 6)) - 0.20 * math.cos(math.radians(4 * hp - 63)))
    d_theta = 30 * math.exp(-(((hp - 275) / 25) ** 2))
    R_C = 2 * math.sqrt(Cp ** 7 / (Cp ** 7 + 25 ** 7))
    S_L = 1 + 0.015 * (Lp - 50) ** 2 / math.sqrt(20 + (Lp - 50) ** 2)
    S_C = 1 + 0.045 * Cp
    S_H = 1 + 0.015 * Cp * T
    R_T = -math.sin(math.radians(2 * d_theta)) * R_C
    tL, tC, tH = dLp / S_L, dCp / S_C, dHp / S_H
    return math.sqrt(tL ** 2 + tC ** 2 + tH ** 2 + R_T * tC * tH)


def naive_ssim(x: list[list[float]], y: list[list[float]]) -> float:
    """Every window summed directly: 11×11 weights per pixel, five moments each."""
    radius = 5
    g = [math.exp(-(i * i) / (2 * 1.5 ** 2)) for i in range(-radius, radius + 1)]
    total = sum(g)
    g = [v / total for v in g]
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    h, w = len(x), len(x[0])
    values = []
    for i in range(h - 2 * radius):
        for j in range(w - 2 * radius):
            mx = my = sxx = syy = sxy = 0.0
            for di in range(2 * radius + 1):
                row_x, row_y, gi = x[i + di], y[i + di], g[di]
                for dj in range(2 * radius + 1):
                    k = gi * g[dj]
                    a, b = row_x[j + dj], row_y[j + dj]
                    mx += k * a
                    my += k * b
                    sxx += k * a * a
                    syy += k * b * b
                    sxy += k * a * b
            vx, vy, cov = sxx - mx * mx, syy - my * my, sxy - mx * my
            values.append((2 * mx * my + c1) * (2 * cov + c2)
                          / ((mx * mx + my * my + c1) * (vx + vy + c2)))
    return sum(values) / len(values)


def naive_score(before: Image.Image, after: Image.Image) -> seams.Score:
    a, b = seams.working_pair(before, after)  # the same Pillow downscale as numpy's side
    small_a, small_b = seams.halve(a).tolist(), seams.halve(b).tolist()
    colour = [naive_ciede2000(naive_lab(*pa), naive_lab(*pb))
              for row_a, row_b in zip(small_a, small_b, strict=True)
              for pa, pb in zip(row_a, row_b, strict=True)]
    luma_a = [[0.2126 * r + 0.7152 * g + 0.0722 * b for r, g, b in row] for row in a.tolist()]
    luma_b = [[0.2126 * r + 0.7152 * g + 0.0722 * b for r, g, b in row] for row in b.tolist()]
    return seams.Score(delta_e=sum(colour) / len(colour), ssim=naive_ssim(luma_a, luma_b))


# ---------------------------------------------------------------------------------------------


def frames(folder: Path) -> tuple[Image.Image, Image.Image]:
    before = Image.open(photo(folder / "plate.jpg")).convert("RGB").resize(SIZE)
    warm = np.asarray(before, dtype=np.float32) * np.array([1.15, 1.0, 0.85], dtype=np.float32)
    after = Image.fromarray(np.clip(warm, 0, 255).astype(np.uint8))
    return before, after


def cpu(run: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, result = math.inf, None
    for _ in range(repeat):
        start = time.process_time()
        result = run()
        best = min(best, time.process_time() - start)
    return best, result


def full_resolution(before: Image.Image, after: Image.Image) -> seams.Score:
    a = np.asarray(before, dtype=np.float32) / 255
    b = np.asarray(after, dtype=np.float32) / 255
    return seams.Score(
        delta_e=float(seams.ciede2000(seams.srgb_to_lab(a), seams.srgb_to_lab(b)).mean()),
        ssim=seams.ssim(seams.luma(a), seams.luma(b)))


# How a downstream take may start, applied to the upstream's true last frame.
VARIANTS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "true last frame": lambda im: im,
    "8 % warmer": lambda im: _scaled(im, (1.08, 1.0, 0.92)),
    "15 % warmer": lambda im: _scaled(im, (1.15, 1.0, 0.85)),
    "12 % brighter": lambda im: _scaled(im, (1.12, 1.12, 1.12)),
    "15 % darker": lambda im: _scaled(im, (0.85, 0.85, 0.85)),
    "reframed 6 %": lambda im: im.crop((im.width * 0.06, im.height * 0.06, im.width * 0.94,
                                        im.height * 0.94)).resize(im.size),
}
# (upstream prompt, start image or None): a title card, a pan and a textured photograph.
UPSTREAMS = [("Static shot of the cliffs.", False), ("Pan left across the tower.", False),
             ("Pan right over the city.", True)]


def _scaled(image: Image.Image, factors: tuple[float, float, float]) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32) * np.array(factors, dtype=np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def calibrate(folder: Path) -> None:
    from storyboard import previz
    from storyboard.models import SeamThresholds

    lines = SeamThresholds()
    plate = photo(folder / "plate.jpg")

    def render(name: str, prompt: str, seed: int, start: Path | None, size) -> Path:
        out = folder / f"{name}.mp4"
        previz.render(previz.RenderSpec(width=size[0], height=size[1], frames=48, prompt=prompt,
                                        seed=seed, audio=False, title=name, start_image=start),
                      out)
        return out

    print("\nCalibration: 2 s chains from the offline renderer; the downstream shot pushes in, "
          "so its first frame is its start frame")
    print(f"| {'size':<9} | {'upstream':<33} | {'downstream starts from':<22} | {'ΔE':>6} | "
          f"{'SSIM':>6} | verdict |")
    print(f"|{'-' * 11}|{'-' * 35}|{'-' * 24}|{'-' * 7}:|{'-' * 7}:|{'-' * 9}|")
    for size in ((864, 496), (1280, 720)):
        for prompt, textured in UPSTREAMS:
            last = previz.last_frame(render("up", prompt, 7, plate if textured else None, size))
            for name, variant in [*VARIANTS.items(), ("another picture", None)]:
                if variant is None:
                    down = render("down", "Slow push in on the harbour.", 99, None, size)
                else:
                    start = folder / "start.png"
                    variant(last).save(start)
                    down = render("down", "Slow push in on the harbour.", 11, start, size)
                found = seams.score(last, previz.first_frame(down))
                label = prompt + (" (photo)" if textured else "")
                verdict = lines.verdict(delta_e=found.delta_e, ssim=found.ssim)
                print(f"| {f'{size[0]}×{size[1]}':<9} | {label:<33} | {name:<22} | "
                      f"{found.delta_e:6.2f} | {found.ssim:6.3f} | {verdict:<7} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--calibrate", action="store_true",
                        help="also render chains offline and score their joints")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        before, after = frames(Path(tmp))
    fast, score = cpu(lambda: seams.score(before, after), args.repeat)
    slow, naive = cpu(lambda: naive_score(before, after), 1)
    full, whole = cpu(lambda: full_resolution(before, after), 1)
    assert math.isclose(score.delta_e, naive.delta_e, rel_tol=1e-4), (score, naive)
    assert math.isclose(score.ssim, naive.ssim, rel_tol=1e-4), (score, naive)
    print(f"Seam score of one joint, 1920×1080 frames, working size {seams.WORK_SIDE} px "
          f"(colour at half), CPU time on one core")
    print(f"scores: ΔE {score.delta_e:.3f} (naive {naive.delta_e:.3f}), "
          f"SSIM {score.ssim:.4f} (naive {naive.ssim:.4f})\n")
    rows = [("storyboard.seams.score (numpy, downscaled)", fast),
            ("naive per-pixel Python (same downscale)", slow),
            ("numpy on the full 1080p frames", full)]
    print(f"| {'implementation':<44} | {'ms per joint':>12} | {'vs seams.score':>14} |")
    print(f"|{'-' * 46}|{'-' * 13}:|{'-' * 15}:|")
    for name, seconds in rows:
        print(f"| {name:<44} | {seconds * 1000:12.1f} | {seconds / fast:13.1f}× |")
    print(f"\nfull-resolution score: ΔE {whole.delta_e:.3f}, SSIM {whole.ssim:.4f}")
    if args.calibrate:
        with tempfile.TemporaryDirectory() as tmp:
            calibrate(Path(tmp))


if __name__ == "__main__":
    main()
