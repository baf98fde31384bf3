from __future__ import annotations

import threading

from django.core.management.base import BaseCommand, CommandError

from storyboard.worker import beat_forever, reconcile_forever, run_worker, run_workers


class Command(BaseCommand):
    help = "Run a task worker with the reconciler (run several, on several machines)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--interval", type=float, default=0.5,
                            help="Seconds between polls of an empty queue.")
        parser.add_argument("--concurrency", type=int, default=1,
                            help="Jobs run at once by this process, one thread each.")

    def handle(self, *args, interval: float = 0.5, concurrency: int = 1, **options) -> None:
        if concurrency < 1:
            raise CommandError("--concurrency must be 1 or more.")
        stop = threading.Event()
        # One reconciler and one heartbeat per process, whatever its concurrency.
        for target in (reconcile_forever, beat_forever):
            threading.Thread(target=target, args=(stop,), daemon=True).start()
        try:
            if concurrency == 1:
                run_worker(interval=interval, verbosity=options["verbosity"])
            else:
                run_workers(concurrency=concurrency, interval=interval)
        finally:
            stop.set()
