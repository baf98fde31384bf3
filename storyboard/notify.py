"""Notifications: who hears about a mention, a reply or a review decision, and how.

Written with the change that caused them; after commit each person's bell is pushed to every
page they have open (their user group) and, unless they turned it off, an email goes out
through Django's email backend (the console by default). A failing mail server is logged,
never an error for the person who commented.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string

from accounts.models import Membership, User
from storyboard import realtime
from storyboard.models import Comment, Notification, ReviewDecision, Shot, ShotChange

logger = logging.getLogger(__name__)


# "@username": not inside a word or an email address.
MENTION = re.compile(r"(?<![\w@])@([\w.+-]+)")


def mentioned(comment: Comment, *, team_id: int) -> set[int]:
    """Team members named with @username in the comment (anyone else's name is just text)."""
    names = {m.group(1) for m in MENTION.finditer(comment.body)}
    if not names:
        return set()
    return set(Membership.objects.filter(team_id=team_id, user__username__in=names)
               .values_list("user_id", flat=True))


def comment_posted(comment: Comment, *, shot: Shot) -> None:
    """Mentions, a reply to everyone else in the thread, and a guest's comment to whoever
    shared the link it came through."""
    author = comment.user_id
    where = f"/shots/{shot.pk}/?take={comment.take.uid}#comment-{comment.pk}"
    who = comment.author_label
    excerpt = comment.body if len(comment.body) <= 120 else comment.body[:119] + "…"
    mentions = mentioned(comment, team_id=shot.project.team_id) - {author}
    _notify(mentions, kind=Notification.Kind.MENTION, shot=shot, url=where,
            text=f"{who} mentioned you on {shot.display_title}: {excerpt}")
    if comment.parent_id:
        thread = Comment.objects.filter(pk=comment.parent_id).values_list("user_id", flat=True)
        repliers = Comment.objects.filter(parent_id=comment.parent_id).values_list(
            "user_id", flat=True)
        people = ({*thread, *repliers} - {author, None}) - mentions
        _notify(people, kind=Notification.Kind.REPLY, shot=shot, url=where,
                text=f"{who} replied on {shot.display_title}: {excerpt}")
    else:
        people = set()
    if comment.review_link_id:
        # Whoever shared the link hears of every guest's note, named or not.
        creator = {comment.review_link.created_by_id} - mentions - people - {None}
        _notify(creator, kind=Notification.Kind.GUEST, shot=shot, url=where,
                text=f"{who} commented on {shot.display_title}: {excerpt}")


def decision_made(decision: ReviewDecision, *, shot: Shot) -> None:
    """Everyone who worked on the shot hears of a decision on it (not the one who made it)."""
    editors = set(ShotChange.objects.filter(shot=shot).values_list("user_id", flat=True))
    makers = set(shot.takes.values_list("created_by_id", flat=True))
    # A guest's decision also reaches whoever shared the link they decided through.
    sharer = decision.review_link.created_by_id if decision.review_link_id else None
    people = ({*editors, *makers, shot.created_by_id, sharer} - {decision.user_id, None})
    who = decision.author_label
    note = f": {decision.note[:100]}" if decision.note else ""
    _notify(people, kind=Notification.Kind.DECISION, shot=shot,
            url=f"/shots/{shot.pk}/#review-{shot.pk}",
            text=f"{who} {decision.verb} take #{decision.take_id} of {shot.display_title}{note}")


def _notify(user_ids: Iterable[int], *, kind: str, shot: Shot, url: str, text: str) -> None:
    # Only people who can still see the shot: a member who left hears nothing of it.
    members = set(Membership.objects.filter(team_id=shot.project.team_id,
                                            user_id__in=set(user_ids))
                  .values_list("user_id", flat=True))
    if not members:
        return
    Notification.objects.bulk_create(
        Notification(user_id=uid, kind=kind, text=text[:300], url=url, shot=shot)
        for uid in members)
    transaction.on_commit(lambda: _deliver(members, text=text, url=url))


def _deliver(user_ids: set[int], *, text: str, url: str) -> None:
    for user in User.objects.filter(pk__in=user_ids):
        push_bell(user)
        if user.email and user.email_notifications and settings.MAILERS.get("default"):
            try:
                send_mail(subject=f"Storyboard: {text[:80]}",
                          message=f"{text}\n\n{settings.SITE_URL}{url}\n\nTurn these emails "
                                  f"off at {settings.SITE_URL}/notifications/",
                          from_email=None, recipient_list=[user.email])
            except Exception:
                logger.exception("notification email to user %s failed", user.pk)


def push_bell(user: User) -> None:
    """The bell with the person's unread count, to every page they have open."""
    count = Notification.objects.filter(user=user).unread().count()
    html = render_to_string("base.html#bell", {"unread_count": count, "oob": True})
    realtime.send_to_user(user.pk, html)
