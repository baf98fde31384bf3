"""T4: a mini-VOPR for the budget. Hypothesis drives random histories against the real models.

Each example is a fresh team and budget. Rules are what happens to money in production: a take
holds its worst case, then completes (capture what it cost, release the rest), fails or is
canceled (release it all), its worker crashes halfway (the hold must simply stay), the provider
repeats a webhook (nothing may change), a producer moves the limit, and the month turns over.

A fake clock stands in for `timezone.now`, the ledger's timestamps included, so a period can end
in the middle of a history and spend recorded in the new period is still this period's spend.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.db import connection, transaction
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from storyboard import generation
from storyboard.models import Budget, BudgetRefused, Generation, LedgerEntry
from tests.factories import ProjectFactory, ShotFactory, TeamFactory, UserFactory
from tests.helpers import wait_until

State = Generation.State
TERMINAL = tuple(Generation.TERMINAL)
NOT_TERMINAL = tuple(s for s in State.values if s not in TERMINAL)
START = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)


class Clock:
    """`timezone.now` for the app while the machine runs; only the rollover rule moves it."""

    now = START

    def __call__(self) -> datetime:
        return self.now


CLOCK = Clock()


class BudgetMachine(RuleBasedStateMachine):
    """The model: the limit, what each open take holds, what was spent this period."""

    @initialize(limit=st.integers(0, 15_000_000))
    def a_fresh_budget(self, limit: int) -> None:
        CLOCK.now = START
        team = TeamFactory()
        self.budget_id = Budget.objects.create(team=team, limit_micros=limit,
                                               period_start=START).pk
        self.team_id = team.pk
        self.shot = ShotFactory(project=ProjectFactory(team=team))
        self.limit = limit
        self.open: dict[int, int] = {}  # take → amount held, until the take ends
        self.ended: dict[int, str] = {}  # take → the terminal state it reached
        self.spent = 0
        self.overrun = 0  # what takes cost beyond their holds, this period
        self.simulated = 0
        self.billed_by_hand: set[int] = set()
        self.producer = UserFactory()
        self.late: Budget | None = None  # another process's copy, read before the month ended

    # --- helpers --------------------------------------------------------------------------

    @property
    def held(self) -> int:
        return sum(self.open.values())

    def budget(self) -> Budget:
        return Budget.for_team(self.team_id)

    def books(self) -> tuple:
        budget = Budget.objects.get(pk=self.budget_id)
        return (budget.limit_micros, budget.held_micros, budget.spent_micros,
                budget.simulated_micros, budget.overrun_micros, budget.entries.count())

    def _end(self, take_id: int, state: str, **fields) -> Generation:
        take = Generation.objects.get(pk=take_id)
        assert take.advance(state, expected=NOT_TERMINAL, **fields)
        self.ended[take_id] = state
        del self.open[take_id]
        return take

    # --- rules ----------------------------------------------------------------------------

    @rule(amount=st.integers(0, 3_000_000), simulated=st.booleans())
    def hold(self, amount: int, simulated: bool) -> None:
        fits = amount <= self.limit - self.held - self.spent - self.overrun
        try:
            with transaction.atomic():  # as start_generation: no hold, no take
                take = Generation.objects.create(
                    shot=self.shot, project=self.shot.project, provider="local",
                    endpoint="fal-ai/test", state=State.HELD, estimated_micros=amount,
                    simulated=simulated)
                self.budget().hold(take=take, amount=amount, user=None)
        except BudgetRefused:
            assert not fits
        else:
            assert fits
            self.open[take.pk] = amount

    @precondition(lambda self: self.open)
    @rule(data=st.data(), percent=st.integers(0, 125))
    def complete(self, data: st.DataObject, percent: int) -> None:
        take_id = data.draw(st.sampled_from(sorted(self.open)))
        amount = self.open[take_id]
        actual = amount * percent // 100  # above 100 %: the provider overran the worst case
        take = self._end(take_id, State.COMPLETED, actual_micros=actual)
        # Charged in full: the part the hold covered is spent, the rest an overrun.
        self.spent += min(actual, amount)
        self.overrun += max(0, actual - amount)
        self.simulated += actual if take.simulated else 0

    @precondition(lambda self: self.open)
    @rule(data=st.data(), billed=st.booleans())
    def settle_by_hand(self, data: st.DataObject, billed: bool) -> None:
        """A lost submit nobody hears about again: a producer records what the provider says."""
        take_id = data.draw(st.sampled_from(sorted(self.open)))
        take = Generation.objects.get(pk=take_id)
        assert take.advance(State.OUTCOME_UNKNOWN, expected=NOT_TERMINAL)
        generation.settle_by_hand(take=take, billed=billed, note="checked", user=self.producer)
        amount = self.open.pop(take_id)
        self.ended[take_id] = State.FAILED
        if billed:
            self.billed_by_hand.add(take_id)
            self.spent += amount
            self.simulated += amount if take.simulated else 0

    @precondition(lambda self: self.open)
    @rule(data=st.data())
    def fail(self, data: st.DataObject) -> None:
        self._end(data.draw(st.sampled_from(sorted(self.open))), State.FAILED, error="boom")

    @precondition(lambda self: self.open)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        self._end(data.draw(st.sampled_from(sorted(self.open))), State.CANCELED,
                  error="Canceled.")

    @precondition(lambda self: self.open)
    @rule(data=st.data(), reached=st.sampled_from(NOT_TERMINAL))
    def crash(self, data: st.DataObject, reached: str) -> None:
        """The worker gets the take as far as `reached` and dies; a new process starts cold."""
        take_id = data.draw(st.sampled_from(sorted(self.open)))
        before = self.books()
        assert Generation.objects.get(pk=take_id).advance(reached, expected=NOT_TERMINAL)
        connection.close()  # nothing in memory survives the restart
        self.budget()
        assert self.books() == before

    @precondition(lambda self: self.ended)
    @rule(data=st.data(), state=st.sampled_from(TERMINAL), actual=st.integers(0, 9_000_000))
    def duplicate_webhook(self, data: st.DataObject, state: str, actual: int) -> None:
        """The provider says it again (or says something else): the first terminal state won."""
        take_id = data.draw(st.sampled_from(sorted(self.ended)))
        before = self.books()
        take = Generation.objects.get(pk=take_id)
        assert not take.advance(state, expected=NOT_TERMINAL, actual_micros=actual)
        assert take.state == self.ended[take_id]
        self.budget().settle(take=take)
        assert self.books() == before

    @rule(limit=st.integers(0, 25_000_000))
    def set_limit(self, limit: int) -> None:
        allowed = limit == self.limit or self.held + self.spent + self.overrun <= limit
        assert self.budget().set_limit(limit=limit, user=None) == allowed
        if allowed:
            self.limit = limit

    @rule(days=st.integers(1, 75))
    def time_passes(self, days: int) -> None:
        budget = Budget.objects.get(pk=self.budget_id)
        late = Budget.objects.get(pk=self.budget_id)
        CLOCK.now += timedelta(days=days)
        ends = CLOCK.now >= budget.period_end
        assert budget.roll_over(now=CLOCK.now) == ends
        assert not budget.roll_over(now=CLOCK.now)  # a period rolls over once
        if ends:
            assert budget.period_start <= CLOCK.now < budget.period_end
            self.spent = self.overrun = self.simulated = 0
            self.late = late

    @precondition(lambda self: self.late is not None)
    @rule()
    def another_process_notices_the_month_end_late(self) -> None:
        before = self.books()
        assert not self.late.roll_over(now=CLOCK.now)
        assert self.books() == before  # spend since the turn of the month is not wiped again
        self.late = None

    # --- invariants -----------------------------------------------------------------------

    @invariant()
    def never_overspent(self) -> None:
        budget = Budget.objects.get(pk=self.budget_id)
        # Overruns may push the remainder below zero, but no hold was ever granted past it.
        assert budget.held_micros + budget.spent_micros <= budget.limit_micros
        assert 0 <= budget.simulated_micros <= budget.spent_micros + budget.overrun_micros

    @invariant()
    def counters_equal_the_ledger(self) -> None:
        budget = Budget.objects.get(pk=self.budget_id)
        totals = budget.ledger_totals()
        assert (budget.held_micros, budget.spent_micros, budget.overrun_micros) == (
            totals["held_micros"], totals["spent_micros"], totals["overrun_micros"])

    @invariant()
    def counters_equal_the_model(self) -> None:
        assert self.books()[:5] == (self.limit, self.held, self.spent, self.simulated,
                                    self.overrun)

    @invariant()
    def each_hold_resolves_once_and_only_when_the_take_ended(self) -> None:
        rows: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        states = {}
        for take_id, state, kind, amount in (
                LedgerEntry.objects.filter(budget_id=self.budget_id, take__isnull=False)
                .values_list("take_id", "take__state", "kind", "amount_micros")):
            rows[take_id][kind].append(amount)
            states[take_id] = state
        assert set(rows) == set(self.open) | set(self.ended)
        for take_id, kinds in rows.items():
            assert len(kinds["hold"]) == 1
            assert len(kinds["capture"]) <= 1
            assert len(kinds["release"]) <= 1
            assert len(kinds["overrun"]) <= 1
            if take_id in self.open:
                assert states[take_id] not in TERMINAL
                assert not kinds["capture"], "captured while running"
                assert not kinds["release"], "released while running"
            else:
                assert states[take_id] == self.ended[take_id]
                # One resolution: a capture, a release, or a capture plus the unused rest.
                assert kinds["capture"] or kinds["release"]
                assert sum(kinds["capture"]) + sum(kinds["release"]) == kinds["hold"][0]
                assert not kinds["capture"] or states[take_id] == State.COMPLETED \
                    or take_id in self.billed_by_hand
                assert not kinds["overrun"] or kinds["capture"] == kinds["hold"]


@pytest.mark.django_db(transaction=True)
def test_random_histories_keep_the_books():
    created = LedgerEntry._meta.get_field("created")
    with (mock.patch("django.utils.timezone.now", CLOCK),
          mock.patch.object(created, "_get_default", CLOCK)):
        run_state_machine_as_test(BudgetMachine, settings=settings(
            max_examples=60, stateful_step_count=30, deadline=None))


# --- the month ends between advance()'s period check and its capture row ---------------------

MIDNIGHT = datetime(2026, 2, 1, tzinfo=UTC)


@contextmanager
def _midnight_strikes_after_the_period_check() -> Iterator[None]:
    """The app's clock reads 31 January 23:59:59.999 until a period check has been made."""
    clock = Clock()
    clock.now = MIDNIGHT - timedelta(milliseconds=1)
    real_roll_over = Budget.roll_over

    def roll_over_then_midnight(budget: Budget, **kwargs) -> bool:
        rolled = real_roll_over(budget, **kwargs)
        clock.now = max(clock.now, MIDNIGHT)
        return rolled

    created = LedgerEntry._meta.get_field("created")
    with (mock.patch("django.utils.timezone.now", clock),
          mock.patch.object(created, "_get_default", clock),
          mock.patch.object(Budget, "roll_over", roll_over_then_midnight)):
        yield


