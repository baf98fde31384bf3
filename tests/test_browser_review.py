"""Review in real Chromium: an editor submits, a reviewer approves, each sees the other live."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from storyboard.models import Comment, Shot
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
        # An editor can no longer submit or change it; what is left is rendering it final.
        expect(emma.locator(f"{panel} button")).to_have_count(1)
        expect(emma.locator(f"{panel} button")).to_contain_text("Render final")
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


class TestPlayer(LiveBrowser):
    def setUp(self) -> None:
        from django.conf import settings

        from tests.helpers import house_clip

        super().setUp()
        self.shot = self.shots[0]
        # The live server's own media folder (this process's MEDIA_ROOT is a test folder).
        name = f"takes/player-{self.shot.pk}.mp4"
        path = Path(os.getenv("MEDIA_ROOT") or settings.VAR_DIR / "media") / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(house_clip())  # 1 s at 24 fps
        self.take = GenerationFactory(shot=self.shot, video=name, duration=1.0)
        Shot.objects.filter(pk=self.shot.pk).update(selected_take=self.take)

    def test_frame_steps_and_a_comment_seeks_to_its_frame(self) -> None:
        from playwright.sync_api import expect

        page = self._new_context(self.rita).new_page()
        page.goto(f"{self.live_server_url}/shots/{self.shot.pk}/")
        player = page.locator(f'.viewer .player[data-take="{self.take.uid}"]')
        video = player.locator("video")
        expect(video).to_have_js_property("readyState", 4, timeout=10_000)
        player.focus()
        for _ in range(3):
            page.keyboard.press("ArrowRight")
        expect(player.locator(".timecode")).to_have_text("00:00:00:03")
        # The video element itself is on frame 3 (it spans 3/24 s to 4/24 s).
        time = video.evaluate("v => v.currentTime")
        assert 3 / 24 <= time < 4 / 24
        page.keyboard.press("ArrowLeft")
        expect(player.locator(".timecode")).to_have_text("00:00:00:02")
        page.keyboard.press("Shift+ArrowRight")  # one second on, clamped to the last frame
        expect(player.locator(".timecode")).to_have_text("00:00:00:23")

        # A comment at frame 23, then elsewhere, then a click on the comment: back to 23.
        page.locator(".comment-form textarea").fill("Flare blows out the sky here")
        page.get_by_role("button", name="Comment", exact=True).click()
        comment = page.locator(".comment", has_text="Flare blows out the sky")
        expect(comment.locator(".comment-time")).to_have_text("00:00:00:23")
        expect(player.locator(".player-mark")).to_have_count(1)
        player.focus()
        page.keyboard.press("Home")
        for _ in range(5):
            page.keyboard.press("ArrowLeft")
        expect(player.locator(".timecode")).to_have_text("00:00:00:18")
        comment.locator(".comment-time").click()
        expect(player.locator(".timecode")).to_have_text("00:00:00:23")
        time = video.evaluate("v => v.currentTime")
        assert 23 / 24 <= time < 24 / 24
        page.screenshot(path="test-artifacts/player-comments.png", full_page=True)


    def test_a_drawing_on_the_paused_frame_comes_back_on_that_frame(self) -> None:
        from playwright.sync_api import expect

        page = self._new_context(self.rita).new_page()
        page.goto(f"{self.live_server_url}/shots/{self.shot.pk}/")
        player = page.locator(f'.viewer .player[data-take="{self.take.uid}"]')
        expect(player.locator("video")).to_have_js_property("readyState", 4, timeout=10_000)
        player.focus()
        for _ in range(6):
            page.keyboard.press("ArrowRight")
        expect(player.locator(".timecode")).to_have_text("00:00:00:06")
        page.get_by_role("button", name="Rectangle").click()
        marks = player.locator(".player-marks")
        box = marks.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5, steps=4)
        page.mouse.up()
        expect(marks.locator("rect")).to_have_count(1)
        page.locator(".comment-form textarea").fill("Mask this reflection")
        page.get_by_role("button", name="Comment", exact=True).click()
        expect(page.locator(".comment", has_text="Mask this reflection")).to_be_visible()
        comment = Comment.objects.get(body="Mask this reflection")
        assert comment.frame == 6
        (shape,) = comment.drawing
        assert shape["tool"] == "rect"
        assert abs(shape["points"][0][0] - 0.2) < 0.05
        # Elsewhere the picture is clean; back on frame 6 the rectangle is drawn again.
        player.focus()
        page.keyboard.press("Shift+ArrowRight")
        expect(marks.locator("rect")).to_have_count(0)
        page.locator(".comment", has_text="Mask this reflection").locator(".comment-time").click()
        expect(marks.locator("rect")).to_have_count(1)
        page.screenshot(path="test-artifacts/player-drawing.png", full_page=True)
