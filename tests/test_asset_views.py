"""The asset library: uploads through storyboard.media, deleting, and serving files."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import DatabaseError
from django.urls import reverse

from storyboard.models import Asset, Shot
from tests.conftest import client_for
from tests.factories import AssetFactory, ProjectFactory, png_bytes

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
# Refused input answers 422 with the form and its messages (storyboard.views.INVALID).
INVALID = 422
READ_ONLY = ["reviewer", "viewer"]
WRITERS = ["owner", "producer", "editor"]
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


def png_upload(name: str = "harbour.png", size: tuple[int, int] = (40, 30)) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, png_bytes(size), content_type="image/png")


def media_files(settings) -> set[Path]:
    root = Path(settings.MEDIA_ROOT)
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def assert_login_redirect(response, url: str) -> None:
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('accounts:login')}?next={url}"


def upload(user, project, files, **extra):
    return client_for(user).post(reverse("sb:assets", args=[project.pk]), {"file": files},
                                 **extra)


# assets: the library page


@pytest.mark.parametrize("role", [*WRITERS, *READ_ONLY])
def test_it_lists_the_projects_assets_to_members(cast, role):
    AssetFactory(project=cast.project, original_name="lighthouse.png")
    AssetFactory(project=ProjectFactory(team=cast.team), original_name="sibling.png")
    response = client_for(cast.member(role)).get(reverse("sb:assets", args=[cast.project.pk]))
    assert response.status_code == 200
    content = response.content.decode()
    assert "<html" in content
    assert "lighthouse.png" in content
    assert "sibling.png" not in content


def test_it_gives_htmx_only_the_library_partial(cast):
    AssetFactory(project=cast.project, original_name="lighthouse.png")
    response = client_for(cast.viewer).get(reverse("sb:assets", args=[cast.project.pk]), **HTMX)
    assert response.status_code == 200
    content = response.content.decode()
    assert 'id="library"' in content
    assert "lighthouse.png" in content
    assert "<html" not in content


def test_it_hides_the_library_from_outsider(cast):
    AssetFactory(project=cast.project, original_name="lighthouse.png")
    response = client_for(cast.outsider).get(reverse("sb:assets", args=[cast.project.pk]))
    assert response.status_code == 404
    assert b"lighthouse.png" not in response.content


def test_it_sends_anonymous_to_login_from_the_library(cast):
    url = reverse("sb:assets", args=[cast.project.pk])
    assert_login_redirect(client_for(None).get(url), url)


# assets: uploading


@pytest.mark.parametrize("role", WRITERS)
def test_it_stores_an_uploaded_png(cast, role, settings):
    user = cast.member(role)
    response = upload(user, cast.project, [png_upload()])
    assert response.status_code == 200
    assert "Added 1 file." in response.content.decode()
    asset = Asset.objects.get()
    assert (asset.project, asset.kind, asset.content_type) == (cast.project, "image", "image/png")
    assert (asset.width, asset.height, asset.original_name) == (40, 30, "harbour.png")
    assert asset.uploaded_by == user
    # Stored under a name we chose, never the uploader's.
    assert asset.file.name == (
        f"teams/{cast.team.pk}/projects/{cast.project.pk}/{asset.uid}.png"
    )
    assert Path(asset.file.path) in media_files(settings)
    assert Path(asset.thumbnail.path) in media_files(settings)


def test_it_returns_the_library_partial_to_htmx_after_an_upload(cast):
    response = upload(cast.editor, cast.project, [png_upload(), png_upload("dusk.png")], **HTMX)
    assert response.status_code == 200
    content = response.content.decode()
    assert 'id="library"' in content
    assert "Added 2 files." in content
    assert "dusk.png" in content
    assert "<html" not in content
    assert Asset.objects.count() == 2


def test_it_refuses_an_svg_named_png(cast, settings):
    bad = SimpleUploadedFile("x.png", SVG, content_type="image/png")
    response = upload(cast.editor, cast.project, [bad])
    assert response.status_code == INVALID
    assert "“x.png” is an SVG drawing" in response.content.decode()
    assert not Asset.objects.exists()
    assert media_files(settings) == set()


def test_it_refuses_a_truncated_png(cast, settings):
    bad = SimpleUploadedFile("cut.png", png_bytes((40, 30))[:60], content_type="image/png")
    response = upload(cast.editor, cast.project, [bad], **HTMX)
    assert response.status_code == INVALID
    assert "is not a complete image" in response.content.decode()
    assert not Asset.objects.exists()
    assert media_files(settings) == set()


def test_it_leaves_no_files_when_the_row_cannot_be_saved(cast, settings, monkeypatch):
    # The files are written before the row; a failed insert must take them away again.
    def fail(self, *args, **kwargs):
        raise DatabaseError("disk full")

    monkeypatch.setattr(Asset, "save", fail)
    with pytest.raises(DatabaseError):
        upload(cast.editor, cast.project, [png_upload()])
    assert media_files(settings) == set()


def test_it_keeps_the_good_files_of_a_mixed_upload(cast, settings):
    bad = SimpleUploadedFile("x.png", SVG, content_type="image/png")
    response = upload(cast.editor, cast.project, [png_upload(), bad])
    assert response.status_code == 200
    content = response.content.decode()
    assert "Added 1 file." in content
    assert "“x.png” is an SVG drawing" in content
    assert list(Asset.objects.values_list("original_name", flat=True)) == ["harbour.png"]
    # The stored original and its thumbnail, nothing of the refused file.
    assert len(media_files(settings)) == 2


def test_it_asks_for_a_file_when_none_is_sent(cast):
    response = client_for(cast.editor).post(reverse("sb:assets", args=[cast.project.pk]))
    assert response.status_code == INVALID
    assert "Choose at least one file to upload." in response.content.decode()


def test_it_refuses_more_than_twenty_files_at_once(cast, settings):
    files = [png_upload(f"f{i}.png", (4, 4)) for i in range(21)]
    response = upload(cast.editor, cast.project, files)
    assert response.status_code == INVALID
    assert "Upload at most 20 files at a time." in response.content.decode()
    assert not Asset.objects.exists()
    assert media_files(settings) == set()


@pytest.mark.parametrize("role", READ_ONLY)
def test_it_refuses_read_only_roles_uploading(cast, role, settings):
    response = upload(cast.member(role), cast.project, [png_upload()])
    assert response.status_code == 403
    assert not Asset.objects.exists()
    assert media_files(settings) == set()


def test_it_hides_uploading_from_outsider(cast, settings):
    response = upload(cast.outsider, cast.project, [png_upload()])
    assert response.status_code == 404
    assert not Asset.objects.exists()
    assert media_files(settings) == set()


def test_it_sends_anonymous_to_login_from_uploading(cast, settings):
    url = reverse("sb:assets", args=[cast.project.pk])
    assert_login_redirect(client_for(None).post(url, {"file": [png_upload()]}), url)
    assert not Asset.objects.exists()
    assert media_files(settings) == set()


# asset_delete


def test_it_deletes_an_asset_and_its_files(cast, settings, django_capture_on_commit_callbacks):
    asset = AssetFactory(project=cast.project)
    Shot.objects.filter(pk=cast.shot.pk).update(start_frame=asset)
    assert len(media_files(settings)) == 2
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(cast.editor).post(reverse("sb:asset-delete", args=[asset.uid]))
    assert response.status_code == 302
    assert response["Location"] == reverse("sb:assets", args=[cast.project.pk])
    assert not Asset.objects.exists()
    assert media_files(settings) == set()
    # The shot that used it as a frame keeps going without it.
    assert Shot.objects.get(pk=cast.shot.pk).start_frame is None


def test_it_returns_the_library_without_the_asset_to_htmx(cast):
    gone = AssetFactory(project=cast.project, original_name="gone.png")
    AssetFactory(project=cast.project, original_name="kept.png")
    response = client_for(cast.editor).post(reverse("sb:asset-delete", args=[gone.uid]), **HTMX)
    assert response.status_code == 200
    content = response.content.decode()
    assert 'id="library"' in content
    assert "kept.png" in content
    assert "gone.png" not in content
    assert "<html" not in content


@pytest.mark.parametrize("role", READ_ONLY)
def test_it_refuses_read_only_roles_deleting_assets(cast, role, settings,
                                                    django_capture_on_commit_callbacks):
    asset = AssetFactory(project=cast.project)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(cast.member(role)).post(reverse("sb:asset-delete", args=[asset.uid]))
    assert response.status_code == 403
    assert Asset.objects.filter(pk=asset.pk).exists()
    assert len(media_files(settings)) == 2


def test_it_hides_asset_delete_from_outsider(cast, settings, django_capture_on_commit_callbacks):
    asset = AssetFactory(project=cast.project)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(cast.outsider).post(reverse("sb:asset-delete", args=[asset.uid]))
    assert response.status_code == 404
    assert Asset.objects.filter(pk=asset.pk).exists()
    assert len(media_files(settings)) == 2


def test_it_sends_anonymous_to_login_from_asset_delete(cast):
    asset = AssetFactory(project=cast.project)
    url = reverse("sb:asset-delete", args=[asset.uid])
    assert_login_redirect(client_for(None).post(url), url)
    assert Asset.objects.filter(pk=asset.pk).exists()


def test_it_refuses_get_on_asset_delete(cast):
    asset = AssetFactory(project=cast.project)
    response = client_for(cast.owner).get(reverse("sb:asset-delete", args=[asset.uid]))
    assert response.status_code == 405
    assert Asset.objects.filter(pk=asset.pk).exists()


# asset_file


def fetch(user, asset: Asset, variant: str):
    return client_for(user).get(reverse("sb:asset-file", args=[asset.uid, variant]))


def body(response) -> bytes:
    # The test client closes the file once the stream is consumed. Calling response.close()
    # again here would fire request_finished outside the client and close the test database.
    return b"".join(response.streaming_content)


@pytest.mark.parametrize("role", [*WRITERS, *READ_ONLY])
def test_it_serves_the_file_to_members_with_safe_headers(cast, role):
    asset = AssetFactory(project=cast.project)
    response = fetch(cast.member(role), asset, "file")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]
    assert "default-src 'none'" in response["Content-Security-Policy"]
    assert response["Content-Disposition"] == "inline"
    assert response["Cache-Control"].startswith("private")
    with asset.file.open("rb") as f:
        assert body(response) == f.read()


def test_it_serves_the_thumbnail_as_jpeg_with_safe_headers(cast):
    asset = AssetFactory(project=cast.project)
    response = fetch(cast.viewer, asset, "thumbnail")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]
    data = body(response)
    assert data.startswith(b"\xff\xd8\xff")
    with asset.thumbnail.open("rb") as f:
        assert data == f.read()


def test_it_serves_an_uploaded_files_variants(cast):
    upload(cast.editor, cast.project, [png_upload()])
    asset = Asset.objects.get()
    assert body(fetch(cast.viewer, asset, "file")).startswith(b"\x89PNG")
    assert body(fetch(cast.viewer, asset, "thumbnail")).startswith(b"\xff\xd8\xff")


@pytest.mark.parametrize("variant", ["poster", "secret", "original", "FILE", "..", "path"])
def test_it_404s_for_a_variant_that_is_not_there(cast, variant):
    # An image has no poster; the others are not variants at all.
    asset = AssetFactory(project=cast.project)
    assert fetch(cast.viewer, asset, variant).status_code == 404


def test_it_404s_for_a_type_it_would_not_serve(cast):
    asset = AssetFactory(project=cast.project, content_type="text/html")
    assert fetch(cast.owner, asset, "file").status_code == 404


def test_it_404s_for_an_unknown_asset(cast):
    url = reverse("sb:asset-file", args=[uuid.uuid4(), "file"])
    assert client_for(cast.owner).get(url).status_code == 404


@pytest.mark.parametrize("variant", ["file", "thumbnail"])
def test_it_hides_files_from_outsider(cast, variant):
    asset = AssetFactory(project=cast.project)
    response = fetch(cast.outsider, asset, variant)
    assert response.status_code == 404
    assert not response.streaming


def test_it_sends_anonymous_to_login_from_files(cast):
    asset = AssetFactory(project=cast.project)
    url = reverse("sb:asset-file", args=[asset.uid, "file"])
    assert_login_redirect(client_for(None).get(url), url)


def test_it_refuses_post_on_files(cast):
    asset = AssetFactory(project=cast.project)
    url = reverse("sb:asset-file", args=[asset.uid, "file"])
    assert client_for(cast.owner).post(url).status_code == 405


def test_it_answers_404_for_a_file_that_is_gone(cast):
    from tests.factories import GenerationFactory

    asset = AssetFactory(project=cast.project)
    Path(asset.file.path).unlink()
    take = GenerationFactory(shot=cast.shot, poster="takes/never-written.jpg")
    client = client_for(cast.viewer)
    assert client.get(reverse("sb:asset-file", args=[asset.uid, "file"])).status_code == 404
    assert client.get(reverse("sb:take-file", args=[take.uid, "poster"])).status_code == 404
