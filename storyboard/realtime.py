"""Pushes to everyone looking at a board.

Messages are rendered HTML: the same `{% partialdef %}` regions htmx requests get, each with an
id, so the htmx websocket extension swaps them in place. Callers push explicitly, after the
transaction that made the change commits, so nobody sees a change that was rolled back.

Each push carries only what changed — a card, the summary line, a scene heading, the board's
order — never the whole board, and it is rendered once per audience (editors, viewers,
producers): a viewer's fragment has no controls in it, and no socket costs a render of its own.
Sending never waits for the fan-out, so the request that made the change answers at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.core.cache import cache
from django.db import transaction
from django.db.models import Prefetch, prefetch_related_objects
from django.template.loader import render_to_string

from storyboard import selectors
from storyboard.models import (
    Budget,
    Export,
    Generation,
    Presence,
    Project,
    Shot,
    ShotChange,
)

logger = logging.getLogger(__name__)

BOARD_TEMPLATE = "storyboard/board.html"


@dataclass(frozen=True)
class Audience:
    """Whom a fragment is rendered for. Templates read it as `membership`: the controls a
    fragment carries follow `can_edit`, budget-only regions `can_budget`."""

    name: str
    can_edit: bool
    can_budget: bool = False


EDITORS = Audience("editors", can_edit=True)
VIEWERS = Audience("viewers", can_edit=False)
# Owners and producers: editors who also hear about money (they join both groups).
PRODUCERS = Audience("producers", can_edit=True, can_budget=True)
BOARD_AUDIENCES = (EDITORS, VIEWERS)


def project_group(project_id: int) -> str:
    return f"project-{project_id}"


def audience_group(project_id: int, audience: Audience) -> str:
    return f"project-{project_id}-{audience.name}"


def user_group(user_id: int) -> str:
    return f"user-{user_id}"


def audiences_for(membership) -> list[Audience]:
    """The groups a member's board socket joins, by role."""
    board = EDITORS if membership.can_edit else VIEWERS
    return [board, PRODUCERS] if membership.can_budget else [board]


# The event loop of the ASGI server in this process, noted by the first consumer to connect.
_server_loop: asyncio.AbstractEventLoop | None = None


def remember_server_loop() -> None:
    global _server_loop
    _server_loop = asyncio.get_running_loop()


def _send(group: str, message: dict) -> None:
    """Every push leaves through here, whichever thread it is sent from, without waiting for
    the fan-out: the request that made the change answers at once."""
    layer = get_channel_layer()
    loop = _server_loop
    if isinstance(layer, InMemoryChannelLayer) and loop is not None and loop.is_running():
        # The in-memory layer's queues belong to the server's loop: hand the send to that loop
        # (or the waiting consumers are not woken up).
        future = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), loop)
        future.add_done_callback(_log_failure)
        return
    _outbox().put((group, message))


def _log_failure(future) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.error("A push was not sent", exc_info=future.exception())


_queue: queue.SimpleQueue | None = None
_queue_lock = threading.Lock()


def _outbox() -> queue.SimpleQueue:
    """The sender thread's queue, started on first use: it owns one event loop, so a channel
    layer's connections (Redis) live as long as the process, and requests never wait on them."""
    global _queue
    with _queue_lock:
        if _queue is None:
            _queue = queue.SimpleQueue()
            threading.Thread(target=_sender, args=(_queue,), name="realtime-sender",
                             daemon=True).start()
    return _queue


def _sender(outbox: queue.SimpleQueue) -> None:
    loop = asyncio.new_event_loop()
    while True:
        group, message = outbox.get()
        try:
            loop.run_until_complete(get_channel_layer().group_send(group, message))
        except Exception:
            logger.exception("A push to %s was not sent", group)


def _after_commit(send: Callable[[], None]) -> None:
    """Run `send` once the current transaction commits (at once outside one).

    Every push goes through here, so nobody is shown a change that was then rolled back.
    """
    # robust: a push that fails to render is logged; it never fails the request that committed.
    transaction.on_commit(send, robust=True)


