"""Review links: the producers' and owners' page that shares and revokes them, and the pages a
guest sees through one (no account, no team chrome, only what was shared)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from storyboard import comments, review, sharing, throttle
from storyboard.access import get_project_for_user, get_review_link_for_user
from storyboard.forms import ReviewLinkForm
from storyboard.models import Comment, Generation, Project, ReviewLink, Shot
from storyboard.serving import serve_file

INVALID = 422
# Each guest's name, per link, in their own session: {"<link id>": {"name":…, "email":…}}.
SESSION_KEY = "review_links"
# The address of a link just made, shown once on the page the creator is sent back to.
NEW_LINK_KEY = "review_link_new"


def link_url(token: str) -> str:
    return settings.SITE_URL + reverse("sb:guest", args=[token])


# Sharing (producers and owners)


@login_required
@require_http_methods(["GET", "POST"])
def share(request: HttpRequest, project_id: int) -> HttpResponse:
    """GET: the project's review links and a form for a new one. POST: create it; its address
    is shown once (only its hash is kept)."""
    project = get_project_for_user(request, project_id, share=True)
    new_link = None
    if request.method == "POST":
        form = ReviewLinkForm(request.POST, project=project)
        if form.is_valid():
            data = form.cleaned_data
            try:
                link, token = sharing.create_link(
                    project=project, user=request.user, label=data["label"],
                    shots=data["link_shots"] if data["scope"] == ReviewLink.Scope.SHOTS else None,
                    expires_in_days=data["expires_in"], password=data["password"],
                    allow_decisions=data["allow_decisions"])
            except sharing.LinkRefused as e:
                form.add_error(None, e.message)
        if form.errors:
            return _manager(request, project, form=form, status=INVALID)
        new_link = {"id": link.pk, "url": link_url(token)}
        if not request.htmx:
            request.session[NEW_LINK_KEY] = new_link
            return redirect("sb:share", project.pk)
        form = ReviewLinkForm(project=project)
    else:
        form = ReviewLinkForm(project=project)
        new_link = request.session.pop(NEW_LINK_KEY, None)
    return _manager(request, project, form=form, new_link=new_link)


@login_required
@require_POST
def share_revoke(request: HttpRequest, link_id: int) -> HttpResponse:
    """Turn a link off at once: a guest's next request is refused."""
    link = get_review_link_for_user(request, link_id)
    try:
        sharing.revoke_link(link=link, user=request.user)
    except sharing.LinkRefused as e:
        messages.error(request, e.message)
        return redirect("sb:share", link.project_id)
    if request.htmx:
        return _manager(request, link.project, form=ReviewLinkForm(project=link.project))
    messages.success(request, f"“{link.title}” is revoked; it opens nothing any more.")
    return redirect("sb:share", link.project_id)


def _manager(request: HttpRequest, project: Project, *, form: ReviewLinkForm,
             new_link: dict | None = None, status: int = 200) -> HttpResponse:
    links = list(project.review_links.select_related("created_by", "revoked_by")
                 .prefetch_related("shots"))
    template = "storyboard/share.html#manager" if request.htmx else "storyboard/share.html"
    return render(request, template, {"project": project, "membership": project.membership,
                                      "links": links, "form": form, "new_link": new_link},
                  status=status)


# Guests