def _one_held_take() -> tuple[Budget, Generation]:
    team = TeamFactory()
    budget = Budget.objects.create(team=team, limit_micros=10_000_000, period_start=START)
    shot = ShotFactory(project=ProjectFactory(team=team))
    take = Generation.objects.create(shot=shot, project=shot.project, provider="local",
                                     endpoint="fal-ai/test", state=State.HELD,
                                     estimated_micros=1_000_000)
    budget.hold(take=take, amount=1_000_000, user=None)
    return budget, take


def _assert_the_capture_counts_in_february(budget: Budget) -> None:
    budget.refresh_from_db()
    assert budget.period_start == MIDNIGHT
    totals = budget.ledger_totals()
    assert (budget.held_micros, budget.spent_micros) == (totals["held_micros"],
                                                         totals["spent_micros"])
    assert budget.spent_micros == 400_000


@pytest.mark.django_db(transaction=True)
def test_a_capture_at_the_stroke_of_midnight_counts_in_one_period():
    """Dated 00:00 but counted in January, it was wiped by the rollover before f590c4a."""
    with _midnight_strikes_after_the_period_check():
        budget, take = _one_held_take()
        take.advance(State.COMPLETED, expected=(State.HELD,), actual_micros=400_000)
        Budget.for_team(budget.team_id)  # the next request, in February, rolls over
    _assert_the_capture_counts_in_february(budget)


