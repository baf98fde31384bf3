"""Links and staleness you can act on: Re-chain and Keep, unlinking when an upstream goes,
the one-click link to the previous shot, the offer to switch a continuing shot to image to video,
and stale marks pushed to boards and shot pages (issue #11)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from storyboard import chains, generation, realtime
from storyboard.forms import ShotForm
from storyboard.models import Budget, Generation, LedgerEntry, Shot, ShotChange
from tests.conftest import client_for
from tests.factories import GenerationFactory, SceneFactory, ShotFactory
from tests.helpers import house_clip, run_to_the_end
from tests.test_access_sweep import BOARD_MODELS, fingerprint

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
# Seedance 1.0 lite at 480p for 2 s: the smallest real take on the local renderer.
LITE_T2V = "fal-ai/bytedance/seedance/v1/lite/text-to-video"
LITE_I2V = "fal-ai/bytedance/seedance/v1/lite/image-to-video"


def _shot(project, title: str, *, position: int, upstream: Shot | None = None,
          **fields) -> Shot:
    return ShotFactory(project=project, title=title, position=position,
                       prompt="The storm rolls in.", mode="image" if upstream else "text",
                       endpoint=LITE_I2V if upstream else LITE_T2V, resolution="480p",
                       duration="2", generate_audio=False, continues_from=upstream, **fields)


def _take(shot: Shot, *, upstream: Generation | None = None) -> Generation:
    # A real (tiny) clip, so a take continuing from it can decode its last frame.
    return GenerationFactory(shot=shot, upstream=upstream,
                             video__data=house_clip(), estimated_micros=100_000)


def _chain(project, length: int) -> tuple[list[Shot], list[Generation]]:
    """`length` shots, each continuing the one before, each with a chosen take that started
    from its upstream's chosen take."""
    shots: list[Shot] = []
    takes: list[Generation] = []
    for i in range(length):
        shot = _shot(project, f"S{i + 1}", position=10 + i,
                     upstream=shots[-1] if shots else None)
        take = _take(shot, upstream=takes[-1] if takes else None)
        chains.choose_take(shot=shot, take=take, user=None)
        shots.append(shot)
        takes.append(take)
    return shots, takes


def _board() -> dict:
    """Every row of every board table (logging in touches only people's tables)."""
    return fingerprint(BOARD_MODELS)


def _fresh(shot: Shot) -> Shot:
    return Shot.objects.get(pk=shot.pk)


def _stale_chain(cast, length: int = 3) -> tuple[list[Shot], list[Generation], Generation]:
    """A chain whose first shot just got a new chosen take: everything below is stale."""
    shots, takes = _chain(cast.project, length)
    new = _take(shots[0])
    chains.choose_take(shot=shots[0], take=new, user=cast.editor)
    assert all(_fresh(s).is_stale for s in shots[1:])
    return shots, takes, new


@pytest.fixture
def pushes(monkeypatch) -> list[tuple[str, str]]:
    """Every push sent, as (group, html)."""
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(realtime, "_send",
                        lambda group, message, **kw: sent.append((group, message["html"])))
    return sent


# Keep


def test_keep_clears_the_mark_with_a_history_line(cast):
    shots, takes, _new = _stale_chain(cast, 2)
    reason = _fresh(shots[1]).stale_reason
    response = client_for(cast.editor).post(reverse("sb:shot-keep", args=[shots[1].pk]),
                                            **HTMX)
    assert response.status_code == 200
    kept = _fresh(shots[1])
    assert not kept.is_stale
    assert kept.stale_since is None
    assert kept.chosen_take() == takes[1]
    line = kept.changes.get()
    assert line.user == cast.editor
    assert line.note == f"Kept the take on the board although it was stale: {reason}"
    # The shot page shows it, and offers no undo of a line that set no field.
    page = client_for(cast.editor).get(reverse("sb:shot", args=[shots[1].pk])).content.decode()
    assert "Kept the take on the board although it was stale" in page
    assert f'name="change" value="{line.pk}"' not in page


