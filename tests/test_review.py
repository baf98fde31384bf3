"""Review decisions: submit, approve, send back, un-approve; who may; the approval lock; one
decision of two at once; the review panel, the board's counts and filter, the queue (issue #12)."""

from __future__ import annotations

import threading

import pytest
from django.contrib.admin.sites import site as admin_site
from django.db import connection
from django.test import RequestFactory
from django.urls import reverse

from storyboard import chains, generation, review
from storyboard.forms import ShotForm
from storyboard.models import Generation, ReviewDecision, Shot
from tests.conftest import Cast, client_for
from tests.factories import GenerationFactory, ProjectFactory, ShotFactory, TeamFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
Review = Shot.Review


def _with_take(shot: Shot) -> Generation:
    take = GenerationFactory(shot=shot)
    Shot.objects.filter(pk=shot.pk).update(selected_take=take)
    shot.refresh_from_db()
    return take


def _in_review(cast: Cast) -> Generation:
    take = _with_take(cast.shot)
    review.decide(shot=cast.shot, user=cast.editor, kind=review.Kind.SUBMIT)
    cast.shot.refresh_from_db()
    return take


def _approved(cast: Cast) -> Generation:
    take = _in_review(cast)
    review.decide(shot=cast.shot, user=cast.reviewer, kind=review.Kind.APPROVE)
    cast.shot.refresh_from_db()
    return take


def _stored(shot: Shot) -> tuple:
    shot = Shot.objects.get(pk=shot.pk)
    return (shot.review, shot.review_take_id, shot.selected_take_id, shot.prompt,
            ReviewDecision.objects.filter(shot=shot).count())


def _submit(user, shot: Shot, **data):
    return client_for(user).post(reverse("sb:shot-review", args=[shot.pk]), data, **HTMX)


def _decide(user, shot: Shot, decision: str, note: str = "", **data):
    return client_for(user).post(reverse("sb:shot-decide", args=[shot.pk]),
                                 {"decision": decision, "note": note, **data}, **HTMX)


# Decisions


def test_an_editor_submits_the_take_on_the_board(cast):
    take = _with_take(cast.shot)
    response = _submit(cast.editor, cast.shot, note="Ready for a look")
    assert response.status_code == 200
    shot = Shot.objects.get(pk=cast.shot.pk)
    assert (shot.review, shot.review_take_id) == (Review.IN_REVIEW, take.pk)
    decision = shot.decisions.get()
    assert (decision.kind, decision.user, decision.take_id) == ("submit", cast.editor, take.pk)
    assert (decision.from_state, decision.to_state, decision.note) == (
        Review.DRAFT, Review.IN_REVIEW, "Ready for a look")
    assert "Approve take" not in response.content.decode()  # an editor does not decide


def test_a_reviewer_approves_and_the_approved_take_is_the_chosen_one(cast):
    submitted = _in_review(cast)
    # The editor picked another take after submitting; what was reviewed is what is approved.
    other = GenerationFactory(shot=cast.shot)
    chains.choose_take(shot=cast.shot, take=other, user=cast.editor)
    response = _decide(cast.reviewer, cast.shot, "approve")
    assert response.status_code == 200
    shot = Shot.objects.get(pk=cast.shot.pk)
    assert shot.review == Review.APPROVED
    assert shot.selected_take_id == shot.review_take_id == submitted.pk
    assert shot.chosen_take() == submitted
    assert "Un-approve" in response.content.decode()


def test_approving_marks_the_chain_below_stale(cast):
    below = ShotFactory(project=cast.project, continues_from=cast.shot, prompt="On.",
                        mode="image", endpoint="bytedance/seedance-2.0/fast/image-to-video")
    submitted = _in_review(cast)
    other = GenerationFactory(shot=cast.shot)
    chains.choose_take(shot=cast.shot, take=other, user=cast.editor)
    chains.choose_take(shot=below, take=GenerationFactory(shot=below, upstream=other), user=None)
    review.decide(shot=cast.shot, user=cast.reviewer, kind=review.Kind.APPROVE)
    below.refresh_from_db()
    assert f"take #{submitted.pk}" in below.stale_reason


