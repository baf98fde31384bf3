"""Client review links: a producer or owner shares some shots (or the whole cut) with someone
outside the team, who needs no account.

A link is a random token (`secrets.token_urlsafe(32)`, 256 bits) of which only the sha256 is
stored: the creator sees the address once, right after creating it. A guest opens it, gives
a name (and the password, if the link has one), and then sees only the takes under review of
the shots it covers: the player, the comments, and approve / request changes if the link
allows decisions. Guests write through the same two paths as the team (comments.post,
review.decide), so the conditional update, the pushes and the notifications are the same.

An expired or revoked link opens nothing, whatever a guest's session says: every request
opens the link again by its token.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.hashers import check_password, make_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from storyboard import comments, review
from storyboard.models import (
    Comment,
    Generation,
    Project,
    ReviewDecision,
    ReviewLink,
    Shot,
    secret_digest,
)

EXPIRY_DAYS = (1, 7, 30)
DEFAULT_EXPIRY_DAYS = 7
PASSWORD_MIN = 6
PASSWORD_MAX = 128
NAME_LIMIT = ReviewLink._meta.get_field("label").max_length
GUEST_NAME_LIMIT = Comment._meta.get_field("guest_name").max_length

NOT_FOUND, GONE = 404, 410


class LinkRefused(Exception):
    """A link that opens nothing (or a change to links that was not made): `status` is the
    HTTP answer, the message says why in plain words."""

    def __init__(self, message: str, *, status: int = 403) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Guest:
    """Who is behind a link, as they named themselves (kept in their session)."""

    name: str
    email: str = ""


def create_link(*, project: Project, user: User, label: str = "",
                shots: Iterable[Shot] | None = None, expires_in_days: int = DEFAULT_EXPIRY_DAYS,
                password: str = "", allow_decisions: bool = False) -> tuple[ReviewLink, str]:
    """A new link to `shots` (None: the whole cut). Returns the link and its token, which is
    never stored and so can be shown only now."""
    membership = user.membership_in(project.team_id)
    if membership is None or not membership.can_share:
        raise LinkRefused("Only producers and owners share work outside the team.")
    label = label.strip()
    if len(label) > NAME_LIMIT:
        raise LinkRefused(f"Keep the title under {NAME_LIMIT} characters "
                          f"(it has {len(label)}).")
    if expires_in_days not in EXPIRY_DAYS:
        raise LinkRefused("Choose how long the link works: 1, 7 or 30 days.")
    if password and not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise LinkRefused(f"A password has {PASSWORD_MIN} to {PASSWORD_MAX} characters; "
                          "or leave it empty for none.")
    chosen: list[Shot] = []
    if shots is not None:
        chosen = list(shots)
        if not chosen:
            raise LinkRefused("Choose at least one shot, or share the whole cut.")
        if any(shot.project_id != project.pk for shot in chosen):
            raise LinkRefused("Only shots of this project can be shared from it.")
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        link = ReviewLink.objects.create(
            project=project, label=label, created_by=user,
            scope=ReviewLink.Scope.CUT if shots is None else ReviewLink.Scope.SHOTS,
            token_hash=secret_digest(token),
            password=make_password(password) if password else "",
            allow_decisions=allow_decisions,
            expires_at=timezone.now() + timedelta(days=expires_in_days))
        if chosen:
            link.shots.set(chosen)
    return link, token


def revoke_link(*, link: ReviewLink, user: User) -> ReviewLink:
    """Close the link at once; a guest's next request is refused. Revoking twice is a no-op."""
    membership = user.membership_in(link.project.team_id)
    if membership is None or not membership.can_share:
        raise LinkRefused("Only producers and owners revoke review links.")
    now = timezone.now()
    # Conditional, so the first revocation's who and when are kept.
    ReviewLink.objects.filter(pk=link.pk, revoked_at=None).update(revoked_at=now,
                                                                  revoked_by=user)
    link.refresh_from_db(fields=["revoked_at", "revoked_by"])
    return link


def open_link(*, token: str) -> ReviewLink:
    """The live link the token opens; raises LinkRefused (404 unknown, 410 expired or
    revoked)."""
    link = ReviewLink.objects.by_token(token).select_related("project").first()
    if link is None:
        raise LinkRefused("This review link does not exist. Check that the whole address was "
                          "copied, or ask whoever sent it for a new one.", status=NOT_FOUND)
    if link.state == ReviewLink.State.REVOKED:
        raise LinkRefused("This review link was turned off by the team that shared it. Ask "
                          "them for a new one if you still need it.", status=GONE)
    if link.state == ReviewLink.State.EXPIRED:
        raise LinkRefused(f"This review link expired on {link.expires_at:%d %B %Y}. Ask the "
                          "team that shared it for a new one.", status=GONE)
    return link


def password_ok(*, link: ReviewLink, password: str) -> bool:
    """True for a link without a password; else whether `password` is its password (compared
    by Django's hasher, in constant time)."""
    return not link.password or check_password(password, link.password)


def clean_guest(*, name: str, email: str = "") -> Guest:
    """The name (and optional email) a guest gives; raises LinkRefused (422) saying what to fix."""
    name, email = " ".join(name.split()), email.strip()
    if not name:
        raise LinkRefused("Give your name: the team sees it beside your comments.", status=422)
    if len(name) > GUEST_NAME_LIMIT:
        raise LinkRefused(f"Keep your name under {GUEST_NAME_LIMIT} characters.", status=422)
    if email:
        try:
            validate_email(email)
        except ValidationError:
            raise LinkRefused(f"“{email}” is not an email address; correct it or leave it "
                              "empty.", status=422) from None
    return Guest(name=name, email=email)


def enter(*, link: ReviewLink) -> None:
    """A guest named themselves: count the visit."""
    link.touch(entered=True)


def guest_comment(*, link: ReviewLink, guest: Guest, take: Generation, body: str,
                  frame: int | None = None, frame_end: int | None = None,
                  parent: Comment | None = None, drawing: list[dict] | None = None) -> Comment:
    """A guest's comment through comments.post; raises comments.CommentRefused."""
    comment = comments.post(take=take, user=None, body=body, frame=frame, frame_end=frame_end,
                            parent=parent, drawing=drawing, guest_name=guest.name,
                            guest_email=guest.email, review_link=link)
    link.touch()
    return comment


def guest_decide(*, link: ReviewLink, guest: Guest, shot: Shot, kind: str, note: str = "",
                 seen: str = "") -> ReviewDecision:
    """A guest's decision through review.decide; raises review.ReviewRefused."""
    decision = review.decide(shot=shot, user=None, kind=kind, note=note, seen=seen,
                             guest_name=guest.name, guest_email=guest.email, review_link=link)
    link.touch()
    return decision
