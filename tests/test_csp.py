"""Every HTML page carries the Content-Security-Policy from settings.SECURE_CSP."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from tests.conftest import Cast, client_for
from tests.factories import GenerationFactory
from tests.test_access_sweep import ROUTES, _finish, build_url, world  # noqa: F401

pytestmark = pytest.mark.django_db


def _directives(header: str) -> dict[str, list[str]]:
    parts = (part.split() for part in header.split(";") if part.strip())
    return {name: values for name, *values in parts}


def _assert_strict(response, where: str) -> None:
    header = response.get("Content-Security-Policy")
    assert header, f"{where} has no Content-Security-Policy"
    policy = _directives(header)
    assert policy["script-src"] == ["'self'"], where
    assert policy["style-src"] == ["'self'"], where
    assert policy["object-src"] == ["'none'"], where
    assert policy["frame-ancestors"] == ["'none'"], where
    assert "'unsafe-eval'" not in header, where


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_every_html_page_has_the_policy(world: Cast, route):  # noqa: F811
    url = build_url(route, world)
    # Anonymous visitors see the login, signup and invitation pages; members see the rest.
    for client in (Client(), client_for(world.owner)):
        response = client.get(url)
        _finish(response)
        if response.get("Content-Type", "").startswith("text/html") and response.status_code \
                in (200, 422):
            _assert_strict(response, f"GET {route}")


def test_the_sweep_really_sees_html(cast):
    # The sweep above skips non-HTML answers; make sure the main pages are HTML it checks.
    for client, url in ((Client(), reverse("accounts:login")),
                        (client_for(cast.owner), reverse("sb:board", args=[cast.project.pk]))):
        response = client.get(url)
        assert response["Content-Type"].startswith("text/html")
        _assert_strict(response, url)


def test_error_pages_have_the_policy(cast):
    response = client_for(cast.outsider).get(reverse("sb:board", args=[cast.project.pk]))
    assert response.status_code == 404
    _assert_strict(response, "404")


def test_media_keeps_its_own_sandbox_policy(cast):
    take = GenerationFactory(shot=cast.shot)
    response = client_for(cast.owner).get(reverse("sb:take-file", args=[take.uid, "video"]))
    _finish(response)
    assert response.status_code == 200
    assert response["Content-Security-Policy"] == "default-src 'none'; sandbox"


def test_it_allows_signed_s3_urls_for_media_only(monkeypatch):
    import importlib

    from storyboard import settings as project_settings

    monkeypatch.setenv("S3_BUCKET", "clips")
    monkeypatch.setenv("S3_ENDPOINT_URL", "https://s3.example.net:9000")
    try:
        reloaded = importlib.reload(project_settings)
        policy = reloaded.SECURE_CSP
        assert "https://s3.example.net:9000" in policy["media-src"]
        assert "https://s3.example.net:9000" in policy["img-src"]
        assert "https://s3.example.net:9000" not in policy["script-src"]
        assert "https://s3.example.net:9000" not in policy["connect-src"]
    finally:
        monkeypatch.delenv("S3_BUCKET")
        monkeypatch.delenv("S3_ENDPOINT_URL")
        importlib.reload(project_settings)
