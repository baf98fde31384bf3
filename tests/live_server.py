"""A live Daphne for browser tests. Kept free of Django model imports: the spawned child
unpickles this class before Django is set up."""

from __future__ import annotations

import multiprocessing
from functools import partial

from daphne.testing import DaphneProcess


def _setup_then_start_worker(setup) -> None:
    # The child runs the app as the README's command does: server and task worker together.
    if setup is not None:
        setup()
    from django.conf import settings

    if settings.EMBEDDED_WORKER:
        from storyboard.worker import start_embedded

        start_embedded()


class SpawnedDaphneProcess(DaphneProcess):
    """Daphne in a fresh interpreter rather than a fork of this one, with the task worker.

    Earlier async tests leave asgiref's executor threads behind; a forked child inherits their
    locks but not the threads, and its first sync_to_async call then waits forever.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        spawn = multiprocessing.get_context("spawn")
        self.port = spawn.Value("i", self.port.value)
        self.ready = spawn.Event()
        self.errors = spawn.Queue()
        self.setup = partial(_setup_then_start_worker, self.setup)

    @staticmethod
    def _Popen(process_obj):
        return multiprocessing.get_context("spawn").Process._Popen(process_obj)