def guest_page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Open the link by its token before the view runs; an unknown, expired or revoked link
    gets a page saying so (404, 410), and too many unknown tokens from one client a 429."""
    @wraps(view)
    def wrapper(request: HttpRequest, link_token: str, **kwargs) -> HttpResponse:
        if wait := throttle.retry_after(request, throttle.GUEST_MISS, count=False):
            return _too_many(request, "addresses that open nothing", wait)
        try:
            link = sharing.open_link(token=link_token)
        except sharing.LinkRefused as e:
            if e.status == sharing.NOT_FOUND:
                throttle.record(request, throttle.GUEST_MISS)
            return _refused(request, e.message, status=e.status)
        return view(request, link, token=link_token, **kwargs)
    return wrapper


def _guest(request: HttpRequest, link: ReviewLink) -> sharing.Guest | None:
    entry = request.session.get(SESSION_KEY, {}).get(str(link.pk))
    return sharing.Guest(name=entry["name"], email=entry.get("email", "")) if entry else None


def _remember(request: HttpRequest, link: ReviewLink, guest: sharing.Guest) -> None:
    entries = dict(request.session.get(SESSION_KEY, {}))
    entries[str(link.pk)] = {"name": guest.name, "email": guest.email}
    request.session[SESSION_KEY] = entries


@guest_page
@require_http_methods(["GET", "POST"])
def guest(request: HttpRequest, link: ReviewLink, *, token: str) -> HttpResponse:
    """The link's landing page: the guest gives a name (and the password, if it has one)."""
    if request.method == "GET":
        if _guest(request, link):
            return redirect("sb:guest-review", token)
        return _landing(request, link, token=token)
    if wait := throttle.retry_after(request, throttle.GUEST_POST):
        return _too_many(request, "requests from your network", wait)
    name, email = request.POST.get("name", ""), request.POST.get("email", "")
    try:
        visitor = sharing.clean_guest(name=name, email=email)
    except sharing.LinkRefused as e:
        return _landing(request, link, token=token, error=e.message, status=e.status)
    if link.has_password:
        within = str(link.pk)
        if wait := throttle.retry_after(request, throttle.GUEST_PASSWORD, count=False,
                                        within=within):
            return _too_many(request, "wrong passwords for this link", wait)
        if not sharing.password_ok(link=link, password=request.POST.get("password", "")):
            throttle.record(request, throttle.GUEST_PASSWORD, within=within)
            return _landing(request, link, token=token, status=403,
                            error="That password is not right. Check it with whoever sent "
                                  "you the link.")
    _remember(request, link, visitor)
    sharing.enter(link=link)
    return redirect("sb:guest-review", token)


def _landing(request: HttpRequest, link: ReviewLink, *, token: str, error: str = "",
             status: int = 200) -> HttpResponse:
    return render(request, "storyboard/guest.html",
                  {"page": "landing", "link": link, "guest_token": token, "error": error,
                   "name": request.POST.get("name", ""), "email": request.POST.get("email", "")},
                  status=status)


@guest_page
@require_GET
def guest_review(request: HttpRequest, link: ReviewLink, *, token: str) -> HttpResponse:
    """What was shared: each shot's take under review in the player, with its comments and,
    if the link allows, approve / request changes."""
    visitor = _guest(request, link)
    if visitor is None:
        return redirect("sb:guest", token)
    shots = link.shots_to_review()
    shot = next((s for s in shots if str(s.pk) == request.GET.get("shot")),
                shots[0] if shots else None)
    # Last used, to the minute: enough for the sharer, without a write per page view.
    if link.last_used is None or timezone.now() - link.last_used > timedelta(minutes=1):
        link.touch()
    return render(request, "storyboard/guest.html",
                  {"page": "review", "link": link, "guest_token": token, "guest": visitor,
                   "shots": shots, "shot": shot, "take": shot.review_take if shot else None})


@guest_page
@require_GET
def guest_take_file(request: HttpRequest, link: ReviewLink, *, token: str, take_uid: str,
                    kind: str) -> HttpResponse:
    """A shown take's video or poster, with byte ranges for seeking; nothing else."""
    if _guest(request, link) is None:
        return redirect("sb:guest", token)
    take = link.take_shown(take_uid)
    served = {"video": "video/mp4", "poster": "image/jpeg"}
    if take is None or kind not in served:
        raise Http404("No such file")
    field = take.video if kind == "video" else take.poster
    if not field:
        raise Http404("No such file")
    return serve_file(field, served[kind], request=request)


