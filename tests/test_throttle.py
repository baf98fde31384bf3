"""Login lockouts and the limits on signups, invitations and starting takes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.db.models import F
from django.test import Client, RequestFactory
from django.urls import reverse

from accounts.models import Invitation, Membership, Role, User
from storyboard import throttle
from storyboard.models import Budget, Generation
from tests.conftest import client_for
from tests.factories import InvitationFactory, ShotFactory, UserFactory

pytestmark = pytest.mark.django_db

LOGIN = reverse("accounts:login")
PASSWORD = "pass-word-123"  # UserFactory's
ACCOUNT_LOCKED = "Too many failed logins for this account. Try again in 15 minutes."
CLIENT_LOCKED = "Too many failed logins from your network. Try again in 15 minutes."


def _login(username: str, password: str, *, ip: str = "198.51.100.7"):
    return Client(REMOTE_ADDR=ip).post(LOGIN, {"username": username, "password": password})


def _logged_in(response) -> bool:
    return "_auth_user_id" in response.wsgi_request.session


def _assert_throttled(response, message: str, seconds: int | None = None) -> None:
    assert response.status_code == 429
    assert message in response.content.decode()
    assert int(response["Retry-After"]) > 0
    if seconds is not None:
        assert int(response["Retry-After"]) == seconds


# Logins


def test_it_locks_an_account_after_five_failed_logins():
    UserFactory(username="emma")
    for _ in range(4):
        response = _login("emma", "wrong")
        assert response.status_code == 200
        assert "do not match" in response.content.decode()
    response = _login("emma", "wrong")
    _assert_throttled(response, ACCOUNT_LOCKED, 15 * 60)
    # The page still offers the form, so the person knows where they are.
    assert 'name="password"' in response.content.decode()


def test_it_refuses_the_right_password_while_the_account_is_locked():
    UserFactory(username="emma")
    for _ in range(5):
        _login("emma", "wrong")
    # Even from another network: the lock is on the account.
    response = _login("emma", PASSWORD, ip="192.0.2.55")
    _assert_throttled(response, ACCOUNT_LOCKED)
    assert not _logged_in(response)


def test_it_lets_the_account_in_once_the_lockout_expires():
    UserFactory(username="emma")
    for _ in range(5):
        _login("emma", "wrong")
    # Sixteen minutes pass for the recorded failures.
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=16))
    response = _login("emma", PASSWORD)
    assert response.status_code == 302
    assert _logged_in(response)


def test_it_locks_a_client_that_fails_across_many_accounts():
    olivia = UserFactory(username="olivia")
    # Four guesses each at five accounts: no account reaches its limit, the client does.
    for n in range(5):
        for attempt in range(4):
            response = _login(f"target{n}", "wrong")
            if (n, attempt) != (4, 3):
                assert response.status_code == 200
    _assert_throttled(response, CLIENT_LOCKED, 15 * 60)
    # Every account is closed to that client, even with the right password…
    refused = _login(olivia.username, PASSWORD)
    _assert_throttled(refused, CLIENT_LOCKED)
    assert not _logged_in(refused)
    # …and open to everyone else.
    assert _logged_in(_login(olivia.username, PASSWORD, ip="192.0.2.55"))


def test_the_login_limits_are_settings(settings):
    settings.LOGIN_FAILURES_PER_ACCOUNT = 2
    settings.LOGIN_LOCKOUT_MINUTES = 5
    UserFactory(username="emma")
    assert _login("emma", "wrong").status_code == 200
    _assert_throttled(_login("emma", "wrong"),
                      "Too many failed logins for this account. Try again in 5 minutes.", 300)


def test_a_success_does_not_wipe_the_clients_failures(settings):
    settings.LOGIN_FAILURES_PER_CLIENT = 3
    UserFactory(username="mallory")
    _login("victim", "wrong")
    _login("victim", "wrong")
    assert _logged_in(_login("mallory", PASSWORD))
    _assert_throttled(_login("victim", "wrong"), CLIENT_LOCKED)


def test_force_login_is_unaffected(cast):
    assert client_for(cast.editor).get(reverse("sb:home")).status_code in (200, 302)


# The client's address


@pytest.mark.parametrize(("hops", "forwarded", "expected"), [
    (0, "203.0.113.9", "10.0.0.1"),  # not trusted: a client may send anything
    (1, "203.0.113.9", "203.0.113.9"),
    (1, "6.6.6.6, 203.0.113.9", "203.0.113.9"),  # the left entry came from the client
    (2, "6.6.6.6, 203.0.113.9, 10.0.0.2", "203.0.113.9"),
    (1, "", "10.0.0.1"),
    (1, "not-an-address", "10.0.0.1"),
])
def test_it_trusts_x_forwarded_for_only_as_far_as_told(settings, hops, forwarded, expected):
    settings.TRUSTED_PROXY_COUNT = hops
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=forwarded)
    assert throttle.client_ip(request) == expected


# Signups


def _signup(n: int, *, ip: str = "198.51.100.7", **data):
    return Client(REMOTE_ADDR=ip).post(reverse("accounts:signup"), {
        "username": f"new{n}", "email": f"new{n}@example.com", "first_name": "New",
        "password1": "Sweep-the-board-42", "password2": "Sweep-the-board-42", **data})


def test_it_limits_signups_per_client():
    for n in range(5):
        assert _signup(n).status_code == 302
    response = _signup(5)
    _assert_throttled(response, "Too many new accounts from your network. Try again in")
    assert not User.objects.filter(username="new5").exists()
    # Someone else can still sign up.
    assert _signup(6, ip="192.0.2.55").status_code == 302


def test_a_refused_signup_form_does_not_count(settings):
    settings.SIGNUPS_PER_HOUR = 1
    assert _signup(0, password2="different").status_code == 200
    assert _signup(1).status_code == 302
    _assert_throttled(_signup(2), "Too many new accounts")


# Invitations


def test_it_limits_invitation_links_per_person(cast, settings):
    settings.INVITATIONS_PER_HOUR = 2
    client = client_for(cast.owner)
    url = reverse("accounts:invitation-create", args=[cast.team.pk])
    for _ in range(2):
        assert client.post(url, {"role": Role.EDITOR}, HTTP_HX_REQUEST="true").status_code == 200
    response = client.post(url, {"role": Role.EDITOR}, HTTP_HX_REQUEST="true")
    # htmx shows a plain-text refusal as a toast (static/js/app.js).
    _assert_throttled(response, "Too many invitation links created. Try again in")
    assert response["Content-Type"].startswith("text/plain")
    assert Invitation.objects.filter(team=cast.team).count() == 2
    # Without htmx the refusal is a page.
    page = client.post(url, {"role": Role.EDITOR})
    _assert_throttled(page, "Too many invitation links created")
    assert page["Content-Type"].startswith("text/html")


def test_it_limits_accepting_invitations_per_person(cast, settings):
    settings.INVITATION_ACCEPTS_PER_HOUR = 1
    newcomer = UserFactory()
    client = client_for(newcomer)
    first = InvitationFactory(team=cast.team, created_by=cast.owner)
    second = InvitationFactory(team=cast.other_team, created_by=cast.outsider)
    assert client.post(reverse("accounts:invitation", args=[first.token])).status_code == 302
    response = client.post(reverse("accounts:invitation", args=[second.token]))
    _assert_throttled(response, "Too many invitations accepted. Try again in")
    assert f"Join {cast.other_team.name}" in response.content.decode()
    assert not Membership.objects.filter(user=newcomer, team=cast.other_team).exists()


# Starting takes


def _generate(user, shot):
    return client_for(user).post(reverse("sb:shot-generate", args=[shot.pk]),
                                 HTTP_HX_REQUEST="true")


def _quick_shot(project):
    return ShotFactory(project=project, mode="text", resolution="480p", duration="2",
                       endpoint="fal-ai/bytedance/seedance/v1/lite/text-to-video",
                       aspect_ratio="16:9", generate_audio=False, prompt="Slow push in.")


def test_it_limits_takes_started_per_person(cast, settings):
    settings.GENERATIONS_PER_MINUTE = 2
    shot = _quick_shot(cast.project)
    for _ in range(2):
        assert _generate(cast.editor, shot).status_code == 200
    held = Budget.for_team(cast.team).held_micros
    response = _generate(cast.editor, shot)
    _assert_throttled(response, "Too many takes started in a minute. Try again in")
    assert response["Content-Type"].startswith("text/plain")
    assert Generation.objects.count() == 2
    assert Budget.for_team(cast.team).held_micros == held
    # The limit is per person: a colleague can still start one.
    assert _generate(cast.producer, shot).status_code == 200


def test_a_retry_counts_as_a_start(cast, settings):
    settings.GENERATIONS_PER_MINUTE = 1
    shot = _quick_shot(cast.project)
    assert _generate(cast.editor, shot).status_code == 200
    take = Generation.objects.get()
    Generation.objects.filter(pk=take.pk).update(state=Generation.State.FAILED)
    response = client_for(cast.editor).post(reverse("sb:take-retry", args=[take.uid]),
                                            HTTP_HX_REQUEST="true")
    _assert_throttled(response, "Too many takes started in a minute")
    assert Generation.objects.count() == 1
