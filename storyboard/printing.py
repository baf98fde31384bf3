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

import mimetypes
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from django.conf import settings
from django.core.files.storage import default_storage
from django.db.models.fields.files import FieldFile
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from storyboard.models import Project, Scene, Shot

CARDS_PER_PAGE = 6  # two rows of three
PAPERS = {"a4": "A4", "letter": "Letter"}
PROMPT_CHARS = 420
NOTES_CHARS = 220
# Images in the PDF's HTML name a stored file by this scheme; the fetcher below reads nothing
# else (no network, no local paths): a prompt or title can never make the server fetch a URL.
MEDIA_SCHEME = "storyboard-media:"
STYLESHEET = Path(settings.BASE_DIR) / "static" / "css" / "print.css"


@dataclass(frozen=True)
class Card:
    shot: Shot
    number: int
    scene: Scene | None
    # A frame of the chosen take, else the start frame the shot is generated from.
    image: FieldFile | None
    image_url: str


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


def cards(project: Project) -> list[Card]:
    """Every shot in board order with what its card shows (three queries, however many)."""
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
            out.append(Card(shot=shot, number=number, scene=scene, image=image or None,
                            image_url=url))
    return out


def pages(all_cards: list[Card]) -> list[Page]:
    return [Page(number=i // CARDS_PER_PAGE + 1, cards=all_cards[i:i + CARDS_PER_PAGE])
            for i in range(0, len(all_cards), CARDS_PER_PAGE)]


def context(*, project: Project, paper: str, pdf: bool) -> dict:
    board_pages = pages(cards(project))
    return {"project": project, "pages": board_pages, "page_count": len(board_pages),
            "shot_count": sum(len(p.cards) for p in board_pages),
            "paper": PAPERS.get(paper, "A4"), "paper_key": paper if paper in PAPERS else "a4",
            "pdf": pdf, "printed": timezone.localtime(), "media_scheme": MEDIA_SCHEME,
            "prompt_chars": PROMPT_CHARS, "notes_chars": NOTES_CHARS}


def render_pdf(*, project: Project, paper: str = "a4") -> bytes:
    """The board as a PDF. Raises PrintUnavailable when WeasyPrint cannot load Pango."""
    return render_document(project=project, paper=paper).write_pdf()


def render_document(*, project: Project, paper: str = "a4"):
    """The laid-out pages (weasyprint.Document), before they are written as a PDF."""
    try:
        import weasyprint
    except OSError as e:  # the Python package is there, the system library is not
        raise PrintUnavailable(
            "The PDF needs the Pango library on the server (Debian: apt-get install "
            "libpango-1.0-0 libpangoft2-1.0-0). Print from the browser instead: the print "
            "view lays out the same pages.") from e
    html = render_to_string("storyboard/print.html", context(project=project, paper=paper,
                                                             pdf=True))
    document = weasyprint.HTML(string=html, url_fetcher=_media_fetcher(), base_url=MEDIA_SCHEME)
    return document.render(stylesheets=[weasyprint.CSS(filename=str(STYLESHEET))])


class PrintUnavailable(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _media_fetcher():
    """A WeasyPrint fetcher that reads stored frames named by MEDIA_SCHEME and nothing else."""
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    class MediaOnly(URLFetcher):
        def fetch(self, url: str, headers: dict | None = None) -> URLFetcherResponse:
            if not url.startswith(MEDIA_SCHEME):
                raise ValueError(f"The printed board loads only its own stored frames, "
                                 f"not {url!r}.")
            name = unquote(url.removeprefix(MEDIA_SCHEME))
            with default_storage.open(name, "rb") as handle:
                data = handle.read()
            kind = mimetypes.guess_type(name)[0] or "image/jpeg"
            return URLFetcherResponse(url, body=data, headers={"Content-Type": kind})

    return MediaOnly(allowed_protocols=[MEDIA_SCHEME.rstrip(":")])
