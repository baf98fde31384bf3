"""Two people editing one shot: merges, conflicts, the change history and undo (issue #10)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse

from storyboard.forms import ShotForm
from storyboard.models import Shot, ShotChange
from tests.conftest import client_for
from tests.factories import AssetFactory, ProjectFactory, SceneFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
READ_ONLY = ["reviewer", "viewer"]


class Editor:
    """One person's open shot editor: the values and version it was opened with."""

    def __init__(self, user, shot: Shot) -> None:
        self.user, self.shot_id = user, shot.pk
        fresh = Shot.objects.get(pk=shot.pk)
        self.values, self.version = fresh.field_values(), fresh.version

    def save(self, *, keep: dict[str, str] | None = None, **changes):
        self.values.update(changes)
        data = ShotForm.data_for(self.values, version=self.version)
        data.update({f"keep-{name}": choice for name, choice in (keep or {}).items()})
        response = client_for(self.user).post(reverse("sb:shot", args=[self.shot_id]), data,
                                              **HTMX)
        # Like the browser: the editor now carries what the answer rendered.
        found = re.search(r'name="version" value="([^"]+)"', response.content.decode())
        if found:
            self.version = found.group(1)
        return response


def stored(shot: Shot) -> dict:
    return Shot.objects.get(pk=shot.pk).field_values()


# Merging


def test_it_keeps_both_edits_to_different_fields(cast):
    paul, emma = Editor(cast.producer, cast.shot), Editor(cast.editor, cast.shot)
    assert paul.save(title="Harbour at dusk").status_code == 200
    response = emma.save(prompt="Slow dolly across the harbour.")
    assert response.status_code == 200
    assert "Saved." in response.content.decode()
    values = stored(cast.shot)
    assert (values["title"], values["prompt"]) == ("Harbour at dusk",
                                                   "Slow dolly across the harbour.")


def test_it_merges_frames_scenes_and_references_as_fields(cast):
    start, ref_a, ref_b = AssetFactory.create_batch(3, project=cast.project)
    scene = SceneFactory(project=cast.project)
    paul, emma = Editor(cast.producer, cast.shot), Editor(cast.editor, cast.shot)
    assert paul.save(scene=scene.pk, start_frame=start.pk).status_code == 200
    assert emma.save(mode="reference", endpoint="bytedance/seedance-2.0/reference-to-video",
                     references=[ref_a.pk, ref_b.pk]).status_code == 200
    values = stored(cast.shot)
    assert (values["scene"], values["start_frame"]) == (scene.pk, start.pk)
    assert values["references"] == sorted([ref_a.pk, ref_b.pk])
    assert values["mode"] == "reference"


def test_a_save_does_not_undo_a_move_to_another_scene_made_meanwhile(cast):
    """Paul drags the shot under a scene while Emma's editor is open; her save keeps it there."""
    scene = SceneFactory(project=cast.project, title="Harbour")
    emma = Editor(cast.editor, cast.shot)
    items = [(scene.pk if shot.pk == cast.shot.pk else shot.scene_id, shot.pk)
             for shot in cast.project.shots.order_by("position", "pk")]
    response = client_for(cast.producer).post(
        reverse("sb:shot-reorder", args=[cast.project.pk]),
        {"item": [f"{scene_id or ''}:{shot_id}" for scene_id, shot_id in items]}, **HTMX)
    assert response.status_code == 200
    assert emma.save(title="Harbour at dusk").status_code == 200
    values = stored(cast.shot)
    assert (values["scene"], values["title"]) == (scene.pk, "Harbour at dusk")
    (move,) = ShotChange.objects.filter(shot=cast.shot, changes__has_key="scene")
    assert move.user == cast.producer


def test_the_same_change_by_both_is_not_a_conflict(cast):
    paul, emma = Editor(cast.producer, cast.shot), Editor(cast.editor, cast.shot)
    paul.save(duration="10")
    assert emma.save(duration="10").status_code == 200


