"""A board costs the same number of queries at 10 shots as at 300, and so does every push."""

from __future__ import annotations

import pytest
from django.urls import reverse

from storyboard import realtime
from storyboard.models import Generation, Shot
from storyboard.selectors import FIRST_CARDS
from storyboard.views import MAX_CARDS_PER_REQUEST
from tests.conftest import client_for
from tests.factories import build_board

pytestmark = pytest.mark.django_db

SIZES = [10, 300]
MAX_QUERIES = 15


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, str]]:
    messages: list[tuple[str, str]] = []
    monkeypatch.setattr(realtime, "_send",
                        lambda group, message: messages.append((group, message["html"])))
    return messages


@pytest.mark.parametrize("shots", SIZES)
def test_the_board_page_runs_a_fixed_number_of_queries(cast, shots,
                                                        django_assert_max_num_queries):
    board = build_board(cast.project, shots=shots)
    client = client_for(cast.editor)
    # One more than a push: the page also lists the exports running now (issue #13).
    with django_assert_max_num_queries(MAX_QUERIES + 1):
        response = client.get(reverse("sb:board", args=[cast.project.pk]))
    html = response.content.decode()
    # cast.shot comes first; the board's own shots follow, the first screenful whole.
    whole = min(shots + 1, FIRST_CARDS)
    assert html.count('class="shot-card"') == whole
    assert html.count('class="shot-card is-lazy"') == shots + 1 - whole
    # What the whole cards show, loaded in those queries: scenes, chains, stale marks, takes.
    assert html.count('class="scene-heading"') == shots // 10
    assert "data-continues-from=" in html
    assert "badge-stale" in html
    assert f"/takes/{board[0].selected_take.uid}/poster/" in html


