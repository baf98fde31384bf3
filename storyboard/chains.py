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
from storyboard.models import Generation, Project, Shot


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
    realtime.broadcast_take_list(shot)
    for pk in changed[1:]:
        realtime.broadcast_take_list(Shot(pk=pk, project_id=shot.project_id))
    return shot


def take_finished(take: Generation) -> None:
    """A take just finished: its seam with the upstream's chosen take is measured (a drifting
    take is flagged before anyone reviews it), and the first finished take of a shot becomes
    its chosen one."""
    seams.take_finished(take)
    if Shot.objects.filter(pk=take.shot_id, selected_take=None).exists():
        take = Generation.objects.get(pk=take.pk)
        choose_take(shot=Shot(pk=take.shot_id, project_id=take.project_id), take=take,
                    user=None)


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
