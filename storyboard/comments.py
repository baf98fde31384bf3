"""Comments on takes: at a frame or a frame range, threaded one level, resolved and reopened.

Every write checks who may (everyone but viewers), writes, and after commit tells every open
page showing the take to re-fetch its comment list; the form someone is typing in is not part
of that list, so nobody's note is thrown away by someone else's.
"""

from __future__ import annotations

import json
import re

from django.db import transaction
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from accounts.models import Membership, User
from storyboard import house, notify, realtime
from storyboard.models import Comment, Generation, ReviewLink

BODY_LIMIT = Comment._meta.get_field("body").max_length


class CommentRefused(Exception):
    """A comment that was not written; the message says why, in plain words."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def frame_rate(take: Generation) -> float:
    """Takes are normalised to the house format; a take that says otherwise is believed."""
    return float(getattr(take, "frame_rate", None) or house.FPS)


def frame_count(take: Generation) -> int:
    return max(1, round((take.duration or 0) * frame_rate(take)))


def timecode(take: Generation, frame: int) -> str:
    """HH:MM:SS:FF at the take's frame rate, as the player shows it."""
    fps = round(frame_rate(take))
    seconds, frames = divmod(frame, fps)
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}:{frames:02d}"


TOOLS = {"rect": 2, "arrow": 2, "free": 500}  # how many points each may have
MAX_SHAPES = 50


def clean_drawing(raw: str) -> list[dict]:
    """The marks a comment carries, from the JSON the player's drawing layer sends; anything
    else is refused, never stored."""
    if not raw.strip():
        return []
    try:
        shapes = json.loads(raw)
    except ValueError:
        raise CommentRefused("The drawing could not be read; draw it again.") from None
    if not isinstance(shapes, list) or len(shapes) > MAX_SHAPES:
        raise CommentRefused(f"A drawing has at most {MAX_SHAPES} marks.")
    cleaned = []
    for shape in shapes:
        tool = shape.get("tool") if isinstance(shape, dict) else None
        points = shape.get("points") if isinstance(shape, dict) else None
        if tool not in TOOLS or not isinstance(points, list) or \
                not 2 <= len(points) <= TOOLS[tool]:
            raise CommentRefused("A drawing holds rectangles, arrows and freehand lines only.")
        try:
            xy = [[round(float(x), 4), round(float(y), 4)] for x, y in points]
        except (TypeError, ValueError):
            raise CommentRefused("A drawing's points are pairs of numbers.") from None
        if any(not (0 <= v <= 1) for pair in xy for v in pair):
            raise CommentRefused("A drawing stays inside the picture.")
        cleaned.append({"tool": tool, "points": xy})
    return cleaned


def post(*, take: Generation, user: User | None, body: str, frame: int | None = None,
         frame_end: int | None = None, parent: Comment | None = None,
         drawing: list[dict] | None = None, guest_name: str = "", guest_email: str = "",
         review_link: ReviewLink | None = None) -> Comment:
    """Write a comment (or a reply to `parent`); raises CommentRefused, writing nothing.

    A guest writes through `review_link` (user None, their name given), only on a take the
    link shows."""
    if review_link is not None:
        if user is not None or not guest_name:
            raise CommentRefused("A guest comments through a review link, with their name.")
        if not review_link.is_active:
            raise CommentRefused("This review link has expired or was revoked; nothing was "
                                 "written.")
        if review_link.take_shown(take.uid) is None:
            raise CommentRefused("That take is not shared through this link.")
    else:
        _check_role(user.membership_in(take.project.team_id) if user else None)
    body = _text(body, limit=BODY_LIMIT, empty="Write the comment first.", what="a comment")
    if take.state != Generation.State.COMPLETED or not take.video:
        raise CommentRefused("Comments are about finished takes; this one has no video yet.")
    if parent is not None:
        if parent.take_id != take.pk:
            raise CommentRefused("That comment is on another take.")
        # One level of threads: a reply to a reply joins the same thread.
        parent = parent.parent or parent
        frame, frame_end, drawing = None, None, []
    else:
        frame, frame_end = _frames(take, frame, frame_end)
        if drawing and frame is None:
            raise CommentRefused("A drawing belongs to a frame: pause on it first.")
    with transaction.atomic():
        comment = Comment.objects.create(take=take, user=user, body=body, frame=frame,
                                         frame_end=frame_end, parent=parent,
                                         drawing=drawing or [], guest_name=guest_name,
                                         guest_email=guest_email, review_link=review_link)
        notify.comment_posted(comment, shot=take.shot)
    realtime.broadcast_comments(take)
    return comment


