"""Review in real Chromium: an editor submits, a reviewer approves, each sees the other live."""

from __future__ import annotations

import re

import pytest

from storyboard.models import Shot
from tests.factories import GenerationFactory
from tests.test_browser_board import LiveBrowser

pytestmark = pytest.mark.browser


class TestLiveReview(LiveBrowser):
    def setUp(self) -> None:
        super().setUp()
        self.shot = self.shots[0]
        self.take = GenerationFactory(shot=self.shot)
        Shot.objects.filter(pk=self.shot.pk).update(selected_take=self.take)

    def _page(self, user, path: str):
        from playwright.sync_api import expect

        page = self._new_context(user).new_page()
        page.goto(f"{self.live_server_url}{path}")
        expect(page.locator("#live-state")).to_have_text("live")
        return page

    def test_a_reviewer_approves_while_the_editor_watches(self) -> None:
        from playwright.sync_api import expect

        card = f"#shot-{self.shot.pk}"
        emma = self._page(self.emma, f"/shots/{self.shot.pk}/")
        emma_board = self._page(self.emma, f"/projects/{self.project.pk}/")
        rita = self._page(self.rita, f"/shots/{self.shot.pk}/")
        rita_board = self._page(self.rita, f"/projects/{self.project.pk}/")
        panel = f"#review-{self.shot.pk}"
        # A reviewer has nothing to decide on a draft, and no submit button either.
        expect(rita.locator(panel)).to_contain_text("Draft")
        expect(rita.locator(f"{panel} button")).to_have_count(0)

        emma.locator(f"{panel} textarea").fill("First pass, the fog is new")
        emma.get_by_role("button", name=f"Submit take #{self.take.pk} for review").click()
        expect(emma.locator(panel)).to_contain_text("In review")
        # Rita's board card and her open shot page follow without a reload.
        expect(rita_board.locator(f"{card} .badge-in_review")).to_be_visible()
        expect(rita.locator(f"{panel} button", has_text="Approve")).to_be_visible()
        expect(rita.locator(panel)).to_contain_text("First pass, the fog is new")

        # The board's filter: "Needs my review" leaves only this card.
        rita_board.get_by_role("link", name="Needs my review").click()
        expect(rita_board.locator(".shot-card:visible")).to_have_count(1)
        rita_board.screenshot(path="test-artifacts/review-board-filter.png")

        rita.get_by_role("button", name=f"Approve take #{self.take.pk}").click()
        expect(rita.locator(panel)).to_contain_text("Approved")
        expect(emma_board.locator(f"{card} .badge-approved")).to_be_visible()
        expect(emma.locator(panel)).to_contain_text("Locked")
        expect(emma.locator(f"{panel} button")).to_have_count(0)
        rita.screenshot(path="test-artifacts/review-approved.png", full_page=True)

    def test_a_note_being_written_survives_anothers_decision(self) -> None:
        from playwright.sync_api import expect

        from storyboard import review

        review.decide(shot=self.shot, user=self.emma, kind=review.Kind.SUBMIT)
        panel = f"#review-{self.shot.pk}"
        rita = self._page(self.rita, f"/shots/{self.shot.pk}/")
        rita.locator(f"{panel} textarea").fill("The horizon tilts at 3 s")
        olivia = type(self.emma).objects.create_user(username="olivia", first_name="Olivia")
        self.project.team.add_member(olivia, "owner")
        # Olivia approves from her own page; the push reaches Rita's while she is writing.
        other = self._page(olivia, f"/shots/{self.shot.pk}/")
        other.get_by_role("button", name=f"Approve take #{self.take.pk}").click()
        expect(other.locator(panel)).to_contain_text("Approved")
        expect(rita.locator(panel)).to_have_class(re.compile("changed-elsewhere"))
        expect(rita.locator(f"{panel} textarea")).to_have_value("The horizon tilts at 3 s")
        # Her note stays; sending it tells her someone decided first, and keeps it.
        rita.get_by_role("button", name="Request changes").click()
        expect(rita.locator(panel)).to_contain_text("your decision was not recorded")
        expect(rita.locator(f"{panel} textarea")).to_have_value("The horizon tilts at 3 s")
