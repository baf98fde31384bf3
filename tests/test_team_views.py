"""Accounts: signup, login, teams, members, roles and invitation links."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import SESSION_KEY
from django.urls import reverse
from django.utils import timezone

from accounts.models import Invitation, Membership, Role, Team, User
from tests.conftest import client_for
from tests.factories import InvitationFactory, TeamFactory, UserFactory

pytestmark = pytest.mark.django_db

# Refused input answers 422 with the form and its messages (storyboard.views.INVALID).
INVALID = 422
HTMX = {"HTTP_HX_REQUEST": "true"}
# For team management the read-only roles are everyone but the owner.
NON_OWNERS = ["producer", "editor", "reviewer", "viewer"]
PASSWORD = "Harbour-lights-42"


def assert_login_redirect(response, url: str) -> None:
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('accounts:login')}?next={url}"


def membership(cast, role: str) -> Membership:
    return cast.team.memberships.get(user=cast.member(role))


def roles(team: Team) -> dict[str, str]:
    return dict(team.memberships.values_list("user__username", "role"))


def invitation_for(cast, **kwargs) -> Invitation:
    kwargs.setdefault("role", Role.EDITOR)
    return InvitationFactory(team=cast.team, created_by=cast.owner, **kwargs)


def invitation_state(invitation: Invitation) -> tuple:
    i = Invitation.objects.get(pk=invitation.pk)
    return i.revoked, i.accepted_by_id, i.accepted_at, i.role, i.expires


# signup


def signup_data(**overrides) -> dict:
    data = {"username": "dana", "first_name": "Dana", "email": "Dana@Example.com",
            "password1": PASSWORD, "password2": PASSWORD}
    data.update(overrides)
    return data


def test_it_shows_the_signup_form():
    response = client_for(None).get(reverse("accounts:signup"))
    assert response.status_code == 200
    assert "Create your account" in response.content.decode()


def test_it_signs_up_with_a_personal_team():
    client = client_for(None)
    response = client.post(reverse("accounts:signup"), signup_data())
    assert response.status_code == 302
    assert response["Location"] == reverse("sb:home")
    user = User.objects.get(username="dana")
    assert user.email == "dana@example.com"
    assert client.session[SESSION_KEY] == str(user.pk)
    team = Team.objects.get(memberships__user=user)
    assert team.name == "Dana's team"
    assert user.membership_in(team).role == Role.OWNER
    assert user.current_team == team


def test_it_signs_up_for_an_invitation_without_a_personal_team(cast):
    invitation = invitation_for(cast)
    invite_url = reverse("accounts:invitation", args=[invitation.token])
    client = client_for(None)
    response = client.post(f"{reverse('accounts:signup')}?next={invite_url}", signup_data(),
                           follow=True)
    assert response.redirect_chain == [(invite_url, 302)]
    assert "Join Alpha" in response.content.decode()
    user = User.objects.get(username="dana")
    assert not Membership.objects.filter(user=user).exists()
    assert user.current_team is None
    # And the link then works for them.
    client.post(invite_url)
    assert user.membership_in(cast.team).role == Role.EDITOR



@pytest.mark.parametrize("target", ["/", "/teams/"])
def test_it_signs_up_with_a_personal_team_when_next_is_not_an_invitation(target):
    # Anyone opening the site lands on login?next=/ and signs up from there.
    response = client_for(None).post(f"{reverse('accounts:signup')}?next={target}",
                                     signup_data())
    assert response.status_code == 302
    assert response["Location"] == target
    user = User.objects.get(username="dana")
    assert Team.objects.filter(memberships__user=user, memberships__role=Role.OWNER).exists()
    assert User.objects.get(pk=user.pk).current_team is not None

@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/",
                                    "https:/\\evil.example/"])
def test_it_ignores_an_open_redirect_in_signup(target):
    response = client_for(None).post(reverse("accounts:signup"), {**signup_data(),
                                                                  "next": target})
    assert response.status_code == 302
    assert response["Location"] == reverse("sb:home")
    # An ignored `next` is no reason to skip the personal team.
    user = User.objects.get(username="dana")
    assert Team.objects.filter(memberships__user=user, memberships__role=Role.OWNER).exists()


def test_it_refuses_a_taken_email(cast):
    response = client_for(None).post(reverse("accounts:signup"),
                                     signup_data(email=cast.viewer.email.upper()))
    assert response.status_code == 200
    assert "An account with this email already exists." in response.content.decode()
    assert not User.objects.filter(username="dana").exists()
    assert not Team.objects.filter(name="Dana's team").exists()


def test_it_refuses_mismatched_passwords():
    response = client_for(None).post(reverse("accounts:signup"),
                                     signup_data(password2="something-else-42"))
    assert response.status_code == 200
    assert not User.objects.filter(username="dana").exists()
    assert not Team.objects.exists()


def test_it_sends_a_signed_in_user_home_from_signup(cast):
    response = client_for(cast.viewer).post(reverse("accounts:signup"), signup_data())
    assert response.status_code == 302
    assert response["Location"] == reverse("sb:home")
    assert not User.objects.filter(username="dana").exists()


# login and logout


def test_it_logs_in(cast):
    client = client_for(None)
    response = client.post(reverse("accounts:login"),
                           {"username": "viewer-a", "password": "pass-word-123"})
    assert response.status_code == 302
    assert response["Location"] == reverse("sb:home")
    assert client.session[SESSION_KEY] == str(cast.viewer.pk)


def test_it_logs_in_to_the_next_page(cast):
    target = reverse("sb:board", args=[cast.project.pk])
    response = client_for(None).post(f"{reverse('accounts:login')}?next={target}",
                                     {"username": "viewer-a", "password": "pass-word-123"})
    assert response["Location"] == target


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/"])
def test_it_ignores_an_open_redirect_in_login(cast, target):
    response = client_for(None).post(reverse("accounts:login"), {
        "username": "viewer-a", "password": "pass-word-123", "next": target,
    })
    assert response.status_code == 302
    assert response["Location"] == reverse("sb:home")


def test_it_refuses_a_wrong_password(cast):
    client = client_for(None)
    response = client.post(reverse("accounts:login"),
                           {"username": "viewer-a", "password": "wrong-password"})
    assert response.status_code == 200
    assert "do not match" in response.content.decode()
    assert SESSION_KEY not in client.session


def test_it_logs_out(cast):
    client = client_for(cast.viewer)
    response = client.post(reverse("accounts:logout"))
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:login")
    assert SESSION_KEY not in client.session
    assert client.get(reverse("accounts:teams")).status_code == 302


def test_it_refuses_logout_by_get(cast):
    client = client_for(cast.viewer)
    assert client.get(reverse("accounts:logout")).status_code == 405
    assert client.session[SESSION_KEY] == str(cast.viewer.pk)


# teams


def test_it_lists_only_the_users_teams(cast):
    response = client_for(cast.viewer).get(reverse("accounts:teams"))
    assert response.status_code == 200
    content = response.content.decode()
    assert "Alpha" in content
    assert "You are viewer" in content
    assert "Bravo" not in content


def test_it_sends_anonymous_to_login_from_teams():
    url = reverse("accounts:teams")
    assert_login_redirect(client_for(None).get(url), url)


# team_create


@pytest.mark.parametrize("role", ["owner", "viewer"])
def test_it_creates_a_team_owned_by_its_creator(cast, role):
    user = cast.member(role)
    response = client_for(user).post(reverse("accounts:team-create"), {"name": "Delta"})
    team = Team.objects.get(name="Delta")
    assert response.status_code == 302
    assert response["Location"] == reverse("sb:projects", args=[team.pk])
    assert roles(team) == {user.username: Role.OWNER}
    user.refresh_from_db()
    assert user.current_team == team
    # Their other memberships are untouched.
    assert user.membership_in(cast.team).role == role


def test_it_refuses_a_team_without_a_name(cast):
    response = client_for(cast.viewer).post(reverse("accounts:team-create"), {"name": ""})
    assert response.status_code == INVALID
    assert "This field is required." in response.content.decode()
    assert Team.objects.count() == 2


def test_it_refuses_team_create_by_get(cast):
    response = client_for(cast.viewer).get(reverse("accounts:team-create"), {"name": "Delta"})
    assert response.status_code == 405
    assert not Team.objects.filter(name="Delta").exists()


def test_it_sends_anonymous_to_login_from_team_create():
    url = reverse("accounts:team-create")
    assert_login_redirect(client_for(None).post(url, {"name": "Delta"}), url)
    assert not Team.objects.exists()


# team_switch


@pytest.mark.parametrize("role", ["owner", "viewer"])
def test_it_switches_to_another_of_the_users_teams(cast, role):
    user = cast.member(role)
    zeta = TeamFactory(name="Zeta")
    zeta.add_member(user, Role.VIEWER)
    user.refresh_from_db()
    assert user.current_team == cast.team
    response = client_for(user).post(reverse("accounts:team-switch", args=[zeta.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("sb:projects", args=[zeta.pk])
    user.refresh_from_db()
    assert user.current_team == zeta


def test_it_refuses_switching_to_a_team_the_user_is_not_in(cast):
    response = client_for(cast.outsider).post(reverse("accounts:team-switch", args=[cast.team.pk]))
    assert response.status_code == 404
    cast.outsider.refresh_from_db()
    assert cast.outsider.current_team == cast.other_team


def test_it_sends_anonymous_to_login_from_team_switch(cast):
    url = reverse("accounts:team-switch", args=[cast.team.pk])
    assert_login_redirect(client_for(None).post(url), url)


def test_it_refuses_team_switch_by_get(cast):
    assert client_for(cast.owner).get(
        reverse("accounts:team-switch", args=[cast.team.pk])
    ).status_code == 405


# team_rename


def test_it_renames_the_team(cast):
    response = client_for(cast.owner).post(reverse("accounts:team-rename", args=[cast.team.pk]),
                                           {"name": "Alpha Films"}, follow=True)
    assert response.redirect_chain == [(reverse("accounts:members", args=[cast.team.pk]), 302)]
    assert "Team renamed." in response.content.decode()
    assert Team.objects.get(pk=cast.team.pk).name == "Alpha Films"


def test_it_keeps_the_name_when_the_new_one_is_empty(cast):
    response = client_for(cast.owner).post(reverse("accounts:team-rename", args=[cast.team.pk]),
                                           {"name": ""}, follow=True)
    assert "This field is required." in response.content.decode()
    assert Team.objects.get(pk=cast.team.pk).name == "Alpha"


@pytest.mark.parametrize("role", NON_OWNERS)
def test_it_refuses_renaming_to_non_owners(cast, role):
    response = client_for(cast.member(role)).post(
        reverse("accounts:team-rename", args=[cast.team.pk]), {"name": "Hijacked"}
    )
    assert response.status_code == 403
    assert Team.objects.get(pk=cast.team.pk).name == "Alpha"


def test_it_hides_team_rename_from_outsider(cast):
    response = client_for(cast.outsider).post(
        reverse("accounts:team-rename", args=[cast.team.pk]), {"name": "Hijacked"}
    )
    assert response.status_code == 404
    assert Team.objects.get(pk=cast.team.pk).name == "Alpha"


def test_it_sends_anonymous_to_login_from_team_rename(cast):
    url = reverse("accounts:team-rename", args=[cast.team.pk])
    assert_login_redirect(client_for(None).post(url, {"name": "Hijacked"}), url)
    assert Team.objects.get(pk=cast.team.pk).name == "Alpha"


# members


def test_it_shows_owners_the_members_and_open_invitation_links(cast):
    invitation = invitation_for(cast, note="For Sam")
    response = client_for(cast.owner).get(reverse("accounts:members", args=[cast.team.pk]))
    assert response.status_code == 200
    content = response.content.decode()
    for role in Role.values:
        assert cast.member(role).email in content
    assert cast.outsider.email not in content
    assert "Invite by link" in content
    assert invitation.token in content
    assert "For Sam" in content


@pytest.mark.parametrize("role", NON_OWNERS)
def test_it_shows_members_but_not_invitation_links_to_non_owners(cast, role):
    invitation = invitation_for(cast, note="For Sam")
    response = client_for(cast.member(role)).get(reverse("accounts:members", args=[cast.team.pk]))
    assert response.status_code == 200
    content = response.content.decode()
    assert cast.owner.email in content
    # The links are credentials; only owners get to see and hand them out.
    assert invitation.token not in content
    assert "For Sam" not in content
    assert "Invite by link" not in content


def test_it_hides_members_from_outsider(cast):
    response = client_for(cast.outsider).get(reverse("accounts:members", args=[cast.team.pk]))
    assert response.status_code == 404
    assert cast.viewer.email.encode() not in response.content


def test_it_sends_anonymous_to_login_from_members(cast):
    url = reverse("accounts:members", args=[cast.team.pk])
    assert_login_redirect(client_for(None).get(url), url)


# member_role


def _set_role(user, cast, target: Membership, role: str, team=None, **extra):
    team = team or cast.team
    return client_for(user).post(
        reverse("accounts:member-role", args=[team.pk, target.pk]), {"role": role}, **extra
    )


def test_it_changes_a_members_role(cast):
    response = _set_role(cast.owner, cast, membership(cast, "editor"), "viewer")
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:members", args=[cast.team.pk])
    assert membership(cast, "editor").role == Role.VIEWER


def test_it_returns_the_members_panel_to_htmx_after_a_role_change(cast):
    response = _set_role(cast.owner, cast, membership(cast, "viewer"), "producer", **HTMX)
    assert response.status_code == 200
    content = response.content.decode()
    assert 'id="members-panel"' in content
    assert "is now Producer." in content
    assert "<html" not in content
    assert membership(cast, "viewer").role == Role.PRODUCER


def test_it_refuses_an_unknown_role(cast):
    response = _set_role(cast.owner, cast, membership(cast, "editor"), "admin", follow=True)
    assert "Choose one of the listed roles." in response.content.decode()
    assert membership(cast, "editor").role == Role.EDITOR


def test_it_never_demotes_the_last_owner(cast):
    response = _set_role(cast.owner, cast, membership(cast, "owner"), "editor", follow=True)
    assert "A team needs at least one owner." in response.content.decode()
    assert membership(cast, "owner").role == Role.OWNER


def test_it_demotes_an_owner_when_another_remains(cast):
    _set_role(cast.owner, cast, membership(cast, "producer"), "owner")
    _set_role(cast.owner, cast, membership(cast, "owner"), "editor")
    assert membership(cast, "owner").role == Role.EDITOR
    assert membership(cast, "producer").role == Role.OWNER


@pytest.mark.parametrize("role", NON_OWNERS)
def test_it_refuses_role_changes_by_non_owners(cast, role):
    before = roles(cast.team)
    # Including promoting themselves.
    own = membership(cast, role)
    assert _set_role(cast.member(role), cast, own, "owner").status_code == 403
    assert _set_role(cast.member(role), cast, membership(cast, "owner"),
                     "viewer").status_code == 403
    assert roles(cast.team) == before


def test_it_hides_role_changes_from_outsider(cast):
    before = roles(cast.team)
    response = _set_role(cast.outsider, cast, membership(cast, "editor"), "viewer")
    assert response.status_code == 404
    assert roles(cast.team) == before


def test_it_refuses_changing_another_teams_member_through_ones_own_team(cast):
    # Charlie owns Bravo; Alpha's editor membership is not in Bravo.
    before = roles(cast.team)
    response = _set_role(cast.outsider, cast, membership(cast, "editor"), "viewer",
                         team=cast.other_team)
    assert response.status_code == 404
    assert roles(cast.team) == before


def test_it_sends_anonymous_to_login_from_member_role(cast):
    target = membership(cast, "editor")
    url = reverse("accounts:member-role", args=[cast.team.pk, target.pk])
    assert_login_redirect(client_for(None).post(url, {"role": "viewer"}), url)
    assert membership(cast, "editor").role == Role.EDITOR


# member_remove


def _remove(user, cast, target: Membership, team=None, **extra):
    team = team or cast.team
    return client_for(user).post(
        reverse("accounts:member-remove", args=[team.pk, target.pk]), **extra
    )


def test_it_removes_a_member_and_moves_their_current_team(cast, django_capture_on_commit_callbacks):
    zeta = TeamFactory(name="Zeta")
    zeta.add_member(cast.editor, Role.VIEWER)
    assert User.objects.get(pk=cast.editor.pk).current_team == cast.team
    with django_capture_on_commit_callbacks() as callbacks:
        response = _remove(cast.owner, cast, membership(cast, "editor"))
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:members", args=[cast.team.pk])
    assert cast.editor.membership_in(cast.team) is None
    assert User.objects.get(pk=cast.editor.pk).current_team == zeta
    # Their open board sockets are told to close once the removal commits.
    assert len(callbacks) == 1


def test_it_leaves_a_removed_member_without_a_team_when_they_have_no_other(cast):
    _remove(cast.owner, cast, membership(cast, "reviewer"))
    assert User.objects.get(pk=cast.reviewer.pk).current_team is None


def test_it_keeps_a_removed_members_current_team_when_it_is_elsewhere(cast):
    zeta = TeamFactory(name="Zeta")
    zeta.add_member(cast.editor, Role.VIEWER)
    cast.editor.switch_team(zeta)
    _remove(cast.owner, cast, membership(cast, "editor"))
    assert User.objects.get(pk=cast.editor.pk).current_team == zeta


def test_it_returns_the_members_panel_to_htmx_after_a_removal(cast):
    response = _remove(cast.owner, cast, membership(cast, "editor"), **HTMX)
    assert response.status_code == 200
    content = response.content.decode()
    assert 'id="members-panel"' in content
    assert cast.editor.email not in content
    assert "<html" not in content


@pytest.mark.parametrize("role", NON_OWNERS)
def test_it_lets_any_member_leave(cast, role):
    response = _remove(cast.member(role), cast, membership(cast, role), follow=True)
    assert "You left Alpha." in response.content.decode()
    assert cast.member(role).membership_in(cast.team) is None


def test_it_never_lets_the_last_owner_leave(cast):
    response = _remove(cast.owner, cast, membership(cast, "owner"), follow=True)
    assert "A team needs at least one owner." in response.content.decode()
    assert membership(cast, "owner").role == Role.OWNER


@pytest.mark.parametrize("role", NON_OWNERS)
def test_it_refuses_removing_others_to_non_owners(cast, role):
    before = roles(cast.team)
    target = "owner" if role == "viewer" else "viewer"
    response = _remove(cast.member(role), cast, membership(cast, target))
    assert response.status_code == 403
    assert roles(cast.team) == before


def test_it_hides_member_remove_from_outsider(cast):
    before = roles(cast.team)
    assert _remove(cast.outsider, cast, membership(cast, "editor")).status_code == 404
    assert _remove(cast.outsider, cast, membership(cast, "editor"),
                   team=cast.other_team).status_code == 404
    assert roles(cast.team) == before


def test_it_sends_anonymous_to_login_from_member_remove(cast):
    before = roles(cast.team)
    target = membership(cast, "editor")
    url = reverse("accounts:member-remove", args=[cast.team.pk, target.pk])
    assert_login_redirect(client_for(None).post(url), url)
    assert roles(cast.team) == before


# invitation_create


def test_it_creates_an_invitation_link(cast):
    before = timezone.now()
    response = client_for(cast.owner).post(
        reverse("accounts:invitation-create", args=[cast.team.pk]),
        {"role": "reviewer", "note": "For Sam"}, **HTMX,
    )
    invitation = Invitation.objects.get()
    assert response.status_code == 200
    content = response.content.decode()
    assert 'id="members-panel"' in content
    assert "<html" not in content
    assert invitation.url() in content
    assert (invitation.team, invitation.role, invitation.note) == (cast.team, "reviewer",
                                                                   "For Sam")
    assert invitation.created_by == cast.owner
    assert invitation.state == "open"
    days = timedelta(days=django_settings.INVITATION_DAYS)
    assert before + days <= invitation.expires <= timezone.now() + days


def test_it_redirects_to_members_after_creating_an_invitation_without_htmx(cast):
    response = client_for(cast.owner).post(
        reverse("accounts:invitation-create", args=[cast.team.pk]), {"role": "viewer"}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:members", args=[cast.team.pk])
    assert Invitation.objects.get().role == Role.VIEWER


def test_it_refuses_an_invitation_with_an_unknown_role(cast):
    response = client_for(cast.owner).post(
        reverse("accounts:invitation-create", args=[cast.team.pk]), {"role": "admin"},
        follow=True,
    )
    assert "Choose one of the listed roles." in response.content.decode()
    assert not Invitation.objects.exists()


@pytest.mark.parametrize("role", NON_OWNERS)
def test_it_refuses_invitations_by_non_owners(cast, role):
    response = client_for(cast.member(role)).post(
        reverse("accounts:invitation-create", args=[cast.team.pk]), {"role": "owner"}
    )
    assert response.status_code == 403
    assert not Invitation.objects.exists()


def test_it_hides_invitation_create_from_outsider(cast):
    response = client_for(cast.outsider).post(
        reverse("accounts:invitation-create", args=[cast.team.pk]), {"role": "owner"}
    )
    assert response.status_code == 404
    assert not Invitation.objects.exists()


def test_it_sends_anonymous_to_login_from_invitation_create(cast):
    url = reverse("accounts:invitation-create", args=[cast.team.pk])
    assert_login_redirect(client_for(None).post(url, {"role": "owner"}), url)
    assert not Invitation.objects.exists()


# invitation_revoke


def _revoke(user, team, invitation, **extra):
    return client_for(user).post(
        reverse("accounts:invitation-revoke", args=[team.pk, invitation.pk]), **extra
    )


def test_it_revokes_an_invitation(cast):
    invitation = invitation_for(cast)
    response = _revoke(cast.owner, cast.team, invitation, **HTMX)
    assert response.status_code == 200
    content = response.content.decode()
    assert 'id="members-panel"' in content
    assert "revoked" in content
    assert "<html" not in content
    assert Invitation.objects.get(pk=invitation.pk).state == "revoked"


@pytest.mark.parametrize("role", NON_OWNERS)
def test_it_refuses_revoking_to_non_owners(cast, role):
    invitation = invitation_for(cast)
    before = invitation_state(invitation)
    assert _revoke(cast.member(role), cast.team, invitation).status_code == 403
    assert invitation_state(invitation) == before


def test_it_hides_invitation_revoke_from_outsider(cast):
    invitation = invitation_for(cast)
    before = invitation_state(invitation)
    assert _revoke(cast.outsider, cast.team, invitation).status_code == 404
    # Nor through their own team's URL.
    assert _revoke(cast.outsider, cast.other_team, invitation).status_code == 404
    assert invitation_state(invitation) == before


def test_it_sends_anonymous_to_login_from_invitation_revoke(cast):
    invitation = invitation_for(cast)
    before = invitation_state(invitation)
    url = reverse("accounts:invitation-revoke", args=[cast.team.pk, invitation.pk])
    assert_login_redirect(client_for(None).post(url), url)
    assert invitation_state(invitation) == before


# invitation: opening and accepting a link


def _accept(user, invitation, **extra):
    return client_for(user).post(reverse("accounts:invitation", args=[invitation.token]), **extra)


def test_it_shows_anonymous_the_invitation_with_login_and_signup_links(cast):
    invitation = invitation_for(cast, role=Role.REVIEWER)
    url = reverse("accounts:invitation", args=[invitation.token])
    response = client_for(None).get(url)
    assert response.status_code == 200
    content = response.content.decode()
    assert "Join Alpha" in content
    assert "invited as <strong>reviewer</strong>" in content
    assert f'href="{reverse("accounts:signup")}?next={url}"' in content
    assert f'href="{reverse("accounts:login")}?next={url}"' in content


def test_it_accepts_nothing_from_anonymous(cast):
    invitation = invitation_for(cast)
    before = invitation_state(invitation)
    response = _accept(None, invitation)
    assert response.status_code == 200
    assert invitation_state(invitation) == before
    assert Membership.objects.count() == 6


def test_it_offers_a_signed_in_user_to_join(cast):
    invitation = invitation_for(cast)
    response = client_for(UserFactory()).get(reverse("accounts:invitation",
                                                     args=[invitation.token]))
    assert response.status_code == 200
    assert "Join team" in response.content.decode()
    assert invitation_state(invitation)[1] is None


def test_it_accepts_an_invitation(cast):
    newcomer = UserFactory()
    zeta = TeamFactory(name="Zeta")
    zeta.add_member(newcomer, Role.OWNER)
    invitation = invitation_for(cast, role=Role.REVIEWER)
    response = _accept(newcomer, invitation, follow=True)
    assert response.redirect_chain == [(reverse("sb:projects", args=[cast.team.pk]), 302)]
    assert "Welcome to Alpha." in response.content.decode()
    assert newcomer.membership_in(cast.team).role == Role.REVIEWER
    newcomer.refresh_from_db()
    assert newcomer.current_team == cast.team
    invitation.refresh_from_db()
    assert invitation.accepted_by == newcomer
    assert invitation.state == "accepted"


def test_it_uses_an_invitation_only_once(cast):
    first, second = UserFactory(), UserFactory()
    invitation = invitation_for(cast)
    _accept(first, invitation)
    response = _accept(second, invitation, follow=True)
    assert response.redirect_chain[0] == (reverse("sb:home"), 302)
    assert "This invitation is accepted." in response.content.decode()
    assert first.membership_in(cast.team).role == Role.EDITOR
    assert second.membership_in(cast.team) is None
    assert Invitation.objects.get(pk=invitation.pk).accepted_by == first


def test_it_refuses_a_link_claimed_between_the_check_and_the_accept(cast, monkeypatch):
    # Two people opened the link at once: both saw it open, only the first may join.
    first, second = UserFactory(), UserFactory()
    invitation = invitation_for(cast)
    _accept(first, invitation)
    monkeypatch.setattr(Invitation, "state", property(lambda self: "open"))
    response = _accept(second, invitation, follow=True)
    assert "This invitation was used a moment ago." in response.content.decode()
    assert second.membership_in(cast.team) is None
    assert Invitation.objects.get(pk=invitation.pk).accepted_by == first


def test_it_refuses_an_expired_invitation(cast):
    invitation = invitation_for(cast, expires=timezone.now() - timedelta(minutes=1))
    newcomer = UserFactory()
    page = client_for(newcomer).get(reverse("accounts:invitation", args=[invitation.token]))
    assert "This invitation is expired." in page.content.decode()
    assert "Join team" not in page.content.decode()
    response = _accept(newcomer, invitation, follow=True)
    assert "This invitation is expired." in response.content.decode()
    assert newcomer.membership_in(cast.team) is None
    assert invitation_state(invitation)[1] is None


def test_it_refuses_a_revoked_invitation(cast):
    invitation = invitation_for(cast, revoked=True)
    newcomer = UserFactory()
    response = _accept(newcomer, invitation, follow=True)
    assert "This invitation is revoked." in response.content.decode()
    assert newcomer.membership_in(cast.team) is None


def test_it_refuses_a_link_revoked_through_the_members_page(cast):
    invitation = invitation_for(cast)
    _revoke(cast.owner, cast.team, invitation)
    newcomer = UserFactory()
    _accept(newcomer, invitation)
    assert newcomer.membership_in(cast.team) is None


@pytest.mark.parametrize(("role", "invited_as"), [
    ("editor", Role.VIEWER), ("owner", Role.REVIEWER), ("viewer", Role.OWNER),
])
def test_it_never_changes_an_existing_members_role(cast, role, invited_as):
    invitation = invitation_for(cast, role=invited_as)
    _accept(cast.member(role), invitation)
    assert membership(cast, role).role == role
    assert Membership.objects.filter(team=cast.team).count() == 5


def test_it_404s_for_an_unknown_token(cast):
    invitation_for(cast)
    response = client_for(UserFactory()).post(reverse("accounts:invitation",
                                                      args=["not-a-real-token"]))
    assert response.status_code == 404
    assert Membership.objects.filter(team=cast.team).count() == 5
