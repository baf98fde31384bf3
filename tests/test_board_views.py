"""The board and the views that change its shape: add shots, reorder, move, scenes."""

from __future__ import annotations

import html
import json
import re

import pytest
from django.urls import reverse

from storyboard.models import Scene, Shot
from tests.conftest import Cast, client_for
from tests.factories import ProjectFactory, SceneFactory, ShotFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
# Refused input answers 422 with the form and its messages (storyboard.views.INVALID).
INVALID = 422
READ_ONLY = ["reviewer", "viewer"]
WRITERS = ["owner", "producer", "editor"]


def board_order(project) -> list[tuple[int | None, int]]:
    """(scene_id, shot_id) in board order, as the board shows it."""
    return [(s.scene_id, s.pk) for _, shots in project.board() for s in shots]


def pushed_order(content: str) -> list[list]:
    """The order a change answers with (and pushes): [[scene id or None, [shot ids]], …]."""
    found = re.search(r'id="board-order"[^>]* data-order="([^"]*)"', content)
    assert found, content
    return json.loads(html.unescape(found.group(1)))


def assert_login_redirect(response, url: str) -> None:
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('accounts:login')}?next={url}"


def make_board(cast: Cast) -> tuple[Scene, list[Shot]]:
    """Board of Alpha's project: [a, b] unscened, then scene S with [c, d]."""
    scene = SceneFactory(project=cast.project, title="Harbour", position=0)
    a = cast.shot
    b = ShotFactory(project=cast.project, title="Beach")
    c = ShotFactory(project=cast.project, title="Cliff", scene=scene)
    d = ShotFactory(project=cast.project, title="Dunes", scene=scene)
    return scene, [a, b, c, d]


# board


@pytest.mark.parametrize("role", [*WRITERS, *READ_ONLY])
def test_it_shows_the_board_to_every_member(cast, role):
    response = client_for(cast.member(role)).get(reverse("sb:board", args=[cast.project.pk]))
    assert response.status_code == 200
    content = response.content.decode()
    assert "<html" in content
    assert 'id="board"' in content
    assert "Opening" in content
    # Only writers get the class that shows the editing controls.
    assert ("may-edit" in content) == (role in WRITERS)


def test_it_gives_htmx_only_the_board_partial(cast):
    response = client_for(cast.viewer).get(reverse("sb:board", args=[cast.project.pk]), **HTMX)
    assert response.status_code == 200
    content = response.content.decode()
    assert 'id="board"' in content
    assert "Opening" in content
    assert "<html" not in content


def test_it_gives_the_empty_editor_when_htmx_targets_the_editor(cast):
    response = client_for(cast.viewer).get(
        reverse("sb:board", args=[cast.project.pk]), HTTP_HX_TARGET="editor", **HTMX
    )
    assert response.status_code == 200
    content = response.content.decode()
    assert "<html" not in content
    assert 'id="board"' not in content


@pytest.mark.parametrize("role", WRITERS)
def test_it_tells_writers_how_to_edit_and_reorder(cast, role):
    content = client_for(cast.member(role)).get(reverse("sb:board", args=[cast.project.pk])) \
        .content.decode()
    assert "Drag cards to reorder them" in content
    assert "write its prompt" in content


@pytest.mark.parametrize("role", READ_ONLY)
def test_it_tells_read_only_roles_what_they_can_do(cast, role):
    content = client_for(cast.member(role)).get(reverse("sb:board", args=[cast.project.pk])) \
        .content.decode()
    assert "Drag cards" not in content
    assert "write its prompt" not in content
    assert "watch its takes" in content
    assert f"As a {role} you can look at everything here" in content


def test_it_gives_a_viewer_their_own_empty_editor_when_the_editor_closes(cast):
    content = client_for(cast.viewer).get(
        reverse("sb:board", args=[cast.project.pk]), HTTP_HX_TARGET="editor", **HTMX
    ).content.decode()
    assert "watch its takes" in content
    assert "Drag cards" not in content


def test_it_hides_the_board_from_outsider(cast):
    response = client_for(cast.outsider).get(reverse("sb:board", args=[cast.project.pk]))
    assert response.status_code == 404
    assert b"Opening" not in response.content


