"""A real worker process killed with SIGKILL at each phase of a fal take (T7).

After every crash the take is terminal or waiting as "outcome unknown" with nothing lost, the
reconciler drives it on, and fal never sees a second submit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from storyboard import generation
from storyboard.models import Generation
from tests.emulators import tls
from tests.emulators.fal import FalEmulator
from tests.factories import ShotFactory
from tests.helpers import wait_until
from tests.hostile_files import video_bytes

pytestmark = pytest.mark.django_db(transaction=True)
State = Generation.State
ROOT = Path(__file__).resolve().parent.parent


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    return f"postgres://{user}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/" \
           f"{db['NAME']}"


@pytest.fixture
def fal(settings):
    emulator = FalEmulator(video=video_bytes(), auto_advance=False)
    emulator.tls = True
    with emulator:
        yield emulator


@pytest.fixture
def worker(fal, settings, tmp_path):
    """Start `manage.py worker` processes configured for the emulator; all killed at the end."""
    port = fal.url.rsplit(":", 1)[1]
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_ALLOW_ASYNC_UNSAFE",)}
    env.update(
        DATABASE_URL=_database_url(), MEDIA_ROOT=str(settings.MEDIA_ROOT), VAR_DIR=str(tmp_path),
        VIDEO_PROVIDER="fal", FAL_KEY=fal.key, FAL_USER_ID=fal.user_id,
        FAL_QUEUE_URL=fal.queue_url, FAL_REST_URL=fal.rest_url, FAL_JWKS_URL=fal.jwks_url,
        FAL_CA_FILE=tls.ca_file(), FAL_CDN_HOSTS=f"127.0.0.1:{port}",
        DOWNLOAD_EXTRA_NETWORKS="127.0.0.0/8", DOWNLOAD_CA_FILE=tls.ca_file(),
        WEBHOOK_BASE_URL="",
    )
    # This process drives takes too (the reconciler, the checks), with the same provider.
    settings.VIDEO_PROVIDERS = {**settings.VIDEO_PROVIDERS, "fal": {
        "BACKEND": "storyboard.providers.fal.FalProvider",
        "OPTIONS": {**fal.provider_options(), "ca_file": tls.ca_file(),
                    "cdn_hosts": (f"127.0.0.1:{port}",)}}}
    settings.DEFAULT_VIDEO_PROVIDER = "fal"
    settings.WEBHOOK_BASE_URL = ""
    settings.DOWNLOADS = {"max_bytes": 50 * 1024 * 1024, "deadline": 30,
                          "extra_networks": ["127.0.0.0/8"], "verify": tls.ca_file()}
    from storyboard.providers import get_provider

    get_provider.cache_clear()
    started: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "manage.py", "worker", "--interval", "0.05"],
                                   cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    get_provider.cache_clear()


def _kill(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)


def _take(cast) -> Generation:
    shot = ShotFactory(project=cast.project, mode="text",
                       endpoint="bytedance/seedance-2.0/fast/text-to-video", resolution="480p",
                       aspect_ratio="16:9", duration="4", prompt="Slow push in.")
    return generation.start_generation(shot=shot, user=cast.editor)


def _state(take: Generation) -> str:
    take.refresh_from_db()
    return take.state


def _age(take: Generation, **fields) -> None:
    """Make the take look untouched for a while, as it would after a crash."""
    Generation.objects.filter(pk=take.pk).update(
        updated=timezone.now() - timedelta(minutes=30), **fields)


def test_a_crash_during_submit_never_submits_twice(cast, fal, worker):
    fal.faults.add("submit", slow=30)
    process = worker()
    take = _take(cast)
    wait_until(lambda: fal.submits.total == 1)
    _kill(process)
    assert _state(take) == State.SUBMITTING
    _age(take)
    generation.reconcile()
    # The submit may have gone through: the take waits for fal, it is not sent again.
    assert _state(take) == State.OUTCOME_UNKNOWN
    # The reconciler queued another look at the take; a fresh worker runs it to the end.
    queued = set(DBTaskResult.objects.ready().values_list("pk", flat=True))
    assert queued
    worker()
    wait_until(lambda: DBTaskResult.objects.finished().filter(pk__in=queued).count()
               == len(queued))
    generation.reconcile()
    assert _state(take) == State.OUTCOME_UNKNOWN
    assert fal.submits.total == 1


def test_a_crash_after_submit_is_picked_up_by_polling(cast, fal, worker):
    process = worker()
    take = _take(cast)
    wait_until(lambda: _state(take) == State.SUBMITTED)
    _kill(process)
    fal.finish(take.request_id)
    _age(take)
    worker()
    generation.reconcile()
    wait_until(lambda: _state(take) == State.COMPLETED)
    assert fal.submits.total == 1


def test_a_crash_mid_download_resumes_the_download(cast, fal, worker, settings):
    slow_file = fal.faults.add("file", slow=30)
    process = worker()
    take = _take(cast)
    wait_until(lambda: _state(take) == State.SUBMITTED)
    fal.finish(take.request_id)
    wait_until(lambda: Generation.objects.filter(pk=take.pk, state=State.DOWNLOADING)
               .exclude(claimed_at=None).exists())
    # Inside the (slow) transfer from the CDN: the worker's request took the slow answer.
    wait_until(lambda: slow_file.times == 0)
    _kill(process)
    assert _state(take) == State.DOWNLOADING
    # The dead worker's claim and partial file are left behind.
    _age(take, claimed_at=timezone.now() - timedelta(minutes=30))
    worker()
    generation.reconcile()
    wait_until(lambda: _state(take) == State.COMPLETED)
    take.refresh_from_db()
    assert take.video
    assert fal.submits.total == 1
    leftovers = [p for p in Path(settings.MEDIA_ROOT).rglob("*.part")]
    assert leftovers == []