def test_changes_need_a_note_and_nothing_changes_without_one(cast):
    _in_review(cast)
    before = _stored(cast.shot)
    response = _decide(cast.reviewer, cast.shot, "changes", note="   ")
    assert response.status_code == 422
    assert "note is required" in response.content.decode()
    assert _stored(cast.shot) == before


def test_a_sent_back_take_records_the_note_and_the_editor_can_submit_again(cast):
    _in_review(cast)
    assert _decide(cast.producer, cast.shot, "changes", note="Warmer light").status_code == 200
    shot = Shot.objects.get(pk=cast.shot.pk)
    assert shot.review == Review.CHANGES
    assert shot.decisions.first().note == "Warmer light"
    newer = _with_take(shot)
    assert _submit(cast.editor, shot).status_code == 200
    shot.refresh_from_db()
    assert (shot.review, shot.review_take_id) == (Review.IN_REVIEW, newer.pk)


def test_un_approving_needs_a_reason_and_puts_the_take_back_in_review(cast):
    take = _approved(cast)
    before = _stored(cast.shot)
    assert _decide(cast.owner, cast.shot, "unapprove").status_code == 422
    assert _stored(cast.shot) == before
    response = _decide(cast.owner, cast.shot, "unapprove", note="Client changed the logo")
    assert response.status_code == 200
    shot = Shot.objects.get(pk=cast.shot.pk)
    assert (shot.review, shot.review_take_id) == (Review.IN_REVIEW, take.pk)
    assert shot.decisions.first().note == "Client changed the logo"


def test_it_refuses_to_submit_a_take_already_in_review(cast):
    _in_review(cast)
    before = _stored(cast.shot)
    response = _submit(cast.editor, cast.shot)
    assert response.status_code == 422
    assert "already in review" in response.content.decode()
    assert _stored(cast.shot) == before


def test_it_refuses_to_submit_without_a_finished_take(cast):
    GenerationFactory(shot=cast.shot, state=Generation.State.IN_PROGRESS, progress=0.5)
    response = _submit(cast.editor, cast.shot)
    assert response.status_code == 422
    assert Shot.objects.get(pk=cast.shot.pk).review == Review.DRAFT


def test_it_refuses_a_take_of_another_shot(cast):
    _with_take(cast.shot)
    stranger = GenerationFactory(shot=ShotFactory(project=cast.project))
    response = _submit(cast.editor, cast.shot, take=str(stranger.uid))
    assert response.status_code == 422
    assert Shot.objects.get(pk=cast.shot.pk).review == Review.DRAFT


def test_a_note_over_the_limit_is_refused_and_kept_in_the_form(cast):
    _in_review(cast)
    note = "x" * (review.NOTE_LIMIT + 1)
    response = _decide(cast.reviewer, cast.shot, "changes", note=note)
    assert response.status_code == 422
    assert f"under {review.NOTE_LIMIT} characters" in response.content.decode()
    assert note in response.content.decode()
    assert Shot.objects.get(pk=cast.shot.pk).review == Review.IN_REVIEW


def test_a_decision_on_what_was_no_longer_on_screen_says_who_decided(cast):
    _in_review(cast)
    seen = Shot.objects.get(pk=cast.shot.pk).review_token
    review.decide(shot=cast.shot, user=cast.producer, kind=review.Kind.APPROVE)
    before = _stored(cast.shot)
    response = _decide(cast.reviewer, cast.shot, "changes", note="Too dark", seen=seen)
    assert response.status_code == 422
    text = response.content.decode()
    assert cast.producer.label in text
    assert "approved" in text
    assert "Too dark" in text  # the typed note is kept
    assert _stored(cast.shot) == before


# Who may


@pytest.mark.parametrize(("role", "allowed"), [("owner", True), ("producer", True),
                                           ("editor", True), ("reviewer", False),
                                           ("viewer", False)])
