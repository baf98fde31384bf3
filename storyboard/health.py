"""What /healthz and /readyz check: each piece a running Storyboard needs, tried for real.

Health (is everything working?): the database answers, a message goes round the channel layer,
a file can be written to, read from and deleted from media storage, and some task worker beat
recently. Readiness (may this server take traffic?): the database answers, its migrations are
all applied and the channel layer works; it leaves workers and storage out, because a web server
should not be pulled from the load balancer when a worker host is down.

A failed check says which, in plain words, and never the exception's text: these endpoints are
public and the text of a database error can name hosts and users. The exception is logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from storyboard.models import WorkerBeat

logger = logging.getLogger(__name__)

# Seconds a message may take to come back through the channel layer.
LAYER_TIMEOUT = 2.0


class CheckFailed(Exception):
    """A check ran and found something wrong; the message is for the JSON body."""


def _database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {}


async def _round_trip() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise CheckFailed("no channel layer is configured")
    channel = await layer.new_channel("healthz.")
    token = uuid.uuid4().hex
    await layer.send(channel, {"type": "healthz", "token": token})
    try:
        message = await asyncio.wait_for(layer.receive(channel), LAYER_TIMEOUT)
    except TimeoutError:
        raise CheckFailed("a message sent through the channel layer did not come back") from None
    if message.get("token") != token:
        raise CheckFailed("the channel layer gave back a different message")


def _channel_layer() -> dict:
    async_to_sync(_round_trip)()
    return {}


def _storage() -> dict:
    payload = uuid.uuid4().bytes
    name = default_storage.save(f"healthz/{uuid.uuid4().hex}.bin", ContentFile(payload))
    try:
        with default_storage.open(name, "rb") as fh:
            if fh.read() != payload:
                raise CheckFailed("media storage gave back different bytes than were written")
    finally:
        default_storage.delete(name)
    return {}


def _worker() -> dict:
    age = WorkerBeat.objects.newest_age()
    if age is None:
        raise CheckFailed("no task worker has ever checked in")
    limit = settings.WORKER_STALE_AFTER
    if age > limit:
        raise CheckFailed(f"no task worker has checked in for {age:.0f} s (limit {limit:.0f} s)")
    return {"age_s": round(age, 1)}


_migrated = False


def _migrations() -> dict:
    # Once applied, migrations stay applied for the life of the process: remembered, because
    # loading the migration graph costs more than the rest of a readiness probe together.
    global _migrated
    if not _migrated:
        executor = MigrationExecutor(connection)
        if executor.migration_plan(executor.loader.graph.leaf_nodes()):
            raise CheckFailed("the database has migrations still to apply")
        _migrated = True
    return {}


HEALTH: dict[str, Callable[[], dict]] = {
    "database": _database, "channel_layer": _channel_layer, "storage": _storage,
    "worker": _worker,
}
READINESS: dict[str, Callable[[], dict]] = {
    "database": _database, "migrations": _migrations, "channel_layer": _channel_layer,
}

PLAIN_WORDS = {
    "database": "the database did not answer",
    "migrations": "could not read the database's migrations",
    "channel_layer": "the channel layer did not answer",
    "storage": "could not write, read and delete a file in media storage",
    "worker": "could not read the workers' heartbeats",
}


def run(checks: dict[str, Callable[[], dict]]) -> tuple[bool, dict[str, dict]]:
    """Every check, even after one fails (the report should name all that are down)."""
    results: dict[str, dict] = {}
    for name, check in checks.items():
        started = time.perf_counter()
        try:
            result = {"ok": True, **check()}
        except CheckFailed as failure:
            result = {"ok": False, "error": str(failure)}
        except Exception:
            logger.exception("Health check %s failed", name)
            result = {"ok": False, "error": PLAIN_WORDS[name]}
        result["ms"] = round((time.perf_counter() - started) * 1000, 1)
        results[name] = result
    return all(result["ok"] for result in results.values()), results
