"""Review sessions: one person presents a playlist of shots and every participant's player
follows theirs live, Syncplay-style.

The presenter's page reports its player on every discrete action (play, pause, seek, frame
step, speed, another item, another take, compare on or off) and with a heartbeat while
playing. Each report carries the player's time and the moment it was true on the *server's*
clock (every page measures its offset to that clock over the socket), so a follower computes
where the presenter is now, `t + (now - at) × rate`, whatever the latency, and corrects
toward it (session.js). Discrete reports are stored (`ReviewSession.state`): a late joiner
starts from the last one and lands where the presenter is. Heartbeats are only relayed.

Writes go through the functions below; the consumer (consumers.py) and the views call them.
Control changes hands by a view (a POST, so roles are checked like any write); asking for it
is a message between pages and changes nothing.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from storyboard import realtime
from storyboard.models import Generation, Project, ReviewSession, Shot

RATES = (0.25, 0.5, 1.0, 2.0, 4.0)
MODES = ("side", "wipe")
TITLE_LIMIT = ReviewSession._meta.get_field("title").max_length
# Past the longest clip any endpoint makes: a time beyond it is a broken page, not a seek.
MAX_TIME = 600.0


class SessionRefused(Exception):
    """Something not done; the message says why in plain words."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def now_ms() -> int:
    """The server's clock, which every page of a session measures its own against."""
    return int(time.time() * 1000)


def group(session_id: int) -> str:
    return f"review-session-{session_id}"


def start(*, project: Project, user: User, shot_ids: list[int] | None,
          title: str = "") -> ReviewSession:
    """Open a session presented by `user`: the chosen shots in board order, or (None) the
    project's shots in review."""
    membership = user.membership_in(project.team_id)
    if membership is None or not membership.can_comment:
        raise SessionRefused("Viewers can join a review session; your role cannot start one.")
    title = title.strip()
    if len(title) > TITLE_LIMIT:
        raise SessionRefused(f"Keep the title under {TITLE_LIMIT} characters "
                             f"(it has {len(title)}).")
    order = [shot.pk for _, shots in project.board() for shot in shots]
    if shot_ids is None:
        in_review = set(Shot.objects.filter(project=project, review=Shot.Review.IN_REVIEW)
                        .values_list("pk", flat=True))
        chosen = [pk for pk in order if pk in in_review]
        if not chosen:
            raise SessionRefused("No shot of this project is in review: choose the shots to "
                                 "present.")
    else:
        if not shot_ids:
            raise SessionRefused("Choose at least one shot to present.")
        if not set(shot_ids) <= set(order):
            raise SessionRefused("Some of the chosen shots are not on this board (deleted "
                                 "since the page was opened?); nothing was started.")
        chosen = [pk for pk in order if pk in set(shot_ids)]
    first = Shot.objects.select_related("review_take", "selected_take").get(pk=chosen[0])
    take = first.take_to_review()
    session = ReviewSession.objects.create(
        project=project, started_by=user, presenter=user, shot_ids=chosen,
        title=title or f"Review · {project.name} · {timezone.localdate():%d %b}",
        state=_initial(item=0, take=take))
    return session


def _initial(*, item: int, take: Generation | None) -> dict[str, Any]:
    return {"item": item, "take": str(take.uid) if take else "", "compare": "", "mode": "side",
            "t": 0.0, "playing": False, "rate": 1.0, "at": now_ms()}