def test_it_shows_a_same_field_conflict_with_both_values_and_loses_nothing(cast):
    paul, emma = Editor(cast.producer, cast.shot), Editor(cast.editor, cast.shot)
    paul.save(prompt="Paul's prompt: a gull on the mast.")
    response = emma.save(prompt="Emma's prompt: waves over the pier.", notes="Use the 35mm.")
    assert response.status_code == 409
    html = response.content.decode()
    # Both values side by side, with a choice; Emma's text stays in the form as well.
    conflict = html[html.index('id="conflicts"'):html.index('id="id_title"')]
    assert "Paul&#x27;s prompt: a gull on the mast." in conflict
    assert "Emma&#x27;s prompt: waves over the pier." in conflict
    assert 'name="keep-prompt" value="mine"' in html
    assert 'name="keep-prompt" value="theirs"' in html
    assert cast.producer.label in conflict
    textarea = re.search(r'<textarea name="prompt"[^>]*>(.*?)</textarea>', html, re.S).group(1)
    assert textarea.strip() == "Emma&#x27;s prompt: waves over the pier."
    # Paul's stored prompt stands; Emma's other change merged.
    values = stored(cast.shot)
    assert values["prompt"] == "Paul's prompt: a gull on the mast."
    assert values["notes"] == "Use the 35mm."
    assert "Your other changes are saved." in html


def test_keep_mine_resolves_a_conflict(cast):
    paul, emma = Editor(cast.producer, cast.shot), Editor(cast.editor, cast.shot)
    paul.save(title="Paul's title")
    assert emma.save(title="Emma's title").status_code == 409
    response = emma.save(keep={"title": "mine"})
    assert response.status_code == 200
    assert stored(cast.shot)["title"] == "Emma's title"


def test_take_theirs_resolves_a_conflict(cast):
    paul, emma = Editor(cast.producer, cast.shot), Editor(cast.editor, cast.shot)
    paul.save(title="Paul's title")
    assert emma.save(title="Emma's title", seed=7).status_code == 409
    response = emma.save(keep={"title": "theirs"})
    assert response.status_code == 200
    values = stored(cast.shot)
    assert (values["title"], values["seed"]) == ("Paul's title", 7)


def test_a_third_save_during_the_choice_is_a_conflict_again(cast):
    paul, emma = Editor(cast.producer, cast.shot), Editor(cast.editor, cast.shot)
    paul.save(title="One")
    assert emma.save(title="Two").status_code == 409
    paul.save(title="Three")
    assert emma.save(keep={"title": "mine"}).status_code == 409
    assert stored(cast.shot)["title"] == "Three"


def test_it_refuses_a_merge_that_does_not_fit_and_keeps_the_typing(cast):
    # Paul moves the shot to the fast tier; Emma raises it to 1080p, which fast cannot do.
    Shot.objects.filter(pk=cast.shot.pk).update(endpoint="bytedance/seedance-2.0/text-to-video")
    paul, emma = Editor(cast.producer, cast.shot), Editor(cast.editor, cast.shot)
    paul.save(endpoint="bytedance/seedance-2.0/fast/text-to-video")
    response = emma.save(resolution="1080p", title="Emma's title")
    assert response.status_code == 422
    html = response.content.decode()
    assert "1080p needs the standard tier" in html
    assert 'value="Emma&#x27;s title"' in html
    assert stored(cast.shot)["resolution"] == "720p"


def test_it_shows_every_difference_as_a_conflict_when_history_cannot_tell(cast):
    emma = Editor(cast.editor, cast.shot)
    # Changed outside the editor (the admin writes no history), after Emma opened it.
    shot = Shot.objects.get(pk=cast.shot.pk)
    shot.title = "Changed in the admin"
    shot.updated = shot.updated + timedelta(seconds=1)
    shot.save()
    response = emma.save(title="Emma's title")
    assert response.status_code == 409
    assert stored(cast.shot)["title"] == "Changed in the admin"


def test_a_save_without_changes_writes_no_history(cast):
    assert Editor(cast.editor, cast.shot).save().status_code == 200
    assert not ShotChange.objects.exists()


