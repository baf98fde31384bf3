"""Background tasks. They only call into the domain; the Generation row holds the truth.

Imports go one way, from here into generation: generation enqueues `run_generation` by its
dotted path (generation.DRIVE_TASK), which is also the path stored in queued rows, so these
functions keep their names and their home in this module.
"""

from __future__ import annotations

from django.tasks import task

from storyboard import chainrun, export, generation, webhooks


@task()
def run_generation(*, take_id: int, hint: str = "") -> None:
    generation.drive(take_id=take_id, hint=hint)


@task()
def reconcile() -> int:
    return generation.reconcile()


@task()
def advance_chain(*, run_id: int) -> None:
    chainrun.advance(run_id=run_id)


@task()
def run_export(*, export_id: int) -> None:
    export.run(export_id=export_id)


@task()
def deliver_webhook(*, delivery_id: int) -> None:
    webhooks.deliver(delivery_id=delivery_id)