def clean_state(session: ReviewSession, raw: object) -> dict[str, Any]:
    """The presenter's report, checked: every field of the right type and range, the item in
    the playlist, the takes finished takes of that item's shot. Raises SessionRefused."""
    if not isinstance(raw, dict):
        raise SessionRefused("A player report is an object.")
    try:
        item = int(raw.get("item", -1))
        t = float(raw.get("t", -1))
        rate = float(raw.get("rate", 1))
        at = int(raw.get("at", 0))
    except (TypeError, ValueError):
        raise SessionRefused("A player report has numbers where numbers go.") from None
    if not 0 <= item < len(session.shot_ids):
        raise SessionRefused("That item is not in the playlist.")
    if not (math.isfinite(t) and 0 <= t <= MAX_TIME):
        raise SessionRefused("That time is not inside a take.")
    if rate not in RATES:
        raise SessionRefused("Play at ¼×, ½×, 1×, 2× or 4×.")
    # A page's clock may be off by its measured offset, not by minutes.
    if abs(at - now_ms()) > 60_000:
        raise SessionRefused("That report's clock is too far from the server's.")
    mode = raw.get("mode") or "side"
    if mode not in MODES:
        raise SessionRefused("Compare side by side or as a wipe.")
    shot_id = session.shot_ids[item]
    takes = {str(uid) for uid in Generation.objects.filter(
        shot_id=shot_id, state=Generation.State.COMPLETED).exclude(video="")
        .values_list("uid", flat=True)}
    take, compare = str(raw.get("take") or ""), str(raw.get("compare") or "")
    if (take and take not in takes) or (compare and compare not in takes):
        raise SessionRefused("That take is not a finished take of this shot.")
    return {"item": item, "take": take, "compare": compare if take else "", "mode": mode,
            "t": round(t, 4), "playing": bool(raw.get("playing")), "rate": rate, "at": at}


def report(*, session_id: int, user: User, raw: object, store: bool) -> dict[str, Any]:
    """The presenter's player changed (or, `store=False`, is still playing): check it, keep
    it for late joiners when `store`, and send it to the session's other pages."""
    session = ReviewSession.objects.filter(pk=session_id).first()
    if session is None or not session.is_live:
        raise SessionRefused("This review session has ended.")
    if session.presenter_id != user.pk:
        raise SessionRefused("Only the presenter moves everyone's player; ask for control.")
    state = clean_state(session, raw)
    # Stored only while they still present: a hand-over between the check and here wins.
    if store and not ReviewSession.objects.filter(pk=session.pk, presenter=user, ended=None) \
            .update(state=state):
        raise SessionRefused("Control has passed to someone else.")
    return state


def hand_over(*, session: ReviewSession, user: User, to: User) -> ReviewSession:
    """Give control to another participant. The presenter may; so may whoever started the
    session (taking it back), and a producer or owner."""
    membership = user.membership_in(session.project.team_id)
    if membership is None:
        raise SessionRefused("Only the team's members take part in its review sessions.")
    if not (user.pk in (session.presenter_id, session.started_by_id) or membership.can_manage
            or membership.can_budget):
        raise SessionRefused("Only the presenter hands over control (or whoever started the "
                             "session, or a producer or owner).")
    target = to.membership_in(session.project.team_id)
    if target is None or not target.user.is_active:
        raise SessionRefused("Control goes to a member of the team.")
    with transaction.atomic():
        won = ReviewSession.objects.filter(pk=session.pk, ended=None,
                                           presenter_id=session.presenter_id) \
            .update(presenter=to)
        if not won:
            raise SessionRefused("Control changed hands (or the session ended) a moment ago; "
                                 "nothing was changed.")
    session.presenter = to
    _announce(session.pk, {"op": "presenter", "id": to.pk, "name": to.label})
    return session


def end(*, session: ReviewSession, user: User) -> ReviewSession:
    membership = user.membership_in(session.project.team_id)
    if membership is None or not (user.pk in (session.presenter_id, session.started_by_id)
                                  or membership.can_manage or membership.can_budget):
        raise SessionRefused("The presenter, whoever started the session, or a producer or "
                             "owner ends it.")
    if not session.is_live:
        raise SessionRefused("This review session has already ended.")
    session.ended = timezone.now()
    session.save(update_fields=["ended"])
    _announce(session.pk, {"op": "ended"})
    return session


def _announce(session_id: int, payload: dict[str, Any]) -> None:
    text = json.dumps({"session": session_id, **payload})
    transaction.on_commit(lambda: realtime.send_session(group(session_id), text))
