"""A live Daphne for browser tests. Kept free of Django model imports: the spawned child
unpickles this class before Django is set up."""

from __future__ import annotations

import multiprocessing

from daphne.testing import DaphneProcess


class SpawnedDaphneProcess(DaphneProcess):
    """Daphne in a fresh interpreter rather than a fork of this one.

    Earlier async tests leave asgiref's executor threads behind; a forked child inherits their
    locks but not the threads, and its first sync_to_async call then waits forever.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        spawn = multiprocessing.get_context("spawn")
        self.port = spawn.Value("i", self.port.value)
        self.ready = spawn.Event()
        self.errors = spawn.Queue()

    @staticmethod
    def _Popen(process_obj):
        return multiprocessing.get_context("spawn").Process._Popen(process_obj)