def test_who_may_submit(cast, role, allowed):
    _with_take(cast.shot)
    before = _stored(cast.shot)
    response = _submit(cast.member(role), cast.shot)
    assert (response.status_code == 200) is allowed
    if not allowed:
        assert response.status_code == 403
        assert _stored(cast.shot) == before


@pytest.mark.parametrize(("role", "allowed"), [("owner", True), ("producer", True),
                                           ("reviewer", True), ("editor", False),
                                           ("viewer", False)])
def test_who_may_decide(cast, role, allowed):
    _in_review(cast)
    before = _stored(cast.shot)
    response = _decide(cast.member(role), cast.shot, "approve")
    assert (response.status_code == 200) is allowed
    if not allowed:
        assert response.status_code == 403
        assert _stored(cast.shot) == before


def test_another_team_and_anonymous_cannot_see_or_decide(cast):
    _in_review(cast)
    before = _stored(cast.shot)
    assert _decide(cast.outsider, cast.shot, "approve").status_code == 404
    assert client_for(cast.outsider).get(reverse("sb:shot-review", args=[cast.shot.pk]),
                                         **HTMX).status_code == 404
    anonymous = client_for(None).post(reverse("sb:shot-decide", args=[cast.shot.pk]),
                                      {"decision": "approve"})
    assert anonymous.status_code == 302
    assert "/login" in anonymous.url
    assert _stored(cast.shot) == before


def test_the_action_itself_refuses_a_role_that_may_not_decide(cast):
    _in_review(cast)
    with pytest.raises(review.ReviewRefused):
        review.decide(shot=cast.shot, user=cast.editor, kind=review.Kind.APPROVE)
    with pytest.raises(review.ReviewRefused):
        review.decide(shot=cast.shot, user=cast.outsider, kind=review.Kind.APPROVE)
    assert Shot.objects.get(pk=cast.shot.pk).review == Review.IN_REVIEW


# The approval lock, from every entry point


def test_the_lock_refuses_another_take_on_the_board(cast):
    _approved(cast)
    other = GenerationFactory(shot=cast.shot)
    before = _stored(cast.shot)
    response = client_for(cast.editor).post(reverse("sb:take-select", args=[other.uid]),
                                            **HTMX)
    assert response.status_code == 422
    assert "un-approve it first" in response.content.decode()
    with pytest.raises(chains.ChainRefused):
        chains.choose_take(shot=cast.shot, take=other, user=cast.editor)
    assert _stored(cast.shot) == before


def test_the_lock_refuses_generation_edits_but_not_the_title(cast):
    _approved(cast)
    shot = Shot.objects.get(pk=cast.shot.pk)
    values = shot.field_values()
    response = client_for(cast.editor).post(
        reverse("sb:shot", args=[shot.pk]),
        ShotForm.data_for({**values, "prompt": "Something else"}, version=shot.version), **HTMX)
    assert response.status_code == 422
    text = response.content.decode()
    assert "un-approve it first" in text
    assert "Something else" in text
    assert Shot.objects.get(pk=shot.pk).prompt == values["prompt"]
    response = client_for(cast.editor).post(
        reverse("sb:shot", args=[shot.pk]),
        ShotForm.data_for({**values, "title": "Renamed"}, version=shot.version), **HTMX)
    assert response.status_code == 200
    assert Shot.objects.get(pk=shot.pk).title == "Renamed"


def test_the_lock_refuses_to_generate(cast):
    _approved(cast)
    takes = Generation.objects.count()
    response = client_for(cast.editor).post(reverse("sb:shot-generate", args=[cast.shot.pk]),
                                            **HTMX)
    assert "un-approve it first" in response.content.decode()
    with pytest.raises(generation.GenerationRefused):
        generation.start_generation(shot=Shot.objects.get(pk=cast.shot.pk), user=cast.editor)
    assert Generation.objects.count() == takes


