"""Background tasks. They only call into the domain; the Generation row holds the truth."""

from __future__ import annotations

from django.tasks import task

from storyboard import generation


@task()
def run_generation(*, take_id: int) -> None:
    generation.drive(take_id=take_id)


@task()
def reconcile() -> int:
    return generation.reconcile()
