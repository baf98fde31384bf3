"""The board websocket against the real ASGI application: origin check, membership, pushes."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.urls import reverse

from accounts.models import Membership
from storyboard.asgi import application
from storyboard.consumers import CLOSE_FORBIDDEN
from storyboard.models import Presence
from tests.conftest import Cast, client_for
from tests.factories import GenerationFactory, ProjectFactory, SceneFactory, ShotFactory
from tests.test_board_views import pushed_order

pytestmark = pytest.mark.django_db(transaction=True)

# The validator captured ALLOWED_HOSTS at import, before the test runner added "testserver".
ORIGIN = b"http://127.0.0.1:8000"


@sync_to_async
def _session_cookie(user) -> bytes:
    client = client_for(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def _socket(user, project_id: int, *, origin: bytes = ORIGIN) -> WebsocketCommunicator:
    headers = [(b"origin", origin)]
    if user is not None:
        headers.append((b"cookie", await _session_cookie(user)))
    return WebsocketCommunicator(application, f"/ws/projects/{project_id}/", headers=headers)


async def _receive_until(communicator: WebsocketCommunicator, needle: str,
                         timeout: float = 3) -> str:
    """Read messages until one contains `needle`; presence updates may arrive in between."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        message = await communicator.receive_from(timeout=max(0.05, deadline - loop.time()))
        if needle in message:
            return message


async def _drain(communicator: WebsocketCommunicator) -> None:
    while not await communicator.receive_nothing(timeout=0.2):
        await communicator.receive_output()


@pytest.fixture
def cast_async(cast) -> Cast:
    return cast


async def test_it_lets_a_member_in_and_shows_presence(cast_async):
    cast = cast_async
    ws = await _socket(cast.editor, cast.project.pk)
    connected, _ = await ws.connect()
    assert connected
    html = await _receive_until(ws, 'id="presence"')
    assert f'data-user="{cast.editor.username}"' in html
    assert await sync_to_async(Presence.objects.filter(user=cast.editor).count)() == 1
    await ws.disconnect()
    assert await sync_to_async(Presence.objects.count)() == 0


async def test_it_shows_both_people_in_presence(cast_async):
    cast = cast_async
    first = await _socket(cast.editor, cast.project.pk)
    await first.connect()
    await _drain(first)
    second = await _socket(cast.viewer, cast.project.pk)
    await second.connect()
    html = await _receive_until(first, f'data-user="{cast.viewer.username}"')
    assert f'data-user="{cast.editor.username}"' in html
    await second.disconnect()
    html = await _receive_until(first, 'id="presence"')
    assert cast.viewer.username not in html
    await first.disconnect()


async def test_it_refuses_a_foreign_origin(cast_async):
    ws = await _socket(cast_async.editor, cast_async.project.pk, origin=b"https://evil.example")
    connected, _ = await ws.connect()
    assert not connected


async def test_it_refuses_another_teams_user(cast_async):
    ws = await _socket(cast_async.outsider, cast_async.project.pk)
    connected, code = await ws.connect()
    assert not connected
    assert code == CLOSE_FORBIDDEN
    assert await sync_to_async(Presence.objects.count)() == 0


async def test_it_refuses_anonymous(cast_async):
    ws = await _socket(None, cast_async.project.pk)
    connected, code = await ws.connect()
    assert not connected
    assert code == CLOSE_FORBIDDEN


async def test_it_refuses_a_project_that_does_not_exist(cast_async):
    ws = await _socket(cast_async.owner, 999_999)
    connected, _ = await ws.connect()
    assert not connected


