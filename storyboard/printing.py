"""The printable board: one card per shot, six to a landscape page, as HTML for the browser's
own print and as a PDF rendered here with WeasyPrint.

WeasyPrint rather than a headless Chromium: it is a library call in the request (no browser
process to start, find or keep alive on every server), it only needs Pango, which Debian
servers have, and it implements the paged-media CSS this layout relies on (`@page`, page
breaks). The browser print and the PDF share one template and one stylesheet.

Pages are made here, not by the layout engine: each page is a block of at most six cards, so a
card can never be split across pages and N shots always make ceil(N / 6) pages. Scenes head
each page (the scenes its cards belong to) and each card names its scene, so a scene starting
mid-page costs no extra page.
"""

from __future__ import annotations

import base64
import logging
import mimetypes
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db.models.fields.files import FieldFile
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from storyboard import pdfrender
from storyboard.models import Project, Scene, Shot

logger = logging.getLogger(__name__)

CARDS_PER_PAGE = 6  # two rows of three
PAPERS = {"a4": "A4", "letter": "Letter"}
PROMPT_CHARS = 420
NOTES_CHARS = 220
RENDER_TIMEOUT = 120  # seconds; 300 shots take about 6 on a 2-core box
STYLESHEET = Path(settings.BASE_DIR) / "static" / "css" / "print.css"


@dataclass(frozen=True)
class Card:
    shot: Shot
    number: int
    scene: Scene | None
    # A frame of the chosen take, else the start frame the shot is generated from.
    image: FieldFile | None
    # The image's URL for the browser, or the image itself (a data: URI) for the PDF.
    src: str


@dataclass(frozen=True)
class Page:
    number: int
    cards: list[Card]

    @property
    def rows(self) -> list[list[Card | None]]:
        """Rows of three; a short last row is padded with empty cells so its cards keep
        their width."""
        rows: list[list[Card | None]] = [list(self.cards[i:i + 3])
                                         for i in range(0, len(self.cards), 3)]
        if rows:
            rows[-1] += [None] * (3 - len(rows[-1]))
        return rows

    @property
    def scenes(self) -> list[Scene]:
        seen: list[Scene] = []
        for card in self.cards:
            if card.scene is not None and card.scene not in seen:
                seen.append(card.scene)
        return seen


def cards(project: Project, *, inline: bool = False) -> list[Card]:
    """Every shot in board order with what its card shows (three queries, however many);
    `inline`: each image inside its card as a data: URI."""
    shots = Shot.objects.select_related("scene", "start_frame", "selected_take", "review_take")
    out = []
    number = 0
    for scene, group in project.board(shots):
        for shot in group:
            number += 1
            shot._number = number
            take = shot.chosen_take()
            if take is not None and take.poster:
                image, url = take.poster, reverse("sb:take-file", args=[take.uid, "poster"])
            elif shot.start_frame is not None:
                asset = shot.start_frame
                image = asset.thumbnail or asset.file
                url = reverse("sb:asset-file", args=[asset.uid,
                                                     "thumbnail" if asset.thumbnail else "file"])
            else:
                image, url = None, ""
            image = image or None
            src = data_uri(image) if inline and image else url if image else ""
            out.append(Card(shot=shot, number=number, scene=scene, image=image, src=src))
    return out


def pages(all_cards: list[Card]) -> list[Page]:
    return [Page(number=i // CARDS_PER_PAGE + 1, cards=all_cards[i:i + CARDS_PER_PAGE])
            for i in range(0, len(all_cards), CARDS_PER_PAGE)]


def context(*, project: Project, paper: str, pdf: bool) -> dict:
    board_pages = pages(cards(project, inline=pdf))
    return {"project": project, "pages": board_pages, "page_count": len(board_pages),
            "shot_count": sum(len(p.cards) for p in board_pages),
            "paper": PAPERS.get(paper, "A4"), "paper_key": paper if paper in PAPERS else "a4",
            "pdf": pdf, "printed": timezone.localtime(),
            "prompt_chars": PROMPT_CHARS, "notes_chars": NOTES_CHARS}


@dataclass(frozen=True)
class Rendered:
    pdf: bytes
    pages: int
    size: str  # of a page, in points: "842x595" is A4 landscape


def render_pdf(*, project: Project, paper: str = "a4") -> Rendered:
    """The board as a PDF, laid out by WeasyPrint in a child process (pdfrender.py says why).
    Raises PrintUnavailable when it cannot run."""
    html = render_to_string("storyboard/print.html", context(project=project, paper=paper,
                                                             pdf=True))
    try:
        # Our own interpreter and module; only the HTML (on stdin) comes from the board.
        child = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "storyboard.pdfrender", str(STYLESHEET)],
            input=html.encode(), capture_output=True, timeout=RENDER_TIMEOUT, check=False,
            cwd=settings.BASE_DIR)
    except subprocess.TimeoutExpired:
        raise PrintUnavailable(f"The PDF took longer than {RENDER_TIMEOUT} s to lay out; "
                               "print from the browser instead.") from None
    if child.returncode == pdfrender.NO_PANGO:
        raise PrintUnavailable(
            "The PDF needs the Pango library on the server (Debian: apt-get install "
            "libpango-1.0-0 libpangoft2-1.0-0). Print from the browser instead: the print "
            "view lays out the same pages.")
    pages = re.search(rb"pages=(\d+) size=(\d+x\d+)", child.stderr)
    if child.returncode != 0 or pages is None:
        logger.error("The PDF of project %s failed: %s", project.pk,
                     child.stderr.decode(errors="replace")[-2000:])
        raise PrintUnavailable("The PDF could not be made; print from the browser instead.")
    return Rendered(pdf=child.stdout, pages=int(pages.group(1)), size=pages.group(2).decode())


class PrintUnavailable(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def data_uri(field: FieldFile) -> str:
    """A stored frame inlined into the PDF's HTML (read through the storage, so S3 works
    too): the child process that lays it out fetches nothing."""
    with field.open("rb") as handle:
        data = handle.read()
    kind = mimetypes.guess_type(field.name)[0] or "image/jpeg"
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"
