"""A review session in real Chromium: the presenter plays, steps and hands over; the
followers' players stay on the presenter's frame."""

from __future__ import annotations

import os
import statistics
import tempfile
from bisect import bisect_left
from pathlib import Path

import pytest

from accounts.models import Role
from storyboard import previz
from storyboard.models import Shot
from tests.factories import GenerationFactory, UserFactory
from tests.test_browser_board import LiveBrowser

pytestmark = pytest.mark.browser

FPS = 24
SECONDS = 6

# Every frame the page shows, as (when it is on screen, epoch ms; which media time): both
# pages run on this machine's clock, so one page's samples can be compared with the other's.
START_RECORDING = """(ms) => {
  const video = document.querySelector('#session-stage .player video');
  window.__frames = [];
  window.__recorded = new Promise(resolve => {
    const end = performance.now() + ms;
    const tick = (now, meta) => {
      window.__frames.push([performance.timeOrigin + meta.expectedDisplayTime, meta.mediaTime]);
      if (now < end) video.requestVideoFrameCallback(tick); else resolve(window.__frames);
    };
    video.requestVideoFrameCallback(tick);
  });
}"""
RECORDED = "() => window.__recorded"


def drift_in_frames(presenter: list[list[float]], follower: list[list[float]]) -> list[float]:
    """For each frame the follower showed, how many frames it was from what the presenter
    showed at that instant (the presenter's media time interpolated between its frames)."""
    times = [when for when, _ in presenter]
    drift = []
    for when, media in follower:
        i = bisect_left(times, when)
        if i == 0 or i == len(times):
            continue
        (t0, m0), (t1, m1) = presenter[i - 1], presenter[i]
        expected = m0 + (m1 - m0) * (when - t0) / (t1 - t0) if t1 > t0 else m0
        drift.append(abs(media - expected) * FPS)
    return drift


class TestReviewSession(LiveBrowser):
    def setUp(self) -> None:
        from django.conf import settings

        super().setUp()
        self.shot = self.shots[0]
        name = f"takes/session-{self.shot.pk}.mp4"
        path = Path(os.getenv("MEDIA_ROOT") or settings.VAR_DIR / "media") / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "clip.mp4"
            previz.render(previz.RenderSpec(width=64, height=36, frames=FPS * SECONDS,
                                            prompt="a lighthouse beam", seed=3, audio=False),
                          out)
            path.write_bytes(out.read_bytes())
        self.take = GenerationFactory(shot=self.shot, video=name, duration=float(SECONDS))
        self.other = GenerationFactory(shot=self.shot, video=name, duration=float(SECONDS))
        Shot.objects.filter(pk=self.shot.pk).update(
            selected_take=self.take, review_take=self.take, review=Shot.Review.IN_REVIEW)

    def _open(self, user, path: str):
        from playwright.sync_api import expect

        page = self._new_context(user).new_page()
        page.goto(f"{self.live_server_url}{path}")
        expect(page.locator("#live-state")).to_have_text("live")
        return page

    def test_followers_stay_on_the_presenters_frame(self) -> None:
        from playwright.sync_api import expect

        rita = self._new_context(self.rita).new_page()
        rita.goto(f"{self.live_server_url}/projects/{self.project.pk}/sessions/")
        rita.get_by_role("button", name="Start and present").click()
        expect(rita.locator("#live-state")).to_have_text("live")
        expect(rita.locator("#session-you")).to_contain_text("you present")
        session_url = rita.url.removeprefix(self.live_server_url)
        emma = self._open(self.emma, session_url)
        expect(emma.locator("#session-you")).to_contain_text("follows")
        expect(emma.get_by_role("button", name="Ask for control")).to_be_visible()
        rita_video = rita.locator("#session-stage .player video")
        emma_video = emma.locator("#session-stage .player video")
        expect(rita_video).to_have_js_property("readyState", 4, timeout=10_000)
        expect(emma_video).to_have_js_property("readyState", 4, timeout=10_000)

        # Play: Emma's player starts by itself and keeps to Rita's frame.
        rita.locator("#session-stage [data-act=play]").click()
        expect(emma_video).to_have_js_property("paused", False)
        rita.evaluate(START_RECORDING, 3500)
        emma.evaluate(START_RECORDING, 3000)
        followed = emma.evaluate(RECORDED)
        presented = rita.evaluate(RECORDED)
        # The first second is the follower catching up (a seek, then a rate nudge).
        settled = [f for f in followed if f[0] >= followed[0][0] + 1000]
        drift = drift_in_frames(presented, settled)
        assert len(drift) > 24
        print(f"\nsession drift over {len(drift)} frames: median "
              f"{statistics.median(drift):.2f}, max {max(drift):.2f} frames")
        assert max(drift) <= 2

        # Pause and step: Emma lands on exactly Rita's frame.
        rita.locator("#session-stage [data-act=play]").click()
        rita.locator("#session-stage .player").focus()
        for _ in range(3):
            rita.keyboard.press("ArrowRight")
        code = rita.locator("#session-stage .timecode").text_content()
        expect(emma.locator("#session-stage .timecode")).to_have_text(code)
        expect(emma_video).to_have_js_property("paused", True)

        # A late joiner opens on the presenter's frame.
        victor = UserFactory(username="victor", first_name="Victor")
        self.project.team.add_member(victor, Role.VIEWER)
        late = self._open(victor, session_url)
        expect(late.locator("#session-stage .timecode")).to_have_text(code)

        # Emma asks for control; Rita hands it over; now Rita follows Emma.
        emma.get_by_role("button", name="Ask for control").click()
        ask = rita.locator(".session-ask", has_text="Emma")
        expect(ask).to_be_visible()
        ask.get_by_role("button", name="Hand over").click()
        expect(emma.locator("#session-you")).to_contain_text("you present")
        expect(rita.locator("#session-you")).to_contain_text("follows")
        expect(late.locator("#session-presenter")).to_contain_text("Emma")
        expect(emma.get_by_role("button", name="Ask for control")).to_be_hidden()
        expect(rita.get_by_role("button", name="Ask for control")).to_be_visible()
        emma.locator("#session-stage .player").focus()
        emma.keyboard.press("Shift+ArrowRight")
        code = emma.locator("#session-stage .timecode").text_content()
        expect(rita.locator("#session-stage .timecode")).to_have_text(code)
        expect(late.locator("#session-stage .timecode")).to_have_text(code)

        # Compare: Emma lays the other take beside this one; everyone's stage follows.
        emma.locator("#session-stage select[name=compare]").select_option(str(self.other.uid))
        expect(rita.locator("#session-stage .compare .player")).to_have_count(2)
        expect(late.locator("#session-stage .compare .player")).to_have_count(2)
        expect(rita.locator("#session-stage select[name=compare]")).to_be_disabled()
        # ...at the same frame as before.
        expect(emma.locator("#session-stage .compare-a .timecode")).to_have_text(code)
        expect(rita.locator("#session-stage .compare-a .timecode")).to_have_text(code)
        rita.screenshot(path="test-artifacts/session-follower.png", full_page=True)
        emma.screenshot(path="test-artifacts/session-presenter.png", full_page=True)
