from __future__ import annotations

from django import template
from django.urls import reverse
from django.utils.html import format_html_join, json_script
from django.utils.safestring import mark_safe

from storyboard import catalogue
from storyboard.money import decimal_text, usd

register = template.Library()


@register.filter
def hue(value: int) -> int:
    """A stable colour per person, so avatars are recognisable across screens."""
    return (int(value) * 137) % 360


@register.filter
def money(micros: int | None) -> str:
    """Micro-dollars as exact dollars: every digit the budget checks is shown."""
    return usd(micros)


@register.filter
def dollars(micros: int) -> str:
    """Micro-dollars as a plain exact decimal for number inputs: 12_500_000 → "12.50"."""
    return decimal_text(micros)


@register.simple_tag
def endpoint_options() -> str:
    """What each endpoint accepts, for the editor to offer only valid combinations."""
    specs = {e.id: {"mode": e.mode, "resolutions": list(e.resolutions),
                    "durations": list(e.durations), "default_duration": e.default_duration,
                    "extra": list(e.extra), "audio": e.supports_audio,
                    "end_frame": e.supports_end_frame}
             for e in catalogue.ENDPOINTS.values()}
    return json_script(specs, "endpoint-options")


@register.simple_tag
def card_placeholders(shots) -> str:
    """Stand-ins for the cards past the board's first screenful: the card's id (so pushes and
    the board's order find it), its title and a real link to the shot; board.js fetches the
    whole cards as they near the viewport. Joined here rather than looped in the template:
    at 300 shots a template loop cost more than the rest of the page."""
    marker = "987654321"
    url = reverse("sb:shot", args=[int(marker)])
    return format_html_join("", (
        '<article class="shot-card is-lazy" id="shot-{0}" data-shot="{0}" data-review="{3}">'
        '<a class="shot-thumb" href="{1}"><span class="thumb-placeholder">Loading…</span>'
        '<span class="shot-number"></span></a>'
        '<div class="shot-body"><h3 class="shot-title">{2}</h3></div></article>'),
        ((shot.pk, url.replace(marker, str(shot.pk)),
          shot.title or mark_safe('<span class="untitled">Shot</span>'), shot.review)
         for shot in shots))


@register.filter
def take_timecode(frame: int | None, take) -> str:
    """`{{ comment.frame|take_timecode:take }}`: the frame as the player's time code."""
    from storyboard.comments import timecode

    return "" if frame is None else timecode(take, frame)


@register.simple_tag
def comment_threads(take, *, guest: bool = False) -> list:
    """The take's threads, oldest frame first, each comment's text rendered safely with the
    team's @mentions marked (a name outside the team stays plain text). Three queries.

    `guest=True` (a review link's page): no @mention is marked, so a guest cannot learn who
    is in the team by typing names."""
    from accounts.models import Membership
    from storyboard.comments import render_body
    from storyboard.models import Comment

    threads = list(Comment.objects.filter(take=take).threads())
    names = set() if guest else set(Membership.objects.filter(team_id=take.project.team_id)
                                    .values_list("user__username", flat=True))
    for thread in threads:
        for comment in (thread, *thread.replies.all()):
            comment.html = render_body(comment.body, usernames=names)
    return threads


@register.simple_tag
def team_usernames(take) -> str:
    """The team's usernames, space-separated, for @mention suggestions (team members only)."""
    from accounts.models import Membership

    return " ".join(sorted(Membership.objects.filter(team_id=take.project.team_id)
                           .values_list("user__username", flat=True)))


@register.filter
def final_recipe_of(shot, draft):
    """`{% with recipe=shot|final_recipe_of:draft %}`: the final render of an approved draft."""
    return shot.final_recipe(draft) if draft else None


@register.filter
def final_running(shot, draft) -> bool:
    return bool(draft) and shot.finals_running(draft)