def test_it_sends_anonymous_to_login_from_the_board(cast):
    url = reverse("sb:board", args=[cast.project.pk])
    assert_login_redirect(client_for(None).get(url), url)


def test_it_refuses_post_on_the_board(cast):
    response = client_for(cast.owner).post(reverse("sb:board", args=[cast.project.pk]))
    assert response.status_code == 405


def test_it_404s_for_a_project_that_does_not_exist(cast):
    response = client_for(cast.owner).get(reverse("sb:board", args=[999_999]))
    assert response.status_code == 404


# shot_create


@pytest.mark.parametrize("role", WRITERS)
def test_it_adds_a_shot_at_the_end(cast, role):
    user = cast.member(role)
    response = client_for(user).post(reverse("sb:shot-create", args=[cast.project.pk]),
                                     {"title": "Closing"})
    assert response.status_code == 302
    assert response["Location"] == reverse("sb:board", args=[cast.project.pk])
    shot = cast.project.shots.get(title="Closing")
    assert shot.created_by == user
    assert board_order(cast.project)[-1] == (None, shot.pk)


def test_it_adds_a_shot_into_a_scene_and_returns_the_partial_to_htmx(cast):
    scene = SceneFactory(project=cast.project, title="Harbour")
    response = client_for(cast.editor).post(
        reverse("sb:shot-create", args=[cast.project.pk]),
        {"title": "Quay", "scene": scene.pk}, **HTMX,
    )
    assert response.status_code == 200
    content = response.content.decode()
    quay = cast.project.shots.get(title="Quay")
    assert quay.scene == scene
    # The new order, with the new card for the board to put in place; not the board.
    assert pushed_order(content) == [[None, [cast.shot.pk]], [scene.pk, [quay.pk]]]
    assert f'id="shot-{quay.pk}"' in content
    assert 'id="board"' not in content
    assert "<html" not in content


def test_it_refuses_a_scene_from_another_project_for_a_new_shot(cast):
    elsewhere = SceneFactory(project=ProjectFactory(team=cast.team))
    response = client_for(cast.editor).post(
        reverse("sb:shot-create", args=[cast.project.pk]), {"title": "Lost", "scene": elsewhere.pk}
    )
    assert response.status_code == INVALID
    assert b"That scene is not on this board." in response.content
    assert not Shot.objects.filter(title="Lost").exists()


@pytest.mark.parametrize("role", READ_ONLY)
def test_it_refuses_read_only_roles_adding_shots(cast, role):
    response = client_for(cast.member(role)).post(
        reverse("sb:shot-create", args=[cast.project.pk]), {"title": "Nope"}
    )
    assert response.status_code == 403
    assert cast.project.shots.count() == 1


def test_it_hides_shot_create_from_outsider(cast):
    response = client_for(cast.outsider).post(
        reverse("sb:shot-create", args=[cast.project.pk]), {"title": "Nope"}
    )
    assert response.status_code == 404
    assert cast.project.shots.count() == 1


def test_it_sends_anonymous_to_login_from_shot_create(cast):
    url = reverse("sb:shot-create", args=[cast.project.pk])
    assert_login_redirect(client_for(None).post(url, {"title": "Nope"}), url)
    assert cast.project.shots.count() == 1


# shot_reorder


def _items(order: list[tuple[int | None, int]]) -> dict:
    return {"item": [f"{scene or ''}:{shot}" for scene, shot in order]}


def test_it_reorders_shots(cast):
    scene, (a, b, c, d) = make_board(cast)
    # d to the top, unscened; a into the scene, last.
    new = [(None, d.pk), (None, b.pk), (scene.pk, c.pk), (scene.pk, a.pk)]
    response = client_for(cast.editor).post(
        reverse("sb:shot-reorder", args=[cast.project.pk]), _items(new)
    )
    assert response.status_code == 302
    assert board_order(cast.project) == new
    assert Shot.objects.get(pk=a.pk).scene == scene
    assert Shot.objects.get(pk=d.pk).scene is None


