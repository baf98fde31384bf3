"""The live price in the shot editor and on the board."""

from __future__ import annotations

import pytest
from django.urls import reverse

from storyboard.templatetags.storyboard import money
from tests.conftest import client_for
from tests.factories import ShotFactory

pytestmark = pytest.mark.django_db

FAST_I2V = "bytedance/seedance-2.0/fast/image-to-video"


def _estimate(client, shot, **params):
    return client.get(reverse("sb:shot-estimate", args=[shot.pk]), params,
                      HTTP_HX_REQUEST="true")


def test_it_prices_the_unsaved_parameters(cast):
    response = _estimate(client_for(cast.editor), cast.shot, endpoint=FAST_I2V,
                         resolution="720p", aspect_ratio="16:9", duration="10")
    assert response.status_code == 200
    assert b"$2.4192" in response.content
    cast.shot.refresh_from_db()
    assert cast.shot.duration == "5"


def test_it_explains_an_invalid_combination_instead_of_a_price(cast):
    response = _estimate(client_for(cast.editor), cast.shot, endpoint=FAST_I2V,
                         resolution="1080p", aspect_ratio="16:9", duration="10")
    assert b"1080p needs the standard tier" in response.content
    assert b"$" not in response.content


def test_it_labels_auto_as_a_worst_case(cast):
    response = _estimate(client_for(cast.viewer), cast.shot, endpoint=FAST_I2V,
                         resolution="720p", aspect_ratio="16:9", duration="auto")
    assert b"up to $3.6288" in response.content


def test_it_refuses_another_team(cast):
    assert _estimate(client_for(cast.outsider), cast.shot).status_code == 404


def test_it_redirects_anonymous_to_login(cast):
    assert _estimate(client_for(None), cast.shot).status_code == 302


def test_the_board_totals_every_shot(cast):
    ShotFactory(project=cast.project, endpoint=FAST_I2V, resolution="720p",
                aspect_ratio="16:9", duration="10")
    response = client_for(cast.reviewer).get(reverse("sb:board", args=[cast.project.pk]))
    total = sum(s.estimate().micros for s in cast.project.shots.all())
    assert f"≈ {money(total)} to generate" in response.content.decode()
    assert "$2.4192" in response.content.decode()


@pytest.mark.parametrize(("micros", "text"), [
    (0, "$0.00"), (5_000, "$0.005"), (302_400, "$0.3024"), (3_024_000, "$3.024"),
    (1_234_560_000, "$1,234.56"), (4_230_000, "$4.23"), (1, "$0.000001"),
    (-1_500_000, "−$1.50")])
def test_money_shows_every_digit_the_budget_checks(micros, text):
    assert money(micros) == text
