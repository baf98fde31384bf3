"""Review sessions: start one on a project, take part in one, hand over control, end it."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts.models import User
from storyboard import sessions
from storyboard.access import get_project_for_user, get_session_for_user
from storyboard.models import Generation, Project, ReviewSession, Shot

INVALID = 422


@login_required
@require_http_methods(["GET", "POST"])
def review_sessions(request: HttpRequest, project_id: int) -> HttpResponse:
    """GET: the project's sessions (join a live one) and the form to start one.
    POST: start a session on the shots in review, or on the shots chosen."""
    project = get_project_for_user(request, project_id, comment=request.method == "POST")
    if request.method == "POST":
        which = request.POST.get("shots", "review")
        shot_ids = None
        if which == "chosen":
            try:
                shot_ids = [int(pk) for pk in request.POST.getlist("shot")]
            except ValueError:
                shot_ids = []
        try:
            session = sessions.start(project=project, user=request.user, shot_ids=shot_ids,
                                     title=request.POST.get("title", ""))
        except sessions.SessionRefused as e:
            return _list(request, project, status=INVALID, error=e.message)
        return redirect("sb:review-session", session.pk)
    return _list(request, project)


def _list(request: HttpRequest, project: Project, *, status: int = 200,
          error: str = "") -> HttpResponse:
    shots = [shot for _, board_shots in project.board() for shot in board_shots]
    for number, shot in enumerate(shots, 1):
        shot._number = number
    context = {
        "project": project, "membership": project.membership, "shots": shots,
        "in_review": sum(shot.review == Shot.Review.IN_REVIEW for shot in shots),
        "live": project.review_sessions.live().select_related("presenter"),
        "past": project.review_sessions.exclude(ended=None).select_related("started_by")[:10],
        "error": error, "posted": request.POST if status != 200 else None,
        "chosen": set(request.POST.getlist("shot")) if status != 200 else set(),
    }
    return render(request, "storyboard/sessions.html", context, status=status)


@login_required
@require_http_methods(["GET"])
def review_session(request: HttpRequest, session_id: int) -> HttpResponse:
    """The session page; with htmx, only the stage (the item, take and compare asked for:
    session.js asks for what the presenter shows)."""
    session = get_session_for_user(request, session_id)
    playlist = session.playlist()
    for number, shot in _numbered(session.project, playlist):
        shot._number = number
    stage = _stage(request, session, playlist)
    context = {"session": session, "project": session.project, "playlist": playlist,
               "membership": session.project.membership, **stage}
    if request.htmx:
        return render(request, "storyboard/session.html#stage", context)
    return render(request, "storyboard/session.html", context)


def _numbered(project: Project, shots: list[Shot]) -> list[tuple[int, Shot]]:
    order = {shot.pk: n for n, shot in enumerate(
        (s for _, board_shots in project.board() for s in board_shots), 1)}
    return [(order.get(shot.pk, 0), shot) for shot in shots]


def _stage(request: HttpRequest, session: ReviewSession, playlist: list[Shot]) -> dict:
    """What the stage shows: the query's item, take and compare take where they are valid,
    else the session's stored state (a first load lands where the presenter is)."""
    state = session.state or {}
    asked = request.GET if "item" in request.GET else state
    try:
        item = int(asked.get("item", 0))
    except (TypeError, ValueError):
        item = 0
    if not playlist:
        return {"item": 0, "shot": None, "take": None, "compare": None, "takes": [],
                "mode": "side"}
    item = max(0, min(item, len(playlist) - 1))
    shot = playlist[item]
    takes = list(Generation.objects.filter(shot=shot, state=Generation.State.COMPLETED)
                 .exclude(video="").order_by("-created", "-pk"))
    by_uid = {str(take.uid): take for take in takes}
    take = by_uid.get(str(asked.get("take") or "")) or shot.take_to_review() or \
        (takes[0] if takes else None)
    if take is not None and str(take.uid) not in by_uid:
        take = takes[0] if takes else None
    compare = by_uid.get(str(asked.get("compare") or ""))
    mode = asked.get("mode") if asked.get("mode") in sessions.MODES else "side"
    return {"item": item, "shot": shot, "take": take, "compare": compare, "takes": takes,
            "mode": mode}


@login_required
@require_POST
def session_control(request: HttpRequest, session_id: int) -> HttpResponse:
    """Hand control to a participant (`to`), or take it back."""
    session = get_session_for_user(request, session_id)
    to = User.objects.filter(pk=request.POST.get("to", "") or 0, is_active=True).first() \
        if request.POST.get("to", "").isdigit() else None
    try:
        if to is None:
            raise sessions.SessionRefused("Choose whom to hand control to.")
        sessions.hand_over(session=session, user=request.user, to=to)
    except sessions.SessionRefused as e:
        return _refused(request, session, e.message)
    if request.htmx:
        return _header(request, session)
    return redirect("sb:review-session", session.pk)


@login_required
@require_POST
def session_end(request: HttpRequest, session_id: int) -> HttpResponse:
    session = get_session_for_user(request, session_id)
    try:
        sessions.end(session=session, user=request.user)
    except sessions.SessionRefused as e:
        return _refused(request, session, e.message)
    messages.success(request, f"Ended “{session.title}”.")
    return redirect("sb:review-sessions", session.project_id)


def _header(request: HttpRequest, session: ReviewSession, *, status: int = 200,
            error: str = "") -> HttpResponse:
    session = ReviewSession.objects.select_related("presenter", "started_by", "project") \
        .get(pk=session.pk)
    return render(request, "storyboard/session.html#header",
                  {"session": session, "error": error,
                   "membership": request.user.membership_in(session.project.team_id)},
                  status=status)


def _refused(request: HttpRequest, session: ReviewSession, message: str) -> HttpResponse:
    if request.htmx:
        return _header(request, session, status=INVALID, error=message)
    messages.error(request, message)
    return redirect("sb:review-session", session.pk)
