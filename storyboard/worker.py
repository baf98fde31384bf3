"""Task workers: the django-tasks-db worker loop plus the periodic reconciler.

`manage.py worker` runs this in its own process (many, on many machines, against PostgreSQL).
The embedded default runs it as a thread inside the server process instead, because the
in-memory channel layer only reaches browsers connected to the same process.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time

from django.conf import settings
from django.core.management import call_command
from django.db import close_old_connections

from storyboard import generation
from storyboard.models import WorkerBeat

logger = logging.getLogger(__name__)


def _worker_id() -> str:
    # Unique across the pool (the command's own default is random, which says nothing in logs).
    return f"{socket.gethostname()}-{os.getpid()}-{threading.get_ident()}"[:64]


def _process_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"[:64]


def run_worker(*, interval: float, verbosity: int = 1) -> None:
    """Work off every queue until SIGINT or SIGTERM, through django-tasks-db's own command.

    Main thread only: the command installs its shutdown handlers for those signals.
    """
    call_command("db_worker", queue_name="*", interval=interval, reload=False,
                 startup_delay=False, worker_id=_worker_id(), verbosity=verbosity)


def _new_worker(*, interval: float, worker_id: str | None = None):
    # The one place we depend on django-tasks-db's internals: its command's Worker loop, built
    # with the options the command itself would pass.
    from django_tasks_db.management.commands.db_worker import Worker

    return Worker(queue_names=["*"], interval=interval, batch=False, backend_name="default",
                  startup_delay=False, max_tasks=None, excluded_queue_names=[],
                  worker_id=worker_id or _worker_id())


def run_workers(*, concurrency: int, interval: float) -> None:
    """Run `concurrency` jobs at once: one worker loop per thread, until SIGINT or SIGTERM.

    Safe because django-tasks-db claims each job in its own transaction with SELECT … FOR
    UPDATE SKIP LOCKED (an exclusive transaction on SQLite), and every thread has its own
    database connection: two loops never claim one job, whether they are threads of one
    process or processes on different hosts. Threads suit this work: a job mostly waits on a
    provider, the network or the database, and renders with PyAV/numpy, which release the GIL.
    The first signal lets every loop finish its current job; a second one exits at once (the
    reconciler then picks up what was cut short).
    """
    # Named here, in the main thread: _worker_id() would give every loop the main thread's id.
    workers = [_new_worker(interval=interval, worker_id=f"{_process_id()}-loop{n}"[:64])
               for n in range(concurrency)]

    def stop(signum: int, frame) -> None:
        if not workers[0].running:
            raise SystemExit(1)
        logger.warning("Stopping %d worker loops after their current jobs", len(workers))
        for worker in workers:
            worker.running = False

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
    threads = [threading.Thread(target=_keep_running, args=(worker,), name=f"task-worker-{n}",
                                daemon=True)
               for n, worker in enumerate(workers)]
    for thread in threads:
        thread.start()
    # Joined in short slices: the main thread must come back to Python to run the handler.
    while any(thread.is_alive() for thread in threads):
        for thread in threads:
            thread.join(0.2)


def _keep_running(worker, *, pause: float = 1.0) -> None:
    """Run one worker loop until it is stopped, starting it again after an error: the loop
    raises what the database raises between jobs (a restart, a failover), which would
    otherwise end this thread for good and leave the process working at less than its
    concurrency, saying nothing."""
    while worker.running:
        try:
            worker.run()
        except Exception:
            logger.exception("Worker loop %s failed; it starts again in %g s",
                             worker.worker_id, pause)
            close_old_connections()
            time.sleep(pause)
        else:
            return


def beat_forever(stop: threading.Event, *,
                 every: float | None = None) -> None:
    """Refresh this process's WorkerBeat row until `stop` is set (one row per process)."""
    every = settings.WORKER_HEARTBEAT_EVERY if every is None else every
    worker = _process_id()
    while True:
        try:
            close_old_connections()
            WorkerBeat.beat(worker=worker)
        except Exception:
            # A missed beat is what /healthz is for; the worker itself carries on.
            logger.exception("Worker heartbeat failed")
        finally:
            close_old_connections()
        if stop.wait(every):
            return


def reconcile_forever(stop: threading.Event, *, every: float | None = None) -> None:
    """Run generation.reconcile() every `every` seconds (WORKER_RECONCILE_EVERY) until `stop`."""
    every = settings.WORKER_RECONCILE_EVERY if every is None else every
    while not stop.wait(every):
        try:
            close_old_connections()
            picked = generation.reconcile()
            if picked:
                logger.info("Reconciler picked up %d stuck take(s)", picked)
        except Exception:
            # The reconciler must outlive one bad pass; the next pass retries.
            logger.exception("Reconciler pass failed")
        finally:
            close_old_connections()


_embedded: list[threading.Thread] = []


def start_embedded() -> None:
    """Start one worker and the reconciler as daemon threads of this process (once)."""
    if _embedded:
        return
    stop = threading.Event()
    threads = [
        threading.Thread(target=_run_embedded_worker, name="task-worker", daemon=True),
        threading.Thread(target=reconcile_forever, args=(stop,), name="reconciler",
                         daemon=True),
        threading.Thread(target=beat_forever, args=(stop,), name="heartbeat", daemon=True),
    ]
    for thread in threads:
        thread.start()
    _embedded.extend(threads)
    logger.info("Embedded task worker started")


def _run_embedded_worker() -> None:
    # `db_worker` cannot run here: its handle() always installs SIGINT/SIGTERM handlers, and
    # Python allows that only in the main thread (ValueError elsewhere; django-tasks-db 0.13).
    # So this thread drives the command's Worker loop directly and leaves signals to the
    # server that owns the main thread.
    while True:
        worker = _new_worker(interval=0.2)
        try:
            worker.run()
            return
        except Exception:
            # A database hiccup must not end background work for the life of the server.
            logger.exception("Embedded worker crashed; restarting in 1 s")
            time.sleep(1)