def test_it_returns_the_reordered_board_to_htmx(cast):
    _, (a, b, c, d) = make_board(cast)
    new = [(None, b.pk), (None, a.pk), (c.scene_id, c.pk), (d.scene_id, d.pk)]
    response = client_for(cast.editor).post(
        reverse("sb:shot-reorder", args=[cast.project.pk]), _items(new), **HTMX
    )
    assert response.status_code == 200
    content = response.content.decode()
    assert pushed_order(content) == [[None, [b.pk, a.pk]], [c.scene_id, [c.pk, d.pk]]]
    # Moving cards needs no card at all.
    assert "Beach" not in content
    assert "<html" not in content


def test_it_refuses_an_order_that_misses_a_shot(cast):
    _, (a, b, c, _d) = make_board(cast)
    before = board_order(cast.project)
    response = client_for(cast.editor).post(
        reverse("sb:shot-reorder", args=[cast.project.pk]),
        _items([(None, b.pk), (None, a.pk), (c.scene_id, c.pk)]),
    )
    assert response.status_code == 409
    # The current board comes back so the client can show it, retargeted at #board.
    assert 'id="board"' in response.content.decode()
    assert response["HX-Retarget"] == "#board"
    assert board_order(cast.project) == before


def test_it_refuses_an_order_with_another_projects_shot(cast):
    _, (a, b, c, d) = make_board(cast)
    stranger = ShotFactory(project=ProjectFactory(team=cast.team))
    before = board_order(cast.project)
    stranger_before = (stranger.position, stranger.scene_id, stranger.project_id)
    order = [(None, stranger.pk), (None, a.pk), (None, b.pk), (c.scene_id, c.pk),
             (d.scene_id, d.pk)]
    response = client_for(cast.editor).post(
        reverse("sb:shot-reorder", args=[cast.project.pk]), _items(order)
    )
    assert response.status_code == 409
    assert board_order(cast.project) == before
    stranger.refresh_from_db()
    assert (stranger.position, stranger.scene_id, stranger.project_id) == stranger_before


def test_it_refuses_an_order_that_repeats_a_shot(cast):
    _, (a, b, c, d) = make_board(cast)
    before = board_order(cast.project)
    order = [(None, a.pk), (None, a.pk), (None, b.pk), (c.scene_id, c.pk), (d.scene_id, d.pk)]
    response = client_for(cast.editor).post(
        reverse("sb:shot-reorder", args=[cast.project.pk]), _items(order)
    )
    assert response.status_code == 409
    assert board_order(cast.project) == before


def test_it_refuses_an_order_with_another_projects_scene(cast):
    _, (a, b, c, d) = make_board(cast)
    foreign = SceneFactory(project=ProjectFactory(team=cast.team))
    before = board_order(cast.project)
    order = [(foreign.pk, a.pk), (None, b.pk), (c.scene_id, c.pk), (d.scene_id, d.pk)]
    response = client_for(cast.editor).post(
        reverse("sb:shot-reorder", args=[cast.project.pk]), _items(order)
    )
    assert response.status_code == 409
    assert board_order(cast.project) == before
    assert Shot.objects.get(pk=a.pk).scene_id is None


def test_it_refuses_a_malformed_order(cast):
    before = board_order(cast.project)
    response = client_for(cast.editor).post(
        reverse("sb:shot-reorder", args=[cast.project.pk]), {"item": ["nonsense"]}
    )
    assert response.status_code == INVALID
    assert b"Malformed board order." in response.content
    assert board_order(cast.project) == before


@pytest.mark.parametrize("role", READ_ONLY)
def test_it_refuses_read_only_roles_reordering(cast, role):
    make_board(cast)
    before = board_order(cast.project)
    response = client_for(cast.member(role)).post(
        reverse("sb:shot-reorder", args=[cast.project.pk]), _items(list(reversed(before)))
    )
    assert response.status_code == 403
    assert board_order(cast.project) == before


def test_it_hides_reorder_from_outsider(cast):
    make_board(cast)
    before = board_order(cast.project)
    response = client_for(cast.outsider).post(
        reverse("sb:shot-reorder", args=[cast.project.pk]), _items(list(reversed(before)))
    )
    assert response.status_code == 404
    assert board_order(cast.project) == before


