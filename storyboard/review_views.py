"""Review screens: the shot's review panel and its decisions, and the team's review queue."""

from __future__ import annotations

import json
import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from storyboard import comments, notify, review, throttle
from storyboard.access import (
    get_comment_for_user,
    get_membership_for_user,
    get_shot_for_user,
    get_take_for_user,
)
from storyboard.models import Comment, Generation, Shot

# Refused input is answered with the panel again, the typed note kept in it.
INVALID = 422
DECISIONS = (review.Kind.APPROVE, review.Kind.CHANGES, review.Kind.UNAPPROVE,
             review.Kind.FINAL)


@login_required
@require_http_methods(["GET", "POST"])
def shot_review(request: HttpRequest, shot_id: int) -> HttpResponse:
    """GET: the review panel (open shot pages re-fetch it after a decision).
    POST: an editor submits the take on the board, or the one named, for review."""
    shot = get_shot_for_user(request, shot_id, write=request.method == "POST")
    if request.method == "GET":
        if not request.htmx:
            return redirect("sb:shot", shot.pk)
        return _panel(request, shot)
    take = None
    uid = request.POST.get("take", "")
    if uid:
        take = Generation.objects.filter(shot=shot, uid=uid).first() if _is_uuid(uid) else None
        if take is None:
            return _refused(request, shot, "That take is not one of this shot's takes.",
                            note_field="review_note")
    return _decide(request, shot, kind=review.Kind.SUBMIT, take=take, note_field="review_note")


@login_required
@require_POST
def shot_decide(request: HttpRequest, shot_id: int) -> HttpResponse:
    """A reviewer, producer or owner approves the take under review, sends it back with a
    note, or un-approves with a reason."""
    shot = get_shot_for_user(request, shot_id, review=True)
    kind = request.POST.get("decision", "")
    if kind not in DECISIONS:
        return _refused(request, shot, "Choose approve, request changes or un-approve.",
                        note_field="decision_note")
    return _decide(request, shot, kind=kind, note_field="decision_note")


def _decide(request: HttpRequest, shot: Shot, *, kind: str, note_field: str,
            take: Generation | None = None) -> HttpResponse:
    try:
        decision = review.decide(shot=shot, user=request.user, kind=kind,
                                 note=request.POST.get("note", ""),
                                 seen=request.POST.get("seen", ""), take=take)
    except review.ReviewRefused as e:
        return _refused(request, shot, e.message, note_field=note_field)
    if request.htmx:
        return _panel(request, shot)
    messages.success(request, f"{decision.get_kind_display()}: take #{decision.take_id} of "
                              f"{shot.display_title}.")
    return _back(request, shot)


def _panel(request: HttpRequest, shot: Shot, *, status: int = 200, **extra) -> HttpResponse:
    membership = shot.project.membership
    shot = Shot.objects.select_related("project__team", "selected_take").get(pk=shot.pk)
    return render(request, "storyboard/shot.html#review",
                  {"shot": shot, "project": shot.project, "membership": membership, **extra},
                  status=status)


def _refused(request: HttpRequest, shot: Shot, message: str, *, note_field: str) -> HttpResponse:
    """Nothing was decided: say why, and keep what the person typed."""
    if request.htmx:
        return _panel(request, shot, status=INVALID, review_error=message,
                      **{note_field: request.POST.get("note", "")})
    messages.error(request, message)
    return _back(request, shot)


def _back(request: HttpRequest, shot: Shot) -> HttpResponse:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()},
                                                  require_https=request.is_secure()):
        return redirect(target)
    return redirect("sb:shot", shot.pk)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@login_required
@require_GET
def review_queue(request: HttpRequest, team_id: int) -> HttpResponse:
    """Every shot awaiting review across the team's projects, oldest first."""
    membership = get_membership_for_user(request, team_id)
    shots = list(Shot.objects.awaiting_review(team_id=team_id))
    return render(request, "storyboard/review_queue.html",
                  {"team": membership.team, "membership": membership, "shots": shots})


@login_required
@require_http_methods(["GET", "POST"])
def take_comments(request: HttpRequest, take_uid: str) -> HttpResponse:
    """GET: the take's comment list (pages re-fetch it after a push), or the shot page with the
    take in its player. POST: a comment at a frame or range, or a reply."""
    take = get_take_for_user(request, take_uid, comment=request.method == "POST")
    shot = take.shot
    if request.method == "GET":
        if not request.htmx:
            return redirect(f"{reverse('sb:shot', args=[shot.pk])}?take={take.uid}")
        region = "viewer" if request.htmx.target == f"viewer-{shot.pk}" else "comment-list"
        return render(request, f"storyboard/shot.html#{region}",
                      {"take": take, "viewer_take": take, "shot": shot,
                       "membership": shot.project.membership})
    parent = None
    if request.POST.get("parent", "").isdigit():
        parent = Comment.objects.filter(pk=int(request.POST["parent"]), take=take).first()
        if parent is None:
            return _toast("That comment is not on this take any more.")
    try:
        frame, frame_end = _frame(request.POST.get("frame")), _frame(request.POST.get("frame_end"))
        comments.post(take=take, user=request.user, body=request.POST.get("body", ""),
                      frame=frame, frame_end=frame_end, parent=parent,
                      drawing=comments.clean_drawing(request.POST.get("drawing", "")))
    except comments.CommentRefused as e:
        return _toast(e.message) if request.htmx else _flash_back(request, shot, e.message)
    return _comment_list(request, take)


