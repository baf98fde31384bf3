"""Small waits and runs that tests share."""

from __future__ import annotations

import signal
import tempfile
import threading
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

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


def no_sleep(seconds: float) -> None:
    """A provider's backoff sleep in tests: retries happen at once."""
    return None


@cache
def house_clip() -> bytes:
    """A tiny 1 s clip already in house format, so tests measure the workflow, not x264."""
    from storyboard import previz

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "clip.mp4"
        previz.render(previz.RenderSpec(width=64, height=36, frames=24, prompt="static",
                                        seed=1, audio=False), out)
        return out.read_bytes()
