from __future__ import annotations

import re

import pytest
from django.urls import reverse
from django.utils import timezone

from storyboard.models import Budget, LedgerEntry, Shot
from storyboard.money import usd
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


def _spend(cast, *, approved: bool):
    from storyboard import generation
    from tests.factories import ShotFactory

    shot = ShotFactory(project=cast.project, mode="text", resolution="480p", duration="2",
                       endpoint="fal-ai/bytedance/seedance/v1/lite/text-to-video",
                       generate_audio=False, prompt="Static.")
    take = generation.start_generation(shot=shot, user=cast.editor)
    generation.drive(take_id=take.pk)
    take.refresh_from_db()
    if approved:
        # Approved after the take was made (an approved shot is locked against new takes).
        type(shot).objects.filter(pk=shot.pk).update(review="approved", review_take=take)
    return take


def test_the_dashboard_shows_where_the_money_went(cast):
    kept = _spend(cast, approved=True)
    _spend(cast, approved=False)
    response = client_for(cast.producer).get(_url(cast))
    html = response.content.decode()
    assert html.count('class="bar"') == 1  # one day, one bar
    assert cast.project.name in html
    assert f"{cast.editor.first_name} {cast.editor.last_name}" in html
    assert "Seedance 1.0 Lite · text to video</span> · 480p" in html
    budget = Budget.for_team(cast.team)
    # Two 2 s takes generated, one of them on an approved shot.
    assert budget.spent_micros == 2 * kept.actual_micros
    per_generated = round(budget.spent_micros / 4)
    per_approved = round(budget.spent_micros / 2)
    from storyboard.templatetags.storyboard import money

    assert f"<strong>{money(per_approved)}</strong>" in html
    assert f"<strong>{money(per_generated)}</strong>" in html


def test_the_ledger_filters_and_exports(cast):
    _spend(cast, approved=False)
    response = client_for(cast.viewer).get(_url(cast), {"kind": "capture"})
    assert response.content.decode().count("<td>Capture") == 1
    assert "<td>Hold" not in response.content.decode()
    csv_response = client_for(cast.viewer).get(
        reverse("sb:ledger-csv", args=[cast.team.pk]), {"kind": "hold"})
    assert csv_response["Content-Type"].startswith("text/csv")
    rows = csv_response.content.decode().strip().splitlines()
    assert rows[0].startswith("time,kind,amount_usd")
    assert len(rows) == 2
    assert ",hold," in rows[1]
    assert client_for(cast.outsider).get(
        reverse("sb:ledger-csv", args=[cast.team.pk])).status_code == 404


def test_a_note_cannot_become_a_spreadsheet_formula(cast):
    budget = Budget.for_team(cast.team)
    LedgerEntry.objects.create(budget=budget, kind="adjustment", amount_micros=0,
                               note='=HYPERLINK("http://evil")')
    body = client_for(cast.owner).get(reverse("sb:ledger-csv", args=[cast.team.pk])).content
    assert b"'=HYPERLINK" in body


@pytest.mark.parametrize(("role", "shown"), [("producer", True), ("editor", False)])
def test_the_board_warns_producers_of_a_nearly_spent_budget(cast, role, shown):
    Budget.objects.filter(team=cast.team).update(limit_micros=10_000_000,
                                                 spent_micros=9_000_000)
    html = client_for(cast.member(role)).get(reverse("sb:board", args=[cast.project.pk])
                                             ).content.decode()
    # Only those who may act on it get the notice at all, not a hidden copy.
    assert ("committed 90%" in html) == shown
    assert ("may-budget" in html) == shown


def test_it_moves_the_reset_day(cast):
    client_for(cast.owner).post(_url(cast), {"limit": "100", "reset_day": "15"})
    budget = Budget.for_team(cast.team)
    assert budget.reset_day == 15
    assert budget.period_end.day == 15
    assert "day 15" in LedgerEntry.objects.get(kind="adjustment").note


def test_the_board_shows_what_is_left_to_generate(cast):
    from tests.factories import GenerationFactory, ShotFactory

    done = ShotFactory(project=cast.project, duration="10", resolution="720p",
                       endpoint="bytedance/seedance-2.0/fast/text-to-video")
    done.selected_take = GenerationFactory(shot=done)
    done.save(update_fields=["selected_take"])
    html = client_for(cast.viewer).get(reverse("sb:board", args=[cast.project.pk])
                                       ).content.decode()
    from storyboard.templatetags.storyboard import money

    left = Shot.objects.get(pk=cast.shot.pk).estimate().micros
    assert f"{money(left)} left to generate" in html


