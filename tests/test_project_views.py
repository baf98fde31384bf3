"""Home, the project list, creating projects, their settings and deleting them."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.urls import reverse

from accounts.models import Role
from storyboard.models import Asset, Project, Shot
from tests.conftest import client_for
from tests.factories import AssetFactory, ProjectFactory, TeamFactory, UserFactory

pytestmark = pytest.mark.django_db

# Refused input answers 422 with the form and its messages (storyboard.views.INVALID).
INVALID = 422
READ_ONLY = ["reviewer", "viewer"]
WRITERS = ["owner", "producer", "editor"]
FAST_TEXT = "bytedance/seedance-2.0/fast/text-to-video"


def project_data(**overrides) -> dict:
    data = {
        "name": "Trailer",
        "description": "Thirty seconds of harbour.",
        "default_endpoint": FAST_TEXT,
        "resolution": "480p",
        "aspect_ratio": "9:16",
        "duration": "8",
        "default_generate_audio": "on",
        "spend_cap": "",
    }
    data.update(overrides)
    return data


def project_state(project: Project) -> tuple:
    p = Project.objects.get(pk=project.pk)
    return (p.name, p.description, p.default_endpoint, p.default_resolution,
            p.default_aspect_ratio, p.default_duration, p.spend_cap_micros, p.updated)


def assert_login_redirect(response, url: str) -> None:
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('accounts:login')}?next={url}"


# home


def test_it_sends_home_to_the_current_teams_projects(cast):
    response = client_for(cast.viewer).get(reverse("sb:home"))
    assert response.status_code == 302
    assert response["Location"] == reverse("sb:projects", args=[cast.team.pk])


def test_it_sends_someone_without_teams_to_the_teams_page(cast):
    loner = UserFactory()
    response = client_for(loner).get(reverse("sb:home"))
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:teams")


def test_it_moves_home_away_from_a_team_the_user_left(cast):
    # current_team still points at Bravo, but they are no longer in it.
    user = UserFactory()
    cast.other_team.add_member(user, Role.EDITOR)
    cast.team.add_member(user, Role.VIEWER)
    cast.other_team.memberships.filter(user=user).delete()
    user.refresh_from_db()
    assert user.current_team == cast.other_team
    response = client_for(user).get(reverse("sb:home"))
    assert response["Location"] == reverse("sb:projects", args=[cast.team.pk])
    user.refresh_from_db()
    assert user.current_team == cast.team


def test_it_sends_anonymous_to_login_from_home(cast):
    assert_login_redirect(client_for(None).get(reverse("sb:home")), reverse("sb:home"))


# projects


@pytest.mark.parametrize("role", [*WRITERS, *READ_ONLY])
def test_it_lists_the_teams_projects(cast, role):
    ProjectFactory(team=cast.other_team, name="Bravo secret")
    response = client_for(cast.member(role)).get(reverse("sb:projects", args=[cast.team.pk]))
    assert response.status_code == 200
    content = response.content.decode()
    assert "Spot" in content
    assert "Bravo secret" not in content
    assert f"you are {role}" in content
    assert ("New project" in content) == (role in WRITERS)


def test_it_switches_the_current_team_when_listing_projects(cast):
    second = TeamFactory(name="Charlie")
    second.add_member(cast.editor, Role.EDITOR)
    client_for(cast.editor).get(reverse("sb:projects", args=[second.pk]))
    cast.editor.refresh_from_db()
    assert cast.editor.current_team == second


def test_it_hides_the_project_list_from_outsider(cast):
    response = client_for(cast.outsider).get(reverse("sb:projects", args=[cast.team.pk]))
    assert response.status_code == 404
    assert b"Spot" not in response.content
    cast.outsider.refresh_from_db()
    assert cast.outsider.current_team == cast.other_team


def test_it_sends_anonymous_to_login_from_projects(cast):
    url = reverse("sb:projects", args=[cast.team.pk])
    assert_login_redirect(client_for(None).get(url), url)


# project_create


@pytest.mark.parametrize("role", WRITERS)
def test_it_creates_a_project(cast, role):
    user = cast.member(role)
    response = client_for(user).post(reverse("sb:project-create", args=[cast.team.pk]),
                                     project_data(spend_cap="12.50"))
    project = Project.objects.get(name="Trailer")
    assert response.status_code == 302
    assert response["Location"] == reverse("sb:board", args=[project.pk])
    assert project.team == cast.team
    assert project.created_by == user
    assert (project.default_resolution, project.default_aspect_ratio,
            project.default_duration) == ("480p", "9:16", "8")
    # Only owners and producers set money limits; an editor's value is ignored.
    assert project.spend_cap_micros == (None if role == "editor" else 12_500_000)


def test_it_shows_the_new_project_form(cast):
    response = client_for(cast.editor).get(reverse("sb:project-create", args=[cast.team.pk]))
    assert response.status_code == 200
    assert "Create project" in response.content.decode()


def test_it_uses_the_project_defaults_for_new_shots(cast):
    client_for(cast.editor).post(reverse("sb:project-create", args=[cast.team.pk]),
                                 project_data())
    project = Project.objects.get(name="Trailer")
    client_for(cast.editor).post(reverse("sb:shot-create", args=[project.pk]))
    shot = Shot.objects.get(project=project)
    assert (shot.resolution, shot.aspect_ratio, shot.duration) == ("480p", "9:16", "8")


def test_it_refuses_an_invalid_new_project(cast):
    response = client_for(cast.editor).post(reverse("sb:project-create", args=[cast.team.pk]),
                                            project_data(resolution="1080p"))
    assert response.status_code == INVALID
    assert "1080p needs the standard tier" in response.content.decode()
    assert not Project.objects.filter(name="Trailer").exists()


@pytest.mark.parametrize("role", READ_ONLY)
@pytest.mark.parametrize("method", ["get", "post"])
def test_it_refuses_read_only_roles_creating_projects(cast, role, method):
    client = client_for(cast.member(role))
    response = getattr(client, method)(reverse("sb:project-create", args=[cast.team.pk]),
                                       project_data())
    assert response.status_code == 403
    assert not Project.objects.filter(name="Trailer").exists()


def test_it_hides_project_create_from_outsider(cast):
    response = client_for(cast.outsider).post(reverse("sb:project-create", args=[cast.team.pk]),
                                              project_data())
    assert response.status_code == 404
    assert not Project.objects.filter(name="Trailer").exists()


def test_it_sends_anonymous_to_login_from_project_create(cast):
    url = reverse("sb:project-create", args=[cast.team.pk])
    assert_login_redirect(client_for(None).post(url, project_data()), url)
    assert not Project.objects.filter(name="Trailer").exists()


# project_settings


@pytest.mark.parametrize("role", [*WRITERS, *READ_ONLY])
def test_it_shows_project_settings_to_members(cast, role):
    response = client_for(cast.member(role)).get(
        reverse("sb:project-settings", args=[cast.project.pk])
    )
    assert response.status_code == 200
    content = response.content.decode()
    assert 'value="Spot"' in content
    assert ("<fieldset disabled>" in content) == (role in READ_ONLY)
    # Only owners and producers are offered the delete form.
    assert ("Delete project" in content) == (role in ("owner", "producer"))


@pytest.mark.parametrize("role", WRITERS)
def test_it_saves_project_settings(cast, role):
    response = client_for(cast.member(role)).post(
        reverse("sb:project-settings", args=[cast.project.pk]),
        project_data(name="Spot v2", spend_cap="3"), follow=True,
    )
    assert response.redirect_chain == [(reverse("sb:board", args=[cast.project.pk]), 302)]
    assert "Project settings saved." in response.content.decode()
    project = Project.objects.get(pk=cast.project.pk)
    assert (project.name, project.default_duration, project.spend_cap_micros) == (
        "Spot v2", "8", None if role == "editor" else 3_000_000)


def test_an_editor_cannot_change_the_spend_cap(cast):
    Project.objects.filter(pk=cast.project.pk).update(spend_cap_micros=5_000_000)
    response = client_for(cast.editor).get(reverse("sb:project-settings", args=[cast.project.pk]))
    assert 'name="spend_cap"' not in response.content.decode()
    client_for(cast.editor).post(reverse("sb:project-settings", args=[cast.project.pk]),
                                 project_data(spend_cap="999999"))
    assert Project.objects.get(pk=cast.project.pk).spend_cap_micros == 5_000_000


def test_it_clears_the_spend_cap(cast):
    Project.objects.filter(pk=cast.project.pk).update(spend_cap_micros=5_000_000)
    client_for(cast.owner).post(reverse("sb:project-settings", args=[cast.project.pk]),
                                project_data())
    assert Project.objects.get(pk=cast.project.pk).spend_cap_micros is None


@pytest.mark.parametrize("overrides", [
    {"resolution": "1080p"}, {"spend_cap": "-1"}, {"name": ""}, {"duration": "99"},
])
def test_it_refuses_invalid_project_settings(cast, overrides):
    before = project_state(cast.project)
    response = client_for(cast.producer).post(
        reverse("sb:project-settings", args=[cast.project.pk]), project_data(**overrides)
    )
    assert response.status_code == INVALID
    assert "Nothing was saved" in response.content.decode()
    assert project_state(cast.project) == before


@pytest.mark.parametrize("role", READ_ONLY)
def test_it_refuses_read_only_roles_changing_settings(cast, role):
    before = project_state(cast.project)
    response = client_for(cast.member(role)).post(
        reverse("sb:project-settings", args=[cast.project.pk]), project_data(name="Hijacked")
    )
    assert response.status_code == 403
    assert project_state(cast.project) == before


@pytest.mark.parametrize("method", ["get", "post"])
def test_it_hides_project_settings_from_outsider(cast, method):
    before = project_state(cast.project)
    client = client_for(cast.outsider)
    response = getattr(client, method)(reverse("sb:project-settings", args=[cast.project.pk]),
                                       project_data(name="Hijacked"))
    assert response.status_code == 404
    assert b"Spot" not in response.content
    assert project_state(cast.project) == before


def test_it_sends_anonymous_to_login_from_project_settings(cast):
    before = project_state(cast.project)
    url = reverse("sb:project-settings", args=[cast.project.pk])
    assert_login_redirect(client_for(None).post(url, project_data(name="Hijacked")), url)
    assert project_state(cast.project) == before


# project_delete


@pytest.mark.parametrize("role", ["owner", "producer"])
def test_it_deletes_a_project_when_its_name_is_typed(cast, role,
                                                     django_capture_on_commit_callbacks):
    asset = AssetFactory(project=cast.project)
    path = Path(asset.file.path)
    assert path.exists()
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(cast.member(role)).post(
            reverse("sb:project-delete", args=[cast.project.pk]), {"confirm": "Spot"}, follow=True
        )
    assert response.redirect_chain == [(reverse("sb:projects", args=[cast.team.pk]), 302)]
    assert "Deleted Spot." in response.content.decode()
    assert not Project.objects.filter(pk=cast.project.pk).exists()
    assert not Shot.objects.filter(pk=cast.shot.pk).exists()
    assert not Asset.objects.exists()
    # Its files go too, once the deletion has committed.
    assert not path.exists()


@pytest.mark.parametrize("confirm", ["", "spot", "Spot ", "Other"])
def test_it_keeps_the_project_unless_the_name_is_typed_exactly(cast, confirm):
    response = client_for(cast.owner).post(
        reverse("sb:project-delete", args=[cast.project.pk]), {"confirm": confirm}, follow=True
    )
    assert response.redirect_chain == [
        (reverse("sb:project-settings", args=[cast.project.pk]), 302)
    ]
    assert "Type the project&#x27;s name to confirm" in response.content.decode()
    assert Project.objects.filter(pk=cast.project.pk).exists()


@pytest.mark.parametrize("role", ["editor", *READ_ONLY])
def test_it_refuses_deleting_a_project_to_other_roles(cast, role):
    response = client_for(cast.member(role)).post(
        reverse("sb:project-delete", args=[cast.project.pk]), {"confirm": "Spot"}
    )
    assert response.status_code == 403
    assert Project.objects.filter(pk=cast.project.pk).exists()


def test_it_hides_project_delete_from_outsider(cast):
    response = client_for(cast.outsider).post(
        reverse("sb:project-delete", args=[cast.project.pk]), {"confirm": "Spot"}
    )
    assert response.status_code == 404
    assert Project.objects.filter(pk=cast.project.pk).exists()


def test_it_sends_anonymous_to_login_from_project_delete(cast):
    url = reverse("sb:project-delete", args=[cast.project.pk])
    assert_login_redirect(client_for(None).post(url, {"confirm": "Spot"}), url)
    assert Project.objects.filter(pk=cast.project.pk).exists()


def test_it_refuses_get_on_project_delete(cast):
    response = client_for(cast.owner).get(reverse("sb:project-delete", args=[cast.project.pk]),
                                          {"confirm": "Spot"})
    assert response.status_code == 405
    assert Project.objects.filter(pk=cast.project.pk).exists()
