"""Media on S3, for real: django-storages against a local S3-compatible server (moto over HTTP).

Uploads and every file of a take land in the bucket, nothing on local disk; media views check
access first and then redirect to a short-lived signed URL, so no media byte passes through a
web server.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from django.urls import reverse

from storyboard import generation
from storyboard.models import Asset, Generation, WorkerBeat
from tests.conftest import client_for
from tests.factories import ShotFactory
from tests.helpers import work_off_the_queue
from tests.test_asset_views import png_upload, upload

pytestmark = pytest.mark.django_db


def _disk(settings) -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def _fetch(url: str, **headers) -> tuple[int, dict, bytes]:
    # The local S3 server's http URL, as the view handed it out.
    request = urllib.request.Request(url, headers=headers)  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()


def _completed_take(cast, captured) -> Generation:
    shot = ShotFactory(project=cast.project, mode="text",
                       endpoint="fal-ai/bytedance/seedance/v1/lite/text-to-video",
                       resolution="480p", aspect_ratio="16:9", duration="2",
                       generate_audio=False, prompt="Slow push in on the lighthouse.")
    with captured(execute=True):
        take = generation.start_generation(shot=shot, user=cast.editor)
    work_off_the_queue()
    take.refresh_from_db()
    assert take.state == Generation.State.COMPLETED
    return take


def test_an_upload_and_its_thumbnail_land_in_the_bucket(cast, s3, s3_server, settings):
    assert upload(cast.editor, cast.project, [png_upload()]).status_code == 200
    asset = Asset.objects.get()
    assert {asset.file.name, asset.thumbnail.name} <= s3_server.keys(s3)
    assert _disk(settings) == []


@pytest.mark.django_db(transaction=True)
def test_every_file_of_a_take_lands_in_the_bucket(cast, s3, s3_server, settings,
                                                 django_capture_on_commit_callbacks):
    take = _completed_take(cast, django_capture_on_commit_callbacks)
    files = {take.video.name, take.poster.name, take.first_frame.name, take.last_frame.name}
    assert all(files)
    assert files <= s3_server.keys(s3)
    assert _disk(settings) == []


@pytest.mark.django_db(transaction=True)
def test_a_take_is_handed_out_as_a_short_lived_signed_url(cast, s3, s3_server,
                                                         django_capture_on_commit_callbacks):
    take = _completed_take(cast, django_capture_on_commit_callbacks)
    response = client_for(cast.viewer).get(reverse("sb:take-file", args=[take.uid, "video"]))
    assert response.status_code == 302
    assert response["Cache-Control"] == "private, no-store"
    location = response["Location"]
    assert location.startswith(f"{s3_server.endpoint}/{s3}/")
    query = parse_qs(urlsplit(location).query)
    assert query["X-Amz-Expires"] == ["300"]
    assert query["X-Amz-Signature"]
    assert query["response-content-type"] == ["video/mp4"]
    # The browser fetches the bytes from the bucket, seeking with ranges as players do.
    status, headers, body = _fetch(location)
    stored = s3_server.client().get_object(Bucket=s3, Key=take.video.name)["Body"].read()
    assert (status, headers["content-type"], body) == (200, "video/mp4", stored)
    status, headers, body = _fetch(location, Range="bytes=0-99")
    assert (status, len(body)) == (206, 100)


@pytest.mark.django_db(transaction=True)
def test_no_signed_url_leaves_before_the_access_check(cast, s3,
                                                     django_capture_on_commit_callbacks):
    take = _completed_take(cast, django_capture_on_commit_callbacks)
    url = reverse("sb:take-file", args=[take.uid, "video"])
    outsider = client_for(cast.outsider).get(url)
    assert outsider.status_code == 404
    assert "Location" not in outsider
    anonymous = client_for(None).get(url)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith(reverse("accounts:login"))


def test_an_asset_thumbnail_redirects_to_the_bucket(cast, s3, s3_server):
    upload(cast.editor, cast.project, [png_upload()])
    asset = Asset.objects.get()
    response = client_for(cast.viewer).get(reverse("sb:asset-file",
                                                   args=[asset.uid, "thumbnail"]))
    assert response.status_code == 302
    status, headers, body = _fetch(response["Location"])
    assert (status, headers["content-type"]) == (200, "image/jpeg")
    assert body.startswith(b"\xff\xd8")


def test_healthz_writes_reads_and_deletes_in_the_bucket(s3, s3_server):
    WorkerBeat.beat(worker="host-1")
    response = client_for(None).get("/healthz")
    assert response.status_code == 200
    assert response.json()["checks"]["storage"]["ok"]
    assert s3_server.keys(s3) == set()


def test_healthz_fails_when_the_bucket_is_gone(settings, s3_server):
    WorkerBeat.beat(worker="host-1")
    settings.STORAGES = {**settings.STORAGES,
                         "default": s3_server.storage_options("no-such-bucket-here")}
    response = client_for(None).get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["storage"]["error"] == (
        "could not write, read and delete a file in media storage")
