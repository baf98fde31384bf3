from __future__ import annotations

import threading

from django.core.management.base import BaseCommand

from storyboard.worker import reconcile_forever, run_worker


class Command(BaseCommand):
    help = "Run a task worker with the reconciler (run several, on several machines)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--interval", type=float, default=0.5,
                            help="Seconds between polls of an empty queue.")

    def handle(self, *args, interval: float = 0.5, **options) -> None:
        stop = threading.Event()
        threading.Thread(target=reconcile_forever, args=(stop,), daemon=True).start()
        try:
            run_worker(interval=interval, verbosity=options["verbosity"])
        finally:
            stop.set()