def test_the_lock_refuses_undo_of_a_generation_field(cast):
    from storyboard import editing

    change = cast.shot.change(values={"prompt": "Before approval"}, user=cast.editor)
    _approved(cast)
    with pytest.raises(editing.UndoRefused):
        editing.undo(shot=cast.shot, change_id=change.pk, user=cast.editor)
    assert Shot.objects.get(pk=cast.shot.pk).prompt == "Before approval"


def test_the_admin_shows_an_approved_shots_recipe_read_only(cast, admin_user):
    _approved(cast)
    request = RequestFactory().get("/")
    request.user = admin_user
    fields = admin_site._registry[Shot].get_readonly_fields(request,
                                                            Shot.objects.get(pk=cast.shot.pk))
    assert {"review", "selected_take", "prompt", "endpoint", "seed"} <= set(fields)
    assert "title" not in fields


def test_un_approving_lifts_the_lock(cast):
    _approved(cast)
    review.decide(shot=cast.shot, user=cast.reviewer, kind=review.Kind.UNAPPROVE,
                  note="Re-cut")
    other = GenerationFactory(shot=cast.shot)
    chains.choose_take(shot=Shot.objects.get(pk=cast.shot.pk), take=other, user=cast.editor)
    assert Shot.objects.get(pk=cast.shot.pk).selected_take_id == other.pk


# Two at once