async def test_it_disconnects_a_removed_member(cast_async):
    cast = cast_async
    ws = await _socket(cast.editor, cast.project.pk)
    assert (await ws.connect())[0]
    await _drain(ws)
    membership = await sync_to_async(Membership.objects.get)(team=cast.team, user=cast.editor)
    url = reverse("accounts:member-remove", args=[cast.team.pk, membership.pk])
    owner = await sync_to_async(client_for)(cast.owner)
    response = await sync_to_async(owner.post)(url)
    assert response.status_code == 302
    output = await ws.receive_output(timeout=5)
    while output["type"] != "websocket.close":
        output = await ws.receive_output(timeout=5)
    assert output["code"] == CLOSE_FORBIDDEN
    # Reconnecting is refused too: the membership is gone.
    again = await _socket(cast.editor, cast.project.pk)
    assert not (await again.connect())[0]


async def test_it_keeps_a_member_of_another_team_connected_on_removal(cast_async):
    """Removing Charlie from team B must not close his sockets on team A's boards."""
    cast = cast_async
    await sync_to_async(cast.team.add_member)(cast.outsider, "viewer")
    ws = await _socket(cast.outsider, cast.project.pk)
    assert (await ws.connect())[0]
    await _drain(ws)
    other_project = await sync_to_async(ProjectFactory)(team=cast.other_team)
    other_member = await sync_to_async(cast.other_team.add_member)(cast.viewer, "viewer")
    owner = await sync_to_async(client_for)(cast.outsider)
    url = reverse("accounts:member-remove", args=[cast.other_team.pk, other_member.pk])
    assert (await sync_to_async(owner.post)(url)).status_code == 302
    assert other_project.pk
    assert await ws.receive_nothing(timeout=0.5)
    await ws.disconnect()


