"""Pushes to everyone looking at a board.

Messages are rendered HTML: the same `{% partialdef %}` regions htmx requests get, each with an
id, so the htmx websocket extension swaps them in place. Callers broadcast explicitly, after the
transaction that made the change commits, so nobody sees a change that was rolled back.
"""

from __future__ import annotations

from collections.abc import Callable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.template.loader import render_to_string

BOARD_TEMPLATE = "storyboard/board.html"


def project_group(project_id: int) -> str:
    return f"project-{project_id}"


def user_group(user_id: int) -> str:
    return f"user-{user_id}"


def send_html(project_id: int, html: str) -> None:
    async_to_sync(get_channel_layer().group_send)(
        project_group(project_id), {"type": "board.html", "html": html}
    )


def on_commit(project_id: int, render: Callable[[], str]) -> None:
    """Render and send once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: send_html(project_id, render()))


def render_region(region: str, context: dict) -> str:
    return render_to_string(f"{BOARD_TEMPLATE}#{region}", {**context, "oob": True})


def broadcast_board(project) -> None:
    from storyboard.views import board_context

    on_commit(project.pk, lambda: render_region("board", board_context(project)))


def broadcast_shot(shot) -> None:
    on_commit(shot.project_id, lambda: render_region("shot-card", {"shot": shot,
                                                                   "project": shot.project}))


def broadcast_assets(project) -> None:
    from storyboard.views import assets_context

    # The library grid for anyone on the assets page, the counter for anyone on the board.
    on_commit(project.pk, lambda: render_to_string(
        "storyboard/assets.html#asset-grid", {**assets_context(project), "oob": True}
    ) + render_region("asset-count", {"project": project}))


def broadcast_presence(project_id: int) -> None:
    from storyboard.models import Presence

    def render() -> str:
        return render_region("presence", {"viewers": Presence.objects.viewers(project_id)})

    on_commit(project_id, render)


def revoke_access(*, user_id: int, team_id: int) -> None:
    """Close the user's open sockets on this team's boards (called when a member is removed)."""
    transaction.on_commit(
        lambda: async_to_sync(get_channel_layer().group_send)(
            user_group(user_id), {"type": "access.revoked", "team_id": team_id}
        )
    )
