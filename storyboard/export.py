"""Exports of a project's cut: the animatic MP4, and timelines for editors (storyboard/timeline.py).

start_export() fixes the cut when it is asked for (each shot in board order with its approved
take, or its selected take where none is approved if the form says so, or a slate), checks
every file is there, and queues one background task (tasks.run_export) — or returns the export
of the same cut already queued or running. run() does the work and reports progress (shots
done of total) to everyone on the project after each shot. cancel_export() stops it; a
cancelled or failed export never offers a file.

The animatic is a stream copy (storyboard/animatic.py) whenever the takes share the house
format's parameters; only slates and odd clips are encoded, and the export records which.
Captions and another size encode every clip, and the form says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.core.files import File
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from accounts.models import User
from storyboard import animatic, house, realtime, timeline, webhooks
from storyboard.models import Export, Generation, Project, Shot
from storyboard.timeline import Entry

logger = logging.getLogger(__name__)

# Named, not imported: tasks.py imports this module.
EXPORT_TASK = "storyboard.tasks.run_export"

RESOLUTIONS = {"source": None, "480p": 480, "720p": 720, "1080p": 1080}
# A running export not moved on for this long lost its worker (the slowest step, encoding one
# 15 s 1080p clip with captions, takes well under a minute on two cores).
STALE_AFTER = timedelta(minutes=10)
# A shot whose duration is "auto" has no length until it has a take: its slate lasts this long.
AUTO_SLATE_SECONDS = 5


class ExportRefused(Exception):
    """An export that cannot start or go on; the message says why, in plain words."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Cancelled(Exception):
    """The export was cancelled while it ran: stop, and leave no file."""


@dataclass(frozen=True)
class Options:
    """What the export form chooses. `selected`: shots with no approved take use their
    selected take (otherwise they become slates)."""

    selected: bool = True
    resolution: str = "source"
    burn_in: bool = False

    def as_json(self) -> dict:
        return {"selected": self.selected, "resolution": self.resolution,
                "burn_in": self.burn_in}

    @classmethod
    def from_json(cls, data: dict) -> Options:
        return cls(selected=bool(data.get("selected", True)),
                   resolution=str(data.get("resolution", "source")),
                   burn_in=bool(data.get("burn_in", False)))

    @property
    def reencodes(self) -> bool:
        """Captions and a fixed size mean every clip is encoded again."""
        return self.burn_in or self.resolution != "source"


def cut(project: Project, *, selected: bool) -> list[Entry]:
    """Every shot in board order with the take the cut uses: the approved take, else (with
    `selected`) the selected one — Shot.chosen_take(), the one answer to "which take"."""
    shots = Shot.objects.select_related("selected_take", "review_take")
    entries = []
    for number, shot in enumerate((s for _, group in project.board(shots) for s in group),
                                  start=1):
        shot._number = number
        shot.project = project
        take = shot.chosen_take() if (selected or shot.is_approved) else None
        entries.append(Entry(shot=shot, number=number, take=take))
    return entries