def test_keep_makes_shots_that_were_stale_only_through_it_fresh(cast):
    shots, _takes, _new = _stale_chain(cast, 4)
    assert _fresh(shots[2]).stale_reason == "It continues from S2, which is stale."
    chains.keep(shot=shots[1], user=cast.editor)
    assert not any(_fresh(s).is_stale for s in shots)
    assert _fresh(shots[3]).changes.get().note == "Fresh again: S3 was kept as it is."


def test_keep_refuses_a_shot_that_is_not_stale(cast):
    shots, _ = _chain(cast.project, 2)
    before = _board()
    response = client_for(cast.editor).post(reverse("sb:shot-keep", args=[shots[1].pk]),
                                            **HTMX)
    assert response.status_code == 422
    assert "not stale" in response.content.decode()
    assert _board() == before


# Re-chain


def test_rechain_holds_the_price_and_starts_from_the_new_take(cast):
    shots, _takes, new = _stale_chain(cast, 2)
    budget = Budget.for_team(cast.team)
    response = client_for(cast.editor).post(reverse("sb:shot-rechain", args=[shots[1].pk]),
                                            **HTMX)
    assert response.status_code == 200
    take = Generation.objects.filter(shot=shots[1]).latest("pk")
    assert take.upstream == new
    assert take.state == Generation.State.HELD
    hold = LedgerEntry.objects.get(take=take, kind=LedgerEntry.Kind.HOLD)
    assert hold.amount_micros == shots[1].estimate().micros == take.estimated_micros
    budget.refresh_from_db()
    assert budget.held_micros == hold.amount_micros
    # The price was on the button before anyone pressed it.
    page = client_for(cast.editor).get(reverse("sb:shot", args=[shots[1].pk])).content.decode()
    assert "Re-chain · " in page


def test_a_rechained_take_makes_the_shot_fresh_when_it_finishes(cast):
    shots, _takes, new = _stale_chain(cast, 3)
    # The shot below a stale one waits: its frame is about to change.
    with pytest.raises(generation.GenerationRefused, match="S2 is stale itself"):
        generation.rechain(shot=shots[2], user=cast.editor)
    take = run_to_the_end(generation.rechain(shot=shots[1], user=cast.editor))
    assert take.state == Generation.State.COMPLETED
    assert _fresh(shots[1]).chosen_take() == take
    assert not _fresh(shots[1]).is_stale
    # Shot 3 is now stale against the re-chained take, and re-chains in turn.
    assert _fresh(shots[2]).stale_reason.startswith(f"S2 now uses take #{take.pk}")
    last = run_to_the_end(generation.rechain(shot=shots[2], user=cast.editor))
    assert last.upstream == take
    assert not any(_fresh(s).is_stale for s in shots)
    assert [_fresh(s).chosen_take() for s in shots] == [new, take, last]


def test_rechain_refuses_a_short_budget_and_shots_with_nothing_to_rechain(cast):
    shots, _takes, _new = _stale_chain(cast, 2)
    Budget.objects.filter(team=cast.team).update(limit_micros=1)
    before = _board()
    response = client_for(cast.editor).post(reverse("sb:shot-rechain", args=[shots[1].pk]),
                                            **HTMX)
    assert response.status_code == 422
    assert "needs up to" in response.content.decode()
    assert _board() == before
    fresh = _shot(cast.project, "Fresh", position=1, upstream=shots[0])
    with pytest.raises(generation.GenerationRefused, match="nothing to re-chain"):
        generation.rechain(shot=fresh, user=cast.editor)
    with pytest.raises(generation.GenerationRefused, match="does not continue"):
        generation.rechain(shot=shots[0], user=cast.editor)


@pytest.mark.parametrize("url", ["sb:shot-rechain", "sb:shot-keep"])
@pytest.mark.parametrize("role", ["reviewer", "viewer"])
def test_read_only_roles_cannot_rechain_or_keep(cast, role, url):
    shots, _, _ = _stale_chain(cast, 2)
    before = _board()
    response = client_for(cast.member(role)).post(reverse(url, args=[shots[1].pk]), **HTMX)
    assert response.status_code == 403
    assert _board() == before


@pytest.mark.parametrize("url", ["sb:shot-rechain", "sb:shot-keep",
                                 "sb:shot-continue-previous"])