@pytest.mark.parametrize("role", READ_ONLY)
def test_it_refuses_read_only_roles_merging(cast, role):
    before = stored(cast.shot)
    assert Editor(cast.member(role), cast.shot).save(title="Nope").status_code == 403
    assert stored(cast.shot) == before


def test_it_hides_merging_from_other_teams(cast):
    before = stored(cast.shot)
    assert Editor(cast.outsider, cast.shot).save(title="Nope").status_code == 404
    assert stored(cast.shot) == before


# History


def test_it_records_who_changed_which_fields_from_what_to_what(cast):
    frame = AssetFactory(project=cast.project, original_name="dawn.png")
    Editor(cast.editor, cast.shot).save(title="Dawn", start_frame=frame.pk)
    change = ShotChange.objects.get()
    assert change.user == cast.editor
    assert change.changes == {"title": ["Opening", "Dawn"], "start_frame": [None, frame.pk]}
    assert change.created == Shot.objects.get(pk=cast.shot.pk).updated
    assert ("Start frame", "—", "dawn.png") in change.rows()


@pytest.mark.parametrize("role", ["editor", "viewer"])
def test_the_shot_page_lists_the_history(cast, role):
    Editor(cast.producer, cast.shot).save(title="Dawn")
    html = client_for(cast.member(role)).get(reverse("sb:shot", args=[cast.shot.pk])) \
        .content.decode()
    history = html[html.index(f'id="history-{cast.shot.pk}"'):]
    assert cast.producer.label in history
    assert "<del>Opening</del> → <ins>Dawn</ins>" in history
    undo_form = f'action="{reverse("sb:shot-undo", args=[cast.shot.pk])}"'
    assert (undo_form in history) == (role == "editor")


