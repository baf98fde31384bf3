"""Render chain from here: one click queues a shot and every shot below it, holds the whole
chain at once, runs each take from its upstream's new take, and stops cleanly (issue #11)."""

from __future__ import annotations

import itertools
import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from storyboard import chainrun, generation, realtime
from storyboard.models import (
    Budget,
    ChainRun,
    Generation,
    LedgerEntry,
    Shot,
)
from storyboard.money import usd
from storyboard.providers.local import LocalProvider
from tests.conftest import client_for
from tests.factories import ShotFactory
from tests.helpers import work_off_the_queue

pytestmark = pytest.mark.django_db
State = Generation.State
LITE_T2V = "fal-ai/bytedance/seedance/v1/lite/text-to-video"
LITE_I2V = "fal-ai/bytedance/seedance/v1/lite/image-to-video"


def _chain(cast, length: int = 4, **first) -> list[Shot]:
    """`length` small shots on the local renderer, each continuing the one before it. Shot 1
    is cast.shot's successor on the board, so titles say where each sits."""
    cast.shot.delete()
    quick = {"resolution": "480p", "aspect_ratio": "16:9", "duration": "2",
             "generate_audio": False, "prompt": "Slow push in on the lighthouse."}
    shots = [ShotFactory(project=cast.project, title="Shot 1", mode="text",
                         endpoint=LITE_T2V, position=0, **{**quick, **first})]
    for n in range(2, length + 1):
        shots.append(ShotFactory(project=cast.project, title=f"Shot {n}", mode="image",
                                 endpoint=LITE_I2V, position=n - 1,
                                 continues_from=shots[-1], **quick))
    return shots


def _takes(run: ChainRun) -> list[Generation]:
    return list(run.takes.order_by("chain_step"))


def _books_balance(team) -> None:
    """Counters equal the ledger, and every take's hold is resolved to the micro-dollar."""
    budget = Budget.objects.get(team=team)
    totals = budget.ledger_totals()
    assert (budget.held_micros, budget.spent_micros, budget.overrun_micros) == (
        totals["held_micros"], totals["spent_micros"], totals["overrun_micros"])
    for take in Generation.objects.filter(state__in=Generation.TERMINAL):
        rows = {e.kind: e.amount_micros for e in LedgerEntry.objects.filter(take=take)}
        assert rows["hold"] == rows.get("capture", 0) + rows.get("release", 0), (take, rows)


def _start(cast, shot: Shot, user=None) -> ChainRun:
    shot = Shot.objects.select_related("project").get(pk=shot.pk)
    return chainrun.start_chain(shot=shot, user=user or cast.editor)


@pytest.mark.django_db(transaction=True)
def test_one_click_renders_a_four_shot_chain_each_from_its_upstreams_new_take(cast):
    shots = _chain(cast)
    # Shot 2 has an older take, made from another frame: the chain replaces it on the board.
    old = generation.start_generation(shot=shots[0], user=cast.editor)
    work_off_the_queue()
    response = client_for(cast.editor).post(reverse("sb:shot-chain", args=[shots[0].pk]))
    assert response.status_code == 302
    work_off_the_queue()
    run = ChainRun.objects.get()
    takes = _takes(run)
    assert run.state == ChainRun.State.DONE, (run.outcome, [t.error for t in takes])
    assert [t.shot_id for t in takes] == [s.pk for s in shots]
    assert all(t.state == State.COMPLETED for t in takes)
    # The first starts as a plain take; each other starts from the last frame of the take the
    # chain just made above it, never the older one.
    assert takes[0].upstream_id is None
    for above, below in itertools.pairwise(takes):
        assert below.upstream_id == above.pk
        assert below.upstream_frame_sha256 == above.last_frame_sha256 != ""
        assert below.upstream_frame_at == above.last_frame_at
        assert below.started_at >= above.finished_at
    assert not Generation.objects.filter(upstream=old).exists()
    for shot, take in zip(shots, takes, strict=True):
        shot.refresh_from_db()
        assert shot.chosen_take() == take
        assert not shot.is_stale, shot.stale_reason
    assert (run.finished_steps, run.spent_micros) == (4, sum(t.actual_micros for t in takes))
    assert Budget.objects.get(team=cast.team).held_micros == 0
    _books_balance(cast.team)