def test_another_team_cannot_find_the_chain_actions(cast, url):
    shots, _, _ = _stale_chain(cast, 2)
    before = _board()
    response = client_for(cast.outsider).post(reverse(url, args=[shots[1].pk]), **HTMX)
    assert response.status_code == 404
    assert _board() == before


# Deleting the upstream


def test_deleting_an_upstream_unlinks_below_with_history_and_a_notice(cast, pushes,
                                                                     django_capture_on_commit_callbacks):
    shots, takes, _ = _stale_chain(cast, 3)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(cast.editor).post(reverse("sb:shot-delete", args=[shots[1].pk]),
                                                **HTMX)
    assert response.status_code == 200
    below = _fresh(shots[2])
    assert below.continues_from is None
    # Nothing left to be stale against; its own take stays chosen.
    assert not below.is_stale
    assert below.chosen_take() == takes[2]
    line = below.changes.get()
    assert line.user == cast.editor
    assert line.changes == {"continues_from": [shots[1].pk, None]}
    assert "No longer continues from S2" in line.note
    assert line.rows() == [("Continues from", "(deleted shot)", "—")]
    notice = "deleted S2. S3 continued from it and is now unlinked"
    board_pushes = [html for group, html in pushes if group.endswith("-viewers")]
    assert any(notice in html and 'id="chain-notice"' in html for html in board_pushes)
    # The deleting editor's own answer carries the unlinked card.
    assert f'id="shot-{shots[2].pk}"' in response.content.decode()
    # Further down the chain nothing changed.
    assert _fresh(shots[0]).continued_by.count() == 0


