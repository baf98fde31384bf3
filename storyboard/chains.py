"""Chains: which take a shot stands for, and what a change of it means downstream.

A shot continues from another through `Shot.continues_from`; each of its takes starts from the
last frame of the upstream's chosen take (`Shot.chosen_take`). Changing a chosen take is done
here and only here, so the shots below always hear of it: every shot whose chosen take started
from something else is marked stale, transitively down the chain, and its card is pushed.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from storyboard import realtime, seams
from storyboard.forms import ShotForm
from storyboard.models import Generation, Project, Shot, ShotChange


class ChainRefused(Exception):
    """A chain change that cannot be made; the message says why, in plain words."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def choose_take(*, shot: Shot, take: Generation, user: User | None) -> Shot:
    """Make `take` the shot's selected take; mark the chain below stale where it now differs."""
    if take.shot_id != shot.pk:
        raise ChainRefused("That take belongs to another shot.")
    if take.state != Generation.State.COMPLETED or not take.video:
        raise ChainRefused("Only a finished take can be shown on the board.")
    with transaction.atomic():
        # Under the project lock: two choices in one chain at once cannot each read the other's
        # chain as it was and mark it by the old take.
        Project(pk=shot.project_id).lock()
        shot = Shot.objects.select_related("project", "selected_take").get(pk=shot.pk)
        if shot.selected_take_id == take.pk:
            return shot
        if shot.is_approved and take.pk != shot.review_take_id:
            # The approval lock (review.py): the approved take stays the chosen one.
            raise ChainRefused(shot.lock_message())
        shot.selected_take = take
        # Not `updated`: that is the editor's version, which only edits with history move.
        shot.save(update_fields=["selected_take"])
        # The shot itself is fresh again if the new take started from the current frame.
        _refresh_own_mark(shot)
        changed = [shot.pk, *_mark_downstream(shot)]
    # After the lock: measuring decodes a frame or two per joint. A joint below that gained a
    # seam shows it on its card even when its stale mark did not change.
    changed += [pk for pk in seams.chosen_changed(shot) if pk not in changed]
    realtime.board_change(shot.project_id, cards=changed, summary=True)
    # The shots below show their mark on their stale panel; their take lists did not change.
    realtime.chain_marks(shot.project_id, shots=changed)
    realtime.broadcast_take_list(shot)
    return shot


def take_finished(take: Generation) -> None:
    """A take just finished: its seam with the upstream's chosen take is measured (a drifting
    take is flagged before anyone reviews it). The first finished take of a shot becomes its
    chosen one, and so does a take of a stale shot that started from its upstream's current
    chosen take (a re-chain, or any new take from the new frame): that makes the shot fresh."""
    seams.take_finished(take)
    shot = Shot.objects.select_related("selected_take", "continues_from__selected_take") \
        .filter(pk=take.shot_id).first()
    if shot is None:
        return
    upstream = shot.upstream_take() if shot.is_stale else None
    from_new_frame = upstream is not None and take.upstream_id == upstream.pk
    if shot.selected_take_id is None or from_new_frame:
        take = Generation.objects.get(pk=take.pk)
        choose_take(shot=shot, take=take, user=None)


def rechain_refusal(shot: Shot) -> str:
    """Why a new take of `shot` from its upstream's new frame cannot start ("" if it can).

    The take itself goes through generation.start_generation like any other, budget hold
    included; this only says whether a re-chain makes sense now.
    """
    if not shot.continues_from_id:
        return "This shot does not continue from another shot; generate it instead."
    if not shot.is_stale:
        return "This shot already starts from its upstream's chosen take; nothing to re-chain."
    above = shot.continues_from
    if above.is_stale:
        return (f"{above.display_title} is stale itself: re-chain or keep it first, or this "
                "take would start from a frame that is about to change.")
    new = above.chosen_take()
    if new is None:
        return f"{above.display_title} has no finished take to start from."
    running = shot.takes.filter(upstream=new).exclude(state__in=Generation.TERMINAL) \
        .select_related("created_by").first()
    if running is not None:
        # Two people pressing Re-chain at once get one take, the second is told.
        who = running.created_by.label if running.created_by else "Someone"
        return f"{who} already started a take from the new frame; it is on its way."
    return ""


def link_changed(*, shot: Shot) -> list[int]:
    """The editor changed what `shot` continues from (called in its transaction): a chosen take
    that started from another frame is stale now, and so is the chain below it; a shot no
    longer linked has nothing to be stale against. Returns the shots whose marks moved."""
    shot = Shot.objects.select_related("selected_take", "continues_from__selected_take") \
        .get(pk=shot.pk)
    take = shot.chosen_take()
    reason = ""
    if shot.continues_from_id and take is not None:
        upstream = shot.upstream_take()
        if upstream is None or take.upstream_id != upstream.pk:
            started = f"#{take.upstream_id}" if take.upstream_id else "no other shot"
            reason = (f"It now continues from {shot.continues_from.display_title}; this take "
                      f"started from {started}.")
    if reason == shot.stale_reason:
        return []
    shot.stale_reason, shot.stale_since = reason, timezone.now() if reason else None
    shot.save(update_fields=["stale_reason", "stale_since"])
    return [shot.pk, *_mark_downstream(shot)]


