"""A client review link in real Chromium: the owner shares, a guest without an account
comments on a frame and approves, and the owner's open shot page shows it as the guest's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from accounts.models import Role
from storyboard import review
from storyboard.models import Comment, Shot
from tests.factories import GenerationFactory, UserFactory
from tests.test_browser_board import LiveBrowser

pytestmark = pytest.mark.browser


class TestReviewLink(LiveBrowser):
    def setUp(self) -> None:
        from django.conf import settings

        from tests.helpers import house_clip

        super().setUp()
        self.olga = UserFactory(username="olga", first_name="Olga", last_name="Owner")
        self.project.team.add_member(self.olga, Role.OWNER)
        self.shot = self.shots[0]
        # The live server's own media folder (this process's MEDIA_ROOT is a test folder).
        name = f"takes/guest-{self.shot.pk}.mp4"
        path = Path(os.getenv("MEDIA_ROOT") or settings.VAR_DIR / "media") / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(house_clip())  # 1 s at 24 fps
        self.take = GenerationFactory(shot=self.shot, video=name, duration=1.0,
                                      created_by=self.emma)
        Shot.objects.filter(pk=self.shot.pk).update(selected_take=self.take)
        review.decide(shot=self.shot, user=self.emma, kind=review.Kind.SUBMIT)

    def test_a_guest_comments_on_a_frame_and_approves_while_the_owner_watches(self) -> None:
        from playwright.sync_api import expect

        owner = self._new_context(self.olga).new_page()
        owner.goto(f"{self.live_server_url}/projects/{self.project.pk}/")
        owner.get_by_text("More", exact=True).click()  # the board's menu of project actions
        owner.get_by_role("link", name="Share for review").click()
        owner.get_by_label("Title").fill("For the agency")
        owner.get_by_label("Guests may approve or request changes").check()
        owner.get_by_role("button", name="Create link").click()
        url = owner.locator("#new-link-url").input_value()
        path = url[url.index("/r/"):]
        expect(owner.locator(".share-links")).to_contain_text("For the agency")

        # The owner watches the shot page while the guest works.
        owner.goto(f"{self.live_server_url}/shots/{self.shot.pk}/")
        expect(owner.locator("#live-state")).to_have_text("live")
        panel = owner.locator(f"#review-{self.shot.pk}")
        expect(panel).to_contain_text("In review")

        guest = self._new_context().new_page()
        guest.goto(f"{self.live_server_url}{path}")
        guest.get_by_label("Your name").fill("Gina Client")
        guest.get_by_role("button", name="Start reviewing").click()
        expect(guest.locator("#guest-name")).to_have_text("Reviewing as Gina Client (guest)")
        player = guest.locator(f'.viewer .player[data-take="{self.take.uid}"]')
        expect(player.locator("video")).to_have_js_property("readyState", 4, timeout=10_000)
        player.focus()
        for _ in range(3):
            guest.keyboard.press("ArrowRight")
        expect(player.locator(".timecode")).to_have_text("00:00:00:03")
        guest.locator(".comment-form textarea").fill("The beam should sweep left here")
        guest.get_by_role("button", name="Comment", exact=True).click()
        comment = guest.locator(".comment", has_text="The beam should sweep left")
        expect(comment.locator(".comment-time")).to_have_text("00:00:00:03")
        expect(comment).to_contain_text("Gina Client (guest)")

        guest.get_by_role("button", name="Approve").click()
        expect(guest.locator(f"#guest-decision-{self.shot.pk}")).to_contain_text(
            "You approved this take")
        guest.screenshot(path="test-artifacts/guest-review.png", full_page=True)

        # Live on the owner's page: the decision, as the guest's.
        expect(panel).to_contain_text("Approved")
        expect(panel).to_contain_text("Gina Client (guest) approved")
        owner.reload()
        expect(owner.locator(".comment", has_text="The beam should sweep left")).to_contain_text(
            "Gina Client (guest)")
        saved = Comment.objects.get()
        assert (saved.user, saved.guest_name, saved.frame) == (None, "Gina Client", 3)
