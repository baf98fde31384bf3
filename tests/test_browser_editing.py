"""Two people editing one shot in real Chromium, and the stand-alone shot page kept live."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest

from accounts.models import Role
from storyboard.models import Shot
from tests.factories import UserFactory
from tests.test_browser_board import LiveBrowser

pytestmark = pytest.mark.browser


class TestLiveEditing(LiveBrowser):
    def setUp(self) -> None:
        super().setUp()
        self.paul = UserFactory(username="paul", first_name="Paul", last_name="Painter")
        self.project.team.add_member(self.paul, Role.EDITOR)
        self.shot = self.shots[0]
        self.console_errors: list[str] = []

    def tearDown(self) -> None:
        # Pushes for regions a page lacks (the board's cards on the shot page, an editor that
        # is not open) are dropped quietly, never logged as htmx:oobErrorNoTarget.
        assert self.console_errors == []
        super().tearDown()

    def _open(self, user, path: str):
        from playwright.sync_api import expect

        context = self._new_context(user)
        page = context.new_page()
        page.on("console", self._note_error)
        page.goto(f"{self.live_server_url}{path}")
        expect(page.locator("#live-state")).to_have_text("live")
        return page

    def _note_error(self, message) -> None:
        # A conflict answers 409 on purpose (the editor shows it); Chromium logs the status.
        if message.type == "error" and "status of 409" not in message.text:
            self.console_errors.append(message.text)

    def _shot_page(self, user):
        return self._open(user, f"/shots/{self.shot.pk}/")

    def _board_editor(self, user):
        from playwright.sync_api import expect

        page = self._open(user, f"/projects/{self.project.pk}/")
        page.locator(f"#shot-{self.shot.pk} .shot-actions a").click()
        expect(page.locator("#shot-editor")).to_be_visible()
        return page

    def _settled(self, page) -> None:
        from playwright.sync_api import expect

        expect(page.locator(".htmx-request, .htmx-settling")).to_have_count(0)

    def test_edits_to_different_fields_by_two_people_both_survive(self) -> None:
        from playwright.sync_api import expect

        emma = self._shot_page(self.emma)
        paul = self._board_editor(self.paul)
        # Both are on the shot page's presence list.
        expect(emma.locator('#presence [data-user="paul"]')).to_be_visible()

        # Emma starts typing a prompt; Paul sees her avatar on that field.
        prompt = "Waves break over the pier; slow push in."
        emma.locator("#id_prompt").fill(prompt)
        expect(paul.locator(f'#editors-{self.shot.pk}-prompt [data-user="emma"]')).to_be_visible()

        # Paul saves a new title meanwhile. It reaches Emma's editor; her typing stays.
        paul.locator("#id_title").fill("Pier at dusk")
        paul.get_by_role("button", name="Save shot").click()
        expect(paul.locator("#editor .notice.success")).to_be_visible()
        expect(emma.locator("#id_title")).to_have_value("Pier at dusk")
        expect(emma.locator("#id_prompt")).to_have_value(prompt)
        # The history on Emma's page follows.
        expect(emma.locator(f"#history-{self.shot.pk}")).to_contain_text("Paul Painter")

        emma.get_by_role("button", name="Save shot").click()
        expect(emma.locator(".flash-success, #editor .notice.success").first).to_be_visible()
        shot = Shot.objects.get(pk=self.shot.pk)
        assert (shot.title, shot.prompt) == ("Pier at dusk", prompt)
        # Emma left the field: her avatar is gone from Paul's editor.
        expect(paul.locator(f'#editors-{self.shot.pk}-prompt [data-user="emma"]')) \
            .to_have_count(0)
        emma.context.close()
        paul.context.close()

    def test_a_same_field_conflict_shows_both_values(self) -> None:
        from playwright.sync_api import expect

        emma = self._shot_page(self.emma)
        paul = self._board_editor(self.paul)
        emma.locator("#id_prompt").fill("Emma: the keeper climbs the stairs.")
        paul.locator("#id_prompt").fill("Paul: the beam sweeps the fog.")
        paul.get_by_role("button", name="Save shot").click()
        expect(paul.locator("#editor .notice.success")).to_be_visible()
        # Emma has typed in that field, so Paul's push does not overwrite it.
        expect(emma.locator(f"#shot-{self.shot.pk}-prompt")).to_have_class(
            "field changed-elsewhere")
        expect(emma.locator("#id_prompt")).to_have_value("Emma: the keeper climbs the stairs.")

        emma.locator("#id_prompt").press("Tab")
        emma.get_by_role("button", name="Save shot").click()
        conflict = emma.locator('#conflicts .conflict[data-field="prompt"]')
        expect(conflict.locator(".conflict-mine .conflict-value")).to_have_text(
            "Emma: the keeper climbs the stairs.")
        expect(conflict.locator(".conflict-theirs .conflict-value")).to_have_text(
            "Paul: the beam sweeps the fog.")
        expect(conflict).to_contain_text("Take Paul Painter’s")
        expect(emma.locator("#id_prompt")).to_have_value("Emma: the keeper climbs the stairs.")
        assert Shot.objects.get(pk=self.shot.pk).prompt == "Paul: the beam sweeps the fog."

        # Emma keeps hers; Paul's open editor follows.
        self._settled(emma)
        conflict.get_by_label("Keep mine").check()
        emma.get_by_role("button", name="Save shot").click()
        expect(emma.locator("#conflicts")).to_have_count(0)
        expect(paul.locator("#id_prompt")).to_have_value("Emma: the keeper climbs the stairs.")
        assert Shot.objects.get(pk=self.shot.pk).prompt == "Emma: the keeper climbs the stairs."
        emma.context.close()
        paul.context.close()

    def test_the_shot_page_updates_live_when_a_take_finishes(self) -> None:
        from playwright.sync_api import expect

        Shot.objects.filter(pk=self.shot.pk).update(
            endpoint="fal-ai/bytedance/seedance/v1/lite/text-to-video", resolution="480p",
            duration="3", generate_audio=False)
        rita = self._shot_page(self.rita)
        emma = self._board_editor(self.emma)
        emma.locator("#generate").click()

        take = rita.locator(".take").first
        expect(take.locator(".badge").first).to_have_text("Generating", timeout=15_000)
        expect(take.locator("video")).to_be_visible(timeout=30_000)
        expect(take.locator(".badge").first).to_have_text("Done")
        # The finished take became the shot's picture, and the list says so.
        expect(take.locator(".badge-on-board")).to_have_text("On the board")
        rita.context.close()
        emma.context.close()

    def test_typing_and_saving_again_while_a_save_is_on_its_way_is_kept(self) -> None:
        from playwright.sync_api import expect

        page = self._board_editor(self.paul)
        held = []

        def hold_the_first_save(route) -> None:
            if route.request.method == "POST" and not held:
                held.append(route)  # answered below, after the second press
            else:
                route.continue_()

        saves = f"**/shots/{self.shot.pk}/"
        page.route(saves, hold_the_first_save)
        page.locator("#id_title").fill("First title")
        page.get_by_role("button", name="Save shot").click()
        page.wait_for_function("() => document.querySelector('.shot-form.htmx-request') !== null")
        # Still on its way: Paul types on and presses Save again (htmx would drop that press).
        page.locator("#id_title").fill("Second title")
        page.locator("#id_notes").fill("Typed while saving")
        page.get_by_role("button", name="Save shot").click()
        def second_save(response) -> bool:
            sent = parse_qs(response.request.post_data or "")
            return response.request.method == "POST" and sent.get("title") == ["Second title"]

        with page.expect_response(second_save) as second:
            held[0].continue_()
        # The second press went out through htmx once the first answer was in.
        assert second.value.request.headers.get("hx-request") == "true"
        assert second.value.status == 200
        expect(page.locator("#id_title")).to_have_value("Second title")
        expect(page.locator("#id_notes")).to_have_value("Typed while saving")
        shot = Shot.objects.get(pk=self.shot.pk)
        assert (shot.title, shot.notes) == ("Second title", "Typed while saving")
        expect(page.locator("#editor .notice.success")).to_be_visible()