@login_required
@require_POST
def comment_resolve(request: HttpRequest, comment_id: int) -> HttpResponse:
    """Resolve a thread (resolved=1) or reopen it (resolved=0)."""
    comment = get_comment_for_user(request, comment_id, comment=True)
    try:
        comments.set_resolved(comment=comment, user=request.user,
                              resolved=request.POST.get("resolved", "1") == "1")
    except comments.CommentRefused as e:
        return _toast(e.message) if request.htmx else _flash_back(request, comment.take.shot,
                                                                  e.message)
    return _comment_list(request, comment.take)


def _comment_list(request: HttpRequest, take: Generation) -> HttpResponse:
    if not request.htmx:
        return redirect(f"{reverse('sb:shot', args=[take.shot_id])}?take={take.uid}")
    return render(request, "storyboard/shot.html#comment-list",
                  {"take": take, "membership": take.shot.project.membership})


def _frame(value: str | None) -> int | None:
    if value in (None, ""):
        return None
    if not value.isdigit():
        raise comments.CommentRefused("A frame is a whole number from 0.")
    return int(value)


def _toast(message: str) -> HttpResponse:
    """Refused, and the form keeps what was typed: htmx swaps nothing and shows the reason."""
    response = HttpResponse(message, status=INVALID, content_type="text/plain; charset=utf-8")
    response["HX-Reswap"] = "none"
    response["HX-Trigger"] = json.dumps({"showMessage": message})
    return response


def _flash_back(request: HttpRequest, shot: Shot, message: str) -> HttpResponse:
    messages.error(request, message)
    return redirect("sb:shot", shot.pk)


@login_required
@require_http_methods(["GET", "POST"])
def comment_regenerate(request: HttpRequest, comment_id: int) -> HttpResponse:
    """GET: the new take's prompt (the commented take's, then the note) and its price, to
    check first. POST: generate it with the commented take's exact parameters."""
    comment = get_comment_for_user(request, comment_id, write=True)
    take = comment.take
    if request.method == "GET":
        if not request.htmx:
            return redirect(f"{reverse('sb:shot', args=[take.shot_id])}?take={take.uid}")
        recipe = take.shot.recipe_of(take)
        return render(request, "storyboard/shot.html#regenerate",
                      {"comment": comment, "take": take, "prompt": comments.regenerate_prompt(
                          comment), "estimate": recipe.estimate()})
    if wait := throttle.retry_after(request, throttle.GENERATION_START):
        return throttle.refuse(request, "takes started in a minute", wait)
    try:
        comments.regenerate(comment=comment, user=request.user,
                            prompt=request.POST.get("prompt", ""))
    except comments.CommentRefused as e:
        return _toast(e.message) if request.htmx else _flash_back(request, take.shot,
                                                                  e.message)
    if request.htmx:
        response = HttpResponse("")
        response["HX-Trigger"] = json.dumps({"showMessage": "New take queued from the note."})
        return response
    return redirect("sb:shot", take.shot_id)


@login_required
@require_POST
def shot_final(request: HttpRequest, shot_id: int) -> HttpResponse:
    """Render the approved draft final: same seed and inputs, the best tier (price on the
    button, held like any take)."""
    shot = get_shot_for_user(request, shot_id, write=True)
    if wait := throttle.retry_after(request, throttle.GENERATION_START):
        return throttle.refuse(request, "takes started in a minute", wait)
    try:
        review.render_final(shot=shot, user=request.user)
    except review.ReviewRefused as e:
        return _refused(request, shot, e.message, note_field="review_note")
    if request.htmx:
        return _panel(request, shot)
    return _back(request, shot)


@login_required
@require_http_methods(["GET", "POST"])
def notifications(request: HttpRequest) -> HttpResponse:
    """The person's notifications, newest first. POST: mark all read, or turn email on/off."""
    user = request.user
    if request.method == "POST":
        if request.POST.get("email") in ("on", "off"):
            user.email_notifications = request.POST["email"] == "on"
            user.save(update_fields=["email_notifications"])
            messages.success(request, "Notification emails are "
                             f"{'on' if user.email_notifications else 'off'}.")
        else:
            user.notifications.unread().update(read_at=timezone.now())
        notify.push_bell(user)
        return redirect("sb:notifications")
    items = list(user.notifications.select_related("shot")[:100])
    return render(request, "storyboard/notifications.html", {"items": items})


@login_required
@require_GET
def notification_open(request: HttpRequest, notification_id: int) -> HttpResponse:
    """Follow a notification to where it happened, marking it read."""
    item = request.user.notifications.filter(pk=notification_id).first()
    if item is None:
        raise Http404("No such notification")
    if item.read_at is None:
        item.read_at = timezone.now()
        item.save(update_fields=["read_at"])
        notify.push_bell(request.user)
    # Always a path on this site (written by storyboard/notify.py), never an outside address.
    return redirect(item.url if item.url.startswith("/") and not item.url.startswith("//")
                    else "sb:notifications")


@login_required
@require_GET
def shot_compare(request: HttpRequest, shot_id: int) -> HttpResponse:
    """Two finished takes of a shot side by side (or one wiped over the other), in sync."""
    shot = get_shot_for_user(request, shot_id)
    takes = list(shot.takes.filter(state=Generation.State.COMPLETED).exclude(video="")
                 .order_by("-created", "-pk")[:50])
    by_uid = {str(t.uid): t for t in takes}
    a = by_uid.get(request.GET.get("a", "")) or (takes[1] if len(takes) > 1 else None)
    b = by_uid.get(request.GET.get("b", "")) or (takes[0] if takes else None)
    if a is None or b is None:
        a = b = None
    mode = "wipe" if request.GET.get("mode") == "wipe" else "side"
    return render(request, "storyboard/compare.html",
                  {"shot": shot, "project": shot.project, "takes": takes, "a": a, "b": b,
                   "mode": mode})
