"""Running it the way a studio would (issue 14): health and readiness probes, structured logs,
worker heartbeats and a worker that runs several jobs at once."""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from storyboard import generation
from storyboard.logs import JsonFormatter
from storyboard.models import Generation, WorkerBeat
from storyboard.providers import get_provider
from tests.conftest import client_for
from tests.factories import ShotFactory
from tests.helpers import wait_until, work_off_the_queue

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent
State = Generation.State


def _quick_shot(project):
    # Seedance 1.0 lite at 480p for 2 s: the smallest real take.
    return ShotFactory(project=project, mode="text",
                       endpoint="fal-ai/bytedance/seedance/v1/lite/text-to-video",
                       resolution="480p", aspect_ratio="16:9", duration="2",
                       generate_audio=False, prompt="Slow push in on the lighthouse.")


def _health(path: str = "/healthz"):
    response = client_for(None).get(path)
    return response.status_code, response.json()


# Health and readiness


def test_healthz_is_ok_when_every_piece_answers():
    WorkerBeat.beat(worker="host-1")
    status, body = _health()
    assert status == 200
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "channel_layer", "storage", "worker"}
    assert all(check["ok"] for check in body["checks"].values())
    assert body["checks"]["worker"]["age_s"] < 5


def test_healthz_leaves_no_file_behind(settings):
    WorkerBeat.beat(worker="host-1")
    assert _health()[0] == 200
    root = Path(settings.MEDIA_ROOT)
    assert [p for p in root.rglob("*") if p.is_file()] == []


def test_healthz_fails_when_no_worker_ever_checked_in():
    status, body = _health()
    assert status == 503
    assert body["status"] == "failing"
    assert body["checks"]["worker"] == {"ok": False, "ms": body["checks"]["worker"]["ms"],
                                        "error": "no task worker has ever checked in"}
    # The others still ran and passed: the report names only what is down.
    assert all(body["checks"][name]["ok"] for name in ("database", "channel_layer", "storage"))


def test_healthz_fails_when_the_freshest_worker_beat_is_stale(settings):
    settings.WORKER_STALE_AFTER = 60
    WorkerBeat.objects.create(worker="gone", beat_at=timezone.now() - timedelta(seconds=90))
    status, body = _health()
    assert status == 503
    assert "has checked in for 90 s" in body["checks"]["worker"]["error"]
    WorkerBeat.beat(worker="alive")
    assert _health()[0] == 200


def test_healthz_names_broken_storage_without_revealing_its_paths(settings, tmp_path):
    WorkerBeat.beat(worker="host-1")
    blocker = tmp_path / "not-a-directory"
    blocker.write_bytes(b"x")
    settings.MEDIA_ROOT = blocker
    status, body = _health()
    assert status == 503
    assert body["checks"]["storage"]["error"] == (
        "could not write, read and delete a file in media storage")
    assert str(tmp_path) not in json.dumps(body)
    assert body["checks"]["database"]["ok"]


def test_healthz_fails_when_the_channel_layer_is_unreachable(settings):
    WorkerBeat.beat(worker="host-1")
    # A Redis layer on a port nobody listens on: the connection is refused, for real.
    settings.CHANNEL_LAYERS = {"default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:9/0",
                              "socket_connect_timeout": 1}]}}}
    status, body = _health()
    assert status == 503
    assert body["checks"]["channel_layer"] == {
        "ok": False, "ms": body["checks"]["channel_layer"]["ms"],
        "error": "the channel layer did not answer"}


def test_readyz_leaves_workers_out():
    status, body = _health("/readyz")
    assert status == 200
    assert set(body["checks"]) == {"database", "migrations", "channel_layer"}


def test_probes_answer_get_and_head_only(cast):
    for path in ("/healthz", "/readyz"):
        assert client_for(cast.owner).post(path).status_code == 405
        assert client_for(None).head(path).status_code in (200, 503)
        assert client_for(None).get(path)["Cache-Control"].startswith("max-age=0")


