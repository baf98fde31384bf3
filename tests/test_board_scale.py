"""A board costs the same number of queries at 10 shots as at 300, and so does every push."""

from __future__ import annotations

import pytest
from django.urls import reverse

from storyboard import realtime
from storyboard.models import Generation, Shot
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
    build_board(cast.project, shots=shots)
    client = client_for(cast.editor)
    with django_assert_max_num_queries(MAX_QUERIES):
        response = client.get(reverse("sb:board", args=[cast.project.pk]))
    assert response.content.decode().count('class="shot-card"') == shots + 1


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


def test_the_pushed_summary_adds_up_like_the_board(cast):
    from storyboard.selectors import board_context, summary_context

    build_board(cast.project, shots=40)
    whole = board_context(cast.project)
    alone = summary_context(cast.project)
    keys = ("shot_count", "scene_count", "total_seconds", "total_micros", "left_micros",
            "total_worst_case")
    assert {k: alone[k] for k in keys} == {k: whole[k] for k in keys}
    assert alone["left_micros"] < alone["total_micros"]


def test_a_take_whose_shot_is_gone_pushes_nothing(cast, sent,
                                                  django_capture_on_commit_callbacks):
    from tests.factories import GenerationFactory

    take = GenerationFactory(shot=cast.shot)
    Shot.objects.filter(pk=cast.shot.pk).delete()
    with django_capture_on_commit_callbacks(execute=True):
        realtime.broadcast_take(take)
    assert sent == []
