from __future__ import annotations

import pytest
from django.urls import reverse

from storyboard.models import Budget, LedgerEntry
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


def _url(cast):
    return reverse("sb:budget", args=[cast.team.pk])


@pytest.mark.parametrize("role", ["owner", "producer", "editor", "reviewer", "viewer"])
def test_every_member_sees_the_budget(cast, role):
    response = client_for(cast.member(role)).get(_url(cast))
    assert response.status_code == 200
    assert 'id="budget-remaining"' in response.content.decode()
    # Only owners and producers get the form.
    assert ('name="limit"' in response.content.decode()) == (role in ("owner", "producer"))


@pytest.mark.parametrize("role", ["owner", "producer"])
def test_it_sets_the_limit(cast, role):
    response = client_for(cast.member(role)).post(_url(cast), {"limit": "250.50"})
    assert response.status_code == 302
    assert Budget.for_team(cast.team).limit_micros == 250_500_000
    assert LedgerEntry.objects.get(kind="adjustment").user == cast.member(role)


@pytest.mark.parametrize("role", ["editor", "reviewer", "viewer"])
def test_it_refuses_other_roles_setting_the_limit(cast, role):
    before = Budget.for_team(cast.team).limit_micros
    assert client_for(cast.member(role)).post(_url(cast), {"limit": "1"}).status_code == 403
    assert Budget.for_team(cast.team).limit_micros == before


def test_it_refuses_a_limit_below_what_is_committed(cast):
    Budget.objects.filter(team=cast.team).update(spent_micros=5_000_000)
    response = client_for(cast.producer).post(_url(cast), {"limit": "4"})
    assert response.status_code == 422
    assert "cannot go below" in response.content.decode()
    assert Budget.for_team(cast.team).limit_micros == 10_000_000_000


@pytest.mark.parametrize("bad", ["-1", "abc", "", "99999999"])
def test_it_refuses_nonsense(cast, bad):
    response = client_for(cast.owner).post(_url(cast), {"limit": bad})
    assert response.status_code == 422
    assert LedgerEntry.objects.count() == 0


def test_it_hides_another_teams_budget(cast):
    assert client_for(cast.outsider).get(_url(cast)).status_code == 404
    assert client_for(cast.outsider).post(_url(cast), {"limit": "1"}).status_code == 404


def test_it_sends_anonymous_to_login(cast):
    assert client_for(None).get(_url(cast)).status_code == 302
