"""The printable board: the print view by role, its pages of six, and the server's PDF."""

from __future__ import annotations

import base64
import math
import re
import subprocess
import sys

import pytest
from django.template.loader import render_to_string
from django.urls import reverse

from storyboard import printing
from storyboard.models import Shot
from tests.conftest import client_for
from tests.factories import (
    AssetFactory,
    GenerationFactory,
    SceneFactory,
    ShotFactory,
    png_bytes,
)

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
        rendered = printing.render_pdf(project=cast.project)
        assert rendered.pages == math.ceil(13 / 6)
        assert rendered.pdf.startswith(b"%PDF-")

    def test_letter_paper_is_letter_sized(self, cast):
        # Points, 72 per inch: 11 × 8.5 inches, landscape; A4 is 297 × 210 mm.
        assert printing.render_pdf(project=cast.project, paper="letter").size == "792x612"
        assert printing.render_pdf(project=cast.project, paper="a4").size == "842x595"

    def test_it_downloads_as_a_file_for_a_viewer(self, cast):
        take = GenerationFactory(shot=cast.shot)
        Shot.objects.filter(pk=cast.shot.pk).update(selected_take=take)
        response = client_for(cast.viewer).get(
            reverse("sb:board-print-pdf", args=[cast.project.pk]))
        assert response.status_code == 200
        assert response["Content-Type"] == "application/pdf"
        assert "attachment" in response["Content-Disposition"]
        assert response.content.startswith(b"%PDF-")

    def test_the_pdf_carries_the_frames_inside_it(self, cast):
        take = GenerationFactory(shot=cast.shot)
        Shot.objects.filter(pk=cast.shot.pk).update(selected_take=take)
        html = render_to_string("storyboard/print.html", printing.context(
            project=cast.project, paper="a4", pdf=True))
        (src,) = re.findall(r'<img src="([^"]+)"', html)
        assert src == printing.data_uri(take.poster)
        assert base64.b64decode(src.split(",", 1)[1]) == take.poster.open("rb").read()

    def test_the_layout_process_fetches_nothing_from_outside(self, cast, tmp_path):
        # A page that asks for a URL (as a hostile prompt cannot: text is escaped) still
        # gets nothing: the child process only reads data: URIs.
        served = tmp_path / "secret.png"
        served.write_bytes(png_bytes())
        html = (f'<img src="file://{served}"><img src="http://127.0.0.1:9/x.png">'
                '<p>still a page</p>')
        child = subprocess.run(
            [sys.executable, "-m", "storyboard.pdfrender", str(printing.STYLESHEET)],
            input=html.encode(), capture_output=True, check=True)
        assert b"pages=1" in child.stderr
        assert f"refused file://{served}".encode() in child.stderr
        assert b"refused http://127.0.0.1:9/x.png" in child.stderr

    def test_the_server_keeps_pillow_strict_about_truncated_images(self, cast):
        from PIL import ImageFile

        printing.render_pdf(project=cast.project)
        assert ImageFile.LOAD_TRUNCATED_IMAGES is False