def test_probe_urls_are_the_named_routes():
    assert reverse("sb:healthz") == "/healthz"
    assert reverse("sb:readyz") == "/readyz"


def test_worker_beat_forgets_workers_silent_for_a_day():
    WorkerBeat.objects.create(worker="old", beat_at=timezone.now() - timedelta(days=2))
    WorkerBeat.beat(worker="new")
    WorkerBeat.beat(worker="new")
    assert list(WorkerBeat.objects.values_list("worker", flat=True)) == ["new"]


# Structured logs


def _json(record: logging.LogRecord) -> dict:
    return json.loads(JsonFormatter().format(record))


def test_the_json_formatter_writes_one_line_with_the_fields():
    record = logging.LogRecord("storyboard.x", logging.ERROR, __file__, 1, "take %s failed",
                               ("abc",), None)
    record.fields = {"take": "abc", "when": timezone.now()}
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    text = JsonFormatter().format(record)
    # The traceback is inside the JSON string: still one line for the collector.
    assert len(text.splitlines()) == 1
    line = json.loads(text)
    assert line["level"] == "ERROR"
    assert line["logger"] == "storyboard.x"
    assert line["message"] == "take abc failed"
    assert line["take"] == "abc"
    assert "ValueError: boom" in line["exception"]


def test_every_request_logs_its_method_path_status_duration_and_user(cast, caplog):
    caplog.set_level(logging.INFO, logger="storyboard.requests")
    client_for(cast.editor).get(reverse("sb:board", args=[cast.project.pk]))
    client_for(None).get(reverse("sb:board", args=[cast.project.pk]))
    lines = [_json(r) for r in caplog.records if r.name == "storyboard.requests"]
    assert [(line["method"], line["path"], line["status"], line["user_id"])
            for line in lines] == [
        ("GET", f"/projects/{cast.project.pk}/", 200, cast.editor.pk),
        ("GET", f"/projects/{cast.project.pk}/", 302, None),
    ]
    assert all(line["event"] == "request" and line["duration_ms"] >= 0 for line in lines)


def test_request_lines_never_carry_a_credential_from_the_address(caplog):
    caplog.set_level(logging.INFO, logger="storyboard.requests")
    client_for(None).get("/r/a-secret-review-token/")
    client_for(None).get("/inputs/a-signed-input-name/")
    paths = [_json(r)["path"] for r in caplog.records if r.name == "storyboard.requests"]
    assert paths == ["/r/[secret]/", "/inputs/[secret]/"]


@pytest.mark.django_db(transaction=True)
async def test_requests_served_asynchronously_are_logged_with_their_user(async_client, caplog):
    from asgiref.sync import sync_to_async

    from tests.factories import UserFactory

    user = await sync_to_async(UserFactory)()
    await async_client.aforce_login(user)
    caplog.set_level(logging.INFO, logger="storyboard.requests")
    await async_client.get("/readyz")
    [line] = [_json(r) for r in caplog.records if r.name == "storyboard.requests"]
    assert (line["path"], line["status"], line["user_id"]) == ("/readyz", 200, user.pk)


@pytest.mark.django_db(transaction=True)
def test_every_take_transition_is_one_line_with_the_take_id(cast, caplog,
                                                           django_capture_on_commit_callbacks):
    caplog.set_level(logging.INFO, logger="storyboard.takes")
    with django_capture_on_commit_callbacks(execute=True):
        take = generation.start_generation(shot=_quick_shot(cast.project), user=cast.editor)
    work_off_the_queue()
    take.refresh_from_db()
    assert take.state == State.COMPLETED
    lines = [_json(r) for r in caplog.records if r.name == "storyboard.takes"]
    assert {(line["take"], line["take_id"]) for line in lines} == {(str(take.uid), take.pk)}
    steps = [(line["from"], line["to"]) for line in lines]
    # A take is born held (its money reserved); every move from there is a line.
    assert steps[0][0] == State.HELD
    assert steps[-1][1] == State.COMPLETED
    # Each line starts where the one before it ended: no transition goes unlogged.
    assert all(a[1] == b[0] for a, b in itertools.pairwise(steps))