@pytest.mark.parametrize("shots", SIZES)
def test_the_placeholders_cards_arrive_in_a_fixed_number_of_queries(
        cast, shots, django_assert_max_num_queries):
    board = build_board(cast.project, shots=shots)
    wanted = board[-MAX_CARDS_PER_REQUEST:]
    client = client_for(cast.viewer)
    with django_assert_max_num_queries(MAX_QUERIES):
        response = client.get(reverse("sb:board-cards", args=[cast.project.pk]),
                              {"shot": [s.pk for s in wanted]}, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.count('class="shot-card"') == len(wanted)
    # Each card swaps in whole, its status strip inside it (a nested out-of-band part would
    # be cut out of the card by htmx).
    assert html.count('hx-swap-oob="true"') == len(wanted)
    assert html.count('class="shot-status"') == len(wanted)
    assert all(f'id="shot-{s.pk}"' in html for s in wanted)
    # Rendered for the viewer who asked: nothing that posts.
    assert "<form" not in html


@pytest.mark.parametrize("shots", SIZES)
def test_the_shot_editor_runs_a_fixed_number_of_queries(cast, shots,
                                                         django_assert_max_num_queries):
    board = build_board(cast.project, shots=shots)
    client = client_for(cast.editor)
    # The editor also carries the review panel and the player's comments (their history,
    # threads, replies and the team's names): a fixed handful more, whatever the board's size.
    with django_assert_max_num_queries(MAX_QUERIES + 10):
        response = client.get(reverse("sb:shot", args=[board[-1].pk]),
                              headers={"HX-Request": "true"})
    html = response.content.decode()
    # Every other shot is offered to continue from, untitled ones by their number on the
    # board, as the shot itself counts it (one board pass per shot, the slow way).
    assert html.count('<option value="') >= shots
    untitled = board[0]
    assert f'<option value="{untitled.pk}">Shot {untitled.number}</option>' in html


@pytest.mark.parametrize("shots", SIZES)
def test_pushing_one_card_runs_a_fixed_number_of_queries(cast, shots, sent,
                                                         django_assert_max_num_queries,
                                                         django_capture_on_commit_callbacks):
    board = build_board(cast.project, shots=shots)
    with (django_assert_max_num_queries(MAX_QUERIES),
          django_capture_on_commit_callbacks(execute=True)):
            realtime.shot_saved(board[-1])
    assert len(sent) == 2
    for _, html in sent:
        assert f'id="shot-{board[-1].pk}"' in html
        assert len(html.encode()) < 10 * 1024


@pytest.mark.parametrize("shots", SIZES)
def test_pushing_an_order_runs_a_fixed_number_of_queries(cast, shots, sent,
                                                         django_assert_max_num_queries,
                                                         django_capture_on_commit_callbacks):
    build_board(cast.project, shots=shots)
    new = Shot.objects.filter(project=cast.project).order_by("-position").first()
    with (django_assert_max_num_queries(MAX_QUERIES),
          django_capture_on_commit_callbacks(execute=True)):
            realtime.shot_added(new)
    for _, html in sent:
        assert html.count('class="shot-card"') == 1
        assert len(html.encode()) < 10 * 1024


@pytest.mark.parametrize("shots", SIZES)
@pytest.mark.parametrize("state", [Generation.State.IN_PROGRESS, Generation.State.COMPLETED])
def test_pushing_a_take_runs_a_fixed_number_of_queries(cast, shots, state, sent,
                                                        django_assert_max_num_queries,
                                                        django_capture_on_commit_callbacks):
    board = build_board(cast.project, shots=shots)
    take = Generation.objects.filter(shot=board[-1]).first()
    Generation.objects.filter(pk=take.pk).update(state=state)
    with (django_assert_max_num_queries(MAX_QUERIES),
          django_capture_on_commit_callbacks(execute=True)):
            realtime.broadcast_take(take)
    for _, html in sent:
        assert f'id="take-{take.uid}"' in html
        assert len(html.encode()) < 10 * 1024


def test_the_summary_adds_up_every_shot_on_the_board(cast):
    from storyboard.selectors import summary_context

    build_board(cast.project, shots=40)
    shots = list(Shot.objects.filter(project=cast.project).for_cards())
    estimates = [s.estimate() for s in shots]
    totals = summary_context(cast.project)
    assert totals["shot_count"] == 41
    assert totals["scene_count"] == 4
    assert totals["total_micros"] == sum(e.micros for e in estimates)
    assert totals["left_micros"] == sum(e.micros for s, e in zip(shots, estimates, strict=True)
                                        if s.selected_take_id is None)
    assert totals["total_seconds"] == sum(int(s.duration) for s in shots
                                          if s.duration.isdigit())
    assert totals["total_worst_case"] == any(e.worst_case for e in estimates)
    assert 0 < totals["left_micros"] < totals["total_micros"]


def test_a_take_whose_shot_is_gone_pushes_nothing(cast, sent,
                                                  django_capture_on_commit_callbacks):
    from tests.factories import GenerationFactory

    take = GenerationFactory(shot=cast.shot)
    Shot.objects.filter(pk=cast.shot.pk).delete()
    with django_capture_on_commit_callbacks(execute=True):
        realtime.broadcast_take(take)
    assert sent == []


def test_a_placeholder_is_a_link_to_its_shot(cast):
    board = build_board(cast.project, shots=30)
    html = client_for(cast.viewer).get(reverse("sb:board", args=[cast.project.pk])).content
    last = board[-1]
    assert (f'<article class="shot-card is-lazy" id="shot-{last.pk}" data-shot="{last.pk}" '
            f'data-review="{last.review}">'
            f'<a class="shot-thumb" href="{reverse("sb:shot", args=[last.pk])}">'
            ).encode() in html
    assert f"{last.title}</h3>".encode() in html


def test_the_cards_view_fills_only_its_own_projects_shots(cast):
    from tests.factories import ProjectFactory, ShotFactory

    elsewhere = ShotFactory(project=ProjectFactory(team=cast.team), title="Elsewhere")
    response = client_for(cast.editor).get(
        reverse("sb:board-cards", args=[cast.project.pk]),
        {"shot": [cast.shot.pk, elsewhere.pk, "x"]}, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 200
    assert f'id="shot-{cast.shot.pk}"' in html
    assert "Elsewhere" not in html
    # Rendered for the editor who asked: the card's controls.
    assert reverse("sb:shot-delete", args=[cast.shot.pk]) in html


def test_the_cards_view_without_htmx_is_the_board(cast):
    response = client_for(cast.viewer).get(reverse("sb:board-cards", args=[cast.project.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("sb:board", args=[cast.project.pk])


def test_the_board_adds_up_like_its_summary_line(cast):
    from storyboard.selectors import board_context, summary_context

    build_board(cast.project, shots=40)
    keys = ("shot_count", "scene_count", "total_seconds", "total_micros", "left_micros",
            "total_worst_case")
    whole, alone = board_context(cast.project), summary_context(cast.project)
    assert {k: whole[k] for k in keys} == {k: alone[k] for k in keys}
