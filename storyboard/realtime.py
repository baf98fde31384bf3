"""Pushes to everyone looking at a board.

Messages are rendered HTML: the same `{% partialdef %}` regions htmx requests get, each with an
id, so the htmx websocket extension swaps them in place. Callers broadcast explicitly, after the
transaction that made the change commits, so nobody sees a change that was rolled back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.core.cache import cache
from django.db import transaction
from django.template.loader import render_to_string

from storyboard.models import Budget, Generation, Presence, Project, Shot, ShotChange
from storyboard.selectors import assets_context, board_context

BOARD_TEMPLATE = "storyboard/board.html"


def project_group(project_id: int) -> str:
    return f"project-{project_id}"


def user_group(user_id: int) -> str:
    return f"user-{user_id}"


# The event loop of the ASGI server in this process, noted by the first consumer to connect.
_server_loop: asyncio.AbstractEventLoop | None = None


def remember_server_loop() -> None:
    global _server_loop
    _server_loop = asyncio.get_running_loop()


def _send(group: str, message: dict) -> None:
    """Every push leaves through here, whichever thread it is sent from."""
    layer = get_channel_layer()
    loop = _server_loop
    if isinstance(layer, InMemoryChannelLayer) and loop is not None and loop.is_running():
        # The in-memory layer's queues belong to the server's loop; a worker thread must hand
        # the send to that loop, or the waiting consumer is not woken up.
        future = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), loop)
        if not _running_in(loop):
            future.result(timeout=5)
        return
    async_to_sync(layer.group_send)(group, message)


def _running_in(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _after_commit(send: Callable[[], None]) -> None:
    """Run `send` once the current transaction commits (at once outside one).

    Every push goes through here, so nobody is shown a change that was then rolled back.
    """
    transaction.on_commit(send)


def send_html(project_id: int, html: str) -> None:
    _send(project_group(project_id), {"type": "board.html", "html": html})


def on_commit(project_id: int, render: Callable[[], str]) -> None:
    """Render and send to the project's boards once the current transaction commits."""
    _after_commit(lambda: send_html(project_id, render()))


def render_region(region: str, context: dict) -> str:
    return render_to_string(f"{BOARD_TEMPLATE}#{region}", {**context, "oob": True})


def broadcast_board(project: Project) -> None:
    on_commit(project.pk, lambda: render_region("board", board_context(project)))


def broadcast_shot(shot: Shot) -> None:
    on_commit(shot.project_id, lambda: render_region("shot-card", {"shot": shot,
                                                                   "project": shot.project}))


def broadcast_assets(project: Project) -> None:
    # The library grid for anyone on the assets page, the counter for anyone on the board.
    on_commit(project.pk, lambda: render_to_string(
        "storyboard/assets.html#asset-grid", {**assets_context(project), "oob": True}
    ) + render_region("asset-count", {"project": project}))


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


def broadcast_take(take: Generation) -> None:
    """A take moved: its row in the shot editor and the status strip on its card."""
    def render() -> str:
        fresh = Generation.objects.select_related("shot").get(pk=take.pk)
        shot = fresh.shot
        if fresh.state in (Generation.State.PENDING, Generation.State.HELD) or fresh.is_terminal:
            # New or finished: the whole list, so open editors gain or reorder the row.
            html = render_to_string("storyboard/shot.html#take-list",
                                    {"shot": shot, "oob": True})
        else:
            html = render_to_string("storyboard/shot.html#take", {"take": fresh, "oob": True})
        if fresh.is_terminal:
            # A finished take may become the card's picture; send the whole card.
            return html + render_region("shot-card", {"shot": shot, "project": shot.project})
        return html + render_region("shot-status", {"shot": shot})

    on_commit(take.project_id, render)


def broadcast_budget_notice(*, budget: Budget, threshold: int | None, overrun: int = 0) -> None:
    """Tell producers on every board of the team that the budget passed a threshold, or that
    a take cost more than its hold (`overrun`, which the notice then leads with)."""
    def render() -> str:
        return render_region("budget-notice", {"budget": budget, "threshold": threshold,
                                               "overrun": overrun, "team": budget.team,
                                               "oob": True})

    for project_id in Project.objects.filter(team_id=budget.team_id).values_list("pk", flat=True):
        on_commit(project_id, render)


def broadcast_overrun(*, budget: Budget, overrun: int) -> None:
    """A take cost `overrun` more than its hold: producers on every board of the team hear it."""
    broadcast_budget_notice(budget=budget, threshold=None, overrun=overrun)


SHOT_TEMPLATE = "storyboard/shot.html"


def broadcast_shot_edit(*, shot: Shot, change: ShotChange, form) -> None:
    """A saved edit or undo: its fields to every editor open on the shot, and their history.

    `form` is an unbound ShotForm of the stored shot (realtime does not import forms). An
    editor whose person has typed in one of these fields keeps the typing (static/js/live.js);
    the history region re-fetches itself, so each role gets its own controls.
    """
    def render() -> str:
        fields = "".join(render_to_string(f"{SHOT_TEMPLATE}#editor-field",
                                          {"shot": shot, "field": form[name], "oob": True})
                         for name in change.changes)
        return fields + render_to_string(f"{SHOT_TEMPLATE}#history-stale", {"shot": shot})

    on_commit(shot.project_id, render)


def broadcast_take_list(shot: Shot) -> None:
    """The shot's takes in every open editor (the one on the board is marked)."""
    on_commit(shot.project_id, lambda: render_to_string(f"{SHOT_TEMPLATE}#take-list",
                                                        {"shot": shot, "oob": True}))
