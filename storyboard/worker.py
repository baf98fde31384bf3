"""Task workers: the django-tasks-db worker loop plus the periodic reconciler.

`manage.py worker` runs this in its own process (many, on many machines, against PostgreSQL).
The embedded default runs it as a thread inside the server process instead, because the
in-memory channel layer only reaches browsers connected to the same process.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from django.core.management import call_command
from django.db import close_old_connections

from storyboard import generation

logger = logging.getLogger(__name__)

RECONCILE_EVERY = 30.0


def _worker_id() -> str:
    # Unique across the pool (the command's own default is random, which says nothing in logs).
    return f"{socket.gethostname()}-{os.getpid()}-{threading.get_ident()}"[:64]


def run_worker(*, interval: float, verbosity: int = 1) -> None:
    """Work off every queue until SIGINT or SIGTERM, through django-tasks-db's own command.

    Main thread only: the command installs its shutdown handlers for those signals.
    """
    call_command("db_worker", queue_name="*", interval=interval, reload=False,
                 startup_delay=False, worker_id=_worker_id(), verbosity=verbosity)


def reconcile_forever(stop: threading.Event, *, every: float = RECONCILE_EVERY) -> None:
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
    ]
    for thread in threads:
        thread.start()
    _embedded.extend(threads)
    logger.info("Embedded task worker started")


def _run_embedded_worker() -> None:
    # `db_worker` cannot run here: its handle() always installs SIGINT/SIGTERM handlers, and
    # Python allows that only in the main thread (ValueError elsewhere; django-tasks-db 0.13).
    # So this thread drives the command's Worker loop directly, with the options the command
    # would pass, and leaves signals to the server that owns the main thread. This import is
    # the one place we depend on the command's internals.
    from django_tasks_db.management.commands.db_worker import Worker

    while True:
        worker = Worker(queue_names=["*"], interval=0.2, batch=False, backend_name="default",
                        startup_delay=False, max_tasks=None, excluded_queue_names=[],
                        worker_id=_worker_id())
        try:
            worker.run()
            return
        except Exception:
            # A database hiccup must not end background work for the life of the server.
            logger.exception("Embedded worker crashed; restarting in 1 s")
            time.sleep(1)