# Numbered pushes. Every fragment sent to a group a page depends on carries the group's next
# number (a counter in the cache, shared by every server process). A socket that sees a number
# skipped (the layer dropped a message for a full channel) or a page whose socket connects
# after pushes it never saw re-syncs: it fetches what it shows, instead of silently missing
# updates. Presence and "who is editing" carry whole state or nothing lasting, so they are
# not numbered.


def _number_key(group: str) -> str:
    return f"push-number:{group}"


def _numbered(group: str, html: str) -> dict:
    key = _number_key(group)
    cache.add(key, 0, timeout=None)
    try:
        number = cache.incr(key)
    except ValueError:
        # Evicted between add and incr: start again; a socket that notices re-syncs.
        cache.add(key, 1, timeout=None)
        number = 1
    return {"type": "board.html", "html": html, "group": group, "number": number}


def live_groups(project_id: int, membership) -> list[str]:
    """The numbered groups a member's live page (board, shot, assets) hears."""
    return [project_group(project_id),
            *(audience_group(project_id, audience) for audience in audiences_for(membership))]


def push_numbers(groups: Iterable[str]) -> dict[str, int]:
    """The last number pushed to each group (0 for none yet)."""
    groups = list(groups)
    found = cache.get_many([_number_key(group) for group in groups])
    return {group: int(found.get(_number_key(group), 0)) for group in groups}


def pushes_seen(project_id: int, membership) -> int:
    """What a live page has seen, taken before the page loads what it shows: the sum of its
    groups' numbers. Its socket compares it with the sum when it connects (consumers.py)."""
    return sum(push_numbers(live_groups(project_id, membership)).values())


def send_html(project_id: int, html: str) -> None:
    """Send the same fragment to everyone on the project (it has no controls), without
    waiting for the fan-out: the request that made the change answers at once."""
    group = project_group(project_id)
    _send(group, _numbered(group, html))


def send_to_user(user_id: int, html: str) -> None:
    """A fragment for one person, to every page they have open (their bell)."""
    _send(user_group(user_id), {"type": "board.html", "html": html})


def send_session(group: str, text: str, *, sender: str = "") -> None:
    """A review session's message (JSON: a player report, a hand-over, the end) to its pages;
    `sender`, the socket it came from, does not hear its own."""
    _send(group, {"type": "session.message", "text": text, "sender": sender})


# Tells a live page it missed pushes (or that too much changed to push piece by piece):
# live.js and board.js fetch what the page shows, each person with their own role's controls.
RESYNC = '<div id="live-resync" hx-swap-oob="true" hidden data-resync></div>'


def board_resync(project_id: int) -> None:
    """After commit, every page open on the project fetches what it shows again: for a change
    as large as an import, one small message instead of a card per shot. Numbered like any
    push, so a page that loads meanwhile knows whether it already has the change."""
    _after_commit(lambda: send_html(project_id, RESYNC))


def on_commit(project_id: int, render: Callable[[], str]) -> None:
    """Render and send to the project's boards once the current transaction commits."""
    _after_commit(lambda: send_html(project_id, render()))


def render_region(region: str, context: dict) -> str:
    return render_to_string(f"{BOARD_TEMPLATE}#{region}", {**context, "oob": True})


class Push:
    """One change: its data loaded once, its HTML rendered at most once per audience.

    Sent after commit to each audience's group; a view answers its own htmx request with
    `html_for(...)`, which reuses what the push already rendered.
    """

    def __init__(self, project_id: int, load: Callable[[], dict],
                 render: Callable[[dict, Audience], str],
                 audiences: Iterable[Audience] = BOARD_AUDIENCES) -> None:
        self.project_id = project_id
        self.audiences = tuple(audiences)
        self._load, self._render = load, render
        self._context: dict | None = None
        self._html: dict[Audience, str] = {}

    def html_for(self, audience: Audience) -> str:
        if audience not in self._html:
            if self._context is None:
                self._context = self._load()
            self._html[audience] = self._render(self._context, audience)
        return self._html[audience]

    def send(self) -> None:
        for audience in self.audiences:
            html = self.html_for(audience)
            if html:
                group = audience_group(self.project_id, audience)
                _send(group, _numbered(group, html))


