from __future__ import annotations

from django.http import HttpRequest


def teams(request: HttpRequest) -> dict:
    """The team switcher in the header needs the user's teams on every page."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"my_teams": user.teams(), "current_team": user.current_team,
            "unread_count": user.notifications.filter(read_at=None).count()}
