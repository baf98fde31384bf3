"""Holds, captures and releases: never past the limit, each hold resolved exactly once."""

from __future__ import annotations

import threading

import pytest
from django.db import IntegrityError, OperationalError, close_old_connections, connection
from django.db.models import F

from storyboard import generation
from storyboard.models import Budget, BudgetRefused, Generation, LedgerEntry
from storyboard.money import usd
from tests.factories import ShotFactory, TeamFactory

State = Generation.State
LITE_T2V = "fal-ai/bytedance/seedance/v1/lite/text-to-video"


def _assert_books_balance(budget: Budget) -> None:
    budget.refresh_from_db()
    totals = budget.ledger_totals()
    assert (budget.held_micros, budget.spent_micros) == (totals["held_micros"],
                                                         totals["spent_micros"])
    assert budget.held_micros + budget.spent_micros <= budget.limit_micros


def _shot(cast, **kwargs):
    defaults = {"mode": "text", "endpoint": LITE_T2V, "resolution": "480p",
                "aspect_ratio": "16:9", "duration": "2", "generate_audio": False,
                "prompt": "Slow push in."}
    return ShotFactory(project=cast.project, **{**defaults, **kwargs})


@pytest.mark.django_db
def test_a_take_holds_its_worst_case(cast):
    shot = _shot(cast)
    take = generation.start_generation(shot=shot, user=cast.editor)
    budget = Budget.for_team(cast.team)
    assert budget.held_micros == shot.estimate().micros
    hold = LedgerEntry.objects.get(take=take)
    assert (hold.kind, hold.user, hold.simulated) == ("hold", cast.editor, True)
    _assert_books_balance(budget)


@pytest.mark.django_db
def test_it_refuses_a_take_the_budget_cannot_cover(cast):
    Budget.objects.filter(team=cast.team).update(limit_micros=10_000)
    shot = _shot(cast)
    with pytest.raises(generation.GenerationRefused) as refused:
        generation.start_generation(shot=shot, user=cast.editor)
    message = refused.value.message
    needed = shot.estimate().micros
    assert f"needs up to {usd(needed)}" in message
    assert "only $0.01 left" in message
    assert f"short by {usd(needed - 10_000)}" in message
    assert cast.owner.label in message
    # Nothing happened: no take, no ledger row, no hold.
    assert Generation.objects.count() == 0
    assert LedgerEntry.objects.count() == 0
    assert Budget.for_team(cast.team).held_micros == 0


@pytest.mark.django_db
def test_a_finished_take_captures_its_actual_cost_and_releases_the_rest(cast):
    take = generation.start_generation(shot=_shot(cast, duration="auto",
                                                  endpoint="bytedance/seedance-2.0/fast/"
                                                           "text-to-video", resolution="480p"),
                                       user=cast.editor)
    generation.drive(take_id=take.pk)
    take.refresh_from_db()
    assert take.state == State.COMPLETED
    budget = Budget.for_team(cast.team)
    assert budget.held_micros == 0
    assert budget.spent_micros == take.actual_micros
    assert budget.simulated_micros == take.actual_micros
    kinds = dict(LedgerEntry.objects.filter(take=take).values_list("kind", "amount_micros"))
    assert kinds["capture"] == take.actual_micros
    # Auto was held at 15 s; the preview rendered 5 s, so two thirds go back.
    assert kinds["release"] == take.estimated_micros - take.actual_micros
    _assert_books_balance(budget)


@pytest.mark.django_db
@pytest.mark.parametrize("end", ["fail", "cancel"])
def test_a_take_that_ends_without_a_video_releases_everything(cast, end):
    take = generation.start_generation(shot=_shot(cast), user=cast.editor)
    if end == "cancel":
        generation.cancel(take=take)
    else:
        take.advance(State.FAILED, expected=(State.HELD,), error="boom")
    budget = Budget.for_team(cast.team)
    assert (budget.held_micros, budget.spent_micros) == (0, 0)
    assert LedgerEntry.objects.get(take=take, kind="release").amount_micros == (
        take.estimated_micros)
    _assert_books_balance(budget)


@pytest.mark.django_db
def test_a_hold_is_resolved_only_once(cast):
    take = generation.start_generation(shot=_shot(cast), user=cast.editor)
    take.advance(State.FAILED, expected=(State.HELD,), error="boom")
    budget = Budget.for_team(cast.team)
    budget.settle(take=take)
    budget.settle(take=take)
    assert LedgerEntry.objects.filter(take=take).count() == 2
    _assert_books_balance(budget)


@pytest.mark.django_db
def test_an_unknown_outcome_keeps_the_hold(cast):
    take = generation.start_generation(shot=_shot(cast), user=cast.editor)
    take.advance(State.OUTCOME_UNKNOWN, expected=(State.HELD,))
    assert Budget.for_team(cast.team).held_micros == take.estimated_micros


