"""The print view in real Chromium: N shots print as ceil(N / 6) landscape pages."""

from __future__ import annotations

import math
import re

import pytest

from tests.factories import ShotFactory
from tests.test_browser_board import LiveBrowser

pytestmark = pytest.mark.browser


class TestPrint(LiveBrowser):
    def test_n_shots_print_as_ceil_n_over_six_pages(self) -> None:
        for i in range(10):  # 13 with the three of setUp
            ShotFactory(project=self.project, title=f"Extra {i}", position=10 + i,
                        prompt="A slow push in over wet rocks " * 8, notes="Rain on lens " * 10)
        page = self._new_context(self.emma).new_page()
        page.goto(f"{self.live_server_url}/projects/{self.project.pk}/print/")
        assert page.locator(".print-card").count() == 13
        # Every card sits inside its own sheet (the sheets are page-sized on screen).
        for sheet in page.locator(".print-page").all():
            box = sheet.bounding_box()
            for card in sheet.locator(".print-card").all():
                inner = card.bounding_box()
                assert box["y"] <= inner["y"]
                assert inner["y"] + inner["height"] <= box["y"] + box["height"]
        page.screenshot(path="test-artifacts/print-view.png")
        pdf = page.pdf(prefer_css_page_size=True, print_background=True)
        pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
        assert pages == math.ceil(13 / 6)