def push(project_id: int, load: Callable[[], dict], render: Callable[[dict, Audience], str],
         audiences: Iterable[Audience] = BOARD_AUDIENCES) -> Push:
    change = Push(project_id, load, render, audiences)
    _after_commit(change.send)
    return change


def board_change(project_id: int, *, cards: Iterable[int] = (), new_cards: Iterable[int] = (),
                 new_scenes: Iterable[int] = (), headings: Iterable[int] = (),
                 order: bool = False, summary: bool = False) -> Push:
    """Push part of a board: changed `cards`, the scene `headings` renamed, the `summary` line,
    and with `order` the board's structure (shot and scene ids in order) along with the cards
    and headings it introduces, which board.js moves into place. A constant number of queries
    whatever the board's size."""
    cards, new_cards = list(cards), list(new_cards)
    new_scenes, headings = list(new_scenes), list(headings)

    def load() -> dict:
        project = Project(pk=project_id)
        shots = {s.pk: s for s in selectors.cards(cards + new_cards)} if cards or new_cards \
            else {}
        scenes = [s for s in map(selectors.scene_heading, new_scenes + headings) if s]
        context = {"project": project, "shots": shots, "scenes": {s.pk: s for s in scenes}}
        if order:
            context["order"] = selectors.board_order(project)
            # Lets a board ignore an order older than one it already applied.
            context["stamp"] = time.time_ns() // 1000
        if summary:
            context["summary"] = selectors.summary_context(project)
        return context

    def render(context: dict, audience: Audience) -> str:
        base = {"project": context["project"], "membership": audience, "oob": True}
        parts = []
        if order:
            structure = context["order"]
            parts.append(render_to_string(f"{BOARD_TEMPLATE}#board-order", {
                **base, "order": structure, "stamp": context["stamp"],
                "order_json": json.dumps(structure, separators=(",", ":")),
                "new_shots": [context["shots"][i] for i in new_cards if i in context["shots"]],
                "new_scenes": [context["scenes"][i] for i in new_scenes
                               if i in context["scenes"]]}))
        parts.extend(render_to_string(f"{BOARD_TEMPLATE}#shot-card", {**base, "shot": shot})
                     for pk, shot in context["shots"].items() if pk in cards)
        parts.extend(render_to_string(f"{BOARD_TEMPLATE}#scene-heading", {**base, "scene": s})
                     for pk, s in context["scenes"].items() if pk in headings)
        if summary:
            parts.append(render_to_string(f"{BOARD_TEMPLATE}#board-summary",
                                          {**base, **context["summary"]}))
        return "".join(parts)

    return push(project_id, load, render)


def shot_saved(shot: Shot, *, moved: bool = False,
               fields: Iterable[str] | None = None) -> Push:
    """A shot's fields changed: its card, the totals when `fields` (the names changed; None:
    unknown) include one they read, and the order if it changed scene."""
    totals = fields is None or not selectors.TOTALS_FIELDS.isdisjoint(fields)
    return board_change(shot.project_id, cards=[shot.pk], summary=totals, order=moved)


def shot_added(shot: Shot) -> Push:
    return board_change(shot.project_id, new_cards=[shot.pk], order=True, summary=True)


def shot_removed(project_id: int) -> Push:
    return board_change(project_id, order=True, summary=True)


def board_reordered(project_id: int) -> Push:
    return board_change(project_id, order=True)


