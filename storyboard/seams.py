"""Seam check: does a continuing take really start where its upstream take ended?

Each joint compares the upstream chosen take's last frame with the downstream take's first
frame, on a small copy of both (colour and structure are read from the picture as a whole;
grain and encoder noise are not what a cut shows). Two numbers, because each misses what the
other sees:

- colour: the mean CIEDE2000 difference between the two frames in CIE Lab (a grade, a white
  balance or an exposure shift that keeps every edge in place);
- structure: SSIM on luma (a reframing, a jump or a different picture in the same colours).

A verdict (match / check / drift) follows from the team's thresholds (`SeamThresholds`).
Scoring is numpy over a downscaled frame: a few milliseconds per joint at 1080p
(bench/seam.py). Frames come from `joint_frames`: the ones captured when each take completed.
"""

from __future__ import annotations

import io
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models.fields.files import FieldFile
from PIL import Image

from accounts.models import Team, User
from storyboard import frames, previz
from storyboard.models import Generation, Seam, SeamThresholds, Shot

logger = logging.getLogger(__name__)

# The longest side of the copies compared. Large enough that a reframing of a few per cent
# moves edges by whole pixels (SSIM sees it), small enough that per-pixel noise averages out.
# Colour is compared at half that again: a mean over the frame needs no detail.
WORK_SIDE = 320
# The longest side of the frames kept for people to compare on the shot page.
SHOWN_SIDE = 960


@dataclass(frozen=True)
class Score:
    delta_e: float  # mean CIEDE2000 over the frame: ~1 is barely visible, > 10 a clear shift
    ssim: float  # mean SSIM of luma, 1.0 identical


# ---------------------------------------------------------------------------------------------
# Scoring (pure: arrays in, numbers out)


def score(before: Image.Image, after: Image.Image) -> Score:
    """Compare the upstream's last frame (`before`) with the downstream's first (`after`).

    Both are brought to one small size (the downstream frame to the upstream frame's shape,
    as the renderer would have fitted it), then compared in Lab and on luma.
    """
    a, b = working_pair(before, after)
    colour = ciede2000(srgb_to_lab(halve(a)), srgb_to_lab(halve(b)))
    return Score(delta_e=float(colour.mean()), ssim=ssim(luma(a), luma(b)))


