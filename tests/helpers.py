"""Small waits and runs that tests share."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

from django.core.management import call_command

SIGNALS = (signal.SIGINT, signal.SIGTERM, *((signal.SIGQUIT,) if hasattr(signal, "SIGQUIT")
                                             else ()))


def wait_until(condition: Callable[[], object], *, timeout: float = 30.0,
               every: float = 0.02) -> None:
    """Return as soon as `condition()` is true; fail the test if it is not within `timeout`."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError("condition not met in time")
        pause.wait(every)


def work_off_the_queue() -> None:
    """Run every queued task through django-tasks-db's own `db_worker` command, then return.

    The command installs its shutdown handlers for SIGINT and SIGTERM; the test run gets its
    own back afterwards.
    """
    saved = {number: signal.getsignal(number) for number in SIGNALS}
    try:
        call_command("db_worker", queue_name="*", batch=True, interval=0, reload=False,
                     startup_delay=False, verbosity=0)
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)


def run_to_the_end(take, *, polls: int = 12):
    """Drive a take the way polling workers would, until it ends (or `polls` run out)."""
    from storyboard import generation

    for _ in range(polls):
        take.refresh_from_db()
        if take.is_terminal:
            break
        generation.drive(take_id=take.pk)
    take.refresh_from_db()
    return take