def test_deleting_a_shot_without_downstream_sends_no_notice(cast, pushes,
                                                            django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        client_for(cast.editor).post(reverse("sb:shot-delete", args=[cast.shot.pk]), **HTMX)
    assert not any('id="chain-notice"' in html for _, html in pushes)


def test_deleting_without_javascript_says_what_was_unlinked(cast):
    shots, _ = _chain(cast.project, 2)
    response = client_for(cast.editor).post(reverse("sb:shot-delete", args=[shots[0].pk]),
                                            follow=True)
    assert "S2 continued from it and is now unlinked" in response.content.decode()


def test_an_unlink_cannot_be_undone_to_a_deleted_shot(cast):
    shots, _ = _chain(cast.project, 2)
    chains.delete_shot(shot=shots[0], user=cast.editor)
    line = _fresh(shots[1]).changes.get()
    response = client_for(cast.editor).post(reverse("sb:shot-undo", args=[shots[1].pk]),
                                            {"change": line.pk}, **HTMX)
    assert response.status_code == 422
    assert "would point at a deleted file, scene or shot" in response.content.decode()
    assert _fresh(shots[1]).continues_from is None


# Continue from the previous shot


def test_continue_previous_links_across_scenes_and_switches_to_image_to_video(cast):
    cast.shot.delete()
    scene = SceneFactory(project=cast.project, title="Storm", position=0)
    first = _shot(cast.project, "Before", position=1)
    second = _shot(cast.project, "After", position=2, scene=scene)
    page = client_for(cast.editor).get(reverse("sb:shot", args=[second.pk])).content.decode()
    assert 'id="continue-previous"' in page
    assert "Before: each take starts from its last frame; the shot switches to image" in page
    response = client_for(cast.editor).post(
        reverse("sb:shot-continue-previous", args=[second.pk]), **HTMX)
    assert response.status_code == 200
    linked = _fresh(second)
    assert linked.continues_from == first
    assert (linked.mode, linked.endpoint) == ("image", LITE_I2V)
    assert set(linked.changes.get().changes) == {"continues_from", "mode", "endpoint"}
    # Linked now: the offer is gone.
    assert 'id="continue-previous"' not in response.content.decode()


def test_continue_previous_refuses_the_first_shot_and_a_loop(cast):
    first = _shot(cast.project, "First", position=0)
    cast.shot.delete()
    second = _shot(cast.project, "Second", position=1)
    Shot.objects.filter(pk=first.pk).update(continues_from=second, mode="image",
                                            endpoint=LITE_I2V)
    before = _board()
    for shot, message in ((first, "first shot on the board"), (second, "make a loop")):
        response = client_for(cast.editor).post(
            reverse("sb:shot-continue-previous", args=[shot.pk]), **HTMX)
        assert response.status_code == 422
        assert message in response.content.decode()
    assert _board() == before


@pytest.mark.parametrize("role", ["reviewer", "viewer"])
def test_read_only_roles_get_no_link_offer_and_cannot_link(cast, role):
    second = _shot(cast.project, "After", position=5)
    page = client_for(cast.member(role)).get(reverse("sb:shot", args=[second.pk]))
    assert 'id="continue-previous"' not in page.content.decode()
    before = _board()
    response = client_for(cast.member(role)).post(
        reverse("sb:shot-continue-previous", args=[second.pk]), **HTMX)
    assert response.status_code == 403
    assert _board() == before


# Refused links change nothing at all


def _post_link(user, shot: Shot, upstream_pk: int | None, **changes):
    fresh = _fresh(shot)
    values = {**fresh.field_values(), "continues_from": upstream_pk, **changes}
    return client_for(user).post(reverse("sb:shot", args=[shot.pk]),
                                 ShotForm.data_for(values, version=fresh.version), **HTMX)


def test_every_refused_link_leaves_the_database_as_it_was(cast):
    from tests.factories import ProjectFactory

    shots, _ = _chain(cast.project, 3)
    other_project = _shot(ProjectFactory(team=cast.team), "Elsewhere", position=0)
    other_team = _shot(ProjectFactory(team=cast.other_team), "Foreign", position=0)
    image = {"mode": "image", "endpoint": LITE_I2V}
    attempts = [
        (cast.editor, shots[0], shots[0].pk, image, 422),     # itself
        (cast.editor, shots[0], shots[2].pk, image, 422),     # a loop of three
        (cast.editor, shots[0], other_project.pk, image, 422),
        (cast.editor, shots[0], other_team.pk, image, 422),
        (cast.editor, cast.shot, shots[2].pk, {}, 422),       # text to video
        (cast.viewer, cast.shot, shots[2].pk, image, 403),
        (cast.reviewer, cast.shot, shots[2].pk, image, 403),
    ]
    for user, shot, upstream, changes, status in attempts:
        before = _board()
        assert _post_link(user, shot, upstream, **changes).status_code == status
        assert _board() == before


def test_a_text_to_video_link_is_offered_the_image_endpoint_and_switches(cast):
    up = _shot(cast.project, "Cliff", position=1)
    down = _shot(cast.project, "Window", position=2)
    refused = _post_link(cast.editor, down, up.pk).content.decode()
    assert 'name="switch_endpoint" value="' + LITE_I2V + '"' in refused
    fresh = _fresh(down)
    values = {**fresh.field_values(), "continues_from": up.pk, "prompt": "Typed, unsaved."}
    data = {**ShotForm.data_for(values, version=fresh.version), "switch_endpoint": LITE_I2V}
    response = client_for(cast.editor).post(reverse("sb:shot", args=[down.pk]), data, **HTMX)
    assert response.status_code == 200
    saved = _fresh(down)
    assert (saved.continues_from, saved.mode, saved.endpoint) == (up, "image", LITE_I2V)
    assert saved.prompt == "Typed, unsaved."


def test_a_switch_to_a_text_endpoint_is_not_a_way_around_the_refusal(cast):
    up = _shot(cast.project, "Cliff", position=1)
    down = _shot(cast.project, "Window", position=2)
    fresh = _fresh(down)
    values = {**fresh.field_values(), "continues_from": up.pk}
    data = {**ShotForm.data_for(values, version=fresh.version), "switch_endpoint": LITE_T2V}
    response = client_for(cast.editor).post(reverse("sb:shot", args=[down.pk]), data, **HTMX)
    assert response.status_code == 422
    assert _fresh(down).continues_from is None


# Reordering


def test_after_a_reorder_a_new_take_still_starts_from_the_linked_take(cast):
    shots, takes = _chain(cast.project, 3)
    order = [cast.shot.pk, shots[2].pk, shots[0].pk, shots[1].pk]
    client_for(cast.editor).post(reverse("sb:shot-reorder", args=[cast.project.pk]),
                                 {"item": [f":{pk}" for pk in order]}, **HTMX)
    assert [s.pk for _, group in cast.project.board() for s in group] == order
    take = generation.start_generation(shot=_fresh(shots[2]), user=cast.editor)
    assert take.upstream == takes[1]
    take = generation.start_generation(shot=_fresh(shots[1]), user=cast.editor)
    assert take.upstream == takes[0]


# Pushed live, said loudly


def test_a_new_upstream_take_pushes_the_stale_panel_to_shot_pages(cast, pushes,
                                                                   django_capture_on_commit_callbacks):
    shots, _takes = _chain(cast.project, 3)
    new = _take(shots[0])
    with django_capture_on_commit_callbacks(execute=True):
        client_for(cast.editor).post(reverse("sb:take-select", args=[new.uid]), **HTMX)
    editors = "".join(html for group, html in pushes if group.endswith("-editors"))
    viewers = "".join(html for group, html in pushes if group.endswith("-viewers"))
    for shot in shots[1:]:
        assert f'id="stale-{shot.pk}"' in editors
        assert f'id="shot-{shot.pk}"' in viewers
    assert f"S1 now uses take #{new.pk}" in viewers
    # Only editors are offered the actions.
    assert 'id="rechain"' in editors
    assert 'id="rechain"' not in viewers
    assert "data-keep" in editors
    assert "data-keep" not in viewers


def test_an_approved_shot_that_goes_stale_says_so_loudly_and_stays_approved(cast):
    shots, _takes = _chain(cast.project, 2)
    Shot.objects.filter(pk=shots[1].pk).update(review=Shot.Review.APPROVED)
    chains.choose_take(shot=shots[0], take=_take(shots[0]), user=cast.editor)
    assert _fresh(shots[1]).review == Shot.Review.APPROVED
    board = client_for(cast.viewer).get(reverse("sb:board", args=[cast.project.pk]))
    assert "approved · stale" in board.content.decode()
    assert 'class="stale-line loud" role="alert"' in board.content.decode()
    page = client_for(cast.viewer).get(reverse("sb:shot", args=[shots[1].pk])).content.decode()
    assert "Approved, but stale." in page


def test_the_card_names_the_shot_it_continues(cast):
    shots, _ = _chain(cast.project, 2)
    content = client_for(cast.viewer).get(reverse("sb:board", args=[cast.project.pk])) \
        .content.decode()
    assert f'data-continues-from="{shots[0].pk}"' in content
    assert "continues from <span data-upstream-label>S1</span>" in content
    assert ShotChange.objects.count() == 0


def test_a_second_rechain_while_one_runs_is_refused_and_names_who(cast):
    shots, _takes, new = _stale_chain(cast, 2)
    take = generation.rechain(shot=shots[1], user=cast.editor)
    assert take.upstream == new
    before = _board()
    response = client_for(cast.producer).post(reverse("sb:shot-rechain", args=[shots[1].pk]),
                                              **HTMX)
    assert response.status_code == 422
    assert f"{cast.editor.label} already started a take from the new frame" in \
        response.content.decode()
    assert _board() == before


# Changing the link in the editor


def test_linking_a_shot_with_a_take_elsewhere_marks_it_and_the_chain_below_stale(cast):
    shots, takes = _chain(cast.project, 3)
    other = _shot(cast.project, "Other", position=1)
    chains.choose_take(shot=other, take=_take(other), user=None)
    response = _post_link(cast.editor, shots[1], other.pk)
    assert response.status_code == 200
    assert _fresh(shots[1]).stale_reason == (f"It now continues from Other; this take started "
                                             f"from #{takes[0].pk}.")
    assert _fresh(shots[2]).stale_reason == "It continues from S2, which is stale."
    # The editor answers with the stale panel; Re-chain starts from Other's take.
    assert f'id="stale-{shots[1].pk}"' in response.content.decode()
    assert generation.rechain(shot=shots[1], user=cast.editor).upstream == \
        _fresh(other).chosen_take()


def test_unlinking_a_stale_shot_in_the_editor_clears_its_mark(cast):
    shots, _takes, _new = _stale_chain(cast, 2)
    response = _post_link(cast.editor, shots[1], None, mode="text", endpoint=LITE_T2V)
    assert response.status_code == 200
    assert _fresh(shots[1]).continues_from is None
    assert not _fresh(shots[1]).is_stale
