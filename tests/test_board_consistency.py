"""Numbers, deletes and the stand-alone editor stay right outside the usual paths."""

from __future__ import annotations

import pytest
from django.urls import reverse

from storyboard.models import Shot
from tests.conftest import client_for
from tests.factories import SceneFactory, ShotFactory

pytestmark = pytest.mark.django_db


def test_a_single_card_is_numbered_in_board_order(cast):
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