@pytest.mark.django_db
def test_the_database_itself_refuses_an_overspend(cast):
    budget = Budget.for_team(cast.team)
    with pytest.raises(IntegrityError):
        Budget.objects.filter(pk=budget.pk).update(held_micros=F("limit_micros") + 1)


@pytest.mark.django_db
def test_a_limit_below_what_is_committed_is_refused(cast):
    generation.start_generation(shot=_shot(cast), user=cast.editor)
    budget = Budget.for_team(cast.team)
    assert not budget.set_limit(limit=budget.held_micros - 1, user=cast.producer)
    assert budget.set_limit(limit=budget.held_micros + 5_000_000, user=cast.producer)
    entry = LedgerEntry.objects.get(kind="adjustment")
    assert entry.user == cast.producer
    _assert_books_balance(budget)


# Concurrency (T1, T3): threads with their own connections, released together.


def _race(budget_id: int, *, threads: int, amount: int) -> tuple[int, int, list[Exception]]:
    barrier = threading.Barrier(threads)
    granted, refused, errors = [], [], []

    def claim() -> None:
        try:
            barrier.wait()
            Budget.objects.get(pk=budget_id).hold(take=None, amount=amount, user=None)
            granted.append(1)
        except BudgetRefused:
            refused.append(1)
        except Exception as e:
            errors.append(e)
        finally:
            close_old_connections()
            connection.close()

    workers = [threading.Thread(target=claim) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return len(granted), len(refused), errors


@pytest.mark.django_db(transaction=True)
def test_fifty_people_at_once_never_spend_past_the_limit():
    """T1 on PostgreSQL; on SQLite (T3) IMMEDIATE transactions must not say 'locked'."""
    threads, rounds = (50, 200) if connection.vendor == "postgresql" else (16, 10)
    for _ in range(rounds):
        team = TeamFactory()
        budget = Budget.objects.create(team=team, limit_micros=10_000_000)
        granted, refused, errors = _race(budget.pk, threads=threads, amount=1_000_000)
        assert errors == []
        assert granted == min(threads, 10)
        assert refused == threads - granted
        budget.refresh_from_db()
        assert budget.held_micros == granted * 1_000_000
        _assert_books_balance(budget)


@pytest.mark.django_db(transaction=True)
def test_random_amounts_never_exceed_the_limit():
    import random

    rng = random.Random(4)
    team = TeamFactory()
    budget = Budget.objects.create(team=team, limit_micros=10_000_000)
    threads = 50 if connection.vendor == "postgresql" else 16
    barrier = threading.Barrier(threads)
    errors: list[Exception] = []

    def claim(amount: int) -> None:
        try:
            barrier.wait()
            Budget.objects.get(pk=budget.pk).hold(take=None, amount=amount, user=None)
        except BudgetRefused:
            pass
        except OperationalError as e:
            errors.append(e)
        finally:
            connection.close()

    amounts = [rng.randint(1, 3_000_000) for _ in range(threads)]
    workers = [threading.Thread(target=claim, args=(a,)) for a in amounts]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    _assert_books_balance(budget)
    assert budget.held_micros > 0


@pytest.mark.django_db
def test_a_new_period_resets_spend_and_keeps_holds(cast):
    from datetime import timedelta

    from django.utils import timezone

    take = generation.start_generation(shot=_shot(cast), user=cast.editor)
    budget = Budget.for_team(cast.team)
    Budget.objects.filter(pk=budget.pk).update(spent_micros=3_000_000)
    budget.refresh_from_db()
    assert budget.roll_over(now=timezone.now() + timedelta(days=40))
    assert (budget.spent_micros, budget.held_micros) == (0, take.estimated_micros)
    assert not budget.roll_over(now=timezone.now() + timedelta(days=40))
    assert LedgerEntry.objects.filter(kind="adjustment", note__startswith="New period").count() == 1


@pytest.mark.django_db
def test_a_project_cap_refuses_what_the_team_budget_would_allow(cast):
    shot = _shot(cast)
    per_take = shot.estimate().micros
    cast.project.spend_cap_micros = per_take * 2
    cast.project.save(update_fields=["spend_cap_micros"])
    first = generation.start_generation(shot=shot, user=cast.editor)
    generation.start_generation(shot=shot, user=cast.editor)
    with pytest.raises(generation.GenerationRefused, match="spend cap"):
        generation.start_generation(shot=shot, user=cast.editor)
    assert Generation.objects.count() == 2
    # A failed take gives its share back to the project.
    first.advance(State.FAILED, expected=(State.HELD,), error="boom")
    generation.start_generation(shot=shot, user=cast.editor)
    assert Generation.objects.count() == 3


@pytest.mark.django_db
def test_a_negative_hold_is_refused(cast):
    with pytest.raises(ValueError, match="negative"):
        Budget.for_team(cast.team).hold(take=None, amount=-1, user=None)
