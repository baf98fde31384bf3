"""Every hostile file from the corpus, uploaded through the real view: refused, nothing stored."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from storyboard.models import Asset
from tests.conftest import client_for
from tests.hostile_files import good_files, hostile_corpus

pytestmark = pytest.mark.django_db

# Django's multipart parser cleans these names before any view sees them: it keeps only the
# last path component and drops unprintable characters (and the upload object trims names to
# 255). storyboard.media refuses such raw names (tests/test_media.py); through HTTP the cleaned
# upload is judged on its content, so these are checked for safe storage instead of refusal.
NEUTRALISED_BY_DJANGO = {
    "name_with_backslash": "x.png",
    "name_300_chars": "a" * 251 + ".png",
    "name_with_nul": "photo.png",
    "name_with_newline": "photo.png",
    "name_with_bidi_override": "photognp.png",
}
CORPUS = [c for c in hostile_corpus() if c[0] not in NEUTRALISED_BY_DJANGO]
NEUTRALISED = [c for c in hostile_corpus() if c[0] in NEUTRALISED_BY_DJANGO]


def _files_under(root) -> list[Path]:
    root = Path(root)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def _upload(client, project, files: list[tuple[str, bytes]]):
    payload = [SimpleUploadedFile(name, data) for name, data in files]
    return client.post(reverse("sb:assets", args=[project.pk]), {"file": payload},
                       HTTP_HX_REQUEST="true")


def test_the_corpus_is_big_enough():
    assert len(CORPUS) >= 20
    assert len({case for case, _, _ in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize(("case", "name", "data"), CORPUS, ids=[c for c, _, _ in CORPUS])
def test_it_refuses_hostile_file(cast, settings, case, name, data):
    response = _upload(client_for(cast.editor), cast.project, [(name, data)])
    assert response.status_code == 422, case
    assert b'class="notice error"' in response.content
    assert Asset.objects.count() == 0
    assert _files_under(settings.MEDIA_ROOT) == []


@pytest.mark.parametrize(("case", "name", "data"), NEUTRALISED, ids=[c for c, _, _ in NEUTRALISED])
def test_it_stores_a_cleaned_name_under_a_generated_path(cast, settings, case, name, data):
    response = _upload(client_for(cast.editor), cast.project, [(name, data)])
    assert response.status_code == 200
    asset = Asset.objects.get()
    assert asset.original_name == NEUTRALISED_BY_DJANGO[case]
    stored = Path(asset.file.path).resolve()
    assert stored.is_relative_to(Path(settings.MEDIA_ROOT).resolve())
    assert stored.name == f"{asset.uid}.png"


def test_it_refuses_hostile_uploads_in_batches(cast, settings):
    """The whole corpus in multi-file requests: every file refused with its own message."""
    client = client_for(cast.editor)
    for start in range(0, len(CORPUS), 8):
        batch = CORPUS[start:start + 8]
        response = _upload(client, cast.project, [(n, d) for _, n, d in batch])
        assert response.status_code == 422
        assert response.content.count(b'class="notice error"') == len(batch)
    assert Asset.objects.count() == 0
    assert _files_under(settings.MEDIA_ROOT) == []


def test_it_keeps_the_good_files_of_a_mixed_upload(cast, settings):
    good = [(name, data) for _, name, data in good_files()]
    bad = [(name, data) for _, name, data in CORPUS[:3]]
    response = _upload(client_for(cast.editor), cast.project, good + bad)
    assert response.status_code == 200
    assert Asset.objects.count() == len(good)
    assert response.content.count(b'class="notice error"') == len(bad)
    # Every stored file (original + thumbnail or poster) belongs to a stored asset.
    stored = {p.name[:36] for p in _files_under(settings.MEDIA_ROOT)}
    assert stored == {str(a.uid) for a in Asset.objects.all()}
