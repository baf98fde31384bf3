"""A chain on the board in real Chromium: links drawn between cards, stale marks arriving live in
a second browser and on the shot page, Re-chain making a shot fresh, Keep leaving a history line
(issue #11)."""

from __future__ import annotations

import re

import pytest
from django.test import override_settings

from storyboard import chains
from storyboard import settings as project_settings
from storyboard.models import Generation, Shot
from tests.factories import GenerationFactory
from tests.helpers import house_clip
from tests.test_browser_board import ARTIFACTS, LiveBrowser

pytestmark = pytest.mark.browser

LITE_T2V = "fal-ai/bytedance/seedance/v1/lite/text-to-video"
LITE_I2V = "fal-ai/bytedance/seedance/v1/lite/image-to-video"


class TestLiveLinks(LiveBrowser):
    def setUp(self) -> None:
        super().setUp()
        # The takes made here must be files the live server can read: its media, not the
        # temporary folder the test settings give this process.
        server_media = override_settings(MEDIA_ROOT=project_settings.MEDIA_ROOT)
        server_media.enable()
        self.addCleanup(server_media.disable)
        # The three shots as one chain, each with a chosen take from its upstream's take; the
        # smallest real takes (1.0 lite, 480p, 2 s) so a re-chain renders quickly.
        self.takes: list[Generation] = []
        upstream = None
        for shot in self.shots:
            Shot.objects.filter(pk=shot.pk).update(
                continues_from=upstream, mode="image" if upstream else "text",
                endpoint=LITE_I2V if upstream else LITE_T2V, resolution="480p", duration="2",
                generate_audio=False, prompt="The storm rolls in over the cliff.")
            take = GenerationFactory(shot=shot, video__data=house_clip(),
                                     upstream=self.takes[-1] if self.takes else None)
            chains.choose_take(shot=shot, take=take, user=None)
            self.takes.append(take)
            upstream = shot
        # A second take of the first shot, not on the board yet.
        self.new_take = GenerationFactory(shot=self.shots[0], video__data=house_clip())
        self.console_errors: list[str] = []

    def tearDown(self) -> None:
        # Pushes for regions a page lacks (a stale panel on the board, the board's notice on
        # the shot page) are dropped quietly, never logged.
        assert self.console_errors == []
        super().tearDown()

    def _open_board(self, user):
        page = super()._open_board(user)
        page.on("console", lambda message: self.console_errors.append(message.text)
                if message.type == "error" else None)
        return page

    def _links(self) -> dict[int, int | None]:
        return dict(Shot.objects.filter(project=self.project)
                    .values_list("pk", "continues_from"))

    def test_stale_goes_live_rechain_freshens_keep_leaves_history(self) -> None:
        from playwright.sync_api import expect

        first, second, third = self.shots
        rita = self._open_board(self.rita)
        emma = self._open_board(self.emma)
        # Emma also has the second shot's own page open.
        shot_page = self._open_board(self.emma)
        shot_page.goto(f"{self.live_server_url}/shots/{second.pk}/")
        expect(shot_page.locator("#live-state")).to_have_text("live")

        # Each link is drawn, and named by the upstream's number.
        expect(rita.locator("svg.link-layer path.link")).to_have_count(2)
        expect(rita.locator(f"#shot-{second.pk} [data-link-mark]")).to_have_text(
            "continues from shot 1")
        links = self._links()

        # Emma moves the last shot up: the link stays, and its card says it is apart now.
        emma.locator(f"#shot-{third.pk} button[value=up]").click()
        expect(rita.locator(f"#shot-{third.pk} [data-link-mark]")).to_have_text(
            "continues from shot 3 — not next to it")
        expect(rita.locator("svg.link-layer path.link.is-apart")).to_have_count(2)
        assert self._links() == links
        assert [Shot.objects.get(pk=s.pk).upstream_take() for s in (second, third)] == \
            self.takes[:2]
        emma.locator(f"#shot-{third.pk} button[value=down]").click()
        expect(rita.locator("svg.link-layer path.link.is-apart")).to_have_count(0)

        # Emma puts another take of the first shot on the board, from its editor.
        emma.locator(f"#shot-{first.pk} .shot-actions a").click()
        emma.locator(f"#take-{self.new_take.uid} form[action$='/select/'] button").click()

        # Two and three shots down are stale, on Rita's board and on the shot page, live.
        for shot in (second, third):
            expect(rita.locator(f"#shot-{shot.pk} .badge-stale")).to_be_visible()
        expect(rita.locator(f"#shot-{second.pk} .stale-reason")).to_have_text(
            f"{first.title} now uses take #{self.new_take.pk}; this take started from "
            f"#{self.takes[0].pk}.")
        expect(rita.locator(f"#shot-{third.pk} .stale-reason")).to_contain_text("which is stale")
        expect(rita.locator("[data-rechain], [data-keep]")).to_have_count(0)
        expect(rita.locator("svg.link-layer path.link.is-stale")).to_have_count(2)
        panel = shot_page.locator(f"#stale-{second.pk}")
        expect(panel).to_contain_text(f"now uses take #{self.new_take.pk}")
        rita.screenshot(path=str(ARTIFACTS / "links-stale-reviewer.png"), full_page=True)

        # Re-chain on the shot page: the price is on the button before it is pressed.
        rechain = shot_page.locator("#rechain")
        expect(rechain).to_have_text(re.compile(r"Re-chain · \$\d"))
        shot_page.screenshot(path=str(ARTIFACTS / "links-shot-page-stale.png"), full_page=True)
        rechain.click()
        # The new take renders on the live server's worker from the new frame and becomes the
        # chosen one: the second shot is fresh on every screen.
        expect(rita.locator(f"#shot-{second.pk} .badge-stale")).to_have_count(0,
                                                                             timeout=60_000)
        expect(panel).not_to_contain_text("Stale", timeout=10_000)
        rechained = Generation.objects.filter(shot=second).latest("pk")
        assert rechained.upstream == self.new_take
        assert Shot.objects.get(pk=second.pk).chosen_take() == rechained
        # The third shot is stale against the re-chained take now.
        expect(rita.locator(f"#shot-{third.pk} .stale-reason")).to_contain_text(
            f"now uses take #{rechained.pk}")

        # Keep on the third shot's card: the mark goes everywhere, the history says who.
        emma.locator(f"#shot-{third.pk} [data-keep]").click()
        expect(rita.locator(f"#shot-{third.pk} .badge-stale")).to_have_count(0)
        expect(emma.locator(f"#history-{third.pk}")).to_contain_text(
            "Kept the take on the board although it was stale")
        expect(emma.locator(f"#history-{third.pk}")).to_contain_text("Emma")
        assert not Shot.objects.filter(project=self.project).exclude(stale_reason="").exists()
        rita.screenshot(path=str(ARTIFACTS / "links-fresh-reviewer.png"), full_page=True)
        for page in (rita, emma, shot_page):
            page.context.close()