def scene_added(project_id: int, scene_id: int) -> Push:
    return board_change(project_id, new_scenes=[scene_id], order=True, summary=True)


def scene_renamed(project_id: int, scene_id: int) -> Push:
    return board_change(project_id, headings=[scene_id])


def scene_removed(project_id: int) -> Push:
    return board_change(project_id, order=True, summary=True)


def broadcast_assets(project: Project, *, shots: Iterable[int] = ()) -> None:
    """The library grid for anyone on the assets page, the counter for anyone on the board,
    and the cards of `shots` that used an asset which is now gone."""
    shots = list(shots)

    def load() -> dict:
        context = {**selectors.assets_context(project), "asset_count": project.assets.count(),
                   "cards": selectors.cards(shots) if shots else []}
        if shots:
            context["summary"] = selectors.summary_context(project)
        return context

    def render(context: dict, audience: Audience) -> str:
        html = render_to_string("storyboard/assets.html#asset-grid",
                                {**context, "membership": audience, "oob": True})
        html += render_region("asset-count", {"project": project,
                                              "asset_count": context["asset_count"]})
        html += "".join(render_region("shot-card", {"shot": shot, "project": project,
                                                    "membership": audience})
                        for shot in context["cards"])
        if "summary" in context:
            html += render_region("board-summary", context["summary"])
        return html

    push(project.pk, load, render)


# Presence: at most one update per board per second, each carrying the whole current list, so
# a crowd arriving costs each socket a few messages instead of one per arrival (200 people
# joining used to send 18 487). One sender task per board per process waits for the board's
# turn; a cache slot per board (shared Redis with several servers) gives one turn a second
# across all of them. Redis counts the slot's life in whole seconds.
PRESENCE_EVERY = 1

# Per board, in this process: when someone last arrived or left, and the task that will send it.
_presence_changed: dict[int, float] = {}
_presence_senders: dict[int, asyncio.Task] = {}


def presence_changed(project_id: int) -> None:
    """Someone arrived at or left the board: everyone on it hears the list within a second.

    Called on the server's event loop, after the Presence row was written.
    """
    _presence_changed[project_id] = time.time()
    loop = asyncio.get_running_loop()
    sender = _presence_senders.get(project_id)
    # A sender left from another loop (tests run one loop each) will never run here.
    if sender is None or sender.done() or sender.get_loop() is not loop:
        _presence_senders[project_id] = loop.create_task(_send_presence(project_id))


async def _send_presence(project_id: int) -> None:
    layer = get_channel_layer()
    while True:
        changed = _presence_changed[project_id]
        turn = await database_sync_to_async(_presence_turn)(project_id, changed)
        if isinstance(turn, float):
            await asyncio.sleep(turn)
            continue
        if turn is not None:
            # Sent from this loop directly: no thread hand-off, whichever layer is in use.
            await layer.group_send(project_group(project_id), {"type": "board.html",
                                                                "html": turn})
        if _presence_changed[project_id] == changed:
            # Nobody came or went while this was sent (no await since the check), so a later
            # change finds this task done and starts another.
            del _presence_changed[project_id]
            return


def _presence_turn(project_id: int, changed: float) -> str | float | None:
    """The presence HTML if it is this process's turn to send it; otherwise the seconds until
    the next turn, or None when a send that began after `changed` already carries it."""
    key = f"presence-sent:{project_id}"
    now = time.time()
    if cache.add(key, now, timeout=PRESENCE_EVERY):
        # The list is read after the turn was taken, so it includes every change noted before.
        return render_region("presence", {"viewers": Presence.objects.viewers(project_id)})
    sent = cache.get(key)
    if sent is None:
        return 0.0
    if sent >= changed:
        return None
    return max(0.0, sent + PRESENCE_EVERY - now) + 0.01


def close_project(*, project_id: int, team_id: int) -> None:
    """Close every socket on a project that no longer exists (called when it is deleted)."""
    _after_commit(lambda: _send(project_group(project_id),
                                {"type": "access.revoked", "team_id": team_id}))


