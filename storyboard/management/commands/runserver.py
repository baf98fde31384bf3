from __future__ import annotations

from daphne.management.commands.runserver import Command as DaphneRunserver
from django.conf import settings


class Command(DaphneRunserver):
    """Daphne's runserver, plus the embedded task worker when EMBEDDED_WORKER is on."""

    def inner_run(self, *args, **options):
        if settings.EMBEDDED_WORKER:
            from storyboard.worker import start_embedded

            start_embedded()
        return super().inner_run(*args, **options)
