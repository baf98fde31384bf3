"""The printable board: the print view by role, its pages of six, and the server's PDF."""

from __future__ import annotations

import math
import re

import pytest
from django.urls import reverse

from storyboard import printing
from storyboard.models import Shot
from tests.conftest import client_for
from tests.factories import AssetFactory, GenerationFactory, SceneFactory, ShotFactory

pytestmark = pytest.mark.django_db

ROLES = ["owner", "producer", "editor", "reviewer", "viewer"]


def _board(cast, n: int) -> list[Shot]:
    """cast.shot plus n - 1 more, over two scenes."""
    harbour = SceneFactory(project=cast.project, title="Harbour", position=1)
    storm = SceneFactory(project=cast.project, title="Storm", position=2)
    shots = [cast.shot]
    for i in range(1, n):
        shots.append(ShotFactory(project=cast.project, title=f"Shot {i}", position=i,
                                 scene=harbour if i < n // 2 else storm,
                                 prompt=f"Prompt of shot {i}", notes=f"Note {i}"))
    return shots


class TestPrintView:
    @pytest.mark.parametrize("role", ROLES)
    def test_every_member_may_print(self, cast, role):
        response = client_for(cast.member(role)).get(
            reverse("sb:board-print", args=[cast.project.pk]))
        assert response.status_code == 200
        assert cast.shot.display_title.encode() in response.content

    def test_it_shows_nothing_to_another_team(self, cast):
        for name in ("sb:board-print", "sb:board-print-pdf"):
            response = client_for(cast.outsider).get(reverse(name, args=[cast.project.pk]))
            assert response.status_code == 404

    def test_it_sends_anonymous_to_log_in(self, cast):
        response = client_for(None).get(reverse("sb:board-print", args=[cast.project.pk]))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("accounts:login"))

    def test_it_lays_out_six_cards_a_page_in_board_order(self, cast):
        shots = _board(cast, 13)
        html = client_for(cast.viewer).get(
            reverse("sb:board-print", args=[cast.project.pk])).content.decode()
        pages = html.split('<section class="print-page"')[1:]
        assert len(pages) == 3
        assert [page.count('class="print-card"') for page in pages] == [6, 6, 1]
        order = [int(pk) for pk in re.findall(r'class="print-card" data-shot="(\d+)"', html)]
        assert order == [shot.pk for shot in shots]
        # Each page is headed by the scenes of its cards.
        assert "Harbour" in pages[0].split("</header>")[0]
        assert "Storm" in pages[2].split("</header>")[0]
        assert "Harbour" not in pages[2].split("</header>")[0]

    def test_a_card_shows_the_chosen_takes_frame_else_the_start_frame(self, cast):
        with_take, with_frame, _bare = _board(cast, 3)
        take = GenerationFactory(shot=with_take)
        Shot.objects.filter(pk=with_take.pk).update(selected_take=take)
        asset = AssetFactory(project=cast.project)
        Shot.objects.filter(pk=with_frame.pk).update(start_frame=asset)
        html = client_for(cast.viewer).get(
            reverse("sb:board-print", args=[cast.project.pk])).content.decode()
        assert reverse("sb:take-file", args=[take.uid, "poster"]) in html
        assert f"/assets/{asset.uid}/" in html
        assert html.count("No frame yet") == 1

    def test_text_is_escaped(self, cast):
        Shot.objects.filter(pk=cast.shot.pk).update(
            prompt='<img src="http://169.254.169.254/latest">')
        html = client_for(cast.viewer).get(
            reverse("sb:board-print", args=[cast.project.pk])).content.decode()
        assert "<img src=\"http://169.254" not in html
        assert "&lt;img" in html


class TestPdf:
    def test_n_shots_make_ceil_n_over_six_pages(self, cast):
        _board(cast, 13)
        document = printing.render_document(project=cast.project)
        assert len(document.pages) == math.ceil(13 / 6)

    def test_letter_paper_is_letter_sized(self, cast):
        document = printing.render_document(project=cast.project, paper="letter")
        (page,) = document.pages
        # CSS pixels at 96 per inch: 11 × 8.5 inches, landscape.
        assert (round(page.width), round(page.height)) == (1056, 816)

    def test_it_downloads_as_a_file_for_a_viewer(self, cast):
        take = GenerationFactory(shot=cast.shot)
        Shot.objects.filter(pk=cast.shot.pk).update(selected_take=take)
        response = client_for(cast.viewer).get(
            reverse("sb:board-print-pdf", args=[cast.project.pk]))
        assert response.status_code == 200
        assert response["Content-Type"] == "application/pdf"
        assert "attachment" in response["Content-Disposition"]
        assert response.content.startswith(b"%PDF-")

    def test_the_pdf_reads_only_stored_frames(self, cast):
        take = GenerationFactory(shot=cast.shot)
        fetch = printing._media_fetcher()
        response = fetch(f"{printing.MEDIA_SCHEME}{take.poster.name}")
        assert response.read() == take.poster.open("rb").read()
        for url in ("http://127.0.0.1:8000/admin/", "file:///etc/passwd",
                    "data:image/png;base64,AAAA"):
            with pytest.raises(ValueError, match="only its own stored frames"):
                fetch(url)
