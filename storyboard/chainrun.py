"""Render chain from here: a shot and every shot downstream of it, one take each, in order.

start_chain() checks every shot, then, in one transaction, holds the worst case of the whole
chain against the project cap and the team budget (all or nothing) and queues the first take;
the others wait in the CHAINED state, their holds already made. Whenever a take of the run
ends, Generation.advance queues advance() (tasks.advance_chain). Under the run's row lock, so
racing workers agree, advance() makes a finished take its shot's chosen take (chains.choose_take,
the one path) and starts the next take from that take's last frame, or stops the chain: every
take still waiting is canceled with a note saying why and its hold released.

A worker killed between two takes loses nothing: resume() (from generation.reconcile) runs
advance() for every running chain. Starting a waiting take is a conditional CHAINED → HELD
update, so however many workers advance a chain at once, each take starts (and is submitted)
once.

The takes run one after another in breadth-first order (a branching chain renders level by
level), so there is always one shot rendering and a failure anywhere stops everything not yet
started.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from accounts.models import User
from storyboard import chains, generation, realtime, webhooks
from storyboard.models import Budget, BudgetRefused, ChainRun, Generation, Shot
from storyboard.money import usd
from storyboard.providers import default_provider_name, get_provider

State = Generation.State


class ChainRunRefused(Exception):
    """A chain that cannot start (or stop); the message says why, in plain words.

    `kind` tells the JSON API which status to answer: "budget" (the money does not cover the
    chain), "busy" (it is rendering already) or "invalid" (a shot of it cannot be generated).
    """

    def __init__(self, message: str, *, kind: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind


@dataclass
class Step:
    shot: Shot
    label: str
    micros: int
    worst_case: bool
    # The step whose take this one starts from (None for the first).
    upstream: int | None
    waits_for: str = ""


@dataclass
class Plan:
    """What "Render chain from here" would render and hold, shown before anything starts."""

    steps: list[Step]
    problems: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(step.micros for step in self.steps)

    @property
    def worst_case(self) -> bool:
        return any(step.worst_case for step in self.steps)

    def describe(self) -> str:
        return f"This chain of {len(self.steps)} shot{'s' if len(self.steps) != 1 else ''}"


def plan_chain(shot: Shot) -> Plan:
    """The shot and everything downstream of it (following links, never board order), with
    each take's worst-case price and everything that would stop one of them."""
    project = shot.project
    # Every shot of the project once, in board order, numbered as the board numbers them; the
    # links are followed in memory, so a long chain costs no more queries than a short one.
    board = [s for _, group in project.board(Shot.objects.select_related("selected_take"))
             for s in group]
    by_pk = {s.pk: s for s in board}
    below: dict[int, list[Shot]] = defaultdict(list)
    for number, s in enumerate(board, start=1):
        s._number = number
        s.project = project
        if s.continues_from_id in by_pk:
            s.continues_from = by_pk[s.continues_from_id]
            below[s.continues_from_id].append(s)
    root = by_pk[shot.pk]
    steps = [Step(shot=root, label=root.display_title, micros=0, worst_case=False,
                  upstream=None)]
    step_of = {root.pk: 0}
    at = 0
    while at < len(steps):
        for down in below[steps[at].shot.pk]:
            if down.pk not in step_of:  # a loop cannot be saved, but never follow one
                step_of[down.pk] = len(steps)
                steps.append(Step(shot=down, label=down.display_title, micros=0,
                                  worst_case=False, upstream=at, waits_for=steps[at].label))
        at += 1
    provider = get_provider(default_provider_name())
    plan = Plan(steps=steps)
    for number, step in enumerate(steps):
        estimate = step.shot.estimate()
        step.micros, step.worst_case = estimate.micros, estimate.worst_case
        found = step.shot.problems(upstream_coming=number > 0)
        if not found:
            found = generation.preflight(shot=step.shot, provider=provider)
        plan.problems.extend(f"{step.label}: {problem}" for problem in found)
    return plan


