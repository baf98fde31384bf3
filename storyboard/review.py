"""Review decisions: submit a take for review, approve it, send it back, un-approve it.

Each decision is one conditional update of the shot's review state and take: it only applies
to the state and take the person was looking at, so when two reviewers decide at the same
moment exactly one decision is written and the other is told whose decision stands. Every
decision is recorded (`ReviewDecision`) and pushed after commit: the card to every board, the
review panel and take list to every open shot page.

An approved shot is locked (Shot.lock_message): its take stays chosen until someone with the
right to review un-approves it with a reason. chains.choose_take, editing.save_shot and
Shot.problems (hence every way to generate) refuse while it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from accounts.models import Membership, User
from storyboard import chains, notify, realtime, webhooks
from storyboard.models import Generation, ReviewDecision, ReviewLink, Shot

Kind = ReviewDecision.Kind
Review = Shot.Review

NOTE_LIMIT = ReviewDecision._meta.get_field("note").max_length


class ReviewRefused(Exception):
    """A decision that was not made; the message says why, in plain words."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Step:
    sources: frozenset[str]
    target: str
    # Whose step it is: editors submit, reviewers (and producers, owners) decide.
    by_reviewer: bool
    note_required: str = ""


STEPS = {
    Kind.SUBMIT: Step(frozenset({Review.DRAFT, Review.CHANGES, Review.IN_REVIEW}),
                      Review.IN_REVIEW, by_reviewer=False),
    Kind.APPROVE: Step(frozenset({Review.IN_REVIEW}), Review.APPROVED, by_reviewer=True),
    Kind.CHANGES: Step(frozenset({Review.IN_REVIEW}), Review.CHANGES, by_reviewer=True,
                       note_required="Say what should change: a note is required to send a "
                                     "take back."),
    Kind.UNAPPROVE: Step(frozenset({Review.APPROVED}), Review.IN_REVIEW, by_reviewer=True,
                         note_required="Give a reason for un-approving: the team sees it in "
                                       "the shot's history."),
    # The final render of the approved draft, confirmed: it becomes the approved take.
    Kind.FINAL: Step(frozenset({Review.APPROVED}), Review.APPROVED, by_reviewer=True),
}


def may(membership: Membership | None, kind: str) -> bool:
    if membership is None:
        return False
    step = STEPS[Kind(kind)]
    return membership.can_review if step.by_reviewer else membership.can_edit


# What a guest may decide through a link that allows decisions.
GUEST_KINDS = frozenset({Kind.APPROVE, Kind.CHANGES})


def guest_refusal(link: ReviewLink, *, shot: Shot, kind: str) -> str:
    """Why a guest may not make this decision through `link`, or "" when they may."""
    if not link.is_active:
        return "This review link has expired or was revoked; nothing was decided."
    if not link.allow_decisions or kind not in GUEST_KINDS:
        return "This review link is for watching and commenting; decisions are the team's."
    if not link.shows(shot):
        return "That shot is not shared through this link."
    return ""