def test_it_sends_anonymous_to_login_from_reorder(cast):
    make_board(cast)
    before = board_order(cast.project)
    url = reverse("sb:shot-reorder", args=[cast.project.pk])
    assert_login_redirect(client_for(None).post(url, _items(list(reversed(before)))), url)
    assert board_order(cast.project) == before


# shot_move


def _move(user, shot: Shot, direction: str, **extra):
    return client_for(user).post(reverse("sb:shot-move", args=[shot.pk]),
                                 {"direction": direction}, **extra)


def test_it_moves_a_shot_down_within_its_group(cast):
    scene, (a, b, c, d) = make_board(cast)
    response = _move(cast.editor, a, "down")
    assert response.status_code == 302
    assert response["Location"] == reverse("sb:board", args=[cast.project.pk])
    assert board_order(cast.project) == [(None, b.pk), (None, a.pk), (scene.pk, c.pk),
                                         (scene.pk, d.pk)]


def test_it_moves_a_shot_up_within_a_scene(cast):
    scene, (a, b, c, d) = make_board(cast)
    _move(cast.editor, d, "up")
    assert board_order(cast.project) == [(None, a.pk), (None, b.pk), (scene.pk, d.pk),
                                         (scene.pk, c.pk)]


def test_it_moves_a_shot_down_into_the_next_scene(cast):
    scene, (a, b, c, d) = make_board(cast)
    _move(cast.editor, b, "down")
    # The first step across the boundary only changes the scene, at the top of it.
    assert board_order(cast.project) == [(None, a.pk), (scene.pk, b.pk), (scene.pk, c.pk),
                                         (scene.pk, d.pk)]


def test_it_moves_a_shot_up_out_of_its_scene(cast):
    scene, (a, b, c, d) = make_board(cast)
    _move(cast.editor, c, "up")
    assert board_order(cast.project) == [(None, a.pk), (None, b.pk), (None, c.pk),
                                         (scene.pk, d.pk)]


def test_it_leaves_the_first_shot_alone_when_moved_up(cast):
    a = make_board(cast)[1][0]
    before = board_order(cast.project)
    response = _move(cast.editor, a, "up")
    assert response.status_code == 302
    assert board_order(cast.project) == before


def test_it_leaves_the_last_shot_alone_when_moved_down(cast):
    d = make_board(cast)[1][-1]
    before = board_order(cast.project)
    _move(cast.editor, d, "down")
    assert board_order(cast.project) == before


def test_it_returns_the_moved_board_to_htmx(cast):
    scene, (a, b, c, d) = make_board(cast)
    response = _move(cast.editor, a, "down", **HTMX)
    assert response.status_code == 200
    content = response.content.decode()
    assert pushed_order(content) == [[None, [b.pk, a.pk]], [scene.pk, [c.pk, d.pk]]]
    assert "<html" not in content


@pytest.mark.parametrize("role", READ_ONLY)
def test_it_refuses_read_only_roles_moving_shots(cast, role):
    a = make_board(cast)[1][0]
    before = board_order(cast.project)
    assert _move(cast.member(role), a, "down").status_code == 403
    assert board_order(cast.project) == before


def test_it_hides_move_from_outsider(cast):
    a = make_board(cast)[1][0]
    before = board_order(cast.project)
    assert _move(cast.outsider, a, "down").status_code == 404
    assert board_order(cast.project) == before


def test_it_sends_anonymous_to_login_from_move(cast):
    a = make_board(cast)[1][0]
    before = board_order(cast.project)
    url = reverse("sb:shot-move", args=[a.pk])
    assert_login_redirect(client_for(None).post(url, {"direction": "down"}), url)
    assert board_order(cast.project) == before


# scene_create


def test_it_adds_a_scene_at_the_end(cast):
    SceneFactory(project=cast.project, title="First", position=0)
    response = client_for(cast.producer).post(
        reverse("sb:scene-create", args=[cast.project.pk]), {"title": "Night"}
    )
    assert response.status_code == 302
    scene = cast.project.scenes.get(title="Night")
    assert scene.position == 1
    assert list(cast.project.scenes.values_list("title", flat=True)) == ["First", "Night"]


