"""The one workflow that spans models: from a shot to a stored take.

start_generation() checks the shot, records a pending take and enqueues `drive` after commit.
drive() (run by a task worker) moves the take through its states with conditional updates, so
a duplicate task or a racing reconciler cannot move it twice. Every transition is broadcast to
the board after it commits.
"""

from __future__ import annotations

import io
import logging
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.db.models.fields.files import FieldFile
from PIL import Image

from accounts.models import User
from storyboard import catalogue, previz, realtime
from storyboard.models import Asset, Generation, Shot
from storyboard.providers import Canceled, Job, ProviderError, get_provider
from storyboard.providers import default_provider_name as _default_provider

logger = logging.getLogger(__name__)
State = Generation.State

# Auto duration on the local renderer: the model would decide; a preview uses a typical length.
LOCAL_AUTO_SECONDS = 5
# How long a take may sit unchanged in a working state before the reconciler steps in.
STUCK_AFTER = timedelta(minutes=2)
# Progress is written and broadcast at most this often (fractions of the whole render).
PROGRESS_STEP = 0.04


class GenerationRefused(Exception):
    """The shot cannot be generated as it stands; the message says why, in plain words."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def problems(shot: Shot) -> list[str]:
    """Everything that stops this shot from being generated, before anything is spent."""
    found = []
    spec = catalogue.ENDPOINTS.get(shot.endpoint)
    if spec is None:
        return ["Choose one of the listed Seedance endpoints."]
    if not shot.prompt.strip():
        found.append("Write a prompt first.")
    if spec.mode != shot.mode:
        found.append(f"{spec.label} does not match the shot's mode ({shot.get_mode_display()}).")
    found.extend(catalogue.validate_parameters(
        endpoint=shot.endpoint, resolution=shot.resolution, duration=shot.duration,
        aspect_ratio=shot.aspect_ratio,
    ).values())
    if shot.mode == Shot.Mode.IMAGE and not shot.start_frame_id and not shot.chained:
        found.append("Image to video needs a start frame, or chain the shot to the previous one.")
    if shot.chained and previous_take(shot) is None:
        found.append("This shot is chained, but the shot before it has no finished take yet.")
    if shot.mode == Shot.Mode.REFERENCE:
        refs = list(shot.references.all())
        if not refs:
            found.append("Reference to video needs at least one reference file.")
        counts = {kind: sum(1 for a in refs if a.kind == kind) for kind in Asset.Kind.values}
        for tag, kind in (("Image", "image"), ("Video", "video"), ("Audio", "audio")):
            for number in sorted({int(n) for n in re.findall(rf"@{tag}(\d+)", shot.prompt)}):
                if number > counts[kind] or number < 1:
                    found.append(f"The prompt mentions @{tag}{number}, but only "
                                 f"{counts[kind]} {kind} reference(s) are attached.")
    return found


def previous_take(shot: Shot) -> Generation | None:
    """The finished take of the shot before this one on the board, whose last frame chains."""
    order = [s for _, shots in shot.project.board() for s in shots]
    index = next((i for i, s in enumerate(order) if s.pk == shot.pk), 0)
    if index == 0:
        return None
    take = order[index - 1].selected_take
    if take is None or take.state != State.COMPLETED or not take.video:
        return None
    return take


def start_generation(*, shot: Shot, user: User) -> Generation:
    """Record a take for the shot and queue it; raises GenerationRefused with the reason."""
    found = problems(shot)
    if found:
        raise GenerationRefused(" ".join(found))
    provider = get_provider(_default_provider())
    estimate = shot.estimate()
    with transaction.atomic():
        take = Generation.objects.create(
            shot=shot, project=shot.project, created_by=user, provider=provider.name,
            endpoint=shot.endpoint, seed=shot.seed, estimated_micros=estimate.micros,
            simulated=provider.simulated, input=arguments_for(shot),
            upstream=previous_take(shot) if shot.chained else None,
        )
        transaction.on_commit(lambda: _enqueue(take))
    realtime.broadcast_take(take)
    return take


def retry(*, take: Generation, user: User) -> Generation:
    return start_generation(shot=take.shot, user=user)


def _enqueue(take: Generation) -> None:
    from storyboard.tasks import run_generation

    run_generation.enqueue(take_id=take.pk)


def cancel(*, take: Generation) -> bool:
    """Cancel in any unfinished state; False if the take had already finished."""
    if take.advance(State.CANCELED, expected=(State.PENDING, State.HELD),
                    error="Canceled before it started."):
        realtime.broadcast_take(take)
        return True
    # Already running: ask the worker to stop at its next progress report.
    asked = Generation.objects.active().filter(pk=take.pk).update(cancel_requested=True)
    take.refresh_from_db()
    realtime.broadcast_take(take)
    return bool(asked)


def arguments_for(shot: Shot) -> dict:
    """The Seedance arguments for this shot, named as the provider documents name them."""
    spec = catalogue.ENDPOINTS[shot.endpoint]
    args: dict = {"prompt": shot.prompt, "resolution": shot.resolution,
                  "aspect_ratio": shot.aspect_ratio, "duration": shot.duration}
    if spec.supports_audio:
        args["generate_audio"] = shot.generate_audio
    if shot.seed is not None:
        args["seed"] = shot.seed
    if "camera_fixed" in spec.extra:
        args["camera_fixed"] = shot.camera_fixed
    return args


def drive(*, take_id: int) -> None:
    """Run one take as far as it can go now. Safe to call twice: states only move forward."""
    take = Generation.objects.select_related("shot", "project").get(pk=take_id)
    provider = get_provider(take.provider)
    if take.is_terminal:
        return
    if not provider.inline:
        raise NotImplementedError(f"{provider.label} is not wired to the task queue yet.")
    if not take.advance(State.SUBMITTING, expected=(State.PENDING, State.HELD)):
        return
    realtime.broadcast_take(take)
    _render_inline(take, provider)


def _render_inline(take: Generation, provider) -> None:
    take.advance(State.IN_PROGRESS, expected=(State.SUBMITTING,),
                 request_id=f"local-{take.uid}", queue_position=None)
    take.report(log=f"Rendering an offline preview with {provider.label}.")
    realtime.broadcast_take(take)
    last_reported = [0.0]

    def progress(fraction: float) -> None:
        if Generation.objects.filter(pk=take.pk, cancel_requested=True).exists():
            raise Canceled
        if fraction - last_reported[0] >= PROGRESS_STEP or fraction >= 1:
            last_reported[0] = fraction
            if take.report(progress=fraction * 0.95):
                realtime.broadcast_take(take)

    with tempfile.TemporaryDirectory(prefix="take-") as tmp, _input_files(take) as files:
        job = _job(take, files)
        try:
            rendered = provider.render(job, Path(tmp) / "take.mp4", progress=progress)
        except Canceled:
            take.advance(State.CANCELED, expected=(State.IN_PROGRESS,),
                         error="Canceled while rendering.")
            realtime.broadcast_take(take)
            return
        except (ProviderError, ValueError, OSError) as e:
            logger.warning("Local render of %s failed: %s", take.uid, e)
            take.advance(State.FAILED, expected=(State.IN_PROGRESS,),
                         error=f"The preview could not be rendered: {e}")
            realtime.broadcast_take(take)
            return
        if not take.advance(State.DOWNLOADING, expected=(State.IN_PROGRESS,), progress=0.95):
            return
        realtime.broadcast_take(take)
        _store(take, rendered.path)
    micros = catalogue.price_micros(endpoint=take.endpoint, width=rendered.width,
                                    height=rendered.height, frames=rendered.frames)
    if take.advance(State.COMPLETED, expected=(State.DOWNLOADING,), progress=1.0,
                    video=take.video.name, poster=take.poster.name, width=rendered.width,
                    height=rendered.height, duration=rendered.duration, seed=rendered.seed,
                    actual_micros=micros, cancel_requested=False):
        take.report(log=f"Done: {rendered.width}×{rendered.height}, {rendered.duration:.2f} s.")
        _select_if_first(take)
    realtime.broadcast_take(take)


def _store(take: Generation, path: Path) -> None:
    """Put the finished file and its poster into media storage under the take's own names."""
    with path.open("rb") as fh:
        take.video.save("video.mp4", File(fh), save=False)
    poster = previz.first_frame(path)
    take.poster.save("poster.jpg", ContentFile(_encode(poster, "JPEG")), save=False)


