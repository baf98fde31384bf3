"""The one workflow that spans models: from a shot to a stored take.

start_generation() checks the shot, records a pending take and enqueues `drive` after commit.
drive() (run by a task worker) moves the take through its states with conditional updates, so
a duplicate task or a racing reconciler cannot move it twice. Every transition is broadcast to
the board after it commits.
"""

from __future__ import annotations

import io
import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from fractions import Fraction
from pathlib import Path

from django.conf import settings
from django.core import signing
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import models, transaction
from django.db.models import Q, Value
from django.db.models.fields.files import FieldFile
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.module_loading import import_string
from PIL import Image

from accounts.models import User
from storyboard import catalogue, chains, frames, house, realtime, webhooks
from storyboard.models import Asset, Budget, BudgetRefused, Comment, Generation, Shot
from storyboard.money import usd
from storyboard.providers import (
    Canceled,
    CannotCancel,
    Job,
    ProviderError,
    Result,
    Status,
    WebhookEvent,
    download,
    get_provider,
)
from storyboard.providers import default_provider_name as _default_provider

logger = logging.getLogger(__name__)
State = Generation.State

# Auto duration on the local renderer: the model would decide; a preview uses a typical length.
LOCAL_AUTO_SECONDS = 5
# How long a take may sit unchanged in a working state before the reconciler steps in.
STUCK_AFTER = timedelta(minutes=2)
# Progress is written and broadcast at most this often (fractions of the whole render), and
# at most once per PROGRESS_EVERY seconds: every report is a write and a push (a card and a
# take row rendered per audience), and a 2 s preview renders in well under a second, so a step
# alone sent ~25 pushes a take and the pushes, not the render, were most of a worker's time.
PROGRESS_STEP = 0.04
PROGRESS_EVERY = 0.25
# The clock for that (a name of its own so tests can stop or speed it).
_clock = time.monotonic