def test_it_returns_the_board_with_the_new_scene_to_htmx(cast):
    response = client_for(cast.editor).post(
        reverse("sb:scene-create", args=[cast.project.pk]), {"title": "Night"}, **HTMX
    )
    assert response.status_code == 200
    content = response.content.decode()
    assert "<h2>Night</h2>" in content
    assert "<html" not in content


def test_it_refuses_a_scene_without_a_title(cast):
    response = client_for(cast.editor).post(
        reverse("sb:scene-create", args=[cast.project.pk]), {"title": ""}
    )
    assert response.status_code == INVALID
    assert b"A scene needs a title" in response.content
    assert not cast.project.scenes.exists()


@pytest.mark.parametrize("role", READ_ONLY)
def test_it_refuses_read_only_roles_adding_scenes(cast, role):
    response = client_for(cast.member(role)).post(
        reverse("sb:scene-create", args=[cast.project.pk]), {"title": "Night"}
    )
    assert response.status_code == 403
    assert not Scene.objects.exists()


def test_it_hides_scene_create_from_outsider(cast):
    response = client_for(cast.outsider).post(
        reverse("sb:scene-create", args=[cast.project.pk]), {"title": "Night"}
    )
    assert response.status_code == 404
    assert not Scene.objects.exists()


def test_it_sends_anonymous_to_login_from_scene_create(cast):
    url = reverse("sb:scene-create", args=[cast.project.pk])
    assert_login_redirect(client_for(None).post(url, {"title": "Night"}), url)
    assert not Scene.objects.exists()


# scene_rename


def test_it_renames_a_scene(cast):
    scene = SceneFactory(project=cast.project, title="Harbour")
    response = client_for(cast.editor).post(reverse("sb:scene-rename", args=[scene.pk]),
                                            {"title": "Marina"}, **HTMX)
    assert response.status_code == 200
    assert "<h2>Marina</h2>" in response.content.decode()
    scene.refresh_from_db()
    assert scene.title == "Marina"


def test_it_redirects_to_the_board_after_renaming_without_htmx(cast):
    scene = SceneFactory(project=cast.project, title="Harbour")
    response = client_for(cast.editor).post(reverse("sb:scene-rename", args=[scene.pk]),
                                            {"title": "Marina"})
    assert response.status_code == 302
    assert response["Location"] == reverse("sb:board", args=[cast.project.pk])


def test_it_refuses_an_overlong_scene_title(cast):
    scene = SceneFactory(project=cast.project, title="Harbour")
    response = client_for(cast.editor).post(reverse("sb:scene-rename", args=[scene.pk]),
                                            {"title": "x" * 121})
    assert response.status_code == INVALID
    scene.refresh_from_db()
    assert scene.title == "Harbour"


@pytest.mark.parametrize("role", READ_ONLY)
def test_it_refuses_read_only_roles_renaming_scenes(cast, role):
    scene = SceneFactory(project=cast.project, title="Harbour")
    response = client_for(cast.member(role)).post(reverse("sb:scene-rename", args=[scene.pk]),
                                                  {"title": "Marina"})
    assert response.status_code == 403
    scene.refresh_from_db()
    assert scene.title == "Harbour"


def test_it_hides_scene_rename_from_outsider(cast):
    scene = SceneFactory(project=cast.project, title="Harbour")
    response = client_for(cast.outsider).post(reverse("sb:scene-rename", args=[scene.pk]),
                                              {"title": "Marina"})
    assert response.status_code == 404
    scene.refresh_from_db()
    assert scene.title == "Harbour"


def test_it_sends_anonymous_to_login_from_scene_rename(cast):
    scene = SceneFactory(project=cast.project, title="Harbour")
    url = reverse("sb:scene-rename", args=[scene.pk])
    assert_login_redirect(client_for(None).post(url, {"title": "Marina"}), url)
    scene.refresh_from_db()
    assert scene.title == "Harbour"


# scene_delete


def test_it_deletes_a_scene_but_keeps_its_shots(cast):
    scene, (a, b, c, d) = make_board(cast)
    response = client_for(cast.editor).post(reverse("sb:scene-delete", args=[scene.pk]))
    assert response.status_code == 302
    assert not Scene.objects.filter(pk=scene.pk).exists()
    assert set(cast.project.shots.values_list("pk", flat=True)) == {a.pk, b.pk, c.pk, d.pk}
    assert not cast.project.shots.filter(scene__isnull=False).exists()