def revoke_access(*, user_id: int, team_id: int) -> None:
    """Close the user's open sockets on this team's boards (called when a member is removed)."""
    _after_commit(lambda: _send(user_group(user_id),
                                {"type": "access.revoked", "team_id": team_id}))


def role_changed(*, user_id: int, team_id: int) -> None:
    """The user's role in the team changed: their sockets move to the new role's groups."""
    _after_commit(lambda: _send(user_group(user_id),
                                {"type": "role.changed", "team_id": team_id}))


def broadcast_take(take: Generation) -> None:
    """A take moved: its row in the shot editor and the status strip on its card; a new or
    finished take sends the editor's take list, a finished one the card and the totals."""
    def load() -> dict:
        fresh = Generation.objects.select_related("created_by").filter(pk=take.pk).first()
        shots = selectors.cards([fresh.shot_id]) if fresh else []
        if not shots:
            return {}  # deleted with its shot meanwhile: nothing left to show
        shot = shots[0]
        fresh.shot = shot
        whole_list = fresh.state in (Generation.State.PENDING, Generation.State.HELD) \
            or fresh.is_terminal
        context = {"take": fresh, "shot": shot, "project": Project(pk=fresh.project_id),
                   "whole_list": whole_list}
        if whole_list:
            prefetch_related_objects([shot], Prefetch(
                "takes", queryset=Generation.objects.for_take_list()))
        if fresh.is_terminal:
            context["summary"] = selectors.summary_context(context["project"])
        return context

    def render(context: dict, audience: Audience) -> str:
        if not context:
            return ""
        base = {**context, "membership": audience, "oob": True}
        if context["whole_list"]:
            # New or finished: the whole list, so open editors gain or reorder the row.
            html = render_to_string("storyboard/shot.html#take-list", base)
        else:
            html = render_to_string("storyboard/shot.html#take", base)
        if context["take"].is_terminal:
            # A finished take may become the card's picture; send the whole card.
            html += render_region("shot-card", base)
            return html + render_region("board-summary", context["summary"])
        return html + render_region("shot-status", base)

    push(take.project_id, load, render)


def broadcast_budget_notice(*, budget: Budget, threshold: int | None, overrun: int = 0) -> None:
    """Tell producers on every board of the team that the budget passed a threshold, or that
    a take cost more than its hold (`overrun`, which the notice then leads with)."""
    def load() -> dict:
        return {"budget": budget, "threshold": threshold, "overrun": overrun,
                "team": budget.team}

    def render(context: dict, audience: Audience) -> str:
        return render_region("budget-notice", {**context, "membership": audience})

    for project_id in Project.objects.filter(team_id=budget.team_id).values_list("pk", flat=True):
        push(project_id, load, render, audiences=[PRODUCERS])


def broadcast_overrun(*, budget: Budget, overrun: int) -> None:
    """A take cost `overrun` more than its hold: producers on every board of the team hear it."""
    broadcast_budget_notice(budget=budget, threshold=None, overrun=overrun)


SHOT_TEMPLATE = "storyboard/shot.html"


def broadcast_shot_edit(*, shot: Shot, change: ShotChange, form: Callable[[], object]) -> None:
    """A saved edit or undo: its fields to every editor open on the shot, and their history.

    `form` makes an unbound ShotForm of the stored shot (realtime does not import forms),
    called after commit: building one reads the project's assets and board order, which the
    card pushed before this need not wait for. An editor whose person has typed in one of
    these fields keeps the typing (static/js/live.js); the history region re-fetches itself,
    so each role gets its own controls.
    """
    def render() -> str:
        form_ = form()
        fields = "".join(render_to_string(f"{SHOT_TEMPLATE}#editor-field",
                                          {"shot": shot, "field": form_[name], "oob": True})
                         for name in change.changes)
        return fields + render_to_string(f"{SHOT_TEMPLATE}#history-stale", {"shot": shot})

    on_commit(shot.project_id, render)