def test_the_confirm_step_shows_the_worst_case_of_the_whole_chain_first(cast):
    shots = _chain(cast, 3)
    Shot.objects.filter(pk=shots[2].pk).update(duration="auto")
    priced = [Shot.objects.get(pk=s.pk).estimate() for s in shots]
    assert priced[2].worst_case
    response = client_for(cast.producer).get(reverse("sb:shot-chain", args=[shots[0].pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert f'id="chain-total">{usd(sum(e.micros for e in priced))}<' in html
    assert html.count("data-chain-step=") == 3
    assert "priced at their longest" in html
    assert (Generation.objects.count(), ChainRun.objects.count()) == (0, 0)


def test_the_confirm_step_says_what_stops_a_shot_and_starts_nothing(cast):
    shots = _chain(cast, 3)
    Shot.objects.filter(pk=shots[1].pk).update(prompt=" ")
    html = client_for(cast.editor).get(reverse("sb:shot-chain", args=[shots[0].pk])).content
    assert b"Shot 2: Write a prompt first." in html
    assert b'id="chain-start" disabled' in html
    with pytest.raises(chainrun.ChainRunRefused, match="Shot 2: Write a prompt"):
        _start(cast, shots[0])
    assert (Generation.objects.count(), ChainRun.objects.count(),
            LedgerEntry.objects.count()) == (0, 0, 0)


def test_it_follows_links_not_board_order(cast):
    shots = _chain(cast, 3)
    # Shot 3 moves to the top of the board; an unlinked shot sits between the others.
    Shot.objects.filter(pk=shots[2].pk).update(position=0)
    Shot.objects.filter(pk=shots[0].pk).update(position=5)
    ShotFactory(project=cast.project, title="Unlinked", position=6)
    plan = chainrun.plan_chain(Shot.objects.get(pk=shots[0].pk))
    assert [s.shot.pk for s in plan.steps] == [s.pk for s in shots]
    assert [s.upstream for s in plan.steps] == [None, 0, 1]


def test_a_chain_from_the_middle_renders_only_what_is_below(cast):
    shots = _chain(cast, 4)
    generation.start_generation(shot=shots[0], user=cast.editor)
    generation.drive(take_id=Generation.objects.get().pk)
    run = _start(cast, shots[1])
    assert [t.shot_id for t in _takes(run)] == [s.pk for s in shots[1:]]
    first = _takes(run)[0]
    # It continues from shot 1's chosen take, as any take of shot 2 would.
    assert first.upstream == Shot.objects.get(pk=shots[0].pk).chosen_take()


def test_every_take_is_held_at_once_and_the_ones_below_wait_for_their_upstream(cast):
    shots = _chain(cast)
    run = _start(cast, shots[0])
    takes = _takes(run)
    assert [t.state for t in takes] == [State.HELD, State.CHAINED, State.CHAINED,
                                         State.CHAINED]
    assert [t.chain_note for t in takes] == ["", "Waiting for Shot 1", "Waiting for Shot 2",
                                             "Waiting for Shot 3"]
    held = sum(t.estimated_micros for t in takes)
    assert run.held_micros == held
    assert Budget.objects.get(team=cast.team).held_micros == held
    html = client_for(cast.viewer).get(reverse("sb:board", args=[cast.project.pk])).content
    assert b"Waiting for Shot 2" in html
    assert b"Shot 1 rendering \xc2\xb7 4 of 4 shots left" in html
    # Viewers see the progress, not the cancel button.
    assert b"Cancel chain" not in html
    editor_html = client_for(cast.editor).get(reverse("sb:board", args=[cast.project.pk]))
    assert b"Cancel chain" in editor_html.content


def test_one_micro_dollar_short_of_the_chain_nothing_starts(cast):
    shots = _chain(cast)
    total = chainrun.plan_chain(Shot.objects.get(pk=shots[0].pk)).total
    Budget.objects.filter(team=cast.team).update(limit_micros=total - 1)
    with pytest.raises(chainrun.ChainRunRefused) as refused:
        _start(cast, shots[0])
    assert f"needs up to {usd(total)}" in refused.value.message
    assert f"short by {usd(1)}" in refused.value.message
    assert (Generation.objects.count(), ChainRun.objects.count(),
            LedgerEntry.objects.count()) == (0, 0, 0)
    assert Budget.objects.get(team=cast.team).held_micros == 0
    # With that micro-dollar, the whole chain is held.
    Budget.objects.filter(team=cast.team).update(limit_micros=total)
    run = _start(cast, shots[0])
    assert Budget.objects.get(team=cast.team).held_micros == total == run.held_micros


def test_a_project_cap_short_of_the_chain_starts_nothing_and_says_by_how_much(cast):
    shots = _chain(cast, 3)
    total = chainrun.plan_chain(Shot.objects.get(pk=shots[0].pk)).total
    cast.project.spend_cap_micros = total - 500
    cast.project.save(update_fields=["spend_cap_micros"])
    response = client_for(cast.editor).post(reverse("sb:shot-chain", args=[shots[0].pk]),
                                            headers={"HX-Request": "true"})
    assert response.status_code == 422
    message = response.content.decode()
    assert "This chain of 3 shots needs up to" in message
    assert f"short by {usd(500)}" in message
    assert (Generation.objects.count(), ChainRun.objects.count()) == (0, 0)


@pytest.mark.parametrize("role", ["reviewer", "viewer"])
def test_it_refuses_a_chain_to_read_only_roles(cast, role):
    shots = _chain(cast, 2)
    client = client_for(cast.member(role))
    url = reverse("sb:shot-chain", args=[shots[0].pk])
    assert client.get(url).status_code == 403
    assert client.post(url).status_code == 403
    with pytest.raises(chainrun.ChainRunRefused, match="cannot start"):
        _start(cast, shots[0], user=cast.member(role))
    assert (Generation.objects.count(), ChainRun.objects.count()) == (0, 0)


def test_starting_a_chain_already_rendering_is_refused_and_says_who(cast):
    shots = _chain(cast, 3)
    _start(cast, shots[0], user=cast.producer)
    # From the middle too: its shots are already in the running chain.
    for shot in (shots[0], shots[1]):
        with pytest.raises(chainrun.ChainRunRefused, match=f"{cast.producer.label} already"):
            _start(cast, shot)
    assert ChainRun.objects.count() == 1
    assert Generation.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_two_people_starting_the_same_chain_at_once_get_one_chain(cast):
    shots = _chain(cast, 3)
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def press(user) -> None:
        try:
            barrier.wait()
            outcomes.append(_start(cast, shots[0], user=user))
        except chainrun.ChainRunRefused as e:
            outcomes.append(e.message)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=press, args=(u,)) for u in (cast.editor, cast.producer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    started = [o for o in outcomes if isinstance(o, ChainRun)]
    told = [o for o in outcomes if isinstance(o, str)]
    assert (len(started), len(told)) == (1, 1), outcomes
    assert "already started a chain render" in told[0]
    assert ChainRun.objects.count() == 1
    assert Generation.objects.count() == 3
    assert Budget.objects.get(team=cast.team).held_micros == started[0].held_micros


def _finish(take: Generation) -> None:
    """The take's worker rendered it: completed, and its chain told (as a worker would)."""
    generation.drive(take_id=take.pk)
    take.refresh_from_db()
    assert take.state == State.COMPLETED, take.error
    chainrun.advance(run_id=take.chain_run_id)


def test_a_failure_at_shot_three_stops_the_chain_and_releases_the_holds_below(cast,
                                                                              monkeypatch):
    shots = _chain(cast)
    render = LocalProvider.render

    def fail_shot_three(self, job, out, *, progress):
        if job.title == "Shot 3":
            raise ValueError("the renderer ran out of film")
        return render(self, job, out, progress=progress)

    monkeypatch.setattr(LocalProvider, "render", fail_shot_three)
    run = _start(cast, shots[0])
    takes = _takes(run)
    _finish(takes[0])
    _finish(takes[1])
    generation.drive(take_id=takes[2].pk)
    chainrun.advance(run_id=run.pk)
    run.refresh_from_db()
    takes = _takes(run)
    assert [t.state for t in takes] == [State.COMPLETED, State.COMPLETED, State.FAILED,
                                         State.CANCELED]
    assert takes[3].chain_note == "Not started: Shot 3 failed."
    assert run.state == ChainRun.State.STOPPED
    assert run.outcome.startswith("Stopped: Shot 3 failed.")
    assert "ran out of film" in run.outcome
    assert run.spent_micros == takes[0].actual_micros + takes[1].actual_micros
    budget = Budget.objects.get(team=cast.team)
    assert budget.held_micros == 0
    assert budget.spent_micros == run.spent_micros
    _books_balance(cast.team)
    # Nothing below the failure was ever queued.
    queued = DBTaskResult.objects.filter(task_path="storyboard.tasks.run_generation")
    assert not [q for q in queued if q.args_kwargs["kwargs"]["take_id"] == takes[3].pk]
    html = client_for(cast.viewer).get(reverse("sb:board", args=[cast.project.pk])).content
    assert b"Not started: Shot 3 failed." in html


def test_canceling_one_waiting_take_stops_the_chain_there(cast):
    shots = _chain(cast, 3)
    run = _start(cast, shots[0])
    takes = _takes(run)
    _finish(takes[0])
    generation.cancel(take=Generation.objects.get(pk=takes[2].pk))
    _finish(takes[1])
    run.refresh_from_db()
    assert run.state == ChainRun.State.STOPPED
    assert run.outcome == "Stopped: Shot 3 was canceled. Canceled before it started."
    assert Budget.objects.get(team=cast.team).held_micros == 0
    _books_balance(cast.team)


def test_canceling_the_chain_cancels_the_running_take_and_releases_every_hold(cast):
    shots = _chain(cast)
    run = _start(cast, shots[0])
    takes = _takes(run)
    _finish(takes[0])
    # Shot 2 is rendering when the chain is canceled.
    Generation.objects.filter(pk=takes[1].pk).update(state=State.IN_PROGRESS, progress=0.3)
    response = client_for(cast.producer).post(reverse("sb:chain-cancel", args=[run.pk]),
                                              headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert f"Canceled by {cast.producer.label}." in response.content.decode()
    run.refresh_from_db()
    takes = _takes(run)
    assert run.state == ChainRun.State.CANCELED
    # The renderer is told to stop (it does at its next progress report)...
    assert takes[1].cancel_requested
    # ...and nothing below it will start; their holds are back.
    assert [t.state for t in takes[2:]] == [State.CANCELED, State.CANCELED]
    assert {t.chain_note for t in takes[2:]} == {"Not started: the chain was canceled."}
    budget = Budget.objects.get(team=cast.team)
    assert budget.held_micros == takes[1].estimated_micros
    takes[1].advance(State.CANCELED, expected=(State.IN_PROGRESS,), error="Canceled.")
    chainrun.advance(run_id=run.pk)
    assert Budget.objects.get(team=cast.team).held_micros == 0
    assert Generation.objects.filter(state=State.HELD).count() == 0
    _books_balance(cast.team)
    with pytest.raises(chainrun.ChainRunRefused, match="already ended"):
        chainrun.cancel_chain(run=run, user=cast.editor)


def test_advancing_twice_starts_the_next_take_once(cast, django_capture_on_commit_callbacks):
    shots = _chain(cast, 3)
    run = _start(cast, shots[0])
    takes = _takes(run)
    generation.drive(take_id=takes[0].pk)
    DBTaskResult.objects.all().delete()
    with django_capture_on_commit_callbacks(execute=True):
        assert chainrun.advance(run_id=run.pk)
        assert not chainrun.advance(run_id=run.pk)
    drives = [q.args_kwargs["kwargs"]["take_id"] for q in DBTaskResult.objects.filter(
        task_path="storyboard.tasks.run_generation")]
    assert drives == [takes[1].pk]


def test_the_reconciler_resumes_a_chain_whose_worker_died_between_two_takes(
        cast, django_capture_on_commit_callbacks):
    shots = _chain(cast, 3)
    run = _start(cast, shots[0])
    takes = _takes(run)
    generation.drive(take_id=takes[0].pk)
    # The worker died right after shot 1 finished: the chain's task never ran.
    DBTaskResult.objects.all().delete()
    Generation.objects.filter(pk=takes[0].pk).update(
        updated=timezone.now() - timedelta(minutes=30))
    with django_capture_on_commit_callbacks(execute=True):
        assert generation.reconcile() == 1
    take = Generation.objects.get(pk=takes[1].pk)
    assert (take.state, take.upstream_id) == (State.HELD, takes[0].pk)
    assert DBTaskResult.objects.filter(task_path="storyboard.tasks.run_generation").count() == 1
    # A second pass finds nothing to do.
    assert generation.reconcile() == 0


def test_each_end_of_a_chained_take_queues_its_chain(cast, django_capture_on_commit_callbacks):
    shots = _chain(cast, 2)
    run = _start(cast, shots[0])
    DBTaskResult.objects.all().delete()
    with django_capture_on_commit_callbacks(execute=True):
        generation.drive(take_id=_takes(run)[0].pk)
    chained = DBTaskResult.objects.filter(task_path="storyboard.tasks.advance_chain")
    assert [q.args_kwargs["kwargs"] for q in chained] == [{"run_id": run.pk}]


def test_chain_progress_is_pushed_on_its_own_with_controls_only_for_editors(cast,
                                                                            monkeypatch):
    shots = _chain(cast, 2)
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(realtime, "_send",
                        lambda group, message: sent.append((group, message["html"])))
    run = _start(cast, shots[0])
    realtime.chain_progress(cast.project.pk).send()
    pushed = {group: html for group, html in sent if 'id="chain-progress"' in html}
    editors = pushed[realtime.audience_group(cast.project.pk, realtime.EDITORS)]
    viewers = pushed[realtime.audience_group(cast.project.pk, realtime.VIEWERS)]
    assert "Shot 1 rendering · 2 of 2 shots left" in viewers
    assert "Cancel chain" in editors
    assert "Cancel chain" not in viewers
    assert reverse("sb:chain-cancel", args=[run.pk]) in editors
    # Only the strip: no card, no board.
    assert 'class="shot-card"' not in editors


def test_the_card_and_the_shot_page_offer_render_chain_to_editors_only(cast):
    shots = _chain(cast, 2)
    url = reverse("sb:shot-chain", args=[shots[0].pk])
    for role, shown in (("editor", True), ("viewer", False), ("reviewer", False)):
        client = client_for(cast.member(role))
        board = client.get(reverse("sb:board", args=[cast.project.pk])).content.decode()
        page = client.get(reverse("sb:shot", args=[shots[0].pk])).content.decode()
        assert (url in board, url in page) == (shown, shown), role


def test_the_board_runs_as_many_queries_with_three_chains_as_with_one(cast):
    shots = _chain(cast, 2)
    _start(cast, shots[0])
    client = client_for(cast.editor)
    url = reverse("sb:board", args=[cast.project.pk])
    client.get(url)
    with CaptureQueriesContext(connection) as before:
        client.get(url)
    for n in range(2):
        loose = ShotFactory(project=cast.project, title=f"Loose {n}", position=10 + n,
                            resolution="480p", duration="2", endpoint=LITE_T2V, mode="text")
        _start(cast, loose)
    with CaptureQueriesContext(connection) as after:
        html = client.get(url).content.decode()
    assert html.count('class="chain-run ') == 3
    assert len(after) == len(before)