def keep(*, shot: Shot, user: User) -> Shot:
    """Keep a stale shot's take as it is: the mark goes, the history says who kept it and why
    it was marked. Shots below that were stale only because this one was are fresh again."""
    with transaction.atomic():
        Project(pk=shot.project_id).lock()
        shot = Shot.objects.select_related("project", "selected_take").get(pk=shot.pk)
        if not shot.is_stale:
            raise ChainRefused("This shot is not stale; there is nothing to keep.")
        _clear_mark(shot, user=user,
                    note=f"Kept the take on the board although it was stale: "
                         f"{shot.stale_reason}")
        changed = [shot.pk, *_clear_inherited(shot, user=user)]
    realtime.board_change(shot.project_id, cards=changed)
    realtime.chain_marks(shot.project_id, shots=changed)
    for pk in changed:
        realtime.refresh_history(Shot(pk=pk, project_id=shot.project_id))
    return shot


def delete_shot(*, shot: Shot, user: User) -> tuple[realtime.Push, str]:
    """Delete a shot. Shots that continued from it are unlinked first, never silently: each
    gets a line in its history, and every open board a notice naming them (returned too, ""
    when nothing was linked to it)."""
    title = shot.display_title
    who = user.label if user else "Someone"
    with transaction.atomic():
        Project(pk=shot.project_id).lock()
        below = list(Shot.objects.select_for_update().filter(continues_from=shot)
                     .select_related("project"))
        for down in below:
            _unlink(down, user=user,
                    note=f"No longer continues from {title}: {who} deleted it. It needs a "
                         "start frame, or another shot to continue from.")
        shot.delete()
    notice = ""
    if below:
        names = ", ".join(d.display_title for d in below)
        notice = (f"{who} deleted {title}. {names} continued from it and "
                  f"{'is' if len(below) == 1 else 'are'} now unlinked: "
                  f"{'it needs' if len(below) == 1 else 'each needs'} a start frame, or "
                  "another shot to continue from.")
        realtime.chain_marks(shot.project_id, shots=[d.pk for d in below], notice=notice)
    return realtime.board_change(shot.project_id, cards=[d.pk for d in below], order=True,
                                 summary=True), notice


def _unlink(down: Shot, *, user: User | None, note: str) -> None:
    """Take away a shot's link (it has nothing to be stale against then), with history."""
    down.stale_reason, down.stale_since = "", None
    change = down.change(values={"continues_from": None}, user=user, note=note)
    realtime.broadcast_shot_edit(shot=down, change=change, form=ShotForm.deferred(down))


def _clear_mark(shot: Shot, *, user: User | None, note: str) -> None:
    reason = shot.stale_reason
    shot.stale_reason, shot.stale_since = "", None
    shot.save(update_fields=["stale_reason", "stale_since"])
    # Not a field edit: `updated` (the editor's version) stays, so no open editor conflicts.
    ShotChange.objects.create(shot=shot, user=user, changes={"stale_reason": [reason, ""]},
                              note=note[:300])


def _clear_inherited(shot: Shot, *, user: User | None) -> list[int]:
    """Below a shot that is fresh now: shots whose own take still starts from their upstream's
    chosen take were stale only through it, and are fresh again (transitively)."""
    cleared: list[int] = []
    level = [shot]
    while level:
        by_pk = {s.pk: s for s in level}
        below = list(Shot.objects.filter(continues_from__in=by_pk).exclude(stale_reason="")
                     .select_related("selected_take"))
        level = []
        for down in below:
            above = by_pk[down.continues_from_id]
            take, new = down.chosen_take(), above.chosen_take()
            if take is not None and new is not None and take.upstream_id == new.pk:
                _clear_mark(down, user=user, note=f"Fresh again: {above.display_title} was "
                                                  "kept as it is.")
                cleared.append(down.pk)
                level.append(down)
    return cleared


def _refresh_own_mark(shot: Shot) -> None:
    """A stale shot whose chosen take now starts from its upstream's chosen take is fresh."""
    if not shot.stale_reason:
        return
    chosen = shot.chosen_take()
    upstream = shot.upstream_take()
    if chosen is not None and upstream is not None and chosen.upstream_id == upstream.pk:
        shot.stale_reason, shot.stale_since = "", None
        shot.save(update_fields=["stale_reason", "stale_since"])


def _mark_downstream(shot: Shot) -> list[int]:
    """Mark every shot below `shot` whose chosen take no longer starts from its upstream's
    chosen take; returns their ids. One query per level of the chain."""
    marked: list[int] = []
    now = timezone.now()
    level = [shot]
    seen = {shot.pk}
    while level:
        by_pk = {s.pk: s for s in level}
        below = list(Shot.objects.filter(continues_from__in=by_pk)
                     .exclude(pk__in=seen).select_related("selected_take"))
        for down in below:
            seen.add(down.pk)
            above = by_pk[down.continues_from_id]
            reason = _stale_reason(down, above=above)
            if reason and reason != down.stale_reason:
                down.stale_reason, down.stale_since = reason, now
                down.save(update_fields=["stale_reason", "stale_since"])
                marked.append(down.pk)
        level = below
    return marked


def _stale_reason(down: Shot, *, above: Shot) -> str:
    take = down.chosen_take()
    if take is None:
        # Nothing made yet: its next take starts from the new frame anyway.
        return ""
    new = above.chosen_take()
    if new is not None and take.upstream_id != new.pk:
        started = f"#{take.upstream_id}" if take.upstream_id else "another frame"
        return (f"{above.display_title} now uses take #{new.pk}; this take started from "
                f"{started}.")
    if above.stale_reason:
        return f"It continues from {above.display_title}, which is stale."
    return ""