def _key(kind: str, take_ids: list[int | None], options: Options) -> str:
    text = json.dumps([kind, take_ids, options.as_json()], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _problems(project: Project, entries: list[Entry], options: Options) -> list[str]:
    if not entries:
        return [f"{project.name} has no shots to export."]
    if not any(entry.take for entry in entries):
        which = "approved or selected" if options.selected else "approved"
        return [f"Nothing to export: no shot of {project.name} has an {which} take yet."]
    found = []
    for entry in entries:
        if entry.take is not None and not entry.take.video.storage.exists(entry.take.video.name):
            found.append(f"{entry.label}: the video of its take #{entry.take.pk} is missing "
                         "from storage. Choose another take or generate it again.")
    return found


def start_export(*, project: Project, user: User, kind: str,
                 options: Options) -> tuple[Export, bool]:
    """Queue an export of the project's cut as it is now; (export, True) when it was queued by
    this call, (the running export, False) when the same cut is already queued or running.

    Raises ExportRefused, having queued nothing, for a cut with no takes, a take whose file is
    missing (naming the shot), or options the form does not offer. Every member may export.
    """
    if user.membership_in(project.team_id) is None:
        raise ExportRefused("Only members of the team can export its projects.")
    if kind not in Export.Kind.values:
        raise ExportRefused("Choose one of the listed export kinds.")
    if options.resolution not in RESOLUTIONS:
        raise ExportRefused("Choose the source size, 480p, 720p or 1080p.")
    entries = cut(project, selected=options.selected)
    problems = _problems(project, entries, options)
    if problems:
        raise ExportRefused("Nothing was exported. " + " ".join(problems))
    take_ids = [entry.take.pk if entry.take else None for entry in entries]
    key = _key(kind, take_ids, options)
    try:
        with transaction.atomic():
            # Under the project lock, so two people asking at once get one export (the unique
            # constraint is the backstop).
            project.lock()
            running = Export.objects.active().filter(project=project, key=key).first()
            if running is not None:
                return running, False
            export = Export.objects.create(
                project=project, kind=kind, created_by=user, key=key,
                shot_ids=[entry.shot.pk for entry in entries], take_ids=take_ids,
                options=options.as_json(), progress_total=len(entries))
            transaction.on_commit(lambda: import_string(EXPORT_TASK).enqueue(
                export_id=export.pk))
    except IntegrityError:
        running = Export.objects.active().filter(project=project, key=key).first()
        if running is None:
            raise
        return running, False
    realtime.exports_changed(project.pk)
    return export, True


def cancel_export(*, export: Export, user: User) -> None:
    """Stop an export that has not finished; whatever it wrote is thrown away."""
    if not export.can_cancel(user):
        if not export.is_active:
            raise ExportRefused(f"This export has already ended ({export.get_state_display()}).")
        raise ExportRefused("Only whoever asked for this export, or an editor, can cancel it.")
    now = timezone.now()
    moved = Export.objects.filter(pk=export.pk, state__in=Export.ACTIVE).update(
        state=Export.State.CANCELLED, finished=now, updated=now,
        message=f"Cancelled by {user.label}.")
    if not moved:
        export.refresh_from_db()
        raise ExportRefused(f"This export has already ended ({export.get_state_display()}).")
    realtime.exports_changed(export.project_id)


# ---------------------------------------------------------------------------------------------
# Running (in a task worker)


def run(*, export_id: int) -> None:
    """Make the export's file. Safe to call twice: only the call that moves it from queued to
    running does anything."""
    now = timezone.now()
    if not Export.objects.filter(pk=export_id, state=Export.State.QUEUED).update(
            state=Export.State.RUNNING, started=now, updated=now):
        return
    export = Export.objects.select_related("project__team").get(pk=export_id)
    realtime.exports_changed(export.project_id)
    work = Path(tempfile.mkdtemp(prefix=f"export-{export.pk}-"))
    try:
        if export.kind == Export.Kind.ANIMATIC:
            path, facts = _animatic(export, work)
        else:
            path, facts = _timeline(export, work)
        _finish(export, path, **facts)
    except _Cancelled:
        pass  # cancel_export already recorded who and when
    except ExportRefused as e:
        _fail(export, e.message)
    except Exception:
        logger.exception("Export %s failed", export_id)
        _fail(export, "The export failed unexpectedly; try again, and tell an administrator "
                      "if it keeps failing.")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    realtime.exports_changed(export.project_id)


def resume() -> int:
    """Fail every running export whose worker stopped touching it (the reconciler calls this):
    it will never finish, and while it looks running the same cut cannot be asked for again.
    Returns how many were failed."""
    now = timezone.now()
    stale = list(Export.objects.filter(state=Export.State.RUNNING,
                                       updated__lt=now - STALE_AFTER)
                 .values_list("pk", "project_id"))
    failed = 0
    for pk, project_id in stale:
        if Export.objects.filter(pk=pk, state=Export.State.RUNNING,
                                 updated__lt=now - STALE_AFTER).update(
                state=Export.State.FAILED, finished=now, updated=now,
                message="The worker making this export stopped before it finished; "
                        "nothing was kept. Ask for it again."):
            failed += 1
            realtime.exports_changed(project_id)
    return failed


def _going_on(export: Export) -> None:
    """Raise _Cancelled once the export is no longer running (someone cancelled it)."""
    state = Export.objects.filter(pk=export.pk).values_list("state", flat=True).first()
    if state != Export.State.RUNNING:
        raise _Cancelled


def progress(export: Export, done: int) -> None:
    """Record and push `done` shots of the total; _Cancelled if it was cancelled meanwhile."""
    if not Export.objects.filter(pk=export.pk, state=Export.State.RUNNING).update(
            progress_done=done, updated=timezone.now()):
        raise _Cancelled
    export.progress_done = done
    realtime.exports_changed(export.project_id)


def _fail(export: Export, message: str) -> None:
    now = timezone.now()
    Export.objects.filter(pk=export.pk, state__in=Export.ACTIVE).update(
        state=Export.State.FAILED, finished=now, updated=now, message=message[:1000])


def _finish(export: Export, path: Path, *, duration: float | None = None,
            message: str = "", reencoded: list[int] | None = None) -> None:
    """Store the file, then mark the export done — unless it was cancelled meanwhile, in which
    case the stored file is deleted again (nobody may download a cancelled export)."""
    _going_on(export)
    with path.open("rb") as handle:
        export.file.save(export.download_name, File(handle), save=False)
    now = timezone.now()
    fields = {"state": Export.State.DONE, "finished": now, "updated": now,
              "file": export.file.name, "size": path.stat().st_size, "duration": duration,
              "message": message[:1000], "reencoded": reencoded or [],
              "progress_done": export.progress_total}
    with transaction.atomic():
        done = Export.objects.filter(pk=export.pk, state=Export.State.RUNNING).update(**fields)
        if done:
            for name, value in fields.items():
                setattr(export, name, value)
            webhooks.export_ready(export=export)
    if not done:
        export.file.delete(save=False)


def entries_of(export: Export) -> list[Entry]:
    """The export's cut as it was fixed when asked for (shots deleted since are left out)."""
    shots = Shot.objects.in_bulk(export.shot_ids)
    takes = Generation.objects.in_bulk([pk for pk in export.take_ids if pk])
    board = [s.pk for _, group in export.project.board(Shot.objects.only("pk", "scene",
                                                                         "position"))
             for s in group]
    entries = []
    for shot_id, take_id in zip(export.shot_ids, export.take_ids, strict=True):
        shot = shots.get(shot_id)
        if shot is None:
            continue
        shot.project = export.project
        shot._number = board.index(shot_id) + 1 if shot_id in board else 0
        take = takes.get(take_id) if take_id else None
        if take_id and take is None:
            raise ExportRefused(f"Shot “{shot.display_title}”: its take #{take_id} was "
                                "deleted after the export was asked for.")
        entries.append(Entry(shot=shot, number=shot._number, take=take))
    return entries


def local_file(entry: Entry, work: Path) -> Path:
    """The take's video as a file on this machine (downloaded from object storage if needed);
    ExportRefused naming the shot when it is missing."""
    assert entry.take is not None
    field = entry.take.video
    storage = field.storage
    if not field.name or not storage.exists(field.name):
        raise ExportRefused(f"{entry.label}: the video of its take #{entry.take.pk} is missing "
                            "from storage. Choose another take or generate it again.")
    try:
        return Path(storage.path(field.name))
    except NotImplementedError:
        local = work / f"take-{entry.take.pk}.mp4"
        with storage.open(field.name, "rb") as remote, local.open("wb") as out:
            shutil.copyfileobj(remote, out)
        return local


def slate_frames(shot: Shot) -> int:
    if shot.num_frames:
        return shot.num_frames
    seconds = AUTO_SLATE_SECONDS if not shot.duration.isdigit() else int(shot.duration)
    return seconds * house.FPS


def _animatic(export: Export, work: Path) -> tuple[Path, dict]:
    options = Options.from_json(export.options)
    entries = entries_of(export)
    sources = {id(e): local_file(e, work) for e in entries if e.take is not None}
    signatures = {key: animatic.signature(path) for key, path in sources.items()}
    size = _cut_size(signatures, options, [e.take for e in entries if e.take])
    # The takes most of the cut can be copied from: the commonest parameters at its size.
    same_size = Counter(sig for sig in signatures.values()
                        if sig is not None and (sig.width, sig.height) == size)
    reference = same_size.most_common(1)[0][0] if same_size and not options.reencodes \
        else None
    clips, reencoded, why = [], [], []
    for done, entry in enumerate(entries, start=1):
        _going_on(export)
        out = work / f"clip-{done}.mp4"
        if entry.take is None:
            animatic.slate(out, size=size, frames=slate_frames(entry.shot),
                           number=entry.number, title=entry.shot.title)
            reencoded.append(entry.shot.pk)
            why.append(f"Shot {entry.number} is a slate")
        elif reference is None or signatures[id(entry)] != reference:
            _conform(entry, sources[id(entry)], out, size=size, options=options)
            reencoded.append(entry.shot.pk)
            if not options.reencodes:
                why.append(f"Shot {entry.number} was re-encoded (not in the cut's format)")
        else:
            out = sources[id(entry)]
        clips.append(out)
        progress(export, done)
    encoded = [clip for clip, entry in zip(clips, entries, strict=True)
               if entry.shot.pk in reencoded]
    if reference is not None and encoded and animatic.signature(encoded[0]) != reference:
        # What we encode now no longer matches how the copied takes were stored (the house
        # encoder's settings changed in between): one stream cannot carry both, so the copied
        # ones are encoded too.
        for index, entry in enumerate(entries):
            _going_on(export)
            if entry.shot.pk not in reencoded:
                clips[index] = work / f"clip-{index + 1}.mp4"
                _conform(entry, sources[id(entry)], clips[index], size=size, options=options)
                reencoded.append(entry.shot.pk)
                why.append(f"Shot {entry.number} was re-encoded (stored with older encoder "
                           "settings)")
    result_path = work / "animatic.mp4"
    try:
        joined = animatic.join(clips, result_path, progress=lambda _n: _going_on(export))
    except animatic.JoinError as e:
        raise ExportRefused(str(e)) from e
    if options.reencodes:
        what = " and ".join(filter(None, ("captions" if options.burn_in else "",
                                          options.resolution if options.resolution != "source"
                                          else "")))
        summary = f"Every clip was re-encoded for {what}."
    elif reencoded:
        summary = (f"Stream copy for {len(entries) - len(reencoded)} of {len(entries)} shots; "
                   + "; ".join(why) + ".")
    else:
        summary = f"Stream copy for all {len(entries)} shots: nothing was re-encoded."
    return result_path, {"duration": joined.duration, "message": summary,
                         "reencoded": reencoded}


def _conform(entry: Entry, source: Path, out: Path, *, size: tuple[int, int],
             options: Options) -> None:
    caption = f"{entry.number} · {entry.shot.title}" if options.burn_in else ""
    try:
        animatic.conform(source, out, size=size, caption=caption)
    except animatic.JoinError as e:
        raise ExportRefused(f"{entry.label}: {e}") from e


def _cut_size(signatures: dict, options: Options,
              takes: list[Generation]) -> tuple[int, int]:
    """The picture size of the cut: the most common size among the house-format takes (so the
    fewest clips are encoded), scaled to the chosen height if one was chosen."""
    sizes = Counter((s.width, s.height) for s in signatures.values() if s is not None)
    if sizes:
        size = sizes.most_common(1)[0][0]
    else:
        size = next(((t.width, t.height) for t in takes if t.width and t.height), (1280, 720))
        size = (size[0] // 2 * 2, size[1] // 2 * 2)
    height = RESOLUTIONS.get(options.resolution)
    return animatic.fitted(size, height) if height else size


def _timeline(export: Export, work: Path) -> tuple[Path, dict]:
    """The cut as a timeline (or the bundle: timelines and media in one zip)."""
    entries = entries_of(export)
    files: dict[str, Path] = {}
    frames: dict[int, int] = {}
    for done, entry in enumerate(entries, start=1):
        if entry.take is None:
            frames[entry.shot.pk] = slate_frames(entry.shot)
        else:
            path = local_file(entry, work)
            try:
                frames[entry.shot.pk] = timeline.frames_in(path)
            except house.HouseError as e:
                raise ExportRefused(f"{entry.label}: {e}") from e
            files[timeline.media_name(entry)] = path
        progress(export, done)
    cut_timeline = timeline.build(project=export.project, entries=entries,
                                  frames_of=lambda entry: frames[entry.shot.pk])
    if export.kind == Export.Kind.BUNDLE:
        out = timeline.bundle(cut_timeline, work / "cut.zip", files=files, work=work)
    else:
        out = timeline.write(cut_timeline, work / timeline.ADAPTERS[export.kind][1],
                             kind=export.kind)
    slates = [e.shot.pk for e in entries if e.take is None]
    note = ("Media paths are relative (media/…): the bundle carries the files."
            if export.kind != Export.Kind.BUNDLE else
            f"{len(files)} take{'s' if len(files) != 1 else ''} under media/, with the "
            "timeline as .otio, .edl and .xml.")
    if slates:
        note += f" {len(slates)} shot{'s' if len(slates) != 1 else ''} without a take are gaps."
    return out, {"duration": sum(frames.values()) / house.FPS, "message": note}