def set_resolved(*, comment: Comment, user: User, resolved: bool) -> Comment:
    """Close a thread, or open it again; who and when are kept."""
    _check_role(user.membership_in(comment.take.project.team_id))
    if comment.parent_id:
        raise CommentRefused("Resolve the thread from its first comment.")
    with transaction.atomic():
        comment = Comment.objects.select_for_update().select_related("take").get(pk=comment.pk)
        if comment.is_resolved == resolved:
            return comment
        comment.resolved_by, comment.resolved_at = (user, timezone.now()) if resolved \
            else (None, None)
        comment.save(update_fields=["resolved_by", "resolved_at"])
    realtime.broadcast_comments(comment.take)
    return comment


def _text(value: str, *, limit: int, empty: str, what: str) -> str:
    value = value.strip()
    if not value:
        raise CommentRefused(empty)
    if len(value) > limit:
        raise CommentRefused(f"Keep {what} under {limit} characters (it has {len(value)}).")
    return value


def _check_role(membership: Membership | None) -> None:
    if membership is None or not membership.can_comment:
        raise CommentRefused("Viewers read comments; reviewers, editors, producers and owners "
                             "write them.")


def _frames(take: Generation, frame: int | None,
            frame_end: int | None) -> tuple[int | None, int | None]:
    count = frame_count(take)
    if frame is None:
        if frame_end is not None:
            raise CommentRefused("A range needs its first frame too.")
        return None, None
    if not 0 <= frame < count:
        raise CommentRefused(f"Frame {frame} is outside take #{take.pk} (frames 0–{count - 1}).")
    if frame_end is not None and not frame < frame_end < count:
        raise CommentRefused(f"A range ends after it starts and inside the take "
                             f"(frames {frame + 1}–{count - 1}).")
    return frame, frame_end


LINK = re.compile(r"https?://[^\s<>\"']+")
MENTION = notify.MENTION


def render_body(body: str, *, usernames: set[str]) -> SafeString:
    """Plain text made safe: links clickable, @mentions of team members marked; nothing else
    of the text is ever HTML."""
    out, at = [], 0
    tokens = sorted([*((m.start(), m.end(), "link") for m in LINK.finditer(body)),
                     *((m.start(), m.end(), "mention") for m in MENTION.finditer(body))])
    for start, end, kind in tokens:
        if start < at:
            continue
        out.append(escape(body[at:start]))
        text = body[start:end]
        if kind == "link":
            out.append(f'<a href="{escape(text)}" rel="noopener noreferrer nofollow" '
                       f'target="_blank">{escape(text)}</a>')
        elif text[1:] in usernames:
            out.append(f'<span class="mention">{escape(text)}</span>')
        else:
            out.append(escape(text))
        at = end
    out.append(escape(body[at:]))
    return mark_safe("".join(out).replace("\n", "<br>"))  # noqa: S308 - every piece escaped


PROMPT_LIMIT = 5000


def regenerate_prompt(comment: Comment) -> str:
    """What "Regenerate from note" starts from: the commented take's prompt, then the note."""
    prompt = (comment.take.input or {}).get("prompt", "")
    return f"{prompt.rstrip()}\n\n{comment.body}".strip()


def regenerate(*, comment: Comment, user: User, prompt: str) -> Generation:
    """A new take with the commented take's exact parameters and `prompt` (the note appended,
    as the person left it); the take answers the note. Raises CommentRefused, spending
    nothing."""
    from storyboard import generation

    membership = user.membership_in(comment.take.project.team_id)
    if membership is None or not membership.can_edit:
        raise CommentRefused("Only editors, producers and owners generate takes.")
    shot = comment.take.shot
    if shot.is_approved:
        raise CommentRefused(shot.lock_message())
    prompt = _text(prompt, limit=PROMPT_LIMIT, empty="Write the prompt for the new take.",
                   what="the prompt")
    recipe = shot.recipe_of(comment.take)
    recipe.prompt = prompt
    try:
        take = generation.start_generation(shot=shot, user=user, recipe=recipe,
                                           answers=comment.parent or comment)
    except generation.GenerationRefused as e:
        raise CommentRefused(e.message) from e
    realtime.broadcast_comments(comment.take)
    return take