def working_pair(before: Image.Image, after: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """Both frames as float RGB arrays in [0, 1] at the working size."""
    w, h = before.size
    k = WORK_SIDE / max(w, h)
    # Even sides, so `halve` takes whole 2×2 blocks.
    size = (max(16, 2 * round(w * k / 2)), max(16, 2 * round(h * k / 2)))
    return _array(before, size), _array(previz.fit_cover(after, before.size)
                                        if after.size != before.size else after, size)


def _array(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    # reducing_gap 1: Pillow first averages whole blocks of pixels (its fast integer reduce,
    # which is what a mean colour wants anyway), then resamples the small rest bilinearly.
    if image.mode != "RGB":
        image = image.convert("RGB")
    small = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=1.0)
    return np.asarray(small, dtype=np.float32) / 255.0


def halve(rgb: np.ndarray) -> np.ndarray:
    """Mean of each 2×2 block."""
    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    blocks = rgb[:h, :w].reshape(h // 2, 2, w // 2, 2, -1)
    return blocks.mean(axis=(1, 3))


# sRGB (D65) → XYZ, IEC 61966-2-1.
_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]], dtype=np.float64)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] (…, 3) → CIE L*a*b* (D65)."""
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ (_RGB_TO_XYZ.T / _WHITE_D65).astype(rgb.dtype)
    eps, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return np.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], axis=-1)


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference per pixel (Sharma, Wu & Dalal 2005), kL = kC = kH = 1."""
    L1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    L2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
    C1, C2 = np.hypot(a1, b1), np.hypot(a2, b2)
    C_bar7 = ((C1 + C2) / 2) ** 7
    G = 0.5 * (1 - np.sqrt(C_bar7 / (C_bar7 + 25.0 ** 7)))
    a1p, a2p = (1 + G) * a1, (1 + G) * a2
    C1p, C2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    dLp, dCp = L2 - L1, C2p - C1p
    zero = (C1p * C2p) == 0
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(zero, 0.0, dh)
    dHp = 2 * np.sqrt(C1p * C2p) * np.sin(np.radians(dh / 2))
    Lp_bar, Cp_bar = (L1 + L2) / 2, (C1p + C2p) / 2
    h_sum = h1p + h2p
    h_bar = np.where(np.abs(h1p - h2p) <= 180, h_sum / 2,
                     np.where(h_sum < 360, (h_sum + 360) / 2, (h_sum - 360) / 2))
    h_bar = np.where(zero, h_sum, h_bar)
    T = (1 - 0.17 * np.cos(np.radians(h_bar - 30)) + 0.24 * np.cos(np.radians(2 * h_bar))
         + 0.32 * np.cos(np.radians(3 * h_bar + 6)) - 0.20 * np.cos(np.radians(4 * h_bar - 63)))
    d_theta = 30 * np.exp(-(((h_bar - 275) / 25) ** 2))
    Cp_bar7 = Cp_bar ** 7
    R_C = 2 * np.sqrt(Cp_bar7 / (Cp_bar7 + 25.0 ** 7))
    S_L = 1 + 0.015 * (Lp_bar - 50) ** 2 / np.sqrt(20 + (Lp_bar - 50) ** 2)
    S_C = 1 + 0.045 * Cp_bar
    S_H = 1 + 0.015 * Cp_bar * T
    R_T = -np.sin(np.radians(2 * d_theta)) * R_C
    tL, tC, tH = dLp / S_L, dCp / S_C, dHp / S_H
    return np.sqrt(tL ** 2 + tC ** 2 + tH ** 2 + R_T * tC * tH)


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.709 luma of gamma-encoded RGB, in [0, 1] (what the house format stores as Y')."""
    return rgb @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


def _gaussian(sigma: float = 1.5, radius: int = 5) -> np.ndarray:
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


_WINDOW = _gaussian()


def _blur(image: np.ndarray) -> np.ndarray:
    """The 11×11 Gaussian window of SSIM, separably, over the valid region only."""
    k = _WINDOW
    rows = np.lib.stride_tricks.sliding_window_view(image, len(k), axis=1) @ k
    return np.lib.stride_tricks.sliding_window_view(rows, len(k), axis=0) @ k


def ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004: 11×11 Gaussian σ 1.5, K1 0.01, K2 0.03) of two images in
    [0, 1]."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mx, my = _blur(x), _blur(y)
    sxx = _blur(x * x) - mx * mx
    syy = _blur(y * y) - my * my
    sxy = _blur(x * y) - mx * my
    num = (2 * mx * my + c1) * (2 * sxy + c2)
    den = (mx * mx + my * my + c1) * (sxx + syy + c2)
    return float((num / den).mean())


# ---------------------------------------------------------------------------------------------
# Frames


def joint_frames(*, upstream: Generation, downstream: Generation) -> tuple[Image.Image,
                                                                          Image.Image]:
    """(the upstream take's true last frame, the downstream take's first frame).

    The one place that knows where a take's boundary frames come from: captured once when
    each take completed (frames.py), so a joint decodes nothing. A take that finished before
    frames were captured is decoded here instead (its last frame by a seek near the end).
    """
    before = upstream.last_frame_image()
    after = downstream.first_frame_image()
    if before is None:
        with _local(upstream.video) as path:
            before = frames.last_still(path).image
    if after is None:
        with _local(downstream.video) as path:
            after = frames.first_still(path).image
    return before, after


@contextmanager
def _local(field: FieldFile) -> Iterator[Path]:
    try:
        yield Path(field.path)
        return
    except NotImplementedError:
        pass
    # Object storage: a local copy for the decoder.
    with tempfile.TemporaryDirectory(prefix="seam-") as tmp:
        target = Path(tmp) / "take.mp4"
        with field.open("rb") as src, target.open("wb") as dst:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                dst.write(chunk)
        yield target


