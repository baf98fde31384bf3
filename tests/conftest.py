from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from types import SimpleNamespace

import django_ratelimit.core
import pytest
from django.test import Client

from accounts.models import Role, Team, User
from storyboard.models import Budget, Project, Shot
from tests.factories import ProjectFactory, ShotFactory, TeamFactory, UserFactory

# CI sets this: a test that needs a service it cannot find must fail there, never skip.
IN_CI = os.getenv("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(autouse=True)
def _test_settings(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    # The real hasher costs ~0.3 s per password; tests create dozens of users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _heavy_on_postgresql_only(request):
    # Process-level scenarios (real workers, kill -9) take seconds each; CI runs them once, on
    # PostgreSQL, where several workers really race. On SQLite they are skipped by design.
    if request.node.get_closest_marker("heavy"):
        from django.db import connection

        if connection.vendor != "postgresql":
            pytest.skip("heavy scenario: PostgreSQL only")


@pytest.fixture(autouse=True)
def _fresh_throttles(settings, monkeypatch):
    # Every test starts with clean rate-limit counters. A key prefix of its own does that
    # without clearing the cache: on CI the cache is Redis, whose database the channel layer
    # (and a live server's websockets) share. Axes keeps its failures in the test database,
    # which each test already rolls back or flushes.
    settings.RATELIMIT_CACHE_PREFIX = f"rl-{uuid.uuid4().hex}:"
    # django-ratelimit counts in fixed windows: a test whose requests straddled a window's end
    # saw its count start again (a third request let through once in a full run). Its clock
    # stands still for the test; no test waits for a window to pass.
    now = time.time()
    monkeypatch.setattr(django_ratelimit.core, "time", SimpleNamespace(time=lambda: now))


@pytest.fixture(autouse=True)
def _fresh_channel_layer():
    # The Redis layer binds locks to the event loop that first used it, and every async test
    # gets a new loop; a layer per test keeps them apart (and drops in-memory leftovers).
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(scope="session")
def s3_server():
    """A local S3-compatible server (moto, a real process over HTTP) for the whole run."""
    from tests.s3server import S3Server

    server = S3Server.start()
    yield server
    server.stop()


@pytest.fixture
def s3(settings, s3_server):
    """Media on a fresh bucket of the local S3 server, as S3_* settings would put it."""
    bucket = s3_server.new_bucket()
    settings.STORAGES = {**settings.STORAGES, "default": s3_server.storage_options(bucket)}
    return bucket


@dataclass
class Cast:
    """Team A with one person per role, and Charlie who runs team B and has no access to A."""

    team: Team
    owner: User
    producer: User
    editor: User
    reviewer: User
    viewer: User
    other_team: Team
    outsider: User
    project: Project
    shot: Shot

    def member(self, role: str) -> User:
        return getattr(self, role)


@pytest.fixture
def cast(db) -> Cast:
    team = TeamFactory(name="Alpha")
    people = {}
    for role in Role.values:
        user = UserFactory(username=f"{role}-a")
        team.add_member(user, role)
        people[role] = user
    other_team = TeamFactory(name="Bravo")
    outsider = UserFactory(username="charlie")
    other_team.add_member(outsider, Role.OWNER)
    # Generous, so tests about other things never meet the budget by accident.
    Budget.objects.create(team=team, limit_micros=10_000_000_000)
    project = ProjectFactory(team=team, name="Spot")
    shot = ShotFactory(project=project, title="Opening")
    return Cast(team=team, other_team=other_team, outsider=outsider, project=project, shot=shot,
                **people)


def client_for(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client
