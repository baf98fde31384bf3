"""Two people on one board in real Chromium, served by a real Daphne with real websockets."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest
from channels.testing import ChannelsLiveServerTestCase
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.test import Client

from accounts.models import Role
from storyboard.models import Shot
from tests.conftest import IN_CI
from tests.factories import ProjectFactory, SceneFactory, ShotFactory, TeamFactory, UserFactory
from tests.live_server import SpawnedDaphneProcess

CHROMIUM = os.getenv("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
# Flags that keep Chromium from phoning home on a machine without internet.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]

pytestmark = pytest.mark.browser

# Reports every Content-Security-Policy violation in every frame to the test (see _new_context).
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolation(`${event.violatedDirective} blocked ${event.blockedURI || "inline"}`
                        + ` at ${event.sourceFile}:${event.lineNumber} ${event.sample || ""}`);
});
"""


def _require_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    message = f"Chromium not found at {CHROMIUM}; install Debian's chromium package."
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


class LiveBrowser(ChannelsLiveServerTestCase):
    """A live server, Chromium, team Northlight with Emma (editor) and Rita (reviewer)."""

    host = "localhost"
    ProtocolServerProcess = SpawnedDaphneProcess

    @classmethod
    def setUpClass(cls) -> None:
        _require_chromium()
        # Playwright's sync API runs an event loop in this thread; the ORM calls in the test
        # body are still plain synchronous code, so Django's async guard does not apply here.
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
        # Read by the server process: a short pretend queue so "waiting" can be seen.
        os.environ["LOCAL_QUEUE_DELAY"] = "0.5"
        super().setUpClass()
        from playwright.sync_api import sync_playwright

        cls._playwright = sync_playwright().start()
        cls.browser = cls._playwright.chromium.launch(executable_path=CHROMIUM,
                                                      args=CHROMIUM_ARGS)
        ARTIFACTS.mkdir(exist_ok=True)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.browser.close()
        cls._playwright.stop()
        super().tearDownClass()
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        os.environ.pop("LOCAL_QUEUE_DELAY", None)

    def setUp(self) -> None:
        self.csp_violations: list[str] = []
        team = TeamFactory(name="Northlight")
        self.emma = UserFactory(username="emma", first_name="Emma", last_name="Editor")
        self.rita = UserFactory(username="rita", first_name="Rita", last_name="Reviewer")
        team.add_member(self.emma, Role.EDITOR)
        team.add_member(self.rita, Role.REVIEWER)
        self.project = ProjectFactory(team=team, name="Lighthouse")
        self.scene = SceneFactory(project=self.project, title="Storm", position=0)
        self.shots = [
            ShotFactory(project=self.project, title=title, position=i)
            for i, title in enumerate(["Cliff at dawn", "Keeper's window", "The beam"])
        ]

    def tearDown(self) -> None:
        # Every flow runs under the real policy; anything it blocked is a bug in a template or
        # script, even when the flow itself still worked.
        assert self.csp_violations == []
        super().tearDown()

    def _new_context(self, user=None, **options):
        """A browser context that reports CSP violations, logged in as `user` if given (by
        its session cookie: the login form has its own test)."""
        context = self.browser.new_context(**{"viewport": {"width": 1400, "height": 900},
                                              **options})
        context.expose_binding("__cspViolation",
                               lambda source, text: self.csp_violations.append(text))
        context.add_init_script(REPORT_CSP_VIOLATIONS)
        # Chromium also logs what it refused, including cases no event reaches (e.g. eval).
        context.on("console", lambda message: self.csp_violations.append(message.text)
                   if "Content Security Policy" in message.text else None)
        if user is not None:
            client = Client()
            client.force_login(user)
            context.add_cookies([{"name": "sessionid",
                                  "value": client.cookies["sessionid"].value,
                                  "domain": self.host, "path": "/"}])
        return context

    def _open_board(self, user):
        context = self._new_context(user)
        page = context.new_page()
        page.goto(f"{self.live_server_url}/projects/{self.project.pk}/")
        from playwright.sync_api import expect

        expect(page.locator("#live-state")).to_have_text("live")
        return page

    def _card_titles(self, page) -> list[str]:
        return page.locator("#board .shot-card .shot-title").all_inner_texts()


