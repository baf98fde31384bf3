"""A chain render survives its worker being killed with SIGKILL mid-chain (issue #11).

A real `manage.py worker` process renders a three-shot chain on the fal emulator; it is killed
while the second take is at fal. After a restart and a reconciler pass the chain finishes,
each take started from the take above it, and fal saw exactly one submit per take.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from storyboard import chainrun, generation
from storyboard.models import Budget, ChainRun, Generation, Shot
from tests.factories import ShotFactory
from tests.helpers import wait_until

# The crash tests' fal emulator and worker-process fixtures, used here by name.
from tests.test_crash_recovery import _kill, fal, worker  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.heavy]
State = Generation.State
T2V = "bytedance/seedance-2.0/fast/text-to-video"
I2V = "bytedance/seedance-2.0/fast/image-to-video"


def _three_shots(cast) -> list[Shot]:
    quick = {"resolution": "480p", "aspect_ratio": "16:9", "duration": "4",
             "generate_audio": False, "prompt": "Slow push in."}
    shots = [ShotFactory(project=cast.project, title="Shot 1", mode="text", endpoint=T2V,
                         **quick)]
    for n in (2, 3):
        shots.append(ShotFactory(project=cast.project, title=f"Shot {n}", mode="image",
                                 endpoint=I2V, continues_from=shots[-1], **quick))
    return shots


def _step(run: ChainRun, step: int) -> Generation:
    return run.takes.get(chain_step=step)


def test_a_worker_killed_mid_chain_resumes_it_and_submits_nothing_twice(cast, request):
    emulator, start_worker = request.getfixturevalue("fal"), request.getfixturevalue("worker")
    emulator.instant = True  # each job is done at fal by the worker's first poll
    shots = _three_shots(cast)
    process = start_worker()
    run = chainrun.start_chain(shot=Shot.objects.select_related("project").get(pk=shots[0].pk),
                               user=cast.editor)
    # Killed while shot 2's request is at fal, before its first poll.
    wait_until(lambda: _step(run, 1).state == State.SUBMITTED, timeout=20)
    _kill(process)
    assert _step(run, 2).state == State.CHAINED
    # The worst case for the queue: every task the dead worker had queued is left claimed by
    # it (RUNNING forever, as django-tasks-db leaves them), so only the reconciler can help.
    DBTaskResult.objects.filter(status=TaskResultStatus.READY).update(
        status=TaskResultStatus.RUNNING)
    # Time passes; the reconciler finds what the dead worker left and moves it on.
    Generation.objects.exclude(state__in=Generation.TERMINAL).update(
        updated=timezone.now() - timedelta(minutes=30))
    generation.reconcile()
    start_worker()
    wait_until(lambda: ChainRun.objects.get(pk=run.pk).state != ChainRun.State.RUNNING,
               timeout=30)
    run.refresh_from_db()
    takes = list(run.takes.order_by("chain_step"))
    assert run.state == ChainRun.State.DONE, (run.outcome, [t.error for t in takes])
    assert [t.state for t in takes] == [State.COMPLETED] * 3
    assert [t.upstream_id for t in takes[1:]] == [takes[0].pk, takes[1].pk]
    # One paid submit per take, never a second.
    assert emulator.submits.total == 3
    assert sorted(emulator.submits.by_request_id.values()) == [1, 1, 1]
    assert Budget.objects.get(team=cast.team).held_micros == 0
