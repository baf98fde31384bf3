"""A 300-shot board in real Chromium: an editor and a viewer, a desktop and a phone."""

from __future__ import annotations

from pathlib import Path

import pytest

from accounts.models import Role
from storyboard.models import Asset, Generation
from storyboard.selectors import FIRST_CARDS
from tests.factories import UserFactory, build_board, jpeg_bytes
from tests.helpers import house_clip
from tests.test_browser_board import ARTIFACTS, LiveBrowser

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
# The shots (by place on the built board) whose own pages the tests open; text to video, so
# nothing about them stops a save.
OPENED = (81, 150, 297)


class TestBigBoard(LiveBrowser):
    def setUp(self) -> None:
        super().setUp()
        self.victor = UserFactory(username="victor", first_name="Victor", last_name="Viewer")
        self.project.team.add_member(self.victor, Role.VIEWER)
        self.board = build_board(self.project, shots=300)
        self._write_pictures()
        self.console_errors: list[str] = []

    def _write_pictures(self) -> None:
        """The frames and posters build_board's rows name, so every card has its picture,
        where the server process looks (its MEDIA_ROOT is the settings module's own, not the
        per-test one of this process)."""
        from storyboard import settings as server_settings

        names = {t.poster.name for t in Generation.objects.filter(project=self.project)}
        for asset in Asset.objects.filter(project=self.project, kind=Asset.Kind.IMAGE):
            names |= {asset.file.name, asset.thumbnail.name}
        files = dict.fromkeys(names, jpeg_bytes())
        # The takes' videos of the shots these tests open (their pages play them).
        clip = house_clip()
        files |= {take.video.name: clip for take in Generation.objects.filter(
            shot__in=[self.board[n] for n in OPENED])}
        root = Path(server_settings.MEDIA_ROOT)
        for name, content in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(content)
        self.addCleanup(lambda: [(root / name).unlink(missing_ok=True) for name in files])

    def tearDown(self) -> None:
        # No htmx:oobErrorNoTarget or anything else: pushes reach only what a page has.
        assert self.console_errors == []
        super().tearDown()

    def _open(self, user, path: str, **options):
        from playwright.sync_api import expect

        context = self._new_context(user, **options)
        context.on("console", lambda message: self.console_errors.append(message.text)
                   if message.type == "error" else None)
        context.on("weberror", lambda error: self.console_errors.append(str(error.error)))
        page = context.new_page()
        page.goto(f"{self.live_server_url}{path}")
        expect(page.locator("#live-state")).to_have_text("live")
        return page

    def test_cards_fill_in_as_the_viewer_scrolls_and_edits_reach_every_card(self) -> None:
        from playwright.sync_api import expect

        board = f"/projects/{self.project.pk}/"
        victor = self._open(self.victor, board)
        whole = victor.locator("#board .shot-card:not(.is-lazy)")
        assert whole.count() >= FIRST_CARDS
        assert victor.locator("#board .shot-card").count() == 303
        victor.screenshot(path=ARTIFACTS / "big-board-viewer.png")

        # Far down the board: placeholders become whole cards as they come into view.
        last = self.board[-1]
        victor.locator(f"#shot-{last.pk}").scroll_into_view_if_needed()
        expect(victor.locator(f"#shot-{last.pk} .shot-status")).to_be_attached()
        expect(victor.locator(f"#shot-{last.pk}")).not_to_have_class("shot-card is-lazy")
        victor.screenshot(path=ARTIFACTS / "big-board-viewer-bottom.png")
        # Filled in for the viewer: no form that posts anywhere on the board.
        expect(victor.locator("#board form")).to_have_count(0)

        # Emma edits a shot the viewer has not scrolled to: its card arrives whole, pushed.
        middle = self.board[150]
        emma = self._open(self.emma, f"/shots/{middle.pk}/")
        emma.locator("#id_title").fill("The beam sweeps the harbour")
        emma.get_by_role("button", name="Save shot").click()
        expect(victor.locator(f"#shot-{middle.pk} .shot-title")).to_have_text(
            "The beam sweeps the harbour")
        expect(victor.locator(f"#shot-{middle.pk} .shot-status")).to_be_attached()
        # The whole board is still in order and numbered.
        assert victor.locator("#board .shot-card").count() == 303

    def test_a_page_whose_socket_connects_late_fetches_what_it_missed(self) -> None:
        from playwright.sync_api import expect

        target = self.board[297]
        held = []
        context = self._new_context(self.victor)
        context.on("console", lambda message: self.console_errors.append(message.text)
                   if message.type == "error" else None)
        page = context.new_page()
        # Hold the board's socket back (not connected to the server yet) until Emma has saved:
        # her push reaches nobody on this page.
        page.route_web_socket("**/ws/projects/**", lambda ws: held.append(ws))
        page.goto(f"{self.live_server_url}/projects/{self.project.pk}/")
        expect(page.locator(f"#shot-{target.pk} .shot-title")).to_have_text(target.title)

        emma = self._open(self.emma, f"/shots/{target.pk}/")
        emma.locator("#id_title").fill("Last light on the water")
        emma.get_by_role("button", name="Save shot").click()
        expect(emma.locator("#editor .notice.success")).to_be_visible()
        assert len(held) == 1
        held[0].connect_to_server()
        # The socket connects after the push; the server sees the page is behind and the page
        # fetches the board as it is now.
        expect(page.locator(f"#shot-{target.pk} .shot-title")).to_have_text(
            "Last light on the water")

    def test_a_fetched_card_never_overwrites_a_newer_pushed_one(self) -> None:
        from playwright.sync_api import expect

        target = self.board[150]
        answers = []
        context = self._new_context(self.victor)
        context.on("console", lambda message: self.console_errors.append(message.text)
                   if message.type == "error" else None)
        page = context.new_page()

        def hold(route) -> None:
            # The server answers now (the card as it is before Emma's edit); the page gets
            # the answer only after her push has arrived. Other batches go through.
            if f"shot={target.pk}&" in route.request.url + "&":
                answers.append((route, route.fetch()))
            else:
                route.continue_()

        page.route("**/cards/?*", hold)
        page.goto(f"{self.live_server_url}/projects/{self.project.pk}/")
        expect(page.locator("#live-state")).to_have_text("live")
        with page.expect_request(lambda r: f"shot={target.pk}&" in r.url + "&"):
            page.locator(f"#shot-{target.pk}").scroll_into_view_if_needed()

        emma = self._open(self.emma, f"/shots/{target.pk}/")
        emma.locator("#id_title").fill("Pushed after the fetch")
        emma.get_by_role("button", name="Save shot").click()
        expect(page.locator(f"#shot-{target.pk} .shot-title")).to_have_text(
            "Pushed after the fetch")
        assert len(answers) == 1
        for route, answer in answers:
            route.fulfill(response=answer)
        page.unroute("**/cards/?*")
        # Every held card arrived (the rest of the batch filled in) …
        expect(page.locator(f"#shot-{self.board[149].pk} .shot-status")).to_be_attached()
        # … but not over the newer card the push brought.
        expect(page.locator(f"#shot-{target.pk} .shot-title")).to_have_text(
            "Pushed after the fetch")

    def test_a_phone_opens_the_big_board_without_sideways_scroll(self) -> None:
        from playwright.sync_api import expect

        page = self._open(self.emma, f"/projects/{self.project.pk}/", viewport=PHONE,
                          is_mobile=True, has_touch=True)
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        page.screenshot(path=ARTIFACTS / "big-board-phone.png")
        far = self.board[81]
        page.locator(f"#shot-{far.pk}").scroll_into_view_if_needed()
        expect(page.locator(f"#shot-{far.pk} .shot-status")).to_be_attached()
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        page.screenshot(path=ARTIFACTS / "big-board-phone-scrolled.png")
        page.locator(f"#shot-{far.pk} .shot-actions a", has_text="Open").click()
        page.wait_for_url(f"**/shots/{far.pk}/")
        expect(page.locator("#shot-editor")).to_be_in_viewport()
