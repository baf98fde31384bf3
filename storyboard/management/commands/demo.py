from __future__ import annotations

from django.core.management import call_command
from django.core.management.base import BaseCommand

from storyboard.demo import DEMO_PASSWORD, DEMO_PEOPLE, load_demo


class Command(BaseCommand):
    help = "Migrate, load the demo team and project, and serve the app on 127.0.0.1:8000."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--no-serve", action="store_true", help="Load the data and stop.")
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")

    def handle(self, *args, no_serve: bool = False, addrport: str = "127.0.0.1:8000",
               **options) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        team, project, created = load_demo()
        state = "Loaded" if created else "Found"
        self.stdout.write(self.style.SUCCESS(f"{state} demo team “{team.name}” "
                                             f"with project “{project.name}”."))
        self.stdout.write(f"Log in at http://{addrport}/ with password “{DEMO_PASSWORD}” as:")
        for username, name, role in DEMO_PEOPLE:
            self.stdout.write(f"  {username:<8} {name:<15} {role.label}")
        if not no_serve:
            # Daphne's runserver: HTTP and websockets in one process. No autoreload, so the
            # in-process parts (channel layer, later the task worker) live exactly once.
            call_command("runserver", addrport, use_reloader=False)
