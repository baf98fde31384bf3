from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib import admin
from django.core.management import call_command
from django.urls import reverse

from accounts.models import Membership, Role, Team, User
from storyboard.models import Asset, Shot
from tests.conftest import client_for
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_every_model_of_ours_is_in_the_admin():
    ours = [m for m in apps.get_models() if m._meta.app_label in ("accounts", "storyboard")]
    assert ours
    assert [m for m in ours if not admin.site.is_registered(m)] == []


def test_every_admin_page_opens(cast):
    call_command("demo", "--no-serve", verbosity=0)
    staff = UserFactory(is_staff=True, is_superuser=True)
    client = client_for(staff)
    for model in admin.site._registry:
        opts = model._meta
        changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        assert client.get(changelist).status_code == 200, changelist
        first = model.objects.first()
        if first is not None:
            change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[first.pk])
            assert client.get(change).status_code == 200, change


def test_the_demo_has_every_role_and_a_board_with_frames():
    call_command("demo", "--no-serve", verbosity=0)
    team = Team.objects.get(name="Northlight Studio")
    roles = set(Membership.objects.filter(team=team).values_list("role", flat=True))
    assert {Role.OWNER, Role.PRODUCER, Role.EDITOR, Role.REVIEWER} <= roles
    project = team.projects.get()
    shots = Shot.objects.filter(project=project)
    assert 6 <= shots.count() <= 8
    # Every shot has a frame of its own, except those continuing the one before them: the
    # storm is a visible three-shot chain.
    assert not shots.filter(start_frame=None, continues_from=None).exists()
    chained = list(shots.exclude(continues_from=None).order_by("position"))
    assert len(chained) == 2
    assert chained[1].continues_from == chained[0]
    assert chained[0].continues_from.continues_from is None
    assert Asset.objects.filter(project=project, kind="image").exclude(thumbnail="").count() == (
        shots.count()
    )
    emma = User.objects.get(username="emma")
    assert emma.check_password("storyboard-demo")
    response = client_for(emma).get(reverse("sb:board", args=[project.pk]))
    assert response.status_code == 200
    assert response.content.count(b'class="shot-card"') == shots.count()


def test_the_demo_loads_once():
    call_command("demo", "--no-serve", verbosity=0)
    call_command("demo", "--no-serve", verbosity=0)
    assert Team.objects.filter(name="Northlight Studio").count() == 1
    assert Shot.objects.count() == 7
