"""Pushes to everyone looking at a board.

Messages are rendered HTML: the same `{% partialdef %}` regions htmx requests get, each with an
id, so the htmx websocket extension swaps them in place. Callers broadcast explicitly, after the
transaction that made the change commits, so nobody sees a change that was rolled back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
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


def broadcast_presence(project_id: int) -> None:
    def render() -> str:
        return render_region("presence", {"viewers": Presence.objects.viewers(project_id)})

    on_commit(project_id, render)


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
