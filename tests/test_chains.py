"""Shot chains as links: refusals, links that survive the board's order, one way to choose a
take, and staleness down the chain (issue #11)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from storyboard import chains
from storyboard.forms import ShotForm
from storyboard.models import Generation, Shot
from tests.conftest import client_for
from tests.factories import GenerationFactory, ProjectFactory, ShotFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
I2V = "bytedance/seedance-2.0/fast/image-to-video"
T2V = "bytedance/seedance-2.0/fast/text-to-video"


def _shot(project, title: str, *, position: int, upstream: Shot | None = None) -> Shot:
    return ShotFactory(project=project, title=title, position=position, prompt="Waves.",
                       mode="image" if upstream else "text", endpoint=I2V if upstream else T2V,
                       continues_from=upstream)


def _chain(project, length: int) -> list[Shot]:
    shots: list[Shot] = []
    for i in range(length):
        shots.append(_shot(project, f"S{i + 1}", position=10 + i,
                           upstream=shots[-1] if shots else None))
    return shots


def _take(shot: Shot, *, upstream: Generation | None = None) -> Generation:
    return GenerationFactory(shot=shot, upstream=upstream)


def _chosen_chain(project, length: int) -> tuple[list[Shot], list[Generation]]:
    """A chain where every shot's chosen take started from its upstream's chosen take."""
    shots, takes = _chain(project, length), []
    for shot in shots:
        take = _take(shot, upstream=takes[-1] if takes else None)
        chains.choose_take(shot=shot, take=take, user=None)
        takes.append(take)
    return shots, takes


def _link(user, shot: Shot, upstream: Shot | None, **changes):
    fresh = Shot.objects.get(pk=shot.pk)
    values = {**fresh.field_values(), "continues_from": upstream.pk if upstream else None,
              **changes}
    return client_for(user).post(reverse("sb:shot", args=[shot.pk]),
                                 ShotForm.data_for(values, version=fresh.version), **HTMX)


def _stored_links(project) -> dict[int, int | None]:
    return dict(Shot.objects.filter(project=project).values_list("pk", "continues_from"))


# The link


@pytest.mark.parametrize("role", ["owner", "producer", "editor"])
def test_it_links_a_shot_to_an_upstream_shot(cast, role):
    up = _shot(cast.project, "Cliff", position=1)
    down = _shot(cast.project, "Window", position=2)
    response = _link(cast.member(role), down, up, mode="image", endpoint=I2V)
    assert response.status_code == 200
    down.refresh_from_db()
    assert down.continues_from == up


def test_it_refuses_a_link_to_itself(cast):
    shot = _shot(cast.project, "Cliff", position=1)
    before = _stored_links(cast.project)
    content = _link(cast.editor, shot, shot, mode="image", endpoint=I2V).content.decode()
    # Not even offered: a shot is not in its own list of upstream candidates.
    assert "Select a valid choice" in content
    assert _stored_links(cast.project) == before


@pytest.mark.parametrize("length", [2, 3, 5])
def test_it_refuses_a_cycle_of_any_length(cast, length):
    shots = _chain(cast.project, length)
    before = _stored_links(cast.project)
    content = _link(cast.editor, shots[0], shots[-1], mode="image", endpoint=I2V) \
        .content.decode()
    assert "linking back would make a loop" in content
    assert _stored_links(cast.project) == before


def test_it_refuses_a_shot_of_another_project_or_team(cast):
    elsewhere = ShotFactory(project=ProjectFactory(team=cast.team), title="Elsewhere")
    foreign = ShotFactory(project=ProjectFactory(team=cast.other_team), title="Foreign")
    shot = _shot(cast.project, "Cliff", position=1)
    before = _stored_links(cast.project)
    for upstream in (elsewhere, foreign):
        content = _link(cast.editor, shot, upstream, mode="image", endpoint=I2V).content.decode()
        assert "Select a valid choice" in content
    assert _stored_links(cast.project) == before
    # And the model says so too, whatever the form offers.
    assert shot.link_problems(elsewhere) == [
        "A shot can only continue from a shot of its own project."]


def test_it_refuses_a_text_to_video_endpoint_and_names_the_image_one(cast):
    up = _shot(cast.project, "Cliff", position=1)
    down = _shot(cast.project, "Window", position=2)
    content = _link(cast.editor, down, up).content.decode()
    assert "cannot start from a frame" in content
    assert "switch to Seedance 2.0 Fast · image to video" in content
    down.refresh_from_db()
    assert down.continues_from is None


def test_it_refuses_a_start_frame_beside_a_link(cast):
    from tests.factories import AssetFactory

    up = _shot(cast.project, "Cliff", position=1)
    down = _shot(cast.project, "Window", position=2)
    frame = AssetFactory(project=cast.project)
    content = _link(cast.editor, down, up, mode="image", endpoint=I2V,
                    start_frame=frame.pk).content.decode()
    assert "clear the start frame or the link" in content
    down.refresh_from_db()
    assert down.continues_from is None


@pytest.mark.parametrize("role", ["reviewer", "viewer"])
def test_it_refuses_a_link_by_a_read_only_role(cast, role):
    up = _shot(cast.project, "Cliff", position=1)
    down = _shot(cast.project, "Window", position=2)
    response = _link(cast.member(role), down, up, mode="image", endpoint=I2V)
    assert response.status_code == 403
    down.refresh_from_db()
    assert down.continues_from is None


def test_it_hides_linking_from_other_teams(cast):
    up = _shot(cast.project, "Cliff", position=1)
    down = _shot(cast.project, "Window", position=2)
    assert _link(cast.outsider, down, up, mode="image", endpoint=I2V).status_code == 404
    down.refresh_from_db()
    assert down.continues_from is None


def test_reordering_the_board_changes_no_link_and_no_start_frame(cast):
    shots, takes = _chosen_chain(cast.project, 3)
    before = _stored_links(cast.project)
    upstream = {s.pk: Shot.objects.get(pk=s.pk).upstream_take() for s in shots}
    order = [cast.shot.pk, *(s.pk for s in reversed(shots))]
    response = client_for(cast.editor).post(
        reverse("sb:shot-reorder", args=[cast.project.pk]),
        {"item": [f":{pk}" for pk in order]}, **HTMX)
    assert response.status_code == 200
    assert [s.pk for _, group in cast.project.board() for s in group] == order
    assert _stored_links(cast.project) == before
    assert {s.pk: Shot.objects.get(pk=s.pk).upstream_take() for s in shots} == upstream
    assert upstream[shots[1].pk] == takes[0]


def test_an_existing_chain_keeps_its_upstream_when_the_board_changes(cast):
    shots = _chain(cast.project, 2)
    ShotFactory(project=cast.project, title="Inserted", position=10)
    assert Shot.objects.get(pk=shots[1].pk).continues_from == shots[0]


def test_deleting_the_upstream_unlinks_the_downstream_shot(cast):
    shots = _chain(cast.project, 2)
    shots[0].delete()
    assert Shot.objects.get(pk=shots[1].pk).continues_from is None


# The chosen take


def test_the_chosen_take_is_the_finished_selected_take(cast):
    take = _take(cast.shot)
    cast.shot.selected_take = take
    assert cast.shot.chosen_take() == take
    take.state = Generation.State.FAILED
    assert cast.shot.chosen_take() is None


def test_the_first_finished_take_becomes_the_chosen_one(cast):
    first, second = _take(cast.shot), _take(cast.shot)
    chains.take_finished(first)
    chains.take_finished(second)
    assert Shot.objects.get(pk=cast.shot.pk).chosen_take() == first


def test_choosing_refuses_an_unfinished_take_and_changes_nothing(cast):
    take = GenerationFactory(shot=cast.shot, state=Generation.State.IN_PROGRESS)
    with pytest.raises(chains.ChainRefused, match="Only a finished take"):
        chains.choose_take(shot=cast.shot, take=take, user=cast.editor)
    assert Shot.objects.get(pk=cast.shot.pk).selected_take is None


def test_choosing_refuses_a_take_of_another_shot(cast):
    other = ShotFactory(project=cast.project)
    with pytest.raises(chains.ChainRefused, match="another shot"):
        chains.choose_take(shot=cast.shot, take=_take(other), user=cast.editor)


# Staleness


def test_a_new_upstream_take_makes_the_whole_chain_below_stale(cast):
    shots, takes = _chosen_chain(cast.project, 4)
    assert not any(Shot.objects.get(pk=s.pk).is_stale for s in shots)
    new = _take(shots[1])
    chains.choose_take(shot=shots[1], take=new, user=cast.editor)
    stale = {s.pk: Shot.objects.get(pk=s.pk).stale_reason for s in shots}
    assert (stale[shots[0].pk], stale[shots[1].pk]) == ("", "")
    assert stale[shots[2].pk] == (f"S2 now uses take #{new.pk}; this take started from "
                                  f"#{takes[1].pk}.")
    assert stale[shots[3].pk] == "It continues from S3, which is stale."
    assert Shot.objects.get(pk=shots[2].pk).stale_since is not None


def test_choosing_a_take_from_the_new_frame_makes_a_stale_shot_fresh(cast):
    shots, _ = _chosen_chain(cast.project, 2)
    new = _take(shots[0])
    chains.choose_take(shot=shots[0], take=new, user=cast.editor)
    assert Shot.objects.get(pk=shots[1].pk).is_stale
    fresh = _take(shots[1], upstream=new)
    chains.choose_take(shot=shots[1], take=fresh, user=cast.editor)
    assert not Shot.objects.get(pk=shots[1].pk).is_stale


def test_choosing_back_the_old_upstream_take_leaves_the_chain_consistent(cast):
    shots, takes = _chosen_chain(cast.project, 2)
    chains.choose_take(shot=shots[0], take=_take(shots[0]), user=cast.editor)
    assert Shot.objects.get(pk=shots[1].pk).is_stale
    chains.choose_take(shot=shots[0], take=takes[0], user=cast.editor)
    # Marked stale once, it stays so until someone keeps it or re-chains: a flip-flop upstream
    # is worth a look downstream.
    assert Shot.objects.get(pk=shots[1].pk).is_stale


def test_a_shot_without_a_take_is_never_stale(cast):
    shots = _chain(cast.project, 2)
    chains.choose_take(shot=shots[0], take=_take(shots[0]), user=cast.editor)
    assert not Shot.objects.get(pk=shots[1].pk).is_stale


def test_selecting_through_the_view_marks_downstream_and_pushes_their_cards(
        cast, django_capture_on_commit_callbacks, monkeypatch):
    from storyboard import realtime

    pushed: list[list[int]] = []
    real = realtime.board_change
    monkeypatch.setattr(realtime, "board_change",
                        lambda *a, **kw: pushed.append(list(kw.get("cards", []))) or real(*a, **kw))
    shots, _ = _chosen_chain(cast.project, 3)
    pushed.clear()
    new = _take(shots[0])
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(cast.editor).post(reverse("sb:take-select", args=[new.uid]),
                                                **HTMX)
    assert response.status_code == 200
    assert pushed == [[shots[0].pk, shots[1].pk, shots[2].pk]]


@pytest.mark.parametrize("role", ["reviewer", "viewer"])
def test_it_refuses_selecting_by_a_read_only_role(cast, role):
    shots, takes = _chosen_chain(cast.project, 2)
    new = _take(shots[0])
    response = client_for(cast.member(role)).post(reverse("sb:take-select", args=[new.uid]),
                                                  **HTMX)
    assert response.status_code == 403
    assert Shot.objects.get(pk=shots[0].pk).selected_take == takes[0]
    assert not Shot.objects.get(pk=shots[1].pk).is_stale


def test_the_board_card_says_a_shot_is_stale(cast):
    shots, _ = _chosen_chain(cast.project, 2)
    chains.choose_take(shot=shots[0], take=_take(shots[0]), user=cast.editor)
    content = client_for(cast.viewer).get(reverse("sb:board", args=[cast.project.pk])) \
        .content.decode()
    assert 'class="badge badge-stale"' in content