def _encode(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _select_if_first(take: Generation) -> None:
    Shot.objects.filter(pk=take.shot_id, selected_take=None).update(selected_take=take)


def _job(take: Generation, files: dict[str, list[Path]]) -> Job:
    args = take.input
    resolution, ratio = args["resolution"], args["aspect_ratio"]
    if ratio == "auto":
        ratio = _ratio_of(files.get("image_url", [None])[0])
    width, height = catalogue.output_size(resolution, ratio)
    seconds = LOCAL_AUTO_SECONDS if args["duration"] == "auto" else int(args["duration"])
    frames = int(args.get("num_frames") or seconds * catalogue.FPS)
    return Job(uid=str(take.uid), endpoint=take.endpoint, arguments=args, files=files,
               width=width, height=height, frames=frames, title=take.shot.display_title)


def _ratio_of(image: Path | None) -> str:
    """`auto` follows the start image; without one, the common 16:9."""
    if image is None:
        return "16:9"
    with Image.open(image) as im:
        aspect = im.width / im.height
    ratios = [r for r in catalogue.ASPECT_RATIOS if r != "auto"]
    return min(ratios, key=lambda r: abs(aspect - _ratio_value(r)))


def _ratio_value(ratio: str) -> float:
    w, h = ratio.split(":")
    return int(w) / int(h)


@contextmanager
def _input_files(take: Generation) -> Iterator[dict[str, list[Path]]]:
    """Local paths of the shot's input files (copied out of object storage when needed)."""
    shot = take.shot
    fields: dict[str, list[FieldFile]] = {}
    if take.upstream_id:
        frame = chain_frame(take.upstream)
        fields["image_url"] = [frame.file]
    elif shot.mode == Shot.Mode.IMAGE and shot.start_frame:
        fields["image_url"] = [shot.start_frame.file]
    if shot.mode == Shot.Mode.IMAGE and shot.end_frame:
        fields["end_image_url"] = [shot.end_frame.file]
    if shot.mode == Shot.Mode.REFERENCE:
        refs = list(shot.references.all())
        for kind, name in (("image", "image_urls"), ("video", "video_urls"),
                           ("audio", "audio_urls")):
            fields[name] = [a.file for a in refs if a.kind == kind]
    with tempfile.TemporaryDirectory(prefix="inputs-") as tmp:
        yield {name: [_local_path(f, Path(tmp)) for f in files]
               for name, files in fields.items()}


def _local_path(field: FieldFile, tmp: Path) -> Path:
    try:
        return Path(field.path)
    except NotImplementedError:
        target = tmp / Path(field.name).name
        with field.open("rb") as src, target.open("wb") as dst:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                dst.write(chunk)
        return target


def chain_frame(take: Generation) -> Asset:
    """The last frame of a take as an image asset (made once, then reused)."""
    existing = Asset.objects.filter(from_take=take).first()
    if existing:
        return existing
    with _local_video(take) as path:
        frame = previz.last_frame(path)
    upload = SimpleUploadedFile(f"last frame of {take.shot.display_title}.png",
                                _encode(frame, "PNG"))
    asset = Asset.objects.store(project=take.project, upload=upload, user=None)
    asset.from_take = take
    asset.save(update_fields=["from_take"])
    return asset


@contextmanager
def _local_video(take: Generation) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="chain-") as tmp:
        yield _local_path(take.video, Path(tmp))


def reconcile() -> int:
    """Drive on takes nobody has touched for a while; returns how many were picked up."""
    picked = 0
    for take in Generation.objects.stuck(older_than=STUCK_AFTER):
        provider = get_provider(take.provider)
        if provider.inline and take.state in (State.SUBMITTING, State.IN_PROGRESS,
                                              State.DOWNLOADING):
            # A local render costs nothing to redo, so a render whose worker died restarts.
            if take.advance(State.PENDING, expected=(take.state,), progress=0,
                            logs=[*take.logs, "The worker stopped; rendering again."][-200:]):
                realtime.broadcast_take(take)
                _enqueue(take)
                picked += 1
        elif take.state in (State.PENDING, State.HELD):
            # The task was lost (enqueued in a transaction that committed, then the queue row
            # was never run); queueing again is safe because drive() starts conditionally.
            take.report(log="Still waiting for a worker; queued again.")
            _enqueue(take)
            picked += 1
    return picked