def start_chain(*, shot: Shot, user: User) -> ChainRun:
    """Queue `shot` and every shot downstream of it, holding the whole chain's worst case at
    once. Raises ChainRunRefused, having started and held nothing, when any shot cannot be
    generated, the money does not cover the whole chain, or the chain is already rendering."""
    membership = user.membership_in(shot.project.team_id)
    if membership is None or not membership.can_edit:
        raise ChainRunRefused("Your role in this team cannot start takes.", kind="forbidden")
    plan = plan_chain(shot)
    # Said first: a chain already rendering explains any other problem (a shot with no take yet).
    _refuse_if_rendering(plan)
    if plan.problems:
        raise ChainRunRefused("Nothing was started. " + " ".join(plan.problems))
    project = shot.project
    provider = get_provider(default_provider_name())
    budget = Budget.for_team(project.team_id)
    before = budget.committed_percent
    try:
        with transaction.atomic():
            # Under the project lock, so two people pressing at once are one after the other:
            # the second sees the first's chain (the unique constraint is the backstop).
            project.lock()
            _refuse_if_rendering(plan)
            run = ChainRun.objects.create(
                project=project, root=plan.steps[0].shot, started_by=user,
                held_micros=plan.total, current=plan.steps[0].label,
                plan=[[s.shot.pk, s.label, s.upstream] for s in plan.steps])
            project.check_cap(amount=plan.total, since=budget.period_start,
                              what=plan.describe())
            takes = []
            for number, step in enumerate(plan.steps):
                take = generation.new_take(
                    shot=step.shot, user=user, provider=provider, estimate_micros=step.micros,
                    upstream=step.shot.upstream_take() if number == 0 else None,
                    state=State.HELD if number == 0 else State.CHAINED, chain_run=run,
                    chain_step=number,
                    chain_note=f"Waiting for {step.waits_for}" if number else "")
                try:
                    budget.hold(take=take, amount=step.micros, user=user)
                except BudgetRefused as e:
                    raise _ShortOfBudget from e
                takes.append(take)
            first = takes[0]
            transaction.on_commit(lambda: generation.enqueue(first))
    except _ShortOfBudget:
        budget.refresh_from_db()
        left = max(0, budget.remaining_micros)
        raise ChainRunRefused(
            f"Nothing was started: {plan.describe().lower()} needs up to {usd(plan.total)} "
            f"held at once, but the team has only {usd(left)} left this month (short by "
            f"{usd(plan.total - left)}). An owner or producer can raise the budget.",
            kind="budget") from None
    except BudgetRefused as e:
        raise ChainRunRefused(f"Nothing was started. {e.message}", kind="budget") from e
    except IntegrityError as e:
        # Another start of the same chain committed between our check and our insert.
        raise ChainRunRefused(_already_message(None, plan.steps[0].label), kind="busy") from e
    budget.refresh_from_db()
    threshold = budget.threshold_crossed(before)
    if threshold:
        realtime.broadcast_budget_notice(budget=budget, threshold=threshold)
        webhooks.budget_threshold(budget=budget, threshold=threshold)
    for take in takes:
        realtime.broadcast_take(take)
    realtime.chain_progress(project.pk)
    return run


class _ShortOfBudget(Exception):
    """One hold of the chain was refused: the whole start rolls back, then says by how much."""


def _refuse_if_rendering(plan: Plan) -> None:
    ids = [step.shot.pk for step in plan.steps]
    busy = (Generation.objects.filter(chain_run__state=ChainRun.State.RUNNING, shot__in=ids)
            .select_related("chain_run__started_by", "shot").first())
    if busy is not None:
        label = next(s.label for s in plan.steps if s.shot.pk == busy.shot_id)
        raise ChainRunRefused(_already_message(busy.chain_run.started_by, label), kind="busy")


def _already_message(who: User | None, label: str) -> str:
    by = who.label if who else "Someone"
    return (f"Nothing was started: {by} already started a chain render that includes {label}; "
            "it is running now (see its progress above the board).")


def advance(*, run_id: int) -> bool:
    """Move a chain on after one of its takes changed; True if anything moved.

    Safe to run any number of times, at once, from any worker: it reads the run's takes under
    the run's row lock and only acts on what their states say.
    """
    started: list[Generation] = []
    released: list[Generation] = []
    with transaction.atomic():
        run = ChainRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None:
            return False
        takes = list(run.takes.select_related("shot", "project").order_by("chain_step"))
        moved = False
        if run.state == ChainRun.State.RUNNING:
            moved = _step(run, takes, started, released)
        else:
            # Ended (stopped or canceled) while a take was still waiting: release it.
            released = _release_waiting(takes, note=_ended_note(run))
            moved = bool(released)
        spent = run.takes.filter(state__in=Generation.TERMINAL).aggregate(
            total=Sum("actual_micros"))["total"] or 0
        if spent != run.spent_micros:
            run.spent_micros, moved = spent, True
        if moved:
            run.save()
    for take in started + released:
        realtime.broadcast_take(take)
    if moved:
        realtime.chain_progress(run.project_id)
    return moved