@guest_page
@require_http_methods(["GET", "POST"])
def guest_comments(request: HttpRequest, link: ReviewLink, *, token: str,
                   take_uid: str) -> HttpResponse:
    """GET: a shown take's comments (after a guest's own post). POST: a comment at a frame or
    range, or a reply."""
    visitor = _guest(request, link)
    if visitor is None:
        return redirect("sb:guest", token)
    take = link.take_shown(take_uid)
    if take is None:
        raise Http404("No such take")
    if request.method == "POST":
        if wait := throttle.retry_after(request, throttle.GUEST_POST):
            return _too_many(request, "comments from your network", wait)
        parent = None
        if request.POST.get("parent", "").isdigit():
            parent = Comment.objects.filter(pk=int(request.POST["parent"]), take=take).first()
            if parent is None:
                return _toast_or_back(request, token, take,
                                      "That comment is not on this take any more.")
        try:
            sharing.guest_comment(
                link=link, guest=visitor, take=take, body=request.POST.get("body", ""),
                frame=_frame(request.POST.get("frame")),
                frame_end=_frame(request.POST.get("frame_end")), parent=parent,
                drawing=comments.clean_drawing(request.POST.get("drawing", "")))
        except comments.CommentRefused as e:
            return _toast_or_back(request, token, take, e.message)
    if not request.htmx:
        return _back(token, take.shot_id)
    return render(request, "storyboard/guest.html#comment-list",
                  {"link": link, "guest_token": token, "take": take})


@guest_page
@require_POST
def guest_decide(request: HttpRequest, link: ReviewLink, *, token: str,
                 shot_id: int) -> HttpResponse:
    """Approve the shared take, or send it back with a note, if the link allows it."""
    visitor = _guest(request, link)
    if visitor is None:
        return redirect("sb:guest", token)
    shot = Shot.objects.select_related("project").filter(pk=shot_id,
                                                         project_id=link.project_id).first()
    if shot is None or not link.shows(shot):
        raise Http404("No such shot")
    if wait := throttle.retry_after(request, throttle.GUEST_POST):
        return _too_many(request, "decisions from your network", wait)
    kind = request.POST.get("decision", "")
    try:
        if kind not in review.GUEST_KINDS:
            raise review.ReviewRefused("Choose approve or request changes.")
        decision = sharing.guest_decide(link=link, guest=visitor, shot=shot, kind=kind,
                                        note=request.POST.get("note", ""),
                                        seen=request.POST.get("seen", ""))
    except review.ReviewRefused as e:
        if request.htmx:
            return _decision(request, link, token=token, shot=shot, status=INVALID,
                             error=e.message, note=request.POST.get("note", ""))
        messages.error(request, e.message)
        return _back(token, shot.pk)
    done = f"You {decision.verb} this take of {shot.display_title}; the team has been told."
    if request.htmx:
        return _decision(request, link, token=token, shot=shot, done=done)
    messages.success(request, done)
    return _back(token, shot.pk)


def _decision(request: HttpRequest, link: ReviewLink, *, token: str, shot: Shot,
              status: int = 200, **extra) -> HttpResponse:
    shot = Shot.objects.select_related("review_take").get(pk=shot.pk)
    return render(request, "storyboard/guest.html#decision",
                  {"link": link, "guest_token": token, "shot": shot, **extra}, status=status)


def _back(token: str, shot_id: int) -> HttpResponse:
    return redirect(f"{reverse('sb:guest-review', args=[token])}?shot={shot_id}")


def _frame(value: str | None) -> int | None:
    if value in (None, ""):
        return None
    if not value.isdigit():
        raise comments.CommentRefused("A frame is a whole number from 0.")
    return int(value)


def _toast_or_back(request: HttpRequest, token: str, take: Generation,
                   message: str) -> HttpResponse:
    """Refused: htmx swaps nothing (the typed comment stays) and shows why; a plain form
    goes back to the page with the reason."""
    if not request.htmx:
        messages.error(request, message)
        return _back(token, take.shot_id)
    response = HttpResponse(message, status=INVALID, content_type="text/plain; charset=utf-8")
    response["HX-Reswap"] = "none"
    response["HX-Trigger"] = json.dumps({"showMessage": message})
    return response


def _refused(request: HttpRequest, message: str, *, status: int) -> HttpResponse:
    if request.htmx:
        response = HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")
        response["HX-Reswap"] = "none"
        return response
    return render(request, "storyboard/guest.html", {"page": "refused", "refusal": message},
                  status=status)


def _too_many(request: HttpRequest, what: str, seconds: int) -> HttpResponse:
    return throttle.refuse(request, what, seconds, template="storyboard/guest.html",
                           context={"page": "refused"})