class GenerationRefused(Exception):
    """The shot cannot be generated as it stands; the message says why, in plain words.

    `kind` tells the JSON API which status to answer: "budget" (the money does not cover it)
    or "invalid" (the shot itself).
    """

    def __init__(self, message: str, *, kind: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind


def start_generation(*, shot: Shot, user: User, recipe: Shot | None = None,
                     answers: Comment | None = None,
                     draft: Generation | None = None) -> Generation:
    """Record a take for the shot and queue it; raises GenerationRefused with the reason.

    `recipe` (Shot.recipe_of) makes the take with other parameters than the shot's own: a
    take regenerated from a note (`answers`), or an approved draft rendered final (`draft`).
    """
    recipe = recipe or shot
    found = recipe.problems()
    if found:
        raise GenerationRefused(" ".join(found))
    provider = get_provider(_default_provider())
    # What the provider's own documents refuse is refused here, before any money is held.
    found = preflight(shot=recipe, provider=provider)
    if found:
        raise GenerationRefused(" ".join(found))
    estimate = recipe.estimate()
    # Its last frame was captured when it completed: the take records it now, decoding
    # nothing (a take older than frame capture gets it in the worker, see _input_fields).
    upstream = shot.upstream_take()
    try:
        with transaction.atomic():
            take = Generation.objects.create(
                shot=shot, project=shot.project, created_by=user, provider=provider.name,
                endpoint=recipe.endpoint, seed=recipe.seed, estimated_micros=estimate.micros,
                simulated=provider.simulated, input=arguments_for(recipe),
                upstream=upstream, state=State.HELD, answers=answers, draft=draft,
                # Exactly what it starts from: that frame's time and pixels.
                upstream_frame_at=upstream.last_frame_at if upstream else None,
                upstream_frame_sha256=upstream.last_frame_sha256 if upstream else "",
            )
            # The worst case is reserved before anything is sent; no budget, no take.
            budget = Budget.for_team(shot.project.team_id)
            before = budget.committed_percent
            shot.project.check_cap(amount=estimate.micros, since=budget.period_start)
            budget.hold(take=take, amount=estimate.micros, user=user)
            transaction.on_commit(lambda: _enqueue(take))
    except BudgetRefused as e:
        raise GenerationRefused(e.message, kind="budget") from e
    budget.refresh_from_db()
    threshold = budget.threshold_crossed(before)
    if threshold:
        realtime.broadcast_budget_notice(budget=budget, threshold=threshold)
        webhooks.budget_threshold(budget=budget, threshold=threshold)
    realtime.broadcast_take(take)
    return take


def rechain(*, shot: Shot, user: User) -> Generation:
    """A stale shot's new take from its upstream's new frame, with the shot's parameters, held
    and queued like any take; it becomes the chosen take when it finishes (chains)."""
    shot = Shot.objects.select_related("project__team", "continues_from__selected_take") \
        .get(pk=shot.pk)
    refusal = chains.rechain_refusal(shot)
    if refusal:
        raise GenerationRefused(refusal)
    return start_generation(shot=shot, user=user)


def new_take(*, shot: Shot, user: User | None, provider, estimate_micros: int,
             upstream: Generation | None, state: str = State.HELD, **fields) -> Generation:
    """The row of a take about to be held for: the exact arguments it will send."""
    return Generation.objects.create(
        shot=shot, project=shot.project, created_by=user, provider=provider.name,
        endpoint=shot.endpoint, seed=shot.seed, estimated_micros=estimate_micros,
        simulated=provider.simulated, input=arguments_for(shot), state=state,
        **upstream_fields(upstream), **fields)


def upstream_fields(upstream: Generation | None) -> dict:
    """What a continuing take records of the take it starts from: the take, and exactly which
    frame (its time and pixels, captured when the upstream completed)."""
    return {"upstream": upstream,
            "upstream_frame_at": upstream.last_frame_at if upstream else None,
            "upstream_frame_sha256": upstream.last_frame_sha256 if upstream else ""}


def preflight(*, shot: Shot, provider) -> list[str]:
    """Why `provider` would refuse a take of this shot, before anything is held or sent."""
    files = _input_names(shot)
    found = provider.preflight(endpoint=shot.endpoint, arguments=arguments_for(shot),
                               files=files)
    if files and provider.needs_public_inputs and not _public_inputs():
        found.append(f"{provider.label} fetches input files itself, from a public HTTPS "
                     "address: set WEBHOOK_BASE_URL to this instance's public https address, "
                     "or keep media on S3 (S3_BUCKET).")
    return found


def retry(*, take: Generation, user: User) -> Generation:
    return start_generation(shot=take.shot, user=user)


# The task that runs drive(), by name: tasks.py calls into this module, so importing it back would
# make a cycle (the domain must not depend on its task wrappers). Queued rows name this same path.
DRIVE_TASK = "storyboard.tasks.run_generation"


def enqueue(take: Generation) -> None:
    """Queue a held take for a worker (chain renders start their takes through here)."""
    _enqueue(take)


def _enqueue(take: Generation, *, hint: str = "") -> None:
    run_generation = import_string(DRIVE_TASK)
    if hint:
        run_generation.enqueue(take_id=take.pk, hint=hint)
    else:
        run_generation.enqueue(take_id=take.pk)


def cancel(*, take: Generation) -> None:
    """Cancel in any unfinished state; raises GenerationRefused saying why it cannot."""
    # A take waiting in a chain render has not started either; canceling it stops its chain.
    if take.advance(State.CANCELED, expected=(State.PENDING, State.HELD, State.CHAINED),
                    error="Canceled before it started.", chain_note=""):
        realtime.broadcast_take(take)
        return
    if take.is_terminal:
        raise GenerationRefused("This take has already finished.")
    provider = get_provider(take.provider)
    if provider.inline:
        # Rendering here: the worker stops at its next progress report.
        Generation.objects.active().filter(pk=take.pk).update(cancel_requested=True)
    elif not take.request_id:
        # Nothing to cancel at the provider until it tells us the request id (by webhook);
        # apply_webhook cancels it then.
        Generation.objects.active().filter(pk=take.pk).update(cancel_requested=True)
    else:
        _cancel_remote(take)
    take.refresh_from_db()
    realtime.broadcast_take(take)


def _cancel_remote(take: Generation) -> None:
    provider = get_provider(take.provider)
    try:
        stopped = provider.cancel(endpoint=take.endpoint, request_id=take.request_id)
    except CannotCancel as e:
        # It runs on and will be billed: the hold stays, and people may choose not to keep it.
        if Generation.objects.filter(pk=take.pk, state__in=WAITING).update(
                cancel_refused=True):
            take.refresh_from_db()
            take.report(log=e.message)
            realtime.broadcast_take(take)
        raise GenerationRefused(f"{e.message} Its hold stays until then. You can discard the "
                                "result: it is still charged, but not kept.") from e
    except ProviderError as e:
        raise GenerationRefused(f"{provider.label} did not accept the cancel: "
                                f"{e.message}") from e
    if not stopped:
        raise GenerationRefused("The provider had already finished this take.")
    take.advance(State.CANCELED, expected=WAITING, error="Canceled.")


def discard(*, take: Generation) -> None:
    """Do not keep the result of a take its provider could not stop; it is charged all the
    same (the hold stays until it is)."""
    if not Generation.objects.filter(pk=take.pk, state__in=(*WAITING, State.DOWNLOADING),
                                     cancel_refused=True).update(discard=True):
        raise GenerationRefused("Only a running take its provider could not stop can be "
                                "discarded.")
    take.refresh_from_db()
    take.report(log="Will be discarded when it arrives; it is still charged.")
    realtime.broadcast_take(take)


def arguments_for(shot: Shot) -> dict:
    """The Seedance arguments for this shot, named as the provider documents name them."""
    spec = catalogue.ENDPOINTS[shot.endpoint]
    args: dict = {"prompt": shot.prompt, "resolution": shot.resolution,
                  "aspect_ratio": shot.aspect_ratio}
    if "num_frames" in spec.extra and shot.num_frames:
        # Seedance 1.0's frame count overrides the duration: send one or the other, never both.
        args["num_frames"] = shot.num_frames
    else:
        args["duration"] = shot.duration
    if spec.supports_audio:
        args["generate_audio"] = shot.generate_audio
    if shot.seed is not None:
        args["seed"] = shot.seed
    if "camera_fixed" in spec.extra:
        args["camera_fixed"] = shot.camera_fixed
    if "enable_safety_checker" in spec.extra:
        args["enable_safety_checker"] = shot.safety_checker
    return args


def drive(*, take_id: int, hint: str = "") -> None:
    """Run one take as far as it can go now. Safe to call twice: states only move forward.

    `hint`: a request id an unsigned webhook named, to be confirmed with the provider first.
    """
    take = Generation.objects.select_related("shot", "project").get(pk=take_id)
    provider = get_provider(take.provider)
    if hint:
        _confirm(take, provider, hint)
        return
    if take.is_terminal:
        return
    if provider.inline:
        if take.advance(State.SUBMITTING, expected=(State.PENDING, State.HELD)):
            realtime.broadcast_take(take)
            _render_inline(take, provider)
        return
    if take.state in (State.PENDING, State.HELD):
        _submit(take, provider)
    elif take.state in WAITING:
        _poll(take, provider)
    elif take.state == State.DOWNLOADING:
        _download(take, provider)


def _render_inline(take: Generation, provider) -> None:
    take.advance(State.IN_PROGRESS, expected=(State.SUBMITTING,),
                 request_id=f"local-{take.uid}", queue_position=None)
    take.report(log=f"Rendering an offline preview with {provider.label}.")
    realtime.broadcast_take(take)
    last_reported = [0.0, _clock()]

    def progress(fraction: float) -> None:
        if Generation.objects.filter(pk=take.pk, cancel_requested=True).exists():
            raise Canceled
        now = _clock()
        if fraction >= 1 or (fraction - last_reported[0] >= PROGRESS_STEP
                             and now - last_reported[1] >= PROGRESS_EVERY):
            last_reported[:] = [fraction, now]
            if take.report(progress=fraction * 0.95):
                realtime.broadcast_take(take)

    with tempfile.TemporaryDirectory(prefix="take-") as tmp, _input_files(take) as inputs:
        job = _job(take, inputs)
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
        stored = _store(take, rendered.path)
    micros = catalogue.price_micros(endpoint=take.endpoint, width=rendered.width,
                                    height=rendered.height, frames=rendered.frames)
    if take.advance(State.COMPLETED, expected=(State.DOWNLOADING,), progress=1.0,
                    **stored, width=rendered.width,
                    height=rendered.height, duration=rendered.duration, seed=rendered.seed,
                    actual_micros=micros, cancel_requested=False):
        take.report(log=f"Done: {rendered.width}×{rendered.height}, {rendered.duration:.2f} s.")
        _select_if_first(take)
        _tell_overrun(take, overrun=micros - take.estimated_micros)
    realtime.broadcast_take(take)


def _store(take: Generation, path: Path, *, ends: house.Ends | None = None) -> dict:
    """Put the finished file, its poster and its first and last frames into media storage
    under the take's own names; returns the fields to record as it completes.

    `ends`: the frames the normalise pass already decoded (from the delivered original);
    without them they are read from `path`, the last by seeking near its end.
    """
    with path.open("rb") as fh:
        take.video.save("video.mp4", File(fh), save=False)
    if ends is None or ends.first is None or ends.last is None:
        ends = house.Ends(first=frames.first_still(path), last=frames.last_still(path))
    first, last = ends.first, ends.last
    take.poster.save("poster.jpg", ContentFile(_encode(first.image, "JPEG")), save=False)
    take.first_frame.save("first.png", ContentFile(first.png()), save=False)
    take.last_frame.save("last.png", ContentFile(last.png()), save=False)
    return {"video": take.video.name, "poster": take.poster.name,
            "first_frame": take.first_frame.name, "last_frame": take.last_frame.name,
            "first_frame_sha256": first.sha256, "last_frame_sha256": last.sha256,
            "last_frame_at": float(last.seconds)}


def _encode(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _select_if_first(take: Generation) -> None:
    chains.take_finished(take)


def _job(take: Generation, inputs: tuple[dict[str, list[Path]], dict[str, list[str]]]) -> Job:
    files, urls = inputs
    args = take.input
    resolution, ratio = args["resolution"], args["aspect_ratio"]
    if ratio == "auto":
        ratio = _ratio_of(files.get("image_url", [None])[0])
    width, height = catalogue.output_size(resolution, ratio)
    if args.get("num_frames"):
        frames = int(args["num_frames"])
    else:
        duration = args.get("duration", "auto")
        seconds = LOCAL_AUTO_SECONDS if duration == "auto" else int(duration)
        frames = seconds * catalogue.FPS
    return Job(uid=str(take.uid), endpoint=take.endpoint, arguments=args, files=files,
               urls=urls, width=width, height=height, frames=frames,
               title=take.shot.display_title, webhook_url=_webhook_url(take))


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
def _input_files(take: Generation) -> Iterator[tuple[dict[str, list[Path]],
                                                     dict[str, list[str]]]]:
    """Local paths of the take's input files (copied out of object storage when needed), and
    signed public URLs of the same files."""
    fields = _input_fields(take)
    with tempfile.TemporaryDirectory(prefix="inputs-") as tmp:
        paths = {name: [_local_path(f, Path(tmp)) for f in files]
                 for name, files in fields.items()}
        yield paths, _input_urls(take, fields)


def _input_names(shot: Shot) -> set[str]:
    """The file arguments a take of this shot will send, as _input_fields will find them."""
    names: set[str] = set()
    if shot.continues_from_id or (shot.mode == Shot.Mode.IMAGE and shot.start_frame_id):
        names.add("image_url")
    if shot.mode == Shot.Mode.IMAGE and shot.end_frame_id:
        names.add("end_image_url")
    if shot.mode == Shot.Mode.REFERENCE:
        kinds = set(shot.references.values_list("kind", flat=True))
        names |= {name for kind, name in (("image", "image_urls"), ("video", "video_urls"),
                                          ("audio", "audio_urls")) if kind in kinds}
    return names


def _input_fields(take: Generation) -> dict[str, list[FieldFile]]:
    shot = take.shot
    fields: dict[str, list[FieldFile]] = {}
    if take.upstream_id:
        fields["image_url"] = [chain_frame(take.upstream)]
        if not take.upstream_frame_sha256:
            take.upstream_frame_at = take.upstream.last_frame_at
            take.upstream_frame_sha256 = take.upstream.last_frame_sha256
            Generation.objects.filter(pk=take.pk).update(
                upstream_frame_at=take.upstream_frame_at,
                upstream_frame_sha256=take.upstream_frame_sha256)
    elif shot.mode == Shot.Mode.IMAGE and shot.start_frame:
        fields["image_url"] = [shot.start_frame.file]
    if shot.mode == Shot.Mode.IMAGE and shot.end_frame:
        fields["end_image_url"] = [shot.end_frame.file]
    if shot.mode == Shot.Mode.REFERENCE:
        refs = list(shot.references.all())
        for kind, name in (("image", "image_urls"), ("video", "video_urls"),
                           ("audio", "audio_urls")):
            files = [a.file for a in refs if a.kind == kind]
            # An empty list is not "none": the schemas make these optional, so leave it out.
            if files:
                fields[name] = files
    return fields


def _local_path(field: FieldFile, tmp: Path) -> Path:
    try:
        return Path(field.path)
    except NotImplementedError:
        target = tmp / Path(field.name).name
        with field.open("rb") as src, target.open("wb") as dst:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                dst.write(chunk)
        return target


def chain_frame(take: Generation) -> FieldFile:
    """The last frame of a finished take (a PNG), which the next shot of a chain starts from.

    Captured when the take completed, so this only reads a field. Takes that finished before
    frames were captured get theirs here, once, on first need (a seek near the end of the
    house copy), with the first frame alongside.
    """
    if take.last_frame:
        return take.last_frame
    with _local_video(take) as path:
        first, last = frames.first_still(path), frames.last_still(path)
    take.first_frame.save("first.png", ContentFile(first.png()), save=False)
    take.last_frame.save("last.png", ContentFile(last.png()), save=False)
    take.first_frame_sha256, take.last_frame_sha256 = first.sha256, last.sha256
    take.last_frame_at = float(last.seconds)
    Generation.objects.filter(pk=take.pk).update(
        first_frame=take.first_frame.name, last_frame=take.last_frame.name,
        first_frame_sha256=first.sha256, last_frame_sha256=last.sha256,
        last_frame_at=take.last_frame_at)
    return take.last_frame


@contextmanager
def _local_video(take: Generation) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="chain-") as tmp:
        yield _local_path(take.video, Path(tmp))


# ---------------------------------------------------------------------------------------------
# Remote providers (fal, eachlabs): submit once, then follow the request by webhook or polling.

# States in which the provider has (or may have) the request and we wait for its answer.
WAITING = (State.SUBMITTED, State.IN_QUEUE, State.IN_PROGRESS, State.OUTCOME_UNKNOWN)
# Polls while waiting; slower when a webhook is expected anyway (the poll is then a safety net).
POLL_EVERY = timedelta(seconds=3)
POLL_EVERY_WITH_WEBHOOK = timedelta(seconds=60)
# A download claim older than this belongs to a dead worker.
DOWNLOAD_CLAIM_EXPIRES = timedelta(minutes=10)
# Fetching a finished video is tried this many times, then the take waits for a person
# ("finished, not fetched": its hold stays, a retry button and the budget page settle it).
MAX_DOWNLOAD_ATTEMPTS = 5
# ...and not for longer than this after the provider finished (fal keeps results for an hour).
DOWNLOAD_WINDOW = timedelta(hours=1)
# Typical remote generation time, for a progress estimate (providers report no percentage).
TYPICAL_SECONDS = 180


def _submit(take: Generation, provider) -> None:
    if not take.advance(State.SUBMITTING, expected=(State.PENDING, State.HELD)):
        return
    realtime.broadcast_take(take)
    with _input_files(take) as inputs:
        job = _job(take, inputs)
        try:
            submitted = provider.submit(job)
        except ProviderError as e:
            if e.outcome_unknown:
                # The provider may be working on it: keep everything, never send it again.
                take.advance(State.OUTCOME_UNKNOWN, expected=(State.SUBMITTING,),
                             error="", logs=[*take.logs, f"Submit answer lost: {e.message}"])
                _schedule(take)
            else:
                take.advance(State.FAILED, expected=(State.SUBMITTING,), error=e.message)
            realtime.broadcast_take(take)
            return
    if take.advance(State.SUBMITTED, expected=(State.SUBMITTING,),
                    request_id=submitted.request_id):
        take.report(log=f"Submitted to {provider.label} as {submitted.request_id}.")
        _schedule(take)
    realtime.broadcast_take(take)


def _poll(take: Generation, provider) -> None:
    if not take.request_id:
        # Outcome unknown and no request id: there is nothing to ask the provider about, and
        # it may have accepted (and billed) the request. The hold stays; a late webhook
        # settles the take, or a producer does, by hand, on the budget page.
        return
    try:
        status = provider.status(endpoint=take.endpoint, request_id=take.request_id)
    except ProviderError as e:
        if e.permanent:
            if take.advance(State.FAILED, expected=WAITING, error=e.message):
                realtime.broadcast_take(take)
            return
        Generation.objects.filter(pk=take.pk).update(attempts=models.F("attempts") + 1)
        take.report(log=f"Status check failed, will retry: {e.message}")
        _schedule(take, backoff=take.attempts + 1)
        return
    apply_status(take, status)


def apply_status(take: Generation, status: Status, *, result: Result | None = None,
                 download_now: bool = True) -> None:
    """Move a waiting take according to what the provider says (a poll or a webhook).

    A worker that polled downloads at once; a webhook only queues the download, so the
    provider gets its answer within its delivery timeout.
    """
    if status.logs:
        # A status the provider's documents do not list is noted once per take.
        seen = take.logs if status.state == "unknown" else take.logs[-len(status.logs):]
        fresh = [line for line in status.logs if line not in seen]
        if fresh:
            Generation.objects.filter(pk=take.pk).update(logs=[*take.logs, *fresh][-200:])
            take.logs = [*take.logs, *fresh][-200:]
    moved = False
    if status.state == "queued":
        moved = take.advance(State.IN_QUEUE, expected=WAITING, attempts=0,
                             queue_position=status.queue_position)
    elif status.state == "running":
        running_for = (timezone.now() - (take.started_at or timezone.now())).total_seconds()
        progress = min(0.9, running_for / TYPICAL_SECONDS)
        if take.state == State.IN_PROGRESS:
            moved = take.report(progress=progress)
        else:
            moved = take.advance(State.IN_PROGRESS, expected=WAITING, queue_position=None,
                                 attempts=0)
    elif status.state == "completed":
        if take.advance(State.DOWNLOADING, expected=WAITING, queue_position=None,
                        progress=0.92, attempts=0):
            realtime.broadcast_take(take)
            if download_now:
                _download(take, get_provider(take.provider), result=result)
            else:
                transaction.on_commit(lambda: _enqueue(take))
        return
    elif status.state == "failed":
        moved = take.advance(State.FAILED, expected=WAITING,
                             error=status.error or "The provider could not generate this take.")
    elif status.state == "canceled":
        moved = take.advance(State.CANCELED, expected=WAITING, error="Canceled at the provider.")
    if moved:
        realtime.broadcast_take(take)
    if not take.is_terminal and take.state in WAITING:
        _schedule(take)


def _download(take: Generation, provider, *, result: Result | None = None) -> None:
    """Fetch the finished video into our storage, once: the claim keeps a second worker out.

    Every try is counted as it starts, so one whose worker died counts too; each is bounded by
    settings.DOWNLOADS["deadline"]. After MAX_DOWNLOAD_ATTEMPTS tries, or DOWNLOAD_WINDOW after
    the first, the take waits for a person ("finished, not fetched") instead of bouncing on.
    """
    now = timezone.now()
    claimed = Generation.objects.filter(
        Q(claimed_at=None) | Q(claimed_at__lt=now - DOWNLOAD_CLAIM_EXPIRES),
        pk=take.pk, state=State.DOWNLOADING,
    ).update(claimed_at=now, attempts=models.F("attempts") + 1,
             # The first try starts the download window (we claim as soon as the provider
             # says it finished).
             fetch_started=Coalesce("fetch_started", Value(now)))
    if not claimed:
        return
    take.attempts, take.fetch_started = Generation.objects.values_list(
        "attempts", "fetch_started").get(pk=take.pk)
    if take.attempts > MAX_DOWNLOAD_ATTEMPTS:
        # The earlier tries never reported back (their workers died): no more of them.
        _unfetched(take, f"the download never finished (tried {MAX_DOWNLOAD_ATTEMPTS} times)")
        realtime.broadcast_take(take)
        return
    declared = None
    try:
        result = result or provider.result(endpoint=take.endpoint, request_id=take.request_id)
        with tempfile.TemporaryDirectory(prefix="download-") as tmp:
            original = Path(tmp) / "original.mp4"
            download.fetch(result.video_url, original, allowed_hosts=provider.download_hosts,
                           **settings.DOWNLOADS)
            # The header first, whatever the format: a decoder allocates what it declares,
            # and house-format files are stored without ever passing through normalize.
            declared = house.check(original)
            if Generation.objects.filter(pk=take.pk, discard=True).exists():
                _discard_delivered(take, provider, declared)
                realtime.broadcast_take(take)
                return
            ends = house.Ends()
            if house.is_house_format(original):
                normalized = original
            else:
                normalized = Path(tmp) / "house.mp4"
                # The frames are kept on the way: the pass decodes every one anyway.
                house.normalize(original, normalized, ends=ends)
            probe = house.probe(normalized)
            with original.open("rb") as fh:
                take.original.save("original.mp4", File(fh), save=False)
            stored = _store(take, normalized, ends=ends)
    except house.Refused as e:
        _fail_delivered(take, provider, e.declared, e.reason)
        realtime.broadcast_take(take)
        return
    except house.HouseError as e:
        # FFmpeg's own words name temporary paths: they go to the log, not to people.
        logger.warning("Video of take %s is unusable: %s", take.uid, e.__cause__ or e)
        if declared is None:
            # Not even a header to measure: what it cost is unknown, so the hold stays.
            _unfetched(take, "what arrived is not a readable video")
        else:
            _fail_delivered(take, provider, declared, "it could not be converted")
        realtime.broadcast_take(take)
        return
    except ProviderError as e:
        # The provider finished (and billed) it; we could not fetch it. The worst case stays
        # held: undercounting is how budgets get overspent.
        waited = timezone.now() - take.fetch_started
        if e.permanent:
            _unfetched(take, e.message)
        elif take.attempts >= MAX_DOWNLOAD_ATTEMPTS:
            _unfetched(take, f"{e.message} (tried {take.attempts} times)")
        elif waited > DOWNLOAD_WINDOW:
            minutes = int(waited.total_seconds() // 60)
            _unfetched(take, f"{e.message} (still failing {minutes} minutes after "
                             f"{provider.label} finished)")
        else:
            # Release the claim so the retry (or the reconciler) can try again.
            Generation.objects.filter(pk=take.pk).update(claimed_at=None)
            take.report(log=f"Download failed, will retry: {e.message}")
            _schedule(take, backoff=take.attempts)
        realtime.broadcast_take(take)
        return
    micros = _charge(take, provider, declared=declared, measured=probe)
    if take.advance(State.COMPLETED, expected=(State.DOWNLOADING,), progress=1.0,
                    original=take.original.name, **stored, width=probe.width,
                    height=probe.height,
                    duration=probe.duration, actual_micros=micros,
                    seed=result.seed if result.seed is not None else take.seed):
        take.report(log=f"Saved: {probe.width}×{probe.height}, {probe.duration:.2f} s.")
        _select_if_first(take)
        _tell_overrun(take, overrun=micros - take.estimated_micros)
    realtime.broadcast_take(take)


def _fail_delivered(take: Generation, provider, declared: house.Declared, reason: str) -> None:
    """End a take whose video arrived but will not be kept, charged what was delivered.

    The provider finished and billed it by the size and length its header declares, so that
    is the cost, even far beyond the hold (the budget records the overrun).
    """
    micros = _charge(take, provider, declared=declared)
    take.advance(State.FAILED, expected=(State.DOWNLOADING,), actual_micros=micros,
                 claimed_at=None,
                 error=f"{provider.label} delivered a {declared.width}×{declared.height} video; "
                       f"{reason}. It was charged {usd(micros)}.")


def _charge(take: Generation, provider, *, declared: house.Declared,
            measured: house.Probe | None = None) -> int:
    """What the provider charged for the delivered clip.

    A provider with its own per-second table (eachlabs) bills the resolution asked for times
    the output's length, as its header states it; otherwise the catalogue's per-token price of
    what was measured (the house copy), or of what the header declares.
    """
    rates = provider.per_second_rates(take.endpoint)
    if rates:
        seconds = Fraction(declared.duration).limit_denominator(100_000)
        return catalogue.per_second_micros(
            rates=rates, resolution=take.input.get("resolution") or "720p", seconds=seconds)
    size = measured or declared
    return catalogue.price_micros(endpoint=take.endpoint, width=size.width, height=size.height,
                                  frames=round(size.duration * catalogue.FPS),
                                  video_references=_has_video_references(take))


def _discard_delivered(take: Generation, provider, declared: house.Declared) -> None:
    """The take was asked to be discarded: charge what was delivered, keep nothing."""
    micros = _charge(take, provider, declared=declared)
    if take.advance(State.CANCELED, expected=(State.DOWNLOADING,), actual_micros=micros,
                    claimed_at=None, progress=1.0,
                    error=f"Discarded as asked: {provider.label} finished it and charged "
                          f"{usd(micros)}."):
        _tell_overrun(take, overrun=micros - take.estimated_micros)


def _unfetched(take: Generation, reason: str) -> None:
    """Stop retrying a download: the provider finished (and billed) the take, so its worst case
    stays held until someone fetches it again or a producer settles it."""
    if take.advance(State.UNFETCHED, expected=(State.DOWNLOADING,), claimed_at=None,
                    error=f"Finished at {get_provider(take.provider).label}, but the video "
                          f"could not be fetched: {reason}. Its cost stays held; fetch it "
                          "again, or a producer can settle it on the budget page."):
        take.report(log=f"Gave up fetching the video: {reason}")


def refetch(*, take: Generation) -> None:
    """Try again to fetch a finished take's video (the "Fetch again" button)."""
    if not take.advance(State.DOWNLOADING, expected=(State.UNFETCHED,), claimed_at=None,
                        attempts=0, fetch_started=None, error=""):
        raise GenerationRefused("This take is not waiting for its video any more.")
    take.report(log="Fetching the video again.")
    transaction.on_commit(lambda: _enqueue(take))
    realtime.broadcast_take(take)


def settle_by_hand(*, take: Generation, billed: bool, note: str, user: User) -> None:
    """A producer's verdict on a take whose charge only the provider knows.

    "Billed" captures its whole hold (the worst case: what it really cost cannot be measured
    without the video); "not billed" releases it. The note is required and goes on the
    ledger and into the take's history. Refused, changing nothing, once the take moved on.
    """
    note = " ".join(note.split())
    if not note:
        raise GenerationRefused("Say why: a note is required to settle a take by hand.")
    verdict = "billed, so its hold was captured" if billed else "not billed, so its hold " \
        "was released"
    if not take.advance(State.FAILED, expected=Generation.UNRESOLVED,
                        actual_micros=take.estimated_micros if billed else 0,
                        resolved_by=user, resolution_note=note[:300], claimed_at=None,
                        error=f"Settled by hand by {user.label}: {verdict}. “{note}”"):
        raise GenerationRefused("This take was settled meanwhile; nothing was changed.")
    take.report(log=f"Settled by hand by {user.label}: {verdict}. Note: {note}")
    realtime.broadcast_take(take)


def _has_video_references(take: Generation) -> bool:
    return bool(take.input.get("video_urls")) or (
        take.shot.mode == Shot.Mode.REFERENCE
        and take.shot.references.filter(kind=Asset.Kind.VIDEO).exists()
    )


def apply_webhook(*, take: Generation, event: WebhookEvent) -> bool:
    """A verified delivery for this take. False (and nothing changes) when it is not ours.

    A delivery that is only a hint (event.confirm) moves nothing itself: it queues a look at
    the request it names, and what the provider answers then is what counts.
    """
    if not event.confirm:
        return _apply_event(take, event)
    if take.request_id != event.request_id and Generation.objects.filter(
            provider=take.provider, request_id=event.request_id).exists():
        # Another take's request, replayed to this take's address: not ours to hear.
        return False
    if take.request_id and take.request_id != event.request_id:
        # A request of this take's own address that is not its request: one the provider ran
        # although it answered the create with an error. Confirmed and noted, nothing moves.
        transaction.on_commit(lambda: _enqueue(take, hint=event.request_id))
        return True
    if take.is_terminal and not take.resolved_by_id:
        return True
    transaction.on_commit(lambda: _enqueue(take, hint=event.request_id))
    return True


def _confirm(take: Generation, provider, request_id: str) -> None:
    """Ask the provider about a request a webhook named, then act on its answer alone."""
    if take.request_id != request_id and Generation.objects.filter(
            provider=take.provider, request_id=request_id).exclude(pk=take.pk).exists():
        return
    try:
        status = provider.status(endpoint=take.endpoint, request_id=request_id)
    except ProviderError as e:
        # Unknown to the provider (a forged id) or it cannot answer now: nothing moves, and
        # the take's own polls carry on as before.
        logger.info("Could not confirm %s's webhook about %s: %s", take.uid, request_id,
                    e.message)
        return
    if take.request_id and take.request_id != request_id:
        _extra_request(take, provider, request_id, status)
        return
    _apply_event(take, WebhookEvent(request_id, status))


def _extra_request(take: Generation, provider, request_id: str, status: Status) -> None:
    """A second request the provider ran for this take although it answered the create with an
    error: it is not used, but once it completed it was billed, so its worst case (the take's
    estimate) is charged as a line of its own and producers are told."""
    line = (f"{provider.label} also ran request {request_id} for this take (it had answered "
            f"the create with an error); it is not used: it {status.state}.")
    if line not in take.logs:
        logger.warning("Take %s: %s", take.uid, line)
        take.report(log=line)
    if status.state != "completed":
        return  # failed and canceled requests are not billed
    with transaction.atomic():
        charged = Budget.for_team(take.project.team_id).charge_unheld(
            take=take, amount=take.estimated_micros, extra_request=request_id,
            note=f"{provider.label} also ran and billed request {request_id}")
    if charged:
        _tell_overrun(take, overrun=take.estimated_micros)


def _apply_event(take: Generation, event: WebhookEvent) -> bool:
    """Apply what the provider said about this take (a signed delivery, or its own answer)."""
    if take.resolved_by_id and take.is_terminal:
        return _late_answer(take, event)
    if not take.request_id:
        # A submit whose answer was lost: the webhook tells us the request id after all.
        adopted = Generation.objects.filter(
            pk=take.pk, request_id="", state__in=(State.SUBMITTING, State.OUTCOME_UNKNOWN)
        ).update(request_id=event.request_id)
        take.refresh_from_db()
        if not adopted and take.request_id != event.request_id:
            return False
        if take.state == State.SUBMITTING:
            take.advance(State.SUBMITTED, expected=(State.SUBMITTING,))
        if take.cancel_requested and event.status.state not in ("completed", "failed"):
            try:
                _cancel_remote(take)
            except GenerationRefused as e:
                take.report(log=e.message)
            return True
    elif take.request_id != event.request_id:
        return False
    if take.state in WAITING:
        apply_status(take, event.status, result=event.result, download_now=False)
    return True


def _late_answer(take: Generation, event: WebhookEvent) -> bool:
    """The provider speaks about a take a producer already settled by hand.

    Settled as "not billed" but the provider says it finished: it was billed after all, so the
    worst case is charged (as an overrun: no hold covers it any more) and producers are told.
    Any other late word changes nothing; settled as "billed", the books already count it.
    """
    if take.request_id and take.request_id != event.request_id:
        return False
    if event.status.state != "completed" or take.actual_micros:
        return True
    label = get_provider(take.provider).label
    with transaction.atomic():
        budget = Budget.for_team(take.project.team_id)
        charged = budget.charge_unheld(
            take=take, amount=take.estimated_micros,
            note=f"Late charge: {label} finished request {event.request_id} after it was "
                 "settled as not billed")
        if charged:
            Generation.objects.filter(pk=take.pk, request_id="").update(
                request_id=event.request_id)
            take.report(log=f"{label} finished it after all (request {event.request_id}); "
                            f"its worst case, {usd(take.estimated_micros)}, was charged.")
            _tell_overrun(take, overrun=take.estimated_micros)
    realtime.broadcast_take(take)
    return True


def _tell_overrun(take: Generation, *, overrun: int) -> None:
    """A charge beyond what was held counts against the budget: producers hear it live."""
    if overrun > 0:
        realtime.broadcast_overrun(budget=Budget.for_team(take.project.team_id),
                                   overrun=overrun)


def _schedule(take: Generation, *, slow: bool = False, backoff: int = 0) -> None:
    """Queue the next look at this take (a poll), later rather than sooner."""
    run_generation = import_string(DRIVE_TASK)

    every = POLL_EVERY_WITH_WEBHOOK if (slow or _webhook_url(take)) else POLL_EVERY
    delay = min(every * (2 ** min(backoff, 6)), timedelta(minutes=10))
    transaction.on_commit(lambda: run_generation.using(
        run_after=timezone.now() + delay).enqueue(take_id=take.pk))


def _webhook_url(take: Generation) -> str | None:
    base = settings.WEBHOOK_BASE_URL
    if not base:
        return None
    token = webhook_token(provider=take.provider, take_uid=str(take.uid))
    return base + reverse("sb:webhook", args=[take.provider, take.uid, token])


# Per-take webhook tokens: an HMAC under SECRET_KEY, so nothing is stored and nobody without the
# key can make one. Only the provider ever sees a take's URL, so a delivery that carries the
# token comes from it (or from someone it leaked the URL to: the body is then still only
# believed as far as the provider's own answers confirm it; see WebhookEvent.confirm).
WEBHOOK_SALT = "storyboard.webhook"


def webhook_token(*, provider: str, take_uid: str) -> str:
    return salted_hmac(WEBHOOK_SALT, f"{provider}:{take_uid}", algorithm="sha256").hexdigest()


def webhook_token_ok(*, provider: str, take_uid: str, token: str) -> bool:
    return constant_time_compare(token, webhook_token(provider=provider, take_uid=take_uid))


def _input_urls(take: Generation, files: dict[str, list[FieldFile]]) -> dict[str, list[str]]:
    """Public, signed, expiring HTTPS URLs of the input files, for providers that fetch them
    (none when this instance has no public HTTPS address; preflight refuses those takes)."""
    urls = {name: [_public_url(f) for f in fields] for name, fields in files.items()}
    return {name: found for name, found in urls.items() if all(found)}


def _public_url(field: FieldFile) -> str:
    # Object storage hands out its own short-lived signed https URLs (S3, querystring_auth).
    direct = field.storage.url(field.name)
    if direct.startswith("https://"):
        return direct
    if settings.WEBHOOK_BASE_URL.startswith("https://"):
        return settings.WEBHOOK_BASE_URL + reverse("sb:input-file", args=[sign_input(field.name)])
    return ""


def _public_inputs() -> bool:
    """Can input files reach a provider that fetches them (see _public_url)?"""
    return (settings.WEBHOOK_BASE_URL.startswith("https://")
            or default_storage.url("inputs/probe.png").startswith("https://"))


def sign_input(name: str) -> str:
    return signing.dumps(name, salt=INPUT_SALT, compress=True)


def unsign_input(token: str) -> str | None:
    try:
        return signing.loads(token, salt=INPUT_SALT, max_age=INPUT_URL_LIFETIME)
    except signing.BadSignature:
        return None


INPUT_SALT = "storyboard.input-file"
# Providers fetch inputs soon after submit; an hour covers their queues.
INPUT_URL_LIFETIME = 3600


# Chain renders resume from the reconciler. Named, not imported: chainrun.py builds on this
# module (as tasks.py does), so importing it back would make a cycle.
CHAIN_RESUME = "storyboard.chainrun.resume"
# Exports whose worker died are failed from here too (export.py sits above this module).
EXPORT_RESUME = "storyboard.export.resume"


def reconcile() -> int:
    """Drive on takes nobody has touched for a while, move on chain renders a dead worker left
    between two takes, fail exports a dead worker left running, and queue again webhook
    deliveries whose task was lost; returns how many takes, chains, exports and deliveries
    were picked up."""
    picked = import_string(CHAIN_RESUME)() + import_string(EXPORT_RESUME)()
    picked += webhooks.requeue()
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
        elif not provider.inline and take.state == State.SUBMITTING:
            # The worker died between sending and recording: the request may exist. Never
            # resubmit; wait for the webhook or give up after the provider's retry window.
            if take.advance(State.OUTCOME_UNKNOWN, expected=(State.SUBMITTING,),
                            logs=[*take.logs, "The worker stopped while submitting."][-200:]):
                realtime.broadcast_take(take)
                _enqueue(take)
                picked += 1
        elif not provider.inline and take.state in (*WAITING, State.DOWNLOADING):
            # A lost poll or a download whose worker died: look again (polls are harmless).
            _enqueue(take)
            picked += 1
        elif take.state in (State.PENDING, State.HELD):
            # The task was lost (enqueued in a transaction that committed, then the queue row
            # was never run); queueing again is safe because drive() starts conditionally.
            take.report(log="Still waiting for a worker; queued again.")
            _enqueue(take)
            picked += 1
    return picked
