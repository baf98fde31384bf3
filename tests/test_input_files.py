"""Signed, expiring URLs through which providers fetch a take's input files."""

from __future__ import annotations

import pytest
from django.core import signing
from django.urls import reverse

from storyboard.generation import sign_input
from tests.conftest import client_for
from tests.factories import AssetFactory

pytestmark = pytest.mark.django_db


def test_a_signed_url_serves_the_file_without_a_login(cast):
    asset = AssetFactory(project=cast.project)
    response = client_for(None).get(reverse("sb:input-file", args=[sign_input(asset.file.name)]))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert "sandbox" in response["Content-Security-Policy"]
    assert b"".join(response.streaming_content) == asset.file.open("rb").read()


def test_a_tampered_url_is_refused(cast):
    asset = AssetFactory(project=cast.project)
    token = sign_input(asset.file.name)
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert client_for(None).get(reverse("sb:input-file", args=[forged])).status_code == 404


def test_a_url_for_a_file_we_did_not_sign_is_refused(cast):
    token = signing.dumps("teams/1/projects/1/anything.png", salt="some-other-purpose")
    assert client_for(None).get(reverse("sb:input-file", args=[token])).status_code == 404


def test_an_expired_url_is_refused(cast, monkeypatch):
    asset = AssetFactory(project=cast.project)
    token = sign_input(asset.file.name)
    monkeypatch.setattr("storyboard.generation.INPUT_URL_LIFETIME", -1)
    assert client_for(None).get(reverse("sb:input-file", args=[token])).status_code == 404


def test_a_deleted_file_is_gone(cast):
    asset = AssetFactory(project=cast.project)
    token = sign_input(asset.file.name)
    asset.delete()
    assert client_for(None).get(reverse("sb:input-file", args=[token])).status_code == 404