# --- amounts shown are amounts checked ---------------------------------------------------------


def test_the_displayed_spend_typed_back_as_the_limit_is_accepted(cast):
    """It used to show "$4.23" and refuse 4.23 as "below $4.23": the check saw 4.231234."""
    Budget.objects.filter(team=cast.team).update(spent_micros=4_231_234)
    page = client_for(cast.producer).get(_url(cast)).content.decode()
    assert "$4.231234" in page
    response = client_for(cast.producer).post(_url(cast), {"limit": "4.231234"})
    assert response.status_code == 302
    assert Budget.for_team(cast.team).limit_micros == 4_231_234


def test_a_refusal_names_the_exact_amount_that_can_be_typed(cast):
    Budget.objects.filter(team=cast.team).update(spent_micros=4_231_234)
    response = client_for(cast.producer).post(_url(cast), {"limit": "4.23"})
    assert response.status_code == 422
    assert "($4.231234)" in response.content.decode()


def test_more_than_six_decimals_is_refused_with_a_reason(cast):
    response = client_for(cast.producer).post(_url(cast), {"limit": "1.0000001"})
    assert response.status_code == 422
    assert "six decimals" in response.content.decode()


def test_saving_the_same_limit_records_nothing(cast):
    budget = Budget.for_team(cast.team)
    response = client_for(cast.producer).post(
        _url(cast), {"limit": "10000", "reset_day": budget.reset_day})
    assert response.status_code == 302
    assert not LedgerEntry.objects.filter(kind="adjustment").exists()


def test_the_ledger_speaks_dollars_never_micro_dollars(cast):
    client_for(cast.producer).post(_url(cast), {"limit": "1,250.50"})
    entry = LedgerEntry.objects.get(kind="adjustment")
    assert entry.note == "Limit $10,000.00 → $1,250.50"
    page = client_for(cast.producer).get(_url(cast)).content.decode()
    assert "10000000000" not in page
    assert "Limit $10,000.00 → $1,250.50" in page


def test_the_endpoints_are_named_as_the_catalogue_names_them(cast):
    _spend(cast, approved=False)
    html = client_for(cast.viewer).get(_url(cast)).content.decode()
    assert ">Seedance 1.0 Lite · text to video</span> · 480p" in html
    assert ">fal-ai/bytedance/seedance/v1/lite/text-to-video<" not in html


def test_one_day_of_spend_is_a_narrow_bar_with_its_date_and_amount(cast):
    take = _spend(cast, approved=False)
    html = client_for(cast.viewer).get(_url(cast)).content.decode()
    assert 'preserveAspectRatio="none"' not in html
    width = re.search(r'<rect [^>]*width="([\d.]+)"[^>]*class="bar"', html)
    assert width
    assert float(width.group(1)) <= 32
    from storyboard.templatetags.storyboard import money

    day = f"{timezone.localdate(take.finished_at):%-d %b}"
    assert f'text-anchor="middle">{day}</text>' in html
    assert f'dominant-baseline="middle">{money(take.actual_micros)}</text>' in html
    assert f'dominant-baseline="middle">{money(0)}</text>' in html


def test_the_spend_chart_labels_at_most_about_ten_dates():
    from datetime import date, timedelta

    from storyboard.views import _daily_chart

    days = [{"day": date(2026, 1, 1) + timedelta(days=n), "total": n * 1000} for n in range(30)]
    chart = _daily_chart(days)
    assert sum(d["labelled"] for d in chart["daily"]) <= 11
    assert chart["daily"][-1]["labelled"]
    assert all(d["x"] + d["width"] <= chart["chart"]["width"] for d in chart["daily"])


def test_the_admin_speaks_dollars(cast, admin_client):
    _spend(cast, approved=False)
    for model in ("ledgerentry", "budget", "generation"):
        page = admin_client.get(reverse(f"admin:storyboard_{model}_changelist")).content.decode()
        assert "$" in page
    entry = LedgerEntry.objects.filter(kind="capture").first()
    assert str(entry) == f"capture {usd(entry.amount_micros)}"
