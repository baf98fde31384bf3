"""Numbers, deletes and the stand-alone editor stay right outside the usual paths."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from storyboard.models import Shot
from tests.conftest import client_for
from tests.factories import SceneFactory, ShotFactory

pytestmark = pytest.mark.django_db


def test_a_single_card_is_numbered_in_board_order(cast):
    Shot.objects.filter(pk=cast.shot.pk).update(position=1)
    scene = SceneFactory(project=cast.project, position=0)
    # Position 0 but inside a scene: on the board it comes after every unscened shot.
    in_scene = ShotFactory(project=cast.project, scene=scene, position=0)
    loose = ShotFactory(project=cast.project, position=5)
    fresh = {s.pk: Shot.objects.get(pk=s.pk) for s in (cast.shot, loose, in_scene)}
    assert [fresh[s.pk].number for s in (cast.shot, loose, in_scene)] == [1, 2, 3]


def test_it_deletes_an_untitled_shot_without_javascript(cast):
    shot = ShotFactory(project=cast.project, title="")
    response = client_for(cast.editor).post(reverse("sb:shot-delete", args=[shot.pk]),
                                            follow=True)
    assert response.status_code == 200
    assert not Shot.objects.filter(pk=shot.pk).exists()
    assert "Deleted Shot 2." in response.content.decode()


def test_it_refuses_a_move_in_an_unknown_direction(cast):
    second = ShotFactory(project=cast.project)
    response = client_for(cast.editor).post(reverse("sb:shot-move", args=[cast.shot.pk]),
                                            {"direction": "sideways"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 422
    assert [s.pk for s in cast.project.shots.order_by("position")] == [cast.shot.pk, second.pk]


def test_the_stand_alone_editor_targets_itself(cast):
    response = client_for(cast.editor).get(reverse("sb:shot", args=[cast.shot.pk]))
    html = response.content.decode()
    # htmx swaps the editor into #editor, which this page must therefore have.
    assert 'id="editor"' in html
    assert "Back to board" in html


def _edit(user, shot, *, version, **fields):
    data = {"title": shot.title, "prompt": shot.prompt, "mode": "text",
            "endpoint": "bytedance/seedance-2.0/fast/text-to-video", "resolution": "720p",
            "aspect_ratio": "16:9", "duration": "5", "version": version, **fields}
    return client_for(user).post(reverse("sb:shot", args=[shot.pk]), data,
                                 HTTP_HX_REQUEST="true")


def test_a_stale_editor_merges_with_a_collaborators_save(cast):
    opened = Shot.objects.get(pk=cast.shot.pk).version
    # The producer opened the same editor at the same moment and saved first.
    assert _edit(cast.producer, cast.shot, version=opened,
                 prompt="Dolly in on the keeper.").status_code == 200
    # The editor's stale form still holds the old prompt, which it did not change.
    response = _edit(cast.editor, cast.shot, version=opened, duration="10")
    assert response.status_code == 200
    shot = Shot.objects.get(pk=cast.shot.pk)
    assert (shot.prompt, shot.duration) == ("Dolly in on the keeper.", "10")


def test_saving_twice_in_a_row_from_one_editor_is_not_a_conflict(cast):
    first = _edit(cast.editor, cast.shot, version=Shot.objects.get(pk=cast.shot.pk).version,
                  prompt="One.")
    version = re.search(r'name="version" value="([^"]+)"', first.content.decode()).group(1)
    second = _edit(cast.editor, cast.shot, version=version, prompt="Two.")
    assert second.status_code == 200
    assert Shot.objects.get(pk=cast.shot.pk).prompt == "Two."