def broadcast_take_list(shot: Shot) -> None:
    """The shot's takes in every open editor (the one on the board is marked), rendered per
    audience: only editors get the take actions."""
    def load() -> dict:
        shots = selectors.cards([shot.pk])
        if not shots:
            return {}
        prefetch_related_objects(shots, Prefetch(
            "takes", queryset=Generation.objects.for_take_list()))
        return {"shot": shots[0], "project": Project(pk=shot.project_id)}

    def render(context: dict, audience: Audience) -> str:
        if not context:
            return ""
        return render_to_string(f"{SHOT_TEMPLATE}#take-list",
                                {**context, "membership": audience, "oob": True})

    push(shot.project_id, load, render)


def chain_marks(project_id: int, *, shots: Iterable[int], notice: str = "") -> Push:
    """Stale marks moved on `shots`: the stale panel of every shot page open on one of them
    (Re-chain and Keep for editors), and with `notice` a line on every board saying why links
    went away. The cards themselves go with board_change."""
    shots = list(shots)

    def load() -> dict:
        return {"shots": selectors.cards(shots) if shots else [], "notice": notice,
                "project": Project(pk=project_id)}

    def render(context: dict, audience: Audience) -> str:
        base = {"project": context["project"], "membership": audience, "oob": True}
        html = "".join(render_to_string(f"{SHOT_TEMPLATE}#stale", {**base, "shot": shot})
                       for shot in context["shots"])
        if context["notice"]:
            html += render_region("chain-notice", {**base, "notice": context["notice"]})
        return html

    return push(project_id, load, render)


def chain_progress(project_id: int) -> Push:
    """A chain render moved (started, a shot finished, it stopped or was canceled): the board's
    chain strip alone, small and on its own, with a cancel button only for editors."""
    def load() -> dict:
        return {"project": Project(pk=project_id), "chain_runs": selectors.chain_runs(project_id)}

    def render(context: dict, audience: Audience) -> str:
        return render_region("chain-progress", {**context, "membership": audience})

    return push(project_id, load, render)


def refresh_history(shot: Shot) -> None:
    """Open editors of the shot re-fetch its history (each with its own role's controls)."""
    on_commit(shot.project_id,
              lambda: render_to_string(f"{SHOT_TEMPLATE}#history-stale", {"shot": shot}))


def broadcast_review(shot: Shot) -> None:
    """A review decision: every open shot page re-fetches its review panel, so each person
    gets the controls of their own role."""
    on_commit(shot.project_id, lambda: render_to_string(f"{SHOT_TEMPLATE}#review-stale",
                                                        {"shot": shot}))


def broadcast_comments(take: Generation) -> None:
    """A comment written or resolved: pages showing the take re-fetch its comment list (not
    the form beside it, so nobody's typing is lost), each with their own role's controls."""
    on_commit(take.project_id, lambda: render_to_string(f"{SHOT_TEMPLATE}#comments-stale",
                                                        {"take": take}))


EXPORT_TEMPLATE = "storyboard/export.html"


def exports_changed(project_id: int) -> Push:
    """An export was asked for, moved on a shot, finished, failed or was cancelled: the list on
    the export page and the strip on the board (shots done of total, time so far), with
    cancel buttons for editors only (whoever asked for an export sees theirs on the page)."""
    def load() -> dict:
        exports = list(Export.objects.listed(project_id))
        project = Project(pk=project_id)
        return {"project": project, "exports": exports,
                "running_exports": [e for e in exports if e.is_active]}

    def render(context: dict, audience: Audience) -> str:
        base = {**context, "membership": audience, "oob": True}
        return (render_to_string(f"{EXPORT_TEMPLATE}#export-list", base)
                + render_region("export-progress", base))

    return push(project_id, load, render)