async def test_it_pushes_an_edit_to_other_viewers(cast_async):
    cast = cast_async
    ws = await _socket(cast.viewer, cast.project.pk)
    assert (await ws.connect())[0]
    await _drain(ws)
    editor = await sync_to_async(client_for)(cast.editor)
    response = await sync_to_async(editor.post)(
        reverse("sb:shot", args=[cast.shot.pk]),
        {"title": "Sunrise over the cliff", "prompt": "Slow push in.", "mode": "text",
         "endpoint": "bytedance/seedance-2.0/fast/text-to-video", "resolution": "720p",
         "aspect_ratio": "16:9", "duration": "5", "generate_audio": "on"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    html = await _receive_until(ws, f'id="shot-{cast.shot.pk}"')
    assert "Sunrise over the cliff" in html
    await ws.disconnect()


async def test_it_pushes_a_new_shot_as_its_card_and_the_new_order(cast_async):
    cast = cast_async
    ws = await _socket(cast.reviewer, cast.project.pk)
    assert (await ws.connect())[0]
    await _drain(ws)
    editor = await sync_to_async(client_for)(cast.editor)
    await sync_to_async(editor.post)(reverse("sb:shot-create", args=[cast.project.pk]),
                                     {"title": "Gulls"})
    html = await _receive_until(ws, 'id="board-order"')
    gulls = await sync_to_async(cast.project.shots.get)(title="Gulls")
    assert pushed_order(html) == [[None, [cast.shot.pk, gulls.pk]]]
    assert f'id="shot-{gulls.pk}"' in html
    # The card that did not change is not sent again, nor the board.
    assert "Opening" not in html
    assert 'id="board"' not in html
    assert "2 shots" in html
    await ws.disconnect()


async def test_a_viewers_pushed_html_has_no_form_that_posts(cast_async):
    cast = cast_async
    viewer = await _socket(cast.viewer, cast.project.pk)
    editor_ws = await _socket(cast.editor, cast.project.pk)
    for ws in (viewer, editor_ws):
        assert (await ws.connect())[0]
    for ws in (viewer, editor_ws):
        await _drain(ws)
    editor = await sync_to_async(client_for)(cast.editor)
    await sync_to_async(editor.post)(reverse("sb:shot-duplicate", args=[cast.shot.pk]))
    seen = await _receive_until(viewer, 'id="board-order"')
    assert "Opening (copy)" in seen
    assert "<form" not in seen
    assert "hx-post" not in seen
    # The same change reaches an editor with the card's controls.
    theirs = await _receive_until(editor_ws, 'id="board-order"')
    assert "hx-post" in theirs
    for ws in (viewer, editor_ws):
        await ws.disconnect()


async def test_it_does_not_leak_another_teams_changes(cast_async):
    cast = cast_async
    ws = await _socket(cast.editor, cast.project.pk)
    assert (await ws.connect())[0]
    await _drain(ws)
    foreign_shot = await sync_to_async(ShotFactory)(
        project=await sync_to_async(ProjectFactory)(team=cast.other_team)
    )
    charlie = await sync_to_async(client_for)(cast.outsider)
    response = await sync_to_async(charlie.post)(
        reverse("sb:shot-duplicate", args=[foreign_shot.pk])
    )
    assert response.status_code == 302
    assert await ws.receive_nothing(timeout=0.5)
    await ws.disconnect()


async def test_it_ignores_junk_and_records_pings(cast_async):
    cast = cast_async
    ws = await _socket(cast.editor, cast.project.pk)
    assert (await ws.connect())[0]
    await _drain(ws)
    before = await sync_to_async(Presence.objects.get)(user=cast.editor)
    await ws.send_to(text_data="not json")
    await ws.send_to(text_data=json.dumps({"ping": "1", "HEADERS": {}}))
    await asyncio.sleep(0.2)
    after = await sync_to_async(Presence.objects.get)(user=cast.editor)
    assert after.seen > before.seen
    await ws.disconnect()


async def test_it_pushes_an_uploaded_asset(cast_async):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.hostile_files import good

    cast = cast_async
    ws = await _socket(cast.viewer, cast.project.pk)
    assert (await ws.connect())[0]
    await _drain(ws)
    editor = await sync_to_async(client_for)(cast.editor)
    upload = SimpleUploadedFile("harbour.png", await sync_to_async(good)("png"))
    response = await sync_to_async(editor.post)(reverse("sb:assets", args=[cast.project.pk]),
                                                {"file": upload})
    assert response.status_code == 200
    html = await _receive_until(ws, 'id="asset-grid"')
    assert "harbour.png" in html
    assert 'id="asset-count"' in html
    await ws.disconnect()


async def test_a_ping_after_the_project_is_deleted_closes_the_socket(cast_async):
    cast = cast_async
    ws = await _socket(cast.editor, cast.project.pk)
    assert (await ws.connect())[0]
    await _drain(ws)
    await sync_to_async(type(cast.project).objects.filter(pk=cast.project.pk).delete)()
    await ws.send_to(text_data=json.dumps({"ping": "1"}))
    output = await ws.receive_output(timeout=3)
    assert output == {"type": "websocket.close", "code": CLOSE_FORBIDDEN}


async def test_a_ping_from_a_deactivated_user_closes_the_socket(cast_async):
    cast = cast_async
    ws = await _socket(cast.viewer, cast.project.pk)
    assert (await ws.connect())[0]
    await _drain(ws)
    await sync_to_async(type(cast.viewer).objects.filter(pk=cast.viewer.pk).update)(
        is_active=False)
    await ws.send_to(text_data=json.dumps({"ping": "1"}))
    output = await ws.receive_output(timeout=3)
    assert output == {"type": "websocket.close", "code": CLOSE_FORBIDDEN}


async def test_deleting_a_project_closes_its_sockets(cast_async):
    cast = cast_async
    ws = await _socket(cast.viewer, cast.project.pk)
    assert (await ws.connect())[0]
    await _drain(ws)
    owner = await sync_to_async(client_for)(cast.owner)
    response = await sync_to_async(owner.post)(
        reverse("sb:project-delete", args=[cast.project.pk]), {"confirm": cast.project.name})
    assert response.status_code == 302
    output = await ws.receive_output(timeout=3)
    while output["type"] != "websocket.close":
        output = await ws.receive_output(timeout=3)
    assert output["code"] == CLOSE_FORBIDDEN


async def test_an_edit_that_changes_the_scene_moves_the_card_for_everyone(cast_async):
    cast = cast_async
    scene = await sync_to_async(SceneFactory)(project=cast.project, title="Storm")
    ws = await _socket(cast.viewer, cast.project.pk)
    assert (await ws.connect())[0]
    await _drain(ws)
    editor = await sync_to_async(client_for)(cast.editor)
    await sync_to_async(editor.post)(
        reverse("sb:shot", args=[cast.shot.pk]),
        {"title": "Opening", "prompt": "Slow push in.", "mode": "text", "scene": scene.pk,
         "endpoint": "bytedance/seedance-2.0/fast/text-to-video", "resolution": "720p",
         "aspect_ratio": "16:9", "duration": "10"},
        HTTP_HX_REQUEST="true",
    )
    html = await _receive_until(ws, 'id="board-order"')
    assert pushed_order(html) == [[None, []], [scene.pk, [cast.shot.pk]]]
    assert f'id="shot-{cast.shot.pk}"' in html
    assert "$2.4192" in html
    await ws.disconnect()


async def test_producers_hear_when_the_budget_passes_eighty_percent(cast_async):
    from storyboard.models import Budget

    cast = cast_async
    await sync_to_async(Budget.objects.filter(team=cast.team).update)(limit_micros=1_400_000)
    shot = await sync_to_async(ShotFactory)(
        project=cast.project, mode="text", endpoint="bytedance/seedance-2.0/fast/text-to-video",
        resolution="720p", aspect_ratio="16:9", duration="5", prompt="Static.")
    ws = await _socket(cast.producer, cast.project.pk)
    assert (await ws.connect())[0]
    await _drain(ws)
    editor = await sync_to_async(client_for)(cast.editor)
    response = await sync_to_async(editor.post)(reverse("sb:shot-generate", args=[shot.pk]),
                                                HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = await _receive_until(ws, 'id="budget-notice"')
    # $1.21 held of $1.40: 86% committed.
    assert "86%" in html
    await ws.disconnect()


async def test_only_producers_hear_about_the_budget(cast_async):
    from storyboard.models import Budget

    cast = cast_async
    await sync_to_async(Budget.objects.filter(team=cast.team).update)(limit_micros=1_400_000)
    ws = await _socket(cast.editor, cast.project.pk)
    assert (await ws.connect())[0]
    await _drain(ws)
    editor = await sync_to_async(client_for)(cast.editor)
    await sync_to_async(editor.post)(reverse("sb:shot-generate", args=[cast.shot.pk]),
                                     HTTP_HX_REQUEST="true")
    # The take's own pushes arrive; the notice does not.
    html = await _receive_until(ws, 'id="takes-')
    assert 'id="budget-notice"' not in html
    while not await ws.receive_nothing(timeout=0.3):
        assert 'id="budget-notice"' not in await ws.receive_from()
    await ws.disconnect()


async def test_producers_hear_when_a_take_costs_more_than_its_hold(cast_async):
    """Settled by hand as not billed, then the provider finishes it: charged beyond any hold."""
    from storyboard import generation
    from storyboard.models import Budget, Generation
    from storyboard.providers import Status, WebhookEvent

    cast = cast_async
    ws = await _socket(cast.producer, cast.project.pk)
    assert (await ws.connect())[0]
    await _drain(ws)

    def late_charge() -> None:
        take = GenerationFactory(shot=cast.shot, state=Generation.State.HELD,
                                 estimated_micros=250_000, simulated=False)
        Budget.for_team(cast.team).hold(take=take, amount=250_000, user=cast.editor)
        take.advance(Generation.State.OUTCOME_UNKNOWN, expected=(Generation.State.HELD,))
        generation.settle_by_hand(take=take, billed=False, note="no trace",
                                  user=cast.producer)
        generation.apply_webhook(take=take, event=WebhookEvent("req-1", Status("completed")))

    await sync_to_async(late_charge)()
    html = await _receive_until(ws, 'id="budget-notice"')
    assert "A take cost $0.25 more than was held for it" in html
    await ws.disconnect()
