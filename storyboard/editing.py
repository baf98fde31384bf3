"""Saving a shot edit and undoing one: the two write paths of the shot editor.

Two people may edit one shot at once. A save carries the version its editor was opened at; the
history since that version says what others changed meanwhile. Fields only one side changed
merge silently; a field both changed to different values is a conflict, which keeps the other
side's stored value and hands the typed one back to the person saving, to choose between.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from django.db import transaction

from accounts.models import User
from storyboard import catalogue, chains, realtime
from storyboard.forms import ShotForm
from storyboard.models import Shot, ShotChange


@dataclass
class Conflict:
    """A field both people changed: what I typed and what is stored, and who stored it."""

    name: str
    label: str
    mine: str
    theirs: str
    by: ShotChange | None


@dataclass
class Edit:
    shot: Shot
    # What was written (None: nothing needed writing, or the merged shot was refused).
    change: ShotChange | None
    # The values the editor shows next: the stored ones, with the typed ones wherever they
    # were not stored (conflicts, or everything when `refused`).
    shown: dict[str, object]
    conflicts: list[Conflict] = field(default_factory=list)
    # The merged shot did not validate; it carries the reasons and nothing was written.
    refused: ShotForm | None = None
    # The shot is approved and the save touched what the approval locks; nothing was written.
    locked: str = ""


class UndoRefused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def merge(*, base: dict | None, mine: dict, theirs: dict) -> tuple[dict, list[str]]:
    """My changes that apply cleanly, and the fields that conflict.

    A field I changed (mine ≠ base) applies when they left it alone or made the same change;
    when they changed it differently it is a conflict. Without a base (history cannot tell)
    every field where mine ≠ theirs is a conflict: nothing is overwritten unseen.
    """
    applied, conflicts = {}, []
    for name, value in mine.items():
        if value == theirs[name]:
            continue
        if base is None:
            conflicts.append(name)
        elif value == base[name]:
            continue
        elif theirs[name] == base[name]:
            applied[name] = value
        else:
            conflicts.append(name)
    return applied, conflicts


def save_shot(*, shot: Shot, user: User, mine: dict[str, object], version: str,
              keep_theirs: set[str] = frozenset()) -> Edit:
    """Merge one editor's save into the stored shot, record it, and push it after commit: its
    card (and the totals; the order too if it changed scene) to every board, then its fields
    to every editor open on it.

    `mine` is the whole submission, from a valid ShotForm (its values): a save that merges
    in nobody else's change is not validated twice. `keep_theirs` names conflicting fields
    whose person chose the stored value over their own.
    """
    with transaction.atomic():
        current = Shot.objects.select_for_update().select_related("project").get(pk=shot.pk)
        theirs = current.field_values()
        # No version at all (a client that does not send one): the submission is the base.
        base = current.values_at(version) if version else theirs
        submitted = mine
        mine = {**mine, **{name: theirs[name] for name in keep_theirs if name in mine}}
        applied, conflicting = merge(base=base, mine=mine, theirs=theirs)
        target = {**theirs, **applied}
        shown = {**target, **{name: mine[name] for name in conflicting}}
        change = None
        locked = current.locked_fields(applied)
        if locked:
            # The approval lock: nothing that changes how the approved take was made.
            return Edit(shot=current, change=None, shown=shown,
                        locked=f"{current.lock_message()} Not saved: {_names(locked)}.")
        if applied:
            if target != submitted:
                # Merged with someone else's change: the mix was never validated as a whole.
                # (When it is exactly the submission, the caller's form has just checked it.)
                # On a copy: validating a model form writes the values onto its instance.
                check = ShotForm(ShotForm.data_for(target, version=current.version),
                                 instance=copy.copy(current))
                if not check.is_valid():
                    return Edit(shot=current, change=None, shown=shown, refused=check)
            change = current.change(values=applied, user=user)
            # The card first: every board open on the project waits for it, while the fields
            # pushed next only reach editors open on this shot (pushes leave in this order).
            realtime.shot_saved(current, moved="scene" in change.changes,
                                fields=change.changes)
            realtime.broadcast_shot_edit(shot=current, change=change,
                                         form=ShotForm.deferred(current))
            _relinked(current, change)
        conflicts = [_conflict(current, name, mine=mine[name], theirs=theirs[name])
                     for name in conflicting]
    return Edit(shot=current, change=change, shown=shown, conflicts=conflicts)


def _conflict(shot: Shot, name: str, *, mine: object, theirs: object) -> Conflict:
    recent = shot.changes.select_related("user").order_by("-created", "-pk")[:50]
    by = next((c for c in recent if name in c.changes), None)
    return Conflict(name=name, label=Shot._meta.get_field(name).verbose_name.capitalize(),
                    mine=shot.describe(name, mine), theirs=shot.describe(name, theirs), by=by)


def undo(*, shot: Shot, change_id: int, user: User) -> ShotChange:
    """Put back the values a shot's latest change replaced; the undo is a change of its own.

    Refused, changing nothing, when the change is not the latest any more or its fields no
    longer hold what it wrote: undoing then would throw away someone's later work.
    """
    with transaction.atomic():
        current = Shot.objects.select_for_update().select_related("project").get(pk=shot.pk)
        change = current.changes.filter(pk=change_id).first()
        if change is None:
            raise UndoRefused("That change is not in this shot's history.")
        latest = current.changes.select_related("user").order_by("-created", "-pk").first()
        if latest != change:
            who = latest.user.label if latest.user else "Someone"
            raise UndoRefused(f"{who} changed {_names(latest.changes)} since; nothing was "
                              "undone. Undo their change first, or edit the shot.")
        if not set(change.changes) & set(Shot.EDITABLE):
            # A kept stale mark: no field of the editor to put back.
            raise UndoRefused("That change set no field of the shot; there is nothing to undo.")
        values = current.field_values()
        moved = [name for name, (_old, new) in change.changes.items() if values[name] != new]
        if moved:
            raise UndoRefused(f"{_names(moved, capital=True)} changed since; nothing was "
                              "undone.")
        restore = {name: old for name, (old, _new) in change.changes.items()}
        locked = current.locked_fields(restore)
        if locked:
            raise UndoRefused(f"{current.lock_message()} Nothing was undone.")
        missing = _missing_files(current, restore)
        if missing:
            raise UndoRefused(f"{_names(missing, capital=True)} would point at a deleted "
                              "file, scene or shot; nothing was undone.")
        reverted = current.change(values=restore, user=user, undoes=change)
        realtime.broadcast_shot_edit(shot=current, change=reverted,
                                     form=ShotForm.deferred(current))
        _relinked(current, reverted)
    return reverted


def _missing_files(shot: Shot, values: dict[str, object]) -> list[str]:
    missing = []
    for name, value in values.items():
        if name == "scene" and value is not None:
            if not shot.project.scenes.filter(pk=value).exists():
                missing.append(name)
        elif name == "continues_from" and value is not None:
            if not shot.project.shots.filter(pk=value).exists():
                missing.append(name)
        elif name in Shot.RELATED or name == "references":
            ids = set(value if isinstance(value, list) else [value]) - {None}
            if shot.project.assets.filter(pk__in=ids).count() != len(ids):
                missing.append(name)
    return missing


def _names(fields, *, capital: bool = False) -> str:
    labels = [str(Shot._meta.get_field(name).verbose_name) for name in fields]
    text = ", ".join(labels[:-1]) + (" and " if len(labels) > 1 else "") + labels[-1]
    return text[:1].upper() + text[1:] if capital else text


def continue_previous(*, shot: Shot, user: User) -> Shot:
    """The one-click link: continue from the shot just before this one on the board, on the
    image-to-video endpoint of the same model (a continuing take starts from a frame), with no
    start frame of its own. Raises chains.ChainRefused, changing nothing, when it cannot."""
    with transaction.atomic():
        current = Shot.objects.select_for_update().select_related("project").get(pk=shot.pk)
        previous = current.previous_on_board()
        if previous is None:
            raise chains.ChainRefused("This is the first shot on the board: there is no "
                                      "previous shot to continue from.")
        if current.continues_from_id == previous.pk:
            raise chains.ChainRefused(f"This shot already continues from "
                                      f"{previous.display_title}.")
        spec = catalogue.image_endpoint_for(current.endpoint)
        if spec is None:
            raise chains.ChainRefused("This endpoint has no image-to-video counterpart; choose "
                                      "an image-to-video endpoint first.")
        values = {"continues_from": previous.pk, "endpoint": spec.id,
                  "mode": Shot.Mode.IMAGE, "start_frame": None}
        # The same checks as a save from the editor (cycles, sizes the endpoint takes, …).
        check = ShotForm(ShotForm.data_for({**current.field_values(), **values},
                                           version=current.version),
                         instance=copy.copy(current))
        if not check.is_valid():
            raise chains.ChainRefused(" ".join(e for errors in check.errors.values()
                                               for e in errors))
        change = current.change(values=values, user=user)
        realtime.broadcast_shot_edit(shot=current, change=change,
                                     form=ShotForm.deferred(current))
        _relinked(current, change)
    return current


def _relinked(shot: Shot, change: ShotChange) -> None:
    """A change of the link can make the shot's take (and the chain below) stale, or fresh."""
    if "continues_from" not in change.changes:
        return
    marked = chains.link_changed(shot=shot)
    if marked:
        realtime.board_change(shot.project_id, cards=marked)
        realtime.chain_marks(shot.project_id, shots=marked)
        # The view's own push carries the shot's card; its stale fields are fresh in memory.
        shot.refresh_from_db(fields=["stale_reason", "stale_since"])