def decide(*, shot: Shot, user: User | None, kind: str, note: str = "", seen: str = "",
           take: Generation | None = None, guest_name: str = "", guest_email: str = "",
           review_link: ReviewLink | None = None) -> ReviewDecision:
    """Move the shot's review state one step; raises ReviewRefused, changing nothing.

    `seen` is `Shot.review_token` as the person's page showed it (empty: whatever is current).
    `take` is the take to submit (default: the one on the board); decisions are about the
    take under review. A guest decides through `review_link` (user None, their name given):
    only approve or request changes, only on a shot the link shows, only if it allows it.
    """
    try:
        step = STEPS[Kind(kind)]
    except ValueError:
        raise ReviewRefused("Choose submit, approve, request changes or un-approve.") from None
    note = note.strip()
    if step.note_required and not note:
        raise ReviewRefused(step.note_required)
    if len(note) > NOTE_LIMIT:
        raise ReviewRefused(f"Keep the note under {NOTE_LIMIT} characters "
                            f"(it has {len(note)}).")
    if review_link is not None:
        if user is not None or not guest_name or review_link.project_id != shot.project_id:
            raise ReviewRefused("A guest decides through a review link of this project, "
                                "with their name.")
        if refusal := guest_refusal(review_link, shot=shot, kind=kind):
            raise ReviewRefused(refusal)
    elif user is None or not may(user.membership_in(shot.project.team_id), kind):
        raise ReviewRefused("Only reviewers, producers and owners decide on takes."
                            if step.by_reviewer else
                            "Only editors, producers and owners submit takes for review.")
    guest = review_link is not None
    with transaction.atomic():
        current = Shot.objects.select_related("project", "selected_take", "review_take") \
            .get(pk=shot.pk)
        if seen and seen != current.review_token:
            raise ReviewRefused(_overtaken(current, guest=guest))
        if current.review not in step.sources:
            raise ReviewRefused(_wrong_state(current, kind))
        if kind == Kind.SUBMIT:
            take = take or current.selected_take
            if take is None or take.shot_id != current.pk:
                raise ReviewRefused("Choose a finished take of this shot to submit.")
            if take.state != Generation.State.COMPLETED or not take.video:
                raise ReviewRefused("Only a finished take can be reviewed.")
            if current.review == Review.IN_REVIEW and current.review_take_id == take.pk:
                raise ReviewRefused(f"Take #{take.pk} is already in review.")
        elif kind == Kind.FINAL:
            take = current.final_to_confirm()
            if take is None:
                raise ReviewRefused("There is no finished final render of the approved take "
                                    "to confirm.")
        else:
            take = current.review_take
            if take is None:
                raise ReviewRefused("The take under review is gone; submit a take again.")
        now = timezone.now()
        # The conditional update is the decision: of two at once, the second matches no row.
        won = Shot.objects.filter(pk=current.pk, review=current.review,
                                  review_take_id=current.review_take_id).update(
            review=step.target, review_take=take, review_changed=now)
        if not won:
            raise ReviewRefused(_overtaken(Shot.objects.select_related("project")
                                           .get(pk=current.pk), guest=guest))
        decision = ReviewDecision.objects.create(
            shot=current, take=take, user=user, kind=kind, from_state=current.review,
            to_state=step.target, note=note, created=now, guest_name=guest_name,
            guest_email=guest_email, review_link=review_link)
        current.review, current.review_take, current.review_changed = step.target, take, now
        if kind != Kind.SUBMIT:
            notify.decision_made(decision, shot=current)
        if kind in (Kind.APPROVE, Kind.FINAL) and current.selected_take_id != take.pk:
            # What is approved is what the board shows and the chain continues from.
            chains.choose_take(shot=current, take=take, user=user)
        if kind in (Kind.APPROVE, Kind.FINAL):
            webhooks.shot_approved(shot=current, decision=decision)
    _announce(current)
    return decision


def _announce(shot: Shot) -> None:
    realtime.shot_saved(shot)
    realtime.broadcast_take_list(shot)
    realtime.broadcast_review(shot)


def _overtaken(shot: Shot, *, guest: bool = False) -> str:
    latest = shot.decisions.select_related("user").first()
    if latest is None:
        return "This shot's review changed since you opened it; nothing was changed."
    # A guest is told that the team decided, never who in the team did.
    who = "The team" if guest and latest.user_id else latest.author_label
    return (f"{who} {latest.verb} take #{latest.take_id} a moment ago "
            f"(now {shot.get_review_display().lower()}); your decision was not recorded.")


def _wrong_state(shot: Shot, kind: str) -> str:
    state = shot.get_review_display().lower()
    if kind == Kind.SUBMIT:
        return shot.lock_message()
    if kind == Kind.UNAPPROVE:
        return f"{shot.display_title} is not approved (it is {state})."
    return f"{shot.display_title} is not in review (it is {state}); submit a take first."


def render_final(*, shot: Shot, user: User) -> Generation:
    """Render the approved draft final (Shot.final_recipe): same seed and inputs, priced and
    held like any take. The approval stays on the draft until a reviewer confirms the final."""
    from storyboard import generation

    membership = user.membership_in(shot.project.team_id)
    if membership is None or not membership.can_edit:
        raise ReviewRefused("Only editors, producers and owners render finals.")
    shot = Shot.objects.select_related("project", "review_take").get(pk=shot.pk)
    draft = shot.review_take
    if not shot.is_approved or draft is None:
        raise ReviewRefused("Only an approved take can be rendered final.")
    if draft.draft_id:
        raise ReviewRefused(f"Take #{draft.pk} is already a final render.")
    recipe = shot.final_recipe(draft)
    if recipe is None:
        raise ReviewRefused(f"Take #{draft.pk} is already at the best tier and resolution.")
    if shot.finals_running(draft):
        raise ReviewRefused(f"A final of take #{draft.pk} is already being rendered.")
    try:
        take = generation.start_generation(shot=shot, user=user, recipe=recipe, draft=draft)
    except generation.GenerationRefused as e:
        raise ReviewRefused(e.message) from e
    realtime.broadcast_review(shot)
    return take