@pytest.mark.django_db(transaction=True)
def test_a_transition_rolled_back_is_never_logged(cast, caplog):
    from django.db import transaction

    take = generation.new_take(shot=_quick_shot(cast.project), user=cast.editor,
                               provider=get_provider("local"), estimate_micros=0,
                               upstream=None)
    caplog.set_level(logging.INFO, logger="storyboard.takes")
    caplog.clear()

    def move_then_fail() -> None:
        with transaction.atomic():
            assert take.advance(State.FAILED, expected=(State.HELD,))
            raise RuntimeError("the caller's transaction fails after the move")

    with pytest.raises(RuntimeError):
        move_then_fail()
    assert [r for r in caplog.records if r.name == "storyboard.takes"] == []


# Workers


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    return (f"postgres://{user}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/"
            f"{db['NAME']}")


@pytest.mark.django_db(transaction=True)
def test_a_worker_with_concurrency_runs_jobs_side_by_side_each_once(cast, settings, tmp_path,
                                                                  django_capture_on_commit_callbacks):
    env = {**os.environ, "DATABASE_URL": _database_url(), "MEDIA_ROOT": str(settings.MEDIA_ROOT),
           "VAR_DIR": str(tmp_path), "LOCAL_QUEUE_DELAY": "0.4", "EMBEDDED_WORKER": "0",
           "WORKER_HEARTBEAT_EVERY": "0.2"}
    with django_capture_on_commit_callbacks(execute=True):
        takes = [generation.start_generation(shot=_quick_shot(cast.project), user=cast.editor)
                 for _ in range(4)]
    process = subprocess.Popen(
        [sys.executable, "manage.py", "worker", "--interval", "0.05", "--concurrency", "3"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: Generation.objects.filter(state=State.COMPLETED).count() == 4,
                   timeout=60)
        # Its heartbeat is in: the probe sees a live worker.
        assert WorkerBeat.objects.filter(worker__endswith=f"-{process.pid}").exists()
        assert _health()[0] == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    runs = list(DBTaskResult.objects.filter(status="SUCCESSFUL").order_by("started_at"))
    # Each job ran once, by one loop, and several loops of the one process took part.
    assert all(len(run.worker_ids) == 1 for run in runs)
    assert len({run.worker_ids[0] for run in runs}) > 1
    # ... at the same time: some job started before the one before it finished.
    assert any(b.started_at < a.finished_at for a, b in itertools.pairwise(runs))
    assert {take.pk for take in takes} == set(
        Generation.objects.filter(state=State.COMPLETED).values_list("pk", flat=True))


class _Loop:
    """A worker loop whose first pass meets the database gone (as after a restart)."""

    worker_id = "host-1-loop0"

    def __init__(self, *, fail: int) -> None:
        self.running, self.fail, self.passes = True, fail, 0

    def run(self) -> None:
        from django.db import OperationalError

        self.passes += 1
        if self.passes <= self.fail:
            raise OperationalError("terminating connection due to administrator command")
        self.running = False  # as a SIGTERM after the job would


def test_a_worker_loop_starts_again_after_a_database_error(caplog):
    from storyboard.worker import _keep_running

    loop = _Loop(fail=2)
    with caplog.at_level(logging.ERROR, logger="storyboard.worker"):
        _keep_running(loop, pause=0)
    assert loop.passes == 3
    assert caplog.text.count("Worker loop host-1-loop0 failed; it starts again") == 2


def test_a_stopped_worker_loop_is_not_started_again():
    from storyboard.worker import _keep_running

    loop = _Loop(fail=0)
    _keep_running(loop, pause=0)
    assert loop.passes == 1


def test_the_worker_refuses_a_concurrency_below_one():
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="1 or more"):
        call_command("worker", concurrency=0)
