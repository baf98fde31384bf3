"""Takes whose charge only the provider knows keep their hold until someone settles them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from storyboard import generation
from storyboard.models import Budget, Generation, LedgerEntry
from tests.conftest import client_for
from tests.factories import GenerationFactory

pytestmark = pytest.mark.django_db
State = Generation.State


def _unresolved(cast, state=State.OUTCOME_UNKNOWN, amount=2_500_000) -> Generation:
    take = GenerationFactory(shot=cast.shot, state=State.HELD, estimated_micros=amount,
                             provider="fal", created_by=cast.editor,
                             created=timezone.now() - timedelta(hours=5))
    Budget.for_team(cast.team).hold(take=take, amount=amount, user=cast.editor)
    assert take.advance(state, expected=(State.HELD,))
    return take


def _settle(cast, user, take, **data):
    return client_for(user).post(reverse("sb:take-settle", args=[cast.team.pk, take.uid]),
                                 {"note": "Checked fal's dashboard", **data})


def test_the_budget_page_lists_every_unresolved_take_with_its_age_and_amount(cast):
    unknown = _unresolved(cast)
    unfetched = _unresolved(cast, State.UNFETCHED, amount=1_000_000)
    page = client_for(cast.viewer).get(reverse("sb:budget", args=[cast.team.pk])).content.decode()
    for take in (unknown, unfetched):
        assert f'id="unresolved-{take.uid}"' in page
    assert "$2.50" in page
    assert "$1.00" in page
    assert "5\xa0hours" in page
    # Viewers see the list but not the buttons.
    assert 'name="verdict"' not in page


@pytest.mark.parametrize("role", ["owner", "producer"])
def test_not_billed_releases_the_hold_with_the_note_on_the_ledger(cast, role):
    take = _unresolved(cast)
    response = _settle(cast, cast.member(role), take, verdict="not_billed")
    assert response.status_code == 302
    take.refresh_from_db()
    assert take.state == State.FAILED
    assert take.resolved_by == cast.member(role)
    assert "not billed" in take.error
    budget = Budget.for_team(cast.team)
    assert (budget.held_micros, budget.spent_micros) == (0, 0)
    release = LedgerEntry.objects.get(take=take, kind="release")
    assert release.amount_micros == 2_500_000
    assert "Checked fal's dashboard" in release.note
    assert cast.member(role).label in release.note
    assert any("Settled by hand" in line for line in take.logs)


def test_billed_captures_the_whole_hold(cast):
    take = _unresolved(cast, State.UNFETCHED)
    assert _settle(cast, cast.producer, take, verdict="billed").status_code == 302
    budget = Budget.for_team(cast.team)
    assert (budget.held_micros, budget.spent_micros) == (0, 2_500_000)
    capture = LedgerEntry.objects.get(take=take, kind="capture")
    assert capture.user == cast.editor  # spend stays with who generated it
    assert "billed" in capture.note


def test_a_note_is_required(cast):
    take = _unresolved(cast)
    _settle(cast, cast.producer, take, verdict="billed", note="   ")
    take.refresh_from_db()
    assert take.state == State.OUTCOME_UNKNOWN
    assert Budget.for_team(cast.team).held_micros == 2_500_000


@pytest.mark.parametrize("role", ["editor", "reviewer", "viewer"])
def test_it_refuses_roles_without_budget_rights(cast, role):
    take = _unresolved(cast)
    assert _settle(cast, cast.member(role), take, verdict="not_billed").status_code == 403
    take.refresh_from_db()
    assert take.state == State.OUTCOME_UNKNOWN


def test_it_hides_another_teams_take(cast):
    take = _unresolved(cast)
    assert _settle(cast, cast.outsider, take, verdict="not_billed").status_code == 404
    # Another team's id in the URL finds nothing either.
    other = client_for(cast.outsider).post(
        reverse("sb:take-settle", args=[cast.other_team.pk, take.uid]),
        {"note": "x", "verdict": "not_billed"})
    assert other.status_code == 404
    take.refresh_from_db()
    assert take.state == State.OUTCOME_UNKNOWN


def test_a_take_that_settled_meanwhile_is_left_alone(cast):
    take = _unresolved(cast)
    take.advance(State.FAILED, expected=(State.OUTCOME_UNKNOWN,), error="webhook said failed")
    with pytest.raises(generation.GenerationRefused):
        generation.settle_by_hand(take=take, billed=True, note="late", user=cast.producer)
    assert not LedgerEntry.objects.filter(take=take, kind="capture").exists()


def test_a_lost_submit_is_never_released_by_a_timer(cast):
    take = _unresolved(cast)
    Generation.objects.filter(pk=take.pk).update(
        created=timezone.now() - timedelta(days=3), updated=timezone.now() - timedelta(days=3))
    assert generation.reconcile() == 0
    take.refresh_from_db()
    assert take.state == State.OUTCOME_UNKNOWN
    assert Budget.for_team(cast.team).held_micros == 2_500_000
