"""A first visit on a phone, as an editor and as a viewer, in real Chromium."""

from __future__ import annotations

import pytest

from accounts.models import Role
from tests.factories import ShotFactory, UserFactory
from tests.test_browser_board import LiveBrowser

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}


class TestPhoneWalk(LiveBrowser):
    def setUp(self) -> None:
        super().setUp()
        self.victor = UserFactory(username="victor", first_name="Victor", last_name="Viewer")
        self.project.team.add_member(self.victor, Role.VIEWER)
        self.empty = ShotFactory(project=self.project, title="Nothing written yet", prompt="",
                                 position=9)
        self.console_errors: list[str] = []

    def _open_phone_board(self, user):
        context = self._new_context(user, viewport=PHONE, is_mobile=True, has_touch=True)
        context.on("console", lambda message: self.console_errors.append(message.text)
                   if message.type == "error" else None)
        context.on("weberror", lambda error: self.console_errors.append(str(error.error)))
        page = context.new_page()
        page.goto(f"{self.live_server_url}/projects/{self.project.pk}/")
        return page

    def _assert_no_sideways_scroll(self, page) -> None:
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")

    def _open_the_empty_shot(self, page) -> None:
        from playwright.sync_api import expect

        self._assert_no_sideways_scroll(page)
        page.locator(f"#shot-{self.empty.pk} .shot-actions a", has_text="Open").click()
        # Below the board the side panel would be out of sight: the shot's own page opens.
        page.wait_for_url(f"**/shots/{self.empty.pk}/")
        expect(page.locator("#shot-editor")).to_be_in_viewport()
        self._assert_no_sideways_scroll(page)

    def test_an_editor_opens_a_shot_and_sees_why_it_cannot_be_generated(self) -> None:
        from playwright.sync_api import expect

        page = self._open_phone_board(self.emma)
        expect(page.locator("#editor")).to_contain_text("Drag cards to reorder")
        self._open_the_empty_shot(page)
        expect(page.locator("#generate")).to_be_disabled()
        expect(page.locator("#generate-why")).to_contain_text("Write a prompt first.")
        page.context.close()
        assert self.console_errors == []

    def test_a_viewer_is_told_what_they_can_do(self) -> None:
        from playwright.sync_api import expect

        page = self._open_phone_board(self.victor)
        expect(page.locator("#editor")).to_contain_text("watch its takes")
        expect(page.locator("#editor")).not_to_contain_text("Drag cards")
        self._open_the_empty_shot(page)
        expect(page.locator("#read-only-note")).to_be_visible()
        expect(page.locator("#generate")).to_have_count(0)
        expect(page.locator("#shot-editor")).not_to_contain_text("Write a prompt")
        page.context.close()
        assert self.console_errors == []
