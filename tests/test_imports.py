"""Shot-list CSV and Fountain screenplay import: preview, confirm, refusals, roles."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from django.core import signing
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from storyboard import imports, realtime
from storyboard.models import Scene, Shot
from tests.conftest import Cast, client_for
from tests.factories import ProjectFactory, SceneFactory, png_bytes

pytestmark = pytest.mark.django_db

SAMPLES = Path(__file__).parent / "samples"
CSV_SAMPLE = (SAMPLES / "harbour-shots.csv").read_bytes()
FOUNTAIN_SAMPLE = (SAMPLES / "lighthouse.fountain").read_bytes()


def _preview(client, project, name: str, data: bytes, kind: str = ""):
    return client.post(reverse("sb:project-import", args=[project.pk]),
                       {"source": SimpleUploadedFile(name, data), "kind": kind})


def _confirm(client, project, token: str):
    return client.post(reverse("sb:project-import-confirm", args=[project.pk]), {"plan": token})


def _board(project) -> list[tuple[str | None, list[Shot]]]:
    return [(scene.title if scene else None, shots) for scene, shots in project.board()]


def _counts() -> tuple[int, int]:
    return Shot.objects.count(), Scene.objects.count()


# The samples, previewed and imported


def test_it_previews_the_csv_sample_without_creating_anything(cast: Cast):
    before = _counts()
    response = _preview(client_for(cast.editor), cast.project, "harbour-shots.csv", CSV_SAMPLE)
    assert response.status_code == 200
    plan = response.context["plan"]
    assert plan.summary() == "7 shots in 3 scenes"
    assert [s.title for s in plan.scenes] == ["Harbour at dawn", "Lighthouse stairwell",
                                              "The lamp room"]
    assert plan.ignored == ["Shot", "Owner"]
    assert "Not imported: Shot, Owner" in response.content.decode()
    assert "Import 7 shots in 3 scenes" in response.content.decode()
    assert _counts() == before


def test_it_imports_the_csv_sample_in_order_with_its_fields(cast: Cast):
    lamp = SceneFactory(project=cast.project, title="The Lamp Room", position=0)
    client = client_for(cast.editor)
    preview = _preview(client, cast.project, "harbour-shots.csv", CSV_SAMPLE)
    assert [s.existing for s in preview.context["plan"].scenes] == [None, None, lamp]
    assert "on the board" in preview.content.decode()

    response = _confirm(client, cast.project, preview.context["token"])

    assert response.status_code == 302
    assert response["Location"] == reverse("sb:board", args=[cast.project.pk])
    page = client.get(response["Location"])
    assert "Imported 7 shots in 3 scenes." in page.content.decode()
    board = _board(cast.project)
    # The existing scene keeps its place; the new ones follow it in the file's order.
    assert [title for title, _ in board] == [None, "The Lamp Room", "Harbour at dawn",
                                             "Lighthouse stairwell"]
    assert [s.title for s in board[0][1]] == ["Opening"]
    assert [(s.title, s.duration) for s in board[1][1]] == [("The lens", "10"),
                                                            ("Jonah arrives", "5")]
    assert [(s.title, s.duration) for s in board[2][1]] == [
        ("Fog on the breakwater", "8"), ("Mara on the pier", "6"),
        ("Close-up of the lantern's flame guttering in the wind, salt…", "auto")]
    assert [(s.title, s.duration) for s in board[3][1]] == [("Stairwell", "5"),
                                                            ("Salt on the window", "4")]
    jonah = board[1][1][1]
    assert jonah.prompt == ("A young man in a wet jacket appears at the top of the stairs, "
                            "out of breath.")
    assert jonah.notes == ("JONAH: You should have left years ago.\n"
                           "MARA: And who would keep it turning?")
    assert jonah.created_by == cast.editor
    assert jonah.endpoint == cast.project.default_endpoint
    assert Scene.objects.filter(project=cast.project).count() == 3


def test_it_imports_the_fountain_sample_as_scenes_shots_and_dialogue(cast: Cast):
    client = client_for(cast.producer)
    preview = _preview(client, cast.project, "lighthouse.fountain", FOUNTAIN_SAMPLE)
    assert preview.status_code == 200
    plan = preview.context["plan"]
    assert plan.summary() == "5 shots in 3 scenes"
    assert plan.ignored == ["1 transition", "1 centred line"]
    assert _counts() == (1, 0)

    response = _confirm(client, cast.project, preview.context["token"])

    assert response.status_code == 302
    board = _board(cast.project)
    assert [title for title, _ in board] == [None, "EXT. HARBOUR - DAWN",
                                             "INT. LIGHTHOUSE - STAIRWELL - CONTINUOUS",
                                             "THE LAMP ROOM"]
    harbour, stairwell, lamp = board[1][1], board[2][1], board[3][1]
    assert [s.prompt for s in harbour] == [
        "Fog rolls over the breakwater. A lighthouse beam sweeps the grey water.",
        "MARA (60s), oilskin coat, walks the pier with a lantern."]
    assert [s.title for s in harbour] == ["Fog rolls over the breakwater",
                                          "MARA (60s), oilskin coat, walks the pier with a "
                                          "lantern"]
    assert harbour[0].notes == ""
    assert harbour[1].notes == ("MARA: (to herself) Forty years and it never once waited for "
                                "me.\nJONAH (O.S.): Mara! The boat's here!")
    assert len(stairwell) == 2
    assert stairwell[1].prompt == ("She stops at a window and wipes the salt off the glass with "
                                   "her sleeve.")
    # Emphasis marks are the screenplay's typography, not the picture's.
    assert [s.prompt for s in lamp] == ["The great lens turns, slow and enormous. Light floods "
                                        "the room."]
    assert lamp[0].notes == ("JONAH: You should have left years ago.\n"
                             "MARA: And who would keep it turning?")
    assert all(s.duration == cast.project.default_duration for s in harbour + stairwell + lamp)


def test_it_tells_everyone_on_the_board_to_resync_once_after_commit(
        cast: Cast, monkeypatch, django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr(realtime, "send_html", lambda project_id, html: sent.append(
        (project_id, html)))
    client = client_for(cast.editor)
    with django_capture_on_commit_callbacks(execute=True):
        preview = _preview(client, cast.project, "harbour-shots.csv", CSV_SAMPLE)
    assert sent == []
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        _confirm(client, cast.project, preview.context["token"])
    assert len(callbacks) == 1
    assert sent == [(cast.project.pk, realtime.RESYNC)]


def test_a_dialogue_only_scene_gets_one_shot_for_its_dialogue(cast: Cast):
    text = ("INT. CAR - NIGHT\n\nMARA\nWe're late.\n\nJONAH\n(quietly)\nWe were always "
            "late.\n\nEXT. ROAD - NIGHT\n\nHeadlights vanish into the fog.\n")
    plan = imports.plan(project=cast.project,
                        source=imports.Source(kind=imports.FOUNTAIN, name="car.fountain",
                                              text=text))
    assert plan.ok
    assert [(s.scene.title, s.prompt, s.notes) for s in plan.shots] == [
        ("INT. CAR - NIGHT", "INT. CAR - NIGHT",
         "MARA: We're late.\nJONAH: (quietly) We were always late."),
        ("EXT. ROAD - NIGHT", "Headlights vanish into the fog.", "")]


def test_it_cuts_overlong_dialogue_and_says_so_in_the_preview(cast: Cast):
    speech = "And another thing. " * 40
    text = "INT. KITCHEN - DAY\n\nMara pours tea.\n\n" + "".join(
        f"MARA\n{speech}\n\n" for _ in range(10))
    plan = imports.plan(project=cast.project,
                        source=imports.Source(kind=imports.FOUNTAIN, name="tea.fountain",
                                              text=text))
    assert plan.ok
    assert len(plan.shots[0].notes) == imports.NOTES_MAX
    assert plan.shots[0].notes.endswith("…")
    assert plan.warnings == ["Scene 1, action 1 (INT. KITCHEN - DAY): the dialogue after it is "
                             "7,659 characters, more than a shot's notes hold (5,000); it is "
                             "cut there."]


def test_it_reads_bom_semicolons_and_quoted_formulas_as_text(cast: Cast):
    data = ("\ufefftitle;PROMPT;Notes\nDolly;'-dolly out slowly;'=not a formula\n"
            "Wide;A wide shot, quiet;\n").encode()
    client = client_for(cast.editor)
    preview = _preview(client, cast.project, "semi.csv", data)
    assert preview.status_code == 200
    _confirm(client, cast.project, preview.context["token"])
    dolly = Shot.objects.get(title="Dolly")
    assert (dolly.prompt, dolly.notes) == ("-dolly out slowly", "=not a formula")
    assert Shot.objects.get(title="Wide").prompt == "A wide shot, quiet"


def test_it_gives_each_bad_row_one_error_with_its_line(cast: Cast):
    data = ("title,prompt,duration,notes\n"
            'Ok,"A prompt",5,"A note\nover two lines"\n'
            "Short,A prompt,3,\n"
            "Words,A prompt,five,\n"
            f"{'T' * 121},,auto,\n").encode()
    response = _preview(client_for(cast.editor), cast.project, "bad.csv", data)
    assert response.status_code == 422
    assert response.context["plan"].errors == [
        "Line 4, duration: 3 s is not offered by Seedance 2.0 Fast · text to video "
        "(4–15 s, or auto).",
        "Line 5, duration: “five” is not a number of seconds.",
        "Line 6, title: 121 characters; a title holds at most 120; prompt: empty; every shot "
        "needs a prompt.",
    ]
    assert "Nothing was imported from bad.csv" in response.content.decode()
    assert _counts() == (1, 0)


def test_it_imports_the_most_rows_it_allows(cast: Cast):
    rows = "".join(f"Shot {n},Prompt {n}\n" for n in range(imports.MAX_SHOTS))
    client = client_for(cast.editor)
    preview = _preview(client, cast.project, "many.csv", f"title,prompt\n{rows}".encode())
    assert preview.status_code == 200
    _confirm(client, cast.project, preview.context["token"])
    assert Shot.objects.filter(project=cast.project).count() == imports.MAX_SHOTS + 1
    positions = list(Shot.objects.filter(project=cast.project).values_list("position",
                                                                            flat=True))
    assert len(set(positions)) == len(positions)


def test_a_megabyte_of_hard_to_compress_text_still_fits_the_confirm_form(cast: Cast):
    # The confirm form carries the text signed; Django refuses request bodies over
    # DATA_UPLOAD_MAX_MEMORY_SIZE, so the largest file must still fit once sealed.
    rng = random.Random(5)
    rows = "".join(f"{n},{''.join(chr(0x4E00 + rng.randrange(20000)) for _ in range(325))}\n"
                   for n in range(imports.MAX_SHOTS))
    data = f"title,prompt\n{rows}".encode()
    assert imports.MAX_BYTES * 0.95 < len(data) <= imports.MAX_BYTES
    client = client_for(cast.editor)
    preview = _preview(client, cast.project, "wide.csv", data)
    assert preview.status_code == 200
    assert _confirm(client, cast.project, preview.context["token"]).status_code == 302
    assert Shot.objects.filter(project=cast.project).count() == imports.MAX_SHOTS + 1


# Bad files: every one refused with its message, nothing created.


def _csv(*rows: str) -> bytes:
    return ("\n".join(rows) + "\n").encode()


def _junk() -> bytes:
    data = random.Random(13).randbytes(4096)
    assert b"\x00" in data
    return data


BAD_FILES = [
    ("utf16", "shots.csv", "title,prompt\nA,B\n".encode("utf-16"), "is UTF-16 text"),
    ("latin1", "shots.csv", "title,prompt\nCafé,Crème brûlée\n".encode("latin-1"),
     "Line 2 of shots.csv is not UTF-8 (byte 0xE9)"),
    ("cp1252_fountain", "script.fountain", "INT. CAFÉ - DAY\n\nShe waits.\n".encode("cp1252"),
     "Line 1 of script.fountain is not UTF-8"),
    ("no_columns_we_know", "shots.csv", _csv("name,description", "A,B"),
     "The header row has no title or prompt column"),
    ("no_prompt_column", "shots.csv", _csv("Title,Scene", "A,B"),
     "The header row has no prompt column"),
    ("column_twice", "shots.csv", _csv("title,prompt,Prompt", "A,B,C"),
     "Line 1: the header names the prompt column twice."),
    ("ten_thousand_rows", "shots.csv",
     _csv("title,prompt", *(f"Shot {n},Prompt {n}" for n in range(10_000))),
     "has more than 1,000 shots; an import takes at most 1,000"),
    ("one_row_too_many", "shots.csv",
     _csv("title,prompt", *(f"Shot {n},Prompt {n}" for n in range(1_001))),
     "has more than 1,000 shots"),
    ("binary_junk", "shots.csv", _junk(), "this is binary data"),
    ("png_named_csv", "shots.csv", png_bytes(), "this is binary data"),
    ("control_character", "shots.csv", _csv("title,prompt", "A,\x07bell"),
     "Line 2 of shots.csv has a control character (U+0007)"),
    ("formula_equals", "shots.csv", _csv("title,prompt", '=HYPERLINK("http://x"),B'),
     "Line 2, title: starts with “=”, which a spreadsheet runs as a formula"),
    ("formula_plus", "shots.csv", _csv("title,prompt", "A,+1+2"),
     "Line 2, prompt: starts with “+”"),
    ("formula_minus", "shots.csv", _csv("title,prompt", "A,-2+3"),
     "Line 2, prompt: starts with “-”"),
    ("formula_at", "shots.csv", _csv("title,prompt,notes", "A,B,@SUM(1)"),
     "Line 2, notes: starts with “@”"),
    ("formula_after_spaces", "shots.csv", _csv("title,prompt,scene", "A,B,  =1"),
     "Line 2, scene: starts with “=”"),
    ("empty", "shots.csv", b"", "shots.csv is empty"),
    ("bom_only", "shots.csv", b"\xef\xbb\xbf \n\n", "shots.csv is empty"),
    ("header_only", "shots.csv", _csv("title,prompt"), "has a header row but no shots"),
    ("too_many_cells", "shots.csv", _csv("title,prompt", "A,B,C"),
     "Line 2: 3 cells, but the header names 2 columns"),
    ("title_too_long", "shots.csv", _csv("title,prompt", f"{'x' * 121},B"),
     "Line 2, title: 121 characters; a title holds at most 120."),
    ("prompt_too_long", "shots.csv", _csv("title,prompt", f"A,{'x' * 5001}"),
     "Line 2, prompt: 5,001 characters; a prompt holds at most 5,000."),
    ("notes_too_long", "shots.csv", _csv("title,prompt,notes", f"A,B,{'x' * 5001}"),
     "Line 2, notes: 5,001 characters; notes hold at most 5,000."),
    ("scene_too_long", "shots.csv", _csv("title,prompt,scene", f"A,B,{'x' * 121}"),
     "Line 2, scene: 121 characters; a scene name holds at most 120."),
    ("unknown_duration", "shots.csv", _csv("title,prompt,duration", "A,B,16"),
     "Line 2, duration: 16 s is not offered by Seedance 2.0 Fast · text to video"),
    ("too_large", "shots.csv", b"title,prompt\n" + b"x" * imports.MAX_BYTES,
     "an import takes files of at most 1 MB"),
    ("fountain_title_page_only", "script.fountain", b"Title: Nothing Yet\nAuthor: Ada\n\n",
     "has no scene headings and no action paragraphs"),
    ("fountain_transition_only", "script.fountain", b"CUT TO:\n",
     "has no scene headings and no action paragraphs"),
    ("fountain_unclosed_boneyards", "script.fountain", b"/* " * 300_000,
     "a /* boneyard */ comment is opened and never closed"),
    ("fountain_unclosed_notes", "script.fountain", b"She waits. [[ " * 70_000,
     "A [[note]] is opened and not closed"),
    ("fountain_action_too_long", "script.fountain",
     b"INT. HALL - DAY\n\n" + b"word " * 1100 + b"\n",
     "Scene 1, action 1 (INT. HALL - DAY): the action is 5,499 characters; a prompt holds at "
     "most 5,000."),
    ("fountain_heading_too_long", "script.fountain",
     b"INT. " + b"A" * 120 + b"\n\nShe waits.\n",
     "Scene 1: the heading is 125 characters; a scene title holds at most 120."),
]


def test_the_bad_file_corpus_is_varied():
    assert len(BAD_FILES) >= 25
    assert len({case for case, *_ in BAD_FILES}) == len(BAD_FILES)


@pytest.mark.parametrize(("case", "name", "data", "message"), BAD_FILES,
                         ids=[case for case, *_ in BAD_FILES])
def test_it_refuses_a_bad_file_with_its_message(cast: Cast, case, name, data, message):
    started = time.monotonic()
    response = _preview(client_for(cast.editor), cast.project, name, data)
    assert response.status_code == 422, case
    html = response.content.decode()
    assert message in html, html[html.find('id="import-preview"'):][:1500]
    assert "Nothing was imported" in html
    assert 'name="plan"' not in html
    assert _counts() == (1, 0)
    # Refusing is quick, whatever the file holds (the Fountain guards exist for this).
    assert time.monotonic() - started < 10


def test_it_answers_htmx_with_the_preview_region_alone(cast: Cast):
    response = client_for(cast.editor).post(
        reverse("sb:project-import", args=[cast.project.pk]),
        {"source": SimpleUploadedFile("a.csv", _csv("title,prompt", "A,B"))},
        HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert html.lstrip().startswith('<section class="card" id="import-preview"')
    assert "<html" not in html


# Between preview and confirm


def _sealed(cast: Cast, *, user=None, project=None, text: str = "title,prompt\nA,B\n") -> str:
    project = project or cast.project
    plan = imports.plan(project=project,
                        source=imports.Source(kind=imports.CSV, name="a.csv", text=text))
    return imports.seal(project=project, user=user or cast.editor, plan=plan)


def test_it_refuses_a_tampered_preview(cast: Cast):
    token = _sealed(cast)
    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    response = _confirm(client_for(cast.editor), cast.project, tampered)
    assert response.status_code == 422
    assert "could not be verified" in response.content.decode()
    assert _counts() == (1, 0)


def test_it_refuses_a_preview_made_for_someone_else_or_another_project(cast: Cast):
    elsewhere = ProjectFactory(team=cast.team)
    for token in (_sealed(cast, user=cast.producer), _sealed(cast, project=elsewhere)):
        response = _confirm(client_for(cast.editor), cast.project, token)
        assert response.status_code == 422
        assert "could not be verified" in response.content.decode()
    assert _counts() == (1, 0)


def test_it_refuses_a_preview_more_than_an_hour_old(cast: Cast, monkeypatch):
    an_hour_ago = time.time() - imports.SEAL_MAX_AGE - 5
    monkeypatch.setattr(signing.time, "time", lambda: an_hour_ago)
    token = _sealed(cast)
    monkeypatch.undo()
    response = _confirm(client_for(cast.editor), cast.project, token)
    assert response.status_code == 422
    assert "more than an hour old" in response.content.decode()
    assert _counts() == (1, 0)


def test_it_shows_the_new_preview_when_the_board_changed_meanwhile(cast: Cast):
    client = client_for(cast.editor)
    harbour = SceneFactory(project=cast.project, title="Harbour")
    data = _csv("title,prompt,scene", "A,B,harbour")
    preview = _preview(client, cast.project, "a.csv", data)
    assert preview.context["plan"].scenes[0].existing == harbour
    harbour.delete()

    response = _confirm(client, cast.project, preview.context["token"])

    assert response.status_code == 409
    assert "changed since your preview" in response.content.decode()
    assert _counts() == (1, 0)
    again = _confirm(client, cast.project, response.context["token"])
    assert again.status_code == 302
    assert Scene.objects.get(project=cast.project).title == "harbour"


# Roles


@pytest.mark.parametrize("role", ["owner", "producer", "editor"])
def test_it_lets_editors_and_above_import(cast: Cast, role):
    client = client_for(cast.member(role))
    assert client.get(reverse("sb:project-import", args=[cast.project.pk])).status_code == 200
    preview = _preview(client, cast.project, "a.csv", _csv("title,prompt", "A,B"))
    assert preview.status_code == 200
    assert _confirm(client, cast.project, preview.context["token"]).status_code == 302
    assert Shot.objects.filter(title="A", created_by=cast.member(role)).count() == 1


@pytest.mark.parametrize("role", ["reviewer", "viewer"])
def test_it_forbids_reviewers_and_viewers_and_changes_nothing(cast: Cast, role):
    client = client_for(cast.member(role))
    token = _sealed(cast, user=cast.member(role))
    assert client.get(reverse("sb:project-import", args=[cast.project.pk])).status_code == 403
    preview = _preview(client, cast.project, "a.csv", _csv("title,prompt", "A,B"))
    assert preview.status_code == 403
    assert _confirm(client, cast.project, token).status_code == 403
    assert _counts() == (1, 0)


def test_it_hides_another_teams_project(cast: Cast):
    client = client_for(cast.outsider)
    token = _sealed(cast, user=cast.outsider)
    assert client.get(reverse("sb:project-import", args=[cast.project.pk])).status_code == 404
    assert _preview(client, cast.project, "a.csv", _csv("title,prompt", "A,B")).status_code \
        == 404
    assert _confirm(client, cast.project, token).status_code == 404
    assert _counts() == (1, 0)


def test_it_sends_anonymous_visitors_to_log_in(cast: Cast):
    client = client_for(None)
    login = reverse("accounts:login")
    for response in (client.get(reverse("sb:project-import", args=[cast.project.pk])),
                     _preview(client, cast.project, "a.csv", _csv("title,prompt", "A,B")),
                     _confirm(client, cast.project, _sealed(cast))):
        assert response.status_code == 302
        assert response["Location"].startswith(login)
    assert _counts() == (1, 0)


def test_the_board_offers_import_to_editors_only(cast: Cast):
    url = reverse("sb:project-import", args=[cast.project.pk])
    board = reverse("sb:board", args=[cast.project.pk])
    assert f'href="{url}"' in client_for(cast.editor).get(board).content.decode()
    assert f'href="{url}"' not in client_for(cast.viewer).get(board).content.decode()


# Titles made from prompts


@pytest.mark.parametrize(("prompt", "title"), [
    ("Fog rolls in. A beam sweeps.", "Fog rolls in"),
    ("A single line with no full stop", "A single line with no full stop"),
    ("Wide shot, fog rolling over a stone breakwater at dawn, a lighthouse beam sweeping.",
     "Wide shot, fog rolling over a stone breakwater at dawn, a…"),
    ("  Spaces\n and   lines.  ", "Spaces and lines"),
])
def test_it_derives_a_short_title_from_the_prompt(prompt, title):
    assert imports.derive_title(prompt) == title