@pytest.mark.django_db(transaction=True)
def test_two_reviewers_deciding_at_once_make_one_decision(cast):
    _in_review(cast)
    seen = Shot.objects.get(pk=cast.shot.pk).review_token
    barrier = threading.Barrier(2)
    results: dict[str, object] = {}

    def decide(user, kind: str, note: str) -> None:
        try:
            barrier.wait()
            results[kind] = review.decide(shot=Shot.objects.get(pk=cast.shot.pk), user=user,
                                          kind=kind, note=note, seen=seen)
        except review.ReviewRefused as e:
            results[kind] = e
        finally:
            connection.close()

    threads = [threading.Thread(target=decide, args=(cast.reviewer, "approve", "")),
               threading.Thread(target=decide, args=(cast.producer, "changes", "Redo"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    won = [k for k, v in results.items() if isinstance(v, ReviewDecision)]
    lost = [v for v in results.values() if isinstance(v, review.ReviewRefused)]
    assert len(won) == 1
    assert len(lost) == 1
    shot = Shot.objects.get(pk=cast.shot.pk)
    assert shot.review == (Review.APPROVED if won == ["approve"] else Review.CHANGES)
    assert shot.decisions.exclude(kind="submit").count() == 1
    assert "your decision was not recorded" in lost[0].message


# What people see


def test_the_panel_gives_each_role_its_own_controls(cast):
    _in_review(cast)
    url = reverse("sb:shot-review", args=[cast.shot.pk])
    reviewer = client_for(cast.reviewer).get(url, **HTMX).content.decode()
    viewer = client_for(cast.viewer).get(url, **HTMX).content.decode()
    assert "Approve take" in reviewer
    assert "Request changes" in reviewer
    assert "<form" not in viewer
    assert "In review" in viewer
    assert cast.editor.label in viewer


def test_the_shot_page_shows_the_decision_history(cast):
    _in_review(cast)
    review.decide(shot=cast.shot, user=cast.reviewer, kind=review.Kind.CHANGES,
                  note="Needs <b>more</b> fog")
    page = client_for(cast.viewer).get(reverse("sb:shot", args=[cast.shot.pk])).content.decode()
    assert "sent back take" in page
    assert "Needs &lt;b&gt;more&lt;/b&gt; fog" in page


def test_the_board_counts_review_states_and_filters_by_them(cast):
    _in_review(cast)
    ShotFactory(project=cast.project, title="Second")
    page = client_for(cast.reviewer).get(reverse("sb:board", args=[cast.project.pk]),
                                         {"review": "in_review"}).content.decode()
    assert "1 in review" in page
    assert 'data-filter="in_review" data-reorder-url' in page
    assert f'id="shot-{cast.shot.pk}" data-shot="{cast.shot.pk}" data-review="in_review"' in page
    assert "Needs my review" in page
    junk = client_for(cast.reviewer).get(reverse("sb:board", args=[cast.project.pk]),
                                         {"review": "<script>"}).content.decode()
    assert 'class="board" data-reorder-url' in junk


def test_the_queue_lists_the_teams_shots_in_review_oldest_first(cast):
    first = _in_review(cast).shot
    later = ShotFactory(project=cast.project, title="Later")
    _with_take(later)
    review.decide(shot=later, user=cast.editor, kind=review.Kind.SUBMIT)
    ShotFactory(project=cast.project, title="Still a draft")
    foreign = ShotFactory(project=ProjectFactory(team=TeamFactory()), title="Foreign")
    Shot.objects.filter(pk=foreign.pk).update(review=Review.IN_REVIEW)
    page = client_for(cast.reviewer).get(reverse("sb:review-queue", args=[cast.team.pk]))
    text = page.content.decode()
    assert page.status_code == 200
    assert text.index(first.display_title) < text.index("Later")
    assert "Still a draft" not in text
    assert "Foreign" not in text
    assert "Approve take" in text
    viewer = client_for(cast.viewer).get(reverse("sb:review-queue", args=[cast.team.pk]))
    assert "Approve take" not in viewer.content.decode()
    assert client_for(cast.outsider).get(
        reverse("sb:review-queue", args=[cast.team.pk])).status_code == 404


def test_a_decision_from_the_queue_returns_to_the_queue(cast):
    _in_review(cast)
    queue = reverse("sb:review-queue", args=[cast.team.pk])
    response = client_for(cast.reviewer).post(
        reverse("sb:shot-decide", args=[cast.shot.pk]),
        {"decision": "approve", "next": queue})
    assert response.status_code == 302
    assert response.url == queue
    elsewhere = client_for(cast.reviewer).post(
        reverse("sb:shot-decide", args=[cast.shot.pk]),
        {"decision": "unapprove", "note": "x", "next": "https://evil.example/"})
    assert elsewhere.url == reverse("sb:shot", args=[cast.shot.pk])


# Live


@pytest.mark.django_db(transaction=True)
async def test_a_decision_reaches_every_board_and_shot_page_live(cast):
    from asgiref.sync import sync_to_async

    from tests.test_realtime import _drain, _receive_until, _socket

    await sync_to_async(_in_review)(cast)
    ws = await _socket(cast.viewer, cast.project.pk)
    assert (await ws.connect())[0]
    await _drain(ws)
    response = await sync_to_async(_decide)(cast.reviewer, cast.shot, "approve")
    assert response.status_code == 200
    card = await _receive_until(ws, 'data-review="approved"')
    assert f'id="shot-{cast.shot.pk}"' in card
    panel = await _receive_until(ws, f'id="review-{cast.shot.pk}"')
    assert reverse("sb:shot-review", args=[cast.shot.pk]) in panel
    await ws.disconnect()


# Draft to final


def _approved_draft(cast) -> Generation:
    take = GenerationFactory(
        shot=cast.shot, seed=4242, endpoint="bytedance/seedance-2.0/fast/text-to-video",
        input={"prompt": "Cliff at dawn", "resolution": "480p", "aspect_ratio": "16:9",
               "duration": "5", "generate_audio": True, "seed": 4242})
    Shot.objects.filter(pk=cast.shot.pk).update(selected_take=take)
    review.decide(shot=cast.shot, user=cast.editor, kind=review.Kind.SUBMIT)
    review.decide(shot=cast.shot, user=cast.reviewer, kind=review.Kind.APPROVE)
    return take


def test_an_approved_draft_renders_final_with_its_seed_at_the_catalogue_price(cast):
    from storyboard import catalogue

    draft = _approved_draft(cast)
    panel = client_for(cast.producer).get(reverse("sb:shot-review", args=[cast.shot.pk]),
                                          **HTMX).content.decode()
    price = catalogue.estimate(endpoint="bytedance/seedance-2.0/text-to-video",
                               resolution="1080p", aspect_ratio="16:9", duration="5",
                               num_frames=None, video_references=False, rates=None)
    assert "Render final · 1080p" in panel
    response = client_for(cast.producer).post(reverse("sb:shot-final", args=[cast.shot.pk]),
                                              **HTMX)
    assert response.status_code == 200
    final = Generation.objects.get(draft=draft)
    assert final.endpoint == "bytedance/seedance-2.0/text-to-video"
    assert (final.seed, final.input["seed"], final.input["resolution"]) == (4242, 4242, "1080p")
    assert {k: v for k, v in final.input.items() if k != "resolution"} == \
        {k: v for k, v in draft.input.items() if k != "resolution"}
    assert final.estimated_micros == price.micros
    # Still approved on the draft; a second final while this one runs is refused.
    shot = Shot.objects.get(pk=cast.shot.pk)
    assert (shot.review, shot.review_take_id) == (Review.APPROVED, draft.pk)
    again = client_for(cast.producer).post(reverse("sb:shot-final", args=[cast.shot.pk]),
                                           **HTMX)
    assert again.status_code == 422
    assert Generation.objects.filter(draft=draft).count() == 1


def test_a_reviewer_confirms_the_finished_final_in_one_click(cast):
    draft = _approved_draft(cast)
    final = GenerationFactory(shot=cast.shot, draft=draft, seed=4242)
    panel = client_for(cast.reviewer).get(reverse("sb:shot-review", args=[cast.shot.pk]),
                                          **HTMX).content.decode()
    assert f"Confirm take #{final.pk} as final" in panel
    response = _decide(cast.reviewer, cast.shot, "final")
    assert response.status_code == 200
    shot = Shot.objects.get(pk=cast.shot.pk)
    assert (shot.review, shot.review_take_id, shot.selected_take_id) == (
        Review.APPROVED, final.pk, final.pk)
    assert shot.decisions.first().kind == "final"
    assert "Final</span> take" in response.content.decode()


def test_only_editors_render_finals_and_only_of_an_approved_take(cast):
    _with_take(cast.shot)
    assert client_for(cast.editor).post(reverse("sb:shot-final", args=[cast.shot.pk]),
                                        **HTMX).status_code == 422
    _approved_draft(cast)
    assert client_for(cast.reviewer).post(reverse("sb:shot-final", args=[cast.shot.pk]),
                                          **HTMX).status_code == 403
    assert not Generation.objects.filter(draft__isnull=False).exists()


# Compare


def test_compare_shows_two_takes_of_the_shot_in_sync(cast):
    older, newer = GenerationFactory(shot=cast.shot), GenerationFactory(shot=cast.shot)
    stranger = GenerationFactory(shot=ShotFactory(project=cast.project))
    url = reverse("sb:shot-compare", args=[cast.shot.pk])
    page = client_for(cast.viewer).get(url).content.decode()
    assert f'data-take="{older.uid}"' in page
    assert f'data-take="{newer.uid}"' in page
    wipe = client_for(cast.viewer).get(url, {"a": str(newer.uid), "b": str(older.uid),
                                             "mode": "wipe"}).content.decode()
    assert 'class="compare compare-wipe"' in wipe
    assert 'id="wipe"' in wipe
    # A take of another shot is never offered, whatever the link says.
    other = client_for(cast.viewer).get(url, {"a": str(stranger.uid)}).content.decode()
    assert str(stranger.uid) not in other
    assert client_for(cast.outsider).get(url).status_code == 404


def test_compare_says_when_there_is_nothing_to_compare(cast):
    GenerationFactory(shot=cast.shot)
    page = client_for(cast.viewer).get(reverse("sb:shot-compare", args=[cast.shot.pk]))
    assert "needs two finished takes" in page.content.decode()