def _step(run: ChainRun, takes: list[Generation], started: list[Generation],
          released: list[Generation]) -> bool:
    by_step = {take.chain_step: take for take in takes}
    now = timezone.now()
    moved = False
    for step in range(run.steps):
        label = run.label(step)
        take = by_step.get(step)
        if take is None or take.state in (State.FAILED, State.CANCELED):
            what = "was deleted" if take is None else (
                "failed" if take.state == State.FAILED else "was canceled")
            detail = f" {take.error}" if take is not None and take.error else ""
            run.state, run.finished, run.current = ChainRun.State.STOPPED, now, ""
            run.outcome = f"Stopped: {label} {what}.{detail}"[:300]
            released.extend(_release_waiting(takes, note=f"Not started: {label} {what}."))
            return True
        if take.state == State.COMPLETED:
            if step >= run.finished_steps:
                # The chain's take is what the shots below continue from: it becomes the
                # shot's chosen take, through the one path that changes it.
                chains.choose_take(shot=take.shot, take=take, user=run.started_by)
                run.finished_steps, moved = step + 1, True
            continue
        if take.state == State.CHAINED:
            upstream = by_step[run.plan[step][2]]
            # Conditional: of two workers advancing at once, one starts the take.
            # It records exactly what it starts from: the take, the frame's time and pixels.
            if Generation.objects.filter(pk=take.pk, state=State.CHAINED).update(
                    state=State.HELD, chain_note="", updated=now,
                    **generation.upstream_fields(upstream)):
                take.state, take.upstream = State.HELD, upstream
                started.append(take)
                transaction.on_commit(lambda take=take: generation.enqueue(take))
                moved = True
        # Started (or just now): the chain waits for it to end.
        if run.current != label:
            run.current, moved = label, True
        return moved
    run.state, run.finished, run.current = ChainRun.State.DONE, now, ""
    run.outcome = f"All {run.steps} shot{'s' if run.steps != 1 else ''} rendered."
    return True


def _release_waiting(takes: list[Generation], *, note: str) -> list[Generation]:
    """Cancel every take of the chain that has not started; each hold is released with it."""
    released = []
    for take in takes:
        if take.state == State.CHAINED and take.advance(
                State.CANCELED, expected=(State.CHAINED,), error=note, chain_note=note):
            released.append(take)
    return released


def _ended_note(run: ChainRun) -> str:
    if run.state == ChainRun.State.CANCELED:
        return "Not started: the chain was canceled."
    return "Not started: the chain stopped above it."


def cancel_chain(*, run: ChainRun, user: User) -> list[str]:
    """Stop a running chain: nothing more starts, every waiting hold is released, and the take
    rendering now is canceled at its provider. Returns what could not be stopped, in words."""
    with transaction.atomic():
        run = ChainRun.objects.select_for_update().get(pk=run.pk)
        if run.state != ChainRun.State.RUNNING:
            raise ChainRunRefused(f"This chain has already ended ({run.get_state_display()}).")
        run.state, run.finished, run.current = ChainRun.State.CANCELED, timezone.now(), ""
        run.outcome = f"Canceled by {user.label}."
        run.save(update_fields=["state", "finished", "current", "outcome"])
        takes = list(run.takes.select_related("shot", "project").order_by("chain_step"))
        released = _release_waiting(takes, note=_ended_note(run))
    problems = []
    for take in takes:
        if not take.is_terminal and take.state != State.CHAINED:
            try:
                generation.cancel(take=take)
            except generation.GenerationRefused as e:
                problems.append(f"{take.shot.display_title}: {e.message}")
    for take in released:
        realtime.broadcast_take(take)
    realtime.chain_progress(run.project_id)
    return problems


def resume() -> int:
    """Move on every running chain (the reconciler calls this): a chain whose worker died
    between two takes starts its next take; returns how many chains moved."""
    return sum(advance(run_id=pk)
               for pk in ChainRun.objects.running().values_list("pk", flat=True))