# ---------------------------------------------------------------------------------------------
# Joints: measured once per pair of takes


def measure(*, upstream: Generation, downstream: Generation) -> Seam | None:
    """The seam between two finished takes: stored once per pair, then reused.

    None when either file cannot be read (the joint simply shows no score; the take itself
    is not affected).
    """
    existing = Seam.objects.filter(upstream=upstream, downstream=downstream).first()
    if existing is not None:
        return existing
    try:
        before, after = joint_frames(upstream=upstream, downstream=downstream)
    except (av.FFmpegError, frames.FrameError, OSError, ValueError) as e:
        logger.info("No seam for takes %s → %s: %s", upstream.pk, downstream.pk, e)
        return None
    found = score(before, after)
    thresholds = SeamThresholds.for_team(downstream.project.team_id)
    seam = Seam(project_id=downstream.project_id, upstream=upstream, downstream=downstream,
                delta_e=round(found.delta_e, 3), ssim=round(found.ssim, 4),
                verdict=thresholds.verdict(delta_e=found.delta_e, ssim=found.ssim))
    seam.before.save("before.jpg", ContentFile(_jpeg(before)), save=False)
    seam.after.save("after.jpg", ContentFile(_jpeg(after)), save=False)
    try:
        with transaction.atomic():
            seam.save()
    except IntegrityError:
        # Measured twice at once (a worker and a request): the first one stored wins.
        seam.delete_files()
        return Seam.objects.filter(upstream=upstream, downstream=downstream).first()
    return seam


def _jpeg(image: Image.Image) -> bytes:
    shown = image.convert("RGB")
    shown.thumbnail((SHOWN_SIDE, SHOWN_SIDE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    shown.save(out, "JPEG", quality=88)
    return out.getvalue()


def take_finished(take: Generation) -> Seam | None:
    """A take of a continuing shot finished: its joint with the upstream's chosen take, so a
    drifting take is flagged in its row before anyone reviews it."""
    shot = Shot.objects.select_related("continues_from__selected_take").get(pk=take.shot_id)
    upstream = shot.upstream_take()
    if upstream is None or take.state != Generation.State.COMPLETED or not take.video:
        return None
    return measure(upstream=upstream, downstream=take)


def chosen_changed(shot: Shot) -> list[int]:
    """The shot's chosen take changed: measure its joint above and the joints directly below
    it. Returns the shots whose card now shows a seam it did not show before."""
    shot = Shot.objects.select_related("selected_take", "continues_from__selected_take",
                                       "project").get(pk=shot.pk)
    changed = []
    chosen = shot.chosen_take()
    if chosen is None:
        return changed
    upstream = shot.upstream_take()
    if upstream is not None and _new(upstream=upstream, downstream=chosen):
        changed.append(shot.pk)
    for below in shot.continued_by.select_related("selected_take"):
        take = below.chosen_take()
        if take is not None and _new(upstream=chosen, downstream=take):
            changed.append(below.pk)
    return changed


def _new(*, upstream: Generation, downstream: Generation) -> bool:
    if Seam.objects.filter(upstream=upstream, downstream=downstream).exists():
        return False
    return measure(upstream=upstream, downstream=downstream) is not None


def set_thresholds(*, team: Team, values: dict[str, float], user: User) -> SeamThresholds:
    """Store a team's thresholds and re-judge its seams by them (the scores stay as measured).
    The caller has validated `values` (SeamThresholdsForm)."""
    with transaction.atomic():
        thresholds, _ = SeamThresholds.objects.select_for_update().get_or_create(team=team)
        for name, value in values.items():
            setattr(thresholds, name, value)
        thresholds.updated_by = user
        thresholds.save(update_fields=[*values, "updated_by", "updated"])
        Seam.objects.filter(project__team=team).rejudge(thresholds)
    return thresholds