def test_it_returns_the_board_without_the_scene_to_htmx(cast):
    scene, shots = make_board(cast)
    response = client_for(cast.editor).post(reverse("sb:scene-delete", args=[scene.pk]), **HTMX)
    assert response.status_code == 200
    content = response.content.decode()
    assert "Harbour" not in content
    # The heading's shots stay, ungrouped, in their order.
    assert pushed_order(content) == [[None, [shot.pk for shot in shots]]]
    assert "<html" not in content


@pytest.mark.parametrize("role", READ_ONLY)
def test_it_refuses_read_only_roles_deleting_scenes(cast, role):
    scene, _ = make_board(cast)
    response = client_for(cast.member(role)).post(reverse("sb:scene-delete", args=[scene.pk]))
    assert response.status_code == 403
    assert Scene.objects.filter(pk=scene.pk).exists()
    assert cast.project.shots.filter(scene=scene).count() == 2


def test_it_hides_scene_delete_from_outsider(cast):
    scene, _ = make_board(cast)
    response = client_for(cast.outsider).post(reverse("sb:scene-delete", args=[scene.pk]))
    assert response.status_code == 404
    assert cast.project.shots.filter(scene=scene).count() == 2


def test_it_sends_anonymous_to_login_from_scene_delete(cast):
    scene, _ = make_board(cast)
    url = reverse("sb:scene-delete", args=[scene.pk])
    assert_login_redirect(client_for(None).post(url), url)
    assert Scene.objects.filter(pk=scene.pk).exists()


def test_it_refuses_get_on_scene_delete(cast):
    scene, _ = make_board(cast)
    response = client_for(cast.owner).get(reverse("sb:scene-delete", args=[scene.pk]))
    assert response.status_code == 405
    assert Scene.objects.filter(pk=scene.pk).exists()


# broadcasts


def _capture_sends(monkeypatch) -> list[tuple[str, str]]:
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr("storyboard.realtime._send",
                        lambda group, message: sent.append((group, message["html"])))
    return sent


def test_it_pushes_the_new_card_after_a_change_commits(cast, django_capture_on_commit_callbacks,
                                                        monkeypatch):
    sent = _capture_sends(monkeypatch)
    with django_capture_on_commit_callbacks(execute=True):
        client_for(cast.editor).post(reverse("sb:shot-create", args=[cast.project.pk]),
                                     {"title": "Broadcast"})
    # Rendered once for those who may edit and once for those who may not.
    groups = [group for group, _ in sent]
    assert groups == [f"project-{cast.project.pk}-editors", f"project-{cast.project.pk}-viewers"]
    for _, fragment in sent:
        assert "Broadcast" in fragment
        assert 'id="board"' not in fragment
        assert "2 shots" in fragment


def test_it_broadcasts_nothing_when_refused(cast, django_capture_on_commit_callbacks, monkeypatch):
    sent = _capture_sends(monkeypatch)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        client_for(cast.viewer).post(reverse("sb:shot-create", args=[cast.project.pk]))
    assert callbacks == []
    assert sent == []


@pytest.mark.parametrize(("role", "shown", "hidden"), [
    ("owner", {"Share for review", "Import shot list"}, set()),
    ("producer", {"Share for review", "Import shot list"}, set()),
    ("editor", {"Import shot list"}, {"Share for review"}),
    ("reviewer", set(), {"Share for review", "Import shot list"}),
    ("viewer", set(), {"Share for review", "Import shot list"}),
])
def test_the_project_menu_offers_what_the_role_may_do(cast: Cast, role, shown, hidden):
    content = client_for(getattr(cast, role)).get(
        reverse("sb:board", args=[cast.project.pk])).content.decode()
    menu = content[content.index('class="menu board-menu"'):]
    menu = menu[:menu.index("</details>")]
    everyone = {"Export animatic or timeline", "Print board", "Project settings"}
    assert all(f">{label}</a>" in menu for label in everyone | shown)
    assert not any(f">{label}</a>" in content for label in hidden)