@pytest.mark.django_db(transaction=True)
def test_a_rollover_racing_a_capture_at_midnight_keeps_it():
    """A's capture is dated 00:00 and not yet committed when B rolls the period over.

    Before 744cea5, B summed the new period's captures first and then queued for the row on
    PostgreSQL, so A's capture, committed meanwhile, was wiped from the counter.
    """
    written, go_on = threading.Event(), threading.Event()

    def wait_after_the_budget_write(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.lstrip().upper().startswith('UPDATE "STORYBOARD_BUDGET"'):
            written.set()
            go_on.wait(timeout=10)
        return result

    def worker_a(take: Generation) -> None:
        try:
            with connection.execute_wrapper(wait_after_the_budget_write):
                take.advance(State.COMPLETED, expected=(State.HELD,), actual_micros=400_000)
        finally:
            connection.close()

    def note_where_b_must_queue(execute, sql, params, many, context):
        # The statement that cannot go on while A holds its write: the row lock on PostgreSQL,
        # the IMMEDIATE transaction's write lock on SQLite.
        statement = sql.lstrip().upper()
        if statement.startswith("BEGIN") or "FOR UPDATE" in statement:
            if connection.vendor == "postgresql":
                b_backend.append(context["connection"].connection.info.backend_pid)
            b_queues.set()
        return execute(sql, params, many, context)

    def worker_b(budget_id: int) -> None:
        try:
            with connection.execute_wrapper(note_where_b_must_queue):
                Budget.objects.get(pk=budget_id).roll_over(now=MIDNIGHT)
        finally:
            connection.close()

    b_queues, b_backend = threading.Event(), []
    with _midnight_strikes_after_the_period_check():
        budget, take = _one_held_take()
        a = threading.Thread(target=worker_a, args=(take,))
        a.start()
        assert written.wait(timeout=10)
        b = threading.Thread(target=worker_b, args=(budget.pk,))
        b.start()
        # B reads, then queues behind A's uncommitted write (or A's lock).
        assert b_queues.wait(timeout=10)
        if b_backend:
            wait_until(lambda: _waits_for_a_lock(b_backend[0]), timeout=10)
        go_on.set()
        a.join(timeout=30)
        b.join(timeout=30)
    _assert_the_capture_counts_in_february(budget)


def _waits_for_a_lock(backend_pid: int) -> bool:
    """Is this PostgreSQL session blocked on a lock right now?"""
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                       [backend_pid])
        row = cursor.fetchone()
    return row is not None and row[0] == "Lock"
