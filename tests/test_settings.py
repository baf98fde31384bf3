"""Deployment settings and the services the suite was asked to run against."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "PRODUCTION",
                          "DJANGO_ALLOW_ASYNC_UNSAFE", "DATABASE_POOL")}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env},
                          capture_output=True, text=True, timeout=120, check=False)


def test_it_passes_the_deploy_check_in_production_mode():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", PRODUCTION="1",
                     SECRET_KEY="k" * 30 + "-production-secret-0123456789abcdefXYZ",
                     ALLOWED_HOSTS="storyboard.example.com")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_it_refuses_to_start_production_without_a_secret_key():
    result = _manage("check", PRODUCTION="1", ALLOWED_HOSTS="storyboard.example.com")
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


@pytest.mark.django_db
def test_it_runs_on_the_database_it_was_given():
    # CI runs the suite a second time with DATABASE_URL pointing at PostgreSQL; a fallback to
    # SQLite there would hide every PostgreSQL-only failure.
    url = os.getenv("DATABASE_URL", "")
    expected = "postgresql" if url.startswith(("postgres", "postgresql")) else "sqlite"
    assert connection.vendor == expected


def test_it_uses_the_channel_layer_it_was_given():
    layer = get_channel_layer()
    expected = "RedisChannelLayer" if os.getenv("REDIS_URL") else "InMemoryChannelLayer"
    assert type(layer).__name__ == expected
    # A real round trip: a service that is configured but not running fails here.
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.send)(channel, {"type": "probe", "n": 1})
    assert async_to_sync(layer.receive)(channel) == {"type": "probe", "n": 1}


@pytest.mark.parametrize(("production", "pool"), [("1", True), ("0", False)])
def test_production_keeps_a_pool_of_database_connections(production, pool):
    # Settings only: nothing connects, so no PostgreSQL is needed for this.
    result = _manage("shell", "-c", "from django.conf import settings; "
                     "print(settings.DATABASES['default']['OPTIONS']['pool'])",
                     PRODUCTION=production, DATABASE_URL="postgres://pooled@db.invalid/app",
                     SECRET_KEY="k" * 30 + "-production-secret-0123456789abcdefXYZ",
                     ALLOWED_HOSTS="storyboard.example.com")
    assert result.returncode == 0, result.stderr
    printed = result.stdout.strip().splitlines()[-1]
    assert (printed != "False") is pool
    if pool:
        assert "'max_size': 20" in printed
        assert "check_connection" in printed