class TestLiveBoard(LiveBrowser):
    def test_two_people_edit_and_reorder_live(self) -> None:
        from playwright.sync_api import expect

        emma = self._open_board(self.emma)
        rita = self._open_board(self.rita)

        # Presence: each sees both faces.
        for page in (emma, rita):
            expect(page.locator('#presence [data-user="emma"]')).to_be_visible()
            expect(page.locator('#presence [data-user="rita"]')).to_be_visible()
        # A reviewer gets no editing controls (the server refuses them too).
        expect(rita.locator("#add-shot")).to_be_hidden()

        # Emma edits a shot in the side editor; Rita's card changes without a reload.
        first = self.shots[0]
        emma.locator(f"#shot-{first.pk} .shot-actions a").click()
        emma.locator("#id_title").fill("Cliff at first light")
        started = time.monotonic()
        emma.get_by_role("button", name="Save shot").click()
        expect(rita.locator(f"#shot-{first.pk} .shot-title")).to_have_text("Cliff at first light")
        edit_latency = time.monotonic() - started

        # The price follows the parameters before anything is saved. (Wait for htmx to settle
        # the re-rendered editor first: a person cannot change a field within those 20 ms.)
        expect(emma.locator("#editor .notice.success")).to_be_visible()
        # (A locator, not wait_for_function: the page's CSP forbids evaluating strings.)
        expect(emma.locator(".htmx-request, .htmx-settling")).to_have_count(0)
        emma.locator("#id_duration").select_option("10")
        expect(emma.locator("#estimate")).to_contain_text("$2.4192")

        # The editor offers only what the endpoint takes: no 1080p on the fast tier…
        fast_1080 = emma.locator("#id_resolution option[value='1080p']")
        expect(fast_1080).to_be_disabled()
        emma.locator("#id_endpoint").select_option("bytedance/seedance-2.0/text-to-video")
        expect(fast_1080).to_be_enabled()
        emma.locator("#id_endpoint").select_option("bytedance/seedance-2.0/fast/text-to-video")
        expect(fast_1080).to_be_disabled()
        # Input the editor cannot rule out is refused with the reason and changes nothing
        # anywhere (Seedance 1.0 takes 29–289 frames).
        emma.locator("#id_endpoint").select_option(
            "fal-ai/bytedance/seedance/v1/lite/text-to-video")
        emma.locator("#id_num_frames").fill("300")
        emma.locator("#id_title").fill("Should not stick")
        emma.get_by_role("button", name="Save shot").click()
        expect(emma.locator("#editor .notice.error")).to_contain_text("Nothing was saved")
        expect(emma.locator("#id_num_frames + .field-error")).to_contain_text("29 to 289")
        expect(rita.locator(f"#shot-{first.pk} .shot-title")).to_have_text("Cliff at first light")
        first.refresh_from_db()
        assert (first.title, first.num_frames) == ("Cliff at first light", None)

        # Emma adds a shot; it appears on Rita's board.
        emma.locator("#add-shot").click()
        expect(rita.locator("#board .shot-card")).to_have_count(4)
        # Pushed as the reviewer's version: the new card came without a single control.
        expect(rita.locator("#board form, #board [hx-post]")).to_have_count(0)
        expect(emma.locator("#board .shot-card").last.locator("form[method=post]")).to_have_count(3)

        # Emma drags the last shot before the first; Rita sees the new order.
        cards = emma.locator("#board .shot-card")
        source = cards.nth(3).locator(".shot-body")
        target = cards.nth(0).locator(".shot-thumb")
        source_box, target_box = source.bounding_box(), target.bounding_box()
        emma.mouse.move(source_box["x"] + 20, source_box["y"] + 10)
        emma.mouse.down()
        emma.mouse.move(target_box["x"] + 10, target_box["y"] + 10, steps=15)
        emma.mouse.move(target_box["x"] + 5, target_box["y"] + 5, steps=5)
        emma.mouse.up()
        new_shot = Shot.objects.exclude(pk__in=[s.pk for s in self.shots]).get()
        expect(rita.locator("#board .shot-card").first).to_have_attribute(
            "data-shot", str(new_shot.pk)
        )
        assert self._card_titles(rita) == self._card_titles(emma)
        assert self.project.shots.order_by("position").first() == new_shot

        # Emma moves a shot under the "Storm" heading with the keyboard-free fallback buttons.
        # (The ↓ button at a scene boundary crosses into the next scene.)
        last = self.shots[2]
        emma.locator(f"#shot-{last.pk} button[value=down]").click()
        expect(rita.locator(f"#scene-{self.scene.pk} + .shot-list #shot-{last.pk}")).to_be_visible()

        # Emma deletes a shot; it disappears for Rita.
        emma.once("dialog", lambda dialog: dialog.accept())
        emma.locator(f"#shot-{self.shots[1].pk} button.danger").click()
        expect(rita.locator(f"#shot-{self.shots[1].pk}")).to_have_count(0)

        emma.screenshot(path=str(ARTIFACTS / "board-editor.png"), full_page=True)
        rita.screenshot(path=str(ARTIFACTS / "board-reviewer.png"), full_page=True)
        (ARTIFACTS / "board-latency.txt").write_text(f"edit→other screen: {edit_latency:.3f} s\n")

        # Rita leaves; Emma's presence list drops her.
        rita.context.close()
        expect(emma.locator('#presence [data-user="rita"]')).to_have_count(0)
        emma.context.close()

    def test_a_take_renders_live_on_every_screen(self) -> None:
        from playwright.sync_api import expect

        shot = self.shots[0]
        Shot.objects.filter(pk=shot.pk).update(
            endpoint="fal-ai/bytedance/seedance/v1/lite/text-to-video", resolution="480p",
            duration="3", generate_audio=False)
        emma = self._open_board(self.emma)
        rita = self._open_board(self.rita)
        # Rita watches the shot's takes in her (read-only) editor.
        rita.locator(f"#shot-{shot.pk} .shot-actions a").click()
        # Her editor must be open before the take starts: pushes only reach regions a page has.
        expect(rita.locator(f"#takes-{shot.pk}")).to_be_attached()
        expect(rita.locator("#generate")).to_be_hidden()

        emma.locator(f"#shot-{shot.pk} .shot-actions a").click()
        emma.locator("#generate").click()

        take = rita.locator(".take").first
        expect(take.locator(".badge").first).to_have_text("Generating", timeout=15_000)
        seen = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and take.locator("video").count() == 0:
            # Read in one step in the page: the bar may vanish between two Playwright calls.
            seen.add(rita.evaluate("() => document.querySelector('.take .progress')"
                                   "?.getAttribute('aria-valuenow') ?? null"))
            rita.wait_for_timeout(50)
        expect(take.locator("video")).to_be_visible()
        expect(take.locator(".badge").first).to_have_text("Done")
        # The bar really moved: several distinct values between 0 and 100 were on screen.
        assert len(seen - {None, "0"}) >= 2, seen
        # The card picked up the take's poster, on both screens, without a reload.
        for page in (emma, rita):
            expect(page.locator(f"#shot-{shot.pk} .shot-thumb img")).to_have_attribute(
                "src", re.compile(r"/takes/.+/poster/"))
        video_url = take.locator("video").get_attribute("src")
        response = rita.request.get(f"{self.live_server_url}{video_url}")
        assert response.status == 200
        assert response.body()[4:8] == b"ftyp"
        rita.screenshot(path=str(ARTIFACTS / "take-reviewer.png"), full_page=True)
        emma.context.close()
        rita.context.close()

    def test_a_lowered_budget_refuses_generate_with_the_reason(self) -> None:
        from playwright.sync_api import expect

        from storyboard.models import Budget

        paul = UserFactory(username="paul", first_name="Paul", last_name="Producer")
        self.project.team.add_member(paul, Role.PRODUCER)
        Budget.objects.create(team=self.project.team, limit_micros=100_000_000)
        producer = self._open_board(paul)
        producer.goto(f"{self.live_server_url}/teams/{self.project.team_id}/budget/")
        producer.locator("#id_limit").fill("0.50")
        producer.get_by_role("button", name="Set limit").click()
        expect(producer.locator("#budget-limit")).to_have_text("$0.50")
        before = {key: producer.locator(f"#budget-{key}").inner_text()
                  for key in ("spent", "held", "remaining")}

        emma = self._open_board(self.emma)
        shot = self.shots[0]
        emma.locator(f"#shot-{shot.pk} .shot-actions a").click()
        emma.locator("#generate").click()
        toast = emma.locator("#toast")
        expect(toast).to_be_visible()
        expect(toast).to_contain_text("needs up to $1.2096")
        expect(toast).to_contain_text("Paul Producer can raise the budget")
        expect(emma.locator(".take")).to_have_count(0)

        producer.reload()
        after = {key: producer.locator(f"#budget-{key}").inner_text()
                 for key in ("spent", "held", "remaining")}
        assert after == before
        producer.context.close()
        emma.context.close()

    def test_logging_in_and_adding_a_scene_runs_under_the_policy(self) -> None:
        from playwright.sync_api import expect

        # The server process checks passwords with the real hasher, not the tests' fast one.
        self.emma.password = PBKDF2PasswordHasher().encode("pass-word-123", "browser-salt")
        self.emma.save(update_fields=["password"])
        page = self._new_context().new_page()
        page.goto(f"{self.live_server_url}/projects/{self.project.pk}/")
        page.locator("#id_username").fill("emma")
        page.locator("#id_password").fill("pass-word-123")
        page.get_by_role("button", name="Log in").click()
        expect(page.locator("#live-state")).to_have_text("live")
        # The scene form empties itself after a successful htmx post (no inline handler).
        title = page.get_by_placeholder("New scene")
        title.fill("Harbour")
        page.get_by_role("button", name="Add scene").click()
        expect(page.locator("#board")).to_contain_text("Harbour")
        expect(title).to_have_value("")
        # The project menu opens, closes on a click elsewhere and on Escape, and its links go.
        menu = page.locator("details.board-menu")
        export = page.get_by_role("link", name="Export animatic or timeline")
        menu.locator("summary").click()
        expect(export).to_be_visible()
        page.locator("h1").click()
        expect(export).to_be_hidden()
        menu.locator("summary").click()
        page.keyboard.press("Escape")
        expect(export).to_be_hidden()
        menu.locator("summary").click()
        export.click()
        expect(page).to_have_url(re.compile(r"/projects/\d+/export/$"))
        page.context.close()