def test_it_gives_htmx_the_history_region(cast):
    Editor(cast.producer, cast.shot).save(title="Dawn")
    response = client_for(cast.viewer).get(reverse("sb:shot-history", args=[cast.shot.pk]),
                                           **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith(f'<section class="history" id="history-{cast.shot.pk}"')
    assert "<form" not in html


def test_it_hides_the_history_from_other_teams(cast):
    response = client_for(cast.outsider).get(reverse("sb:shot-history", args=[cast.shot.pk]),
                                             **HTMX)
    assert response.status_code == 404


def test_it_pushes_the_changed_fields_and_the_history_after_commit(
        cast, django_capture_on_commit_callbacks, monkeypatch):
    sent: list[str] = []
    monkeypatch.setattr("storyboard.realtime.send_html", lambda project_id, html: sent.append(html))
    with django_capture_on_commit_callbacks(execute=True):
        Editor(cast.editor, cast.shot).save(title="Dawn")
    pushed = "".join(sent)
    assert f'id="shot-{cast.shot.pk}-title" data-editor-field="title" hx-swap-oob="true"' in pushed
    assert 'value="Dawn"' in pushed
    assert f'id="shot-{cast.shot.pk}-prompt"' not in pushed
    assert f'hx-get="{reverse("sb:shot-history", args=[cast.shot.pk])}"' in pushed


@pytest.mark.parametrize(("changes", "totals"), [
    ({"title": "Dawn", "prompt": "Wide on the cliff."}, False),
    ({"duration": "8"}, True),
])
def test_it_pushes_the_totals_only_when_the_edit_changes_them(
        cast, django_capture_on_commit_callbacks, monkeypatch, changes, totals):
    sent: list[dict] = []
    monkeypatch.setattr("storyboard.realtime._send",
                        lambda group, message: sent.append(message))
    with django_capture_on_commit_callbacks(execute=True):
        Editor(cast.editor, cast.shot).save(**changes)
    # The card leaves first, and a title carries no new totals to every board.
    assert f'id="shot-{cast.shot.pk}"' in sent[0]["html"]
    assert ('id="board-summary"' in sent[0]["html"]) is totals


# Undo


def undo(user, shot: Shot, change: ShotChange | None = None, **extra):
    change = change or ShotChange.objects.filter(shot=shot).first()
    return client_for(user).post(reverse("sb:shot-undo", args=[shot.pk]),
                                 {"change": change.pk if change else ""}, **extra)


@pytest.mark.parametrize("role", ["owner", "producer", "editor"])
def test_it_undoes_the_last_change(cast, role):
    ref = AssetFactory(project=cast.project)
    Editor(cast.producer, cast.shot).save(title="Oops", references=[ref.pk])
    response = undo(cast.member(role), cast.shot, **HTMX)
    assert response.status_code == 200
    values = stored(cast.shot)
    assert (values["title"], values["references"]) == ("Opening", [])
    # The undo is a change of its own, which can itself be undone.
    reverted = ShotChange.objects.first()
    assert reverted.user == cast.member(role)
    assert reverted.undoes == ShotChange.objects.last()
    assert reverted.changes == {"title": ["Oops", "Opening"], "references": [[ref.pk], []]}
    assert "undid a change" in response.content.decode()
    undo(cast.editor, cast.shot, **HTMX)
    assert stored(cast.shot)["title"] == "Oops"


def test_it_undoes_without_javascript(cast):
    Editor(cast.producer, cast.shot).save(title="Oops")
    response = undo(cast.editor, cast.shot, follow=True)
    assert response.redirect_chain == [(reverse("sb:shot", args=[cast.shot.pk]), 302)]
    assert "Undone." in response.content.decode()
    assert stored(cast.shot)["title"] == "Opening"


def test_it_refuses_to_undo_a_change_someone_built_on(cast):
    Editor(cast.producer, cast.shot).save(title="First")
    first = ShotChange.objects.get()
    Editor(cast.editor, cast.shot).save(title="Second")
    response = undo(cast.producer, cast.shot, first, **HTMX)
    assert response.status_code == 422
    assert f"{cast.editor.label} changed title since; nothing was undone." in \
        response.content.decode()
    assert stored(cast.shot)["title"] == "Second"
    assert ShotChange.objects.count() == 2


def test_it_refuses_to_undo_over_a_change_made_outside_the_history(cast):
    Editor(cast.producer, cast.shot).save(title="First")
    Shot.objects.filter(pk=cast.shot.pk).update(title="From the admin")
    response = undo(cast.editor, cast.shot, follow=True)
    assert "Title changed since; nothing was undone." in response.content.decode()
    assert stored(cast.shot)["title"] == "From the admin"


def test_it_refuses_to_undo_back_to_a_deleted_frame(cast):
    frame = AssetFactory(project=cast.project)
    other = AssetFactory(project=cast.project)
    Shot.objects.filter(pk=cast.shot.pk).update(start_frame=frame)
    Editor(cast.editor, cast.shot).save(start_frame=other.pk)
    frame.delete()
    response = undo(cast.editor, cast.shot, **HTMX)
    assert response.status_code == 422
    assert stored(cast.shot)["start_frame"] == other.pk


@pytest.mark.parametrize("role", READ_ONLY)
def test_it_refuses_read_only_roles_undoing(cast, role):
    Editor(cast.producer, cast.shot).save(title="Oops")
    assert undo(cast.member(role), cast.shot).status_code == 403
    assert stored(cast.shot)["title"] == "Oops"


def test_it_hides_undo_from_other_teams(cast):
    Editor(cast.producer, cast.shot).save(title="Oops")
    assert undo(cast.outsider, cast.shot).status_code == 404
    assert stored(cast.shot)["title"] == "Oops"


def test_it_does_not_undo_another_shots_change(cast):
    elsewhere = Shot.objects.create(project=ProjectFactory(team=cast.team), title="Other")
    Editor(cast.producer, elsewhere).save(title="Elsewhere")
    response = undo(cast.editor, cast.shot, ShotChange.objects.get(), **HTMX)
    assert response.status_code == 422
    assert stored(elsewhere)["title"] == "Elsewhere"


def test_it_refuses_get_on_undo(cast):
    assert client_for(cast.editor).get(reverse("sb:shot-undo", args=[cast.shot.pk])) \
        .status_code == 405
