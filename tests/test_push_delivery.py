"""Pushes on their way: the request that caused one never waits for it, and a live page that
missed one (numbered pushes) fetches what it shows instead of going stale."""

from __future__ import annotations

import asyncio
import re
import threading
import time

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.urls import reverse

from storyboard import realtime
from storyboard.asgi import application
from storyboard.consumers import RESYNC
from tests.conftest import client_for
from tests.test_realtime import ORIGIN, _drain, _receive_until, _session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


async def _socket(user, project_id: int, *, seen: int | None = None) -> WebsocketCommunicator:
    path = f"/ws/projects/{project_id}/" + (f"?seen={seen}" if seen is not None else "")
    headers = [(b"origin", ORIGIN), (b"cookie", await _session_cookie(user))]
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


def _seen(cast, user) -> int:
    return realtime.pushes_seen(cast.project.pk, cast.team.memberships.get(user=user))


async def _messages(communicator: WebsocketCommunicator) -> list[str]:
    found = []
    while not await communicator.receive_nothing(timeout=0.3):
        found.append(await communicator.receive_from())
    return found


@pytest.fixture
def cast_async(cast):
    return cast


def test_pushes_to_a_group_are_numbered_one_after_another(cast, monkeypatch,
                                                          django_capture_on_commit_callbacks):
    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr(realtime, "_send", lambda group, message: sent.append((group, message)))
    with django_capture_on_commit_callbacks(execute=True):
        realtime.shot_saved(cast.shot)
        realtime.scene_renamed(cast.project.pk, 0)  # renders nothing: sends and numbers nothing
        realtime.shot_saved(cast.shot)
    editors = [m for group, m in sent
               if group == realtime.audience_group(cast.project.pk, realtime.EDITORS)]
    assert len(editors) == 2
    assert editors[1]["number"] == editors[0]["number"] + 1
    assert {m["group"] for _, m in sent} == {group for group, _ in sent}


def test_the_board_page_tells_its_socket_what_it_has_seen(cast):
    before = _seen(cast, cast.viewer)
    realtime.shot_saved(cast.shot)  # outside a transaction: sent at once
    html = client_for(cast.viewer).get(reverse("sb:board", args=[cast.project.pk])).content
    seen = int(re.search(rb'ws-connect="[^"?]*\?seen=(\d+)"', html).group(1))
    assert seen == before + 1 == _seen(cast, cast.viewer)
    assert b'<div id="live-resync" hidden></div>' in html


@pytest.mark.parametrize("page", ["sb:shot", "sb:assets"])
def test_the_other_live_pages_tell_their_socket_too(cast, page):
    arg = cast.shot.pk if page == "sb:shot" else cast.project.pk
    html = client_for(cast.editor).get(reverse(page, args=[arg])).content
    assert f'?seen={_seen(cast, cast.editor)}"'.encode() in html
    assert b'id="live-resync"' in html


async def test_a_page_that_saw_every_push_is_not_told_to_resync(cast_async):
    cast = cast_async
    ws = await _socket(cast.viewer, cast.project.pk,
                       seen=await sync_to_async(_seen)(cast, cast.viewer))
    assert RESYNC not in await _messages(ws)
    await ws.disconnect()


async def test_a_page_whose_socket_connects_after_a_push_resyncs(cast_async):
    cast = cast_async
    seen = await sync_to_async(_seen)(cast, cast.viewer)
    # Pushed after the page was rendered, before its socket connected: nobody heard it.
    await sync_to_async(realtime.shot_saved)(cast.shot)
    ws = await _socket(cast.viewer, cast.project.pk, seen=seen)
    assert (await ws.receive_from(timeout=3)) == RESYNC
    await ws.disconnect()


async def test_a_socket_that_missed_a_numbered_push_is_told_to_resync(cast_async):
    cast = cast_async
    ws = await _socket(cast.editor, cast.project.pk)
    await _drain(ws)
    group = realtime.audience_group(cast.project.pk, realtime.EDITORS)
    layer = get_channel_layer()
    first = await sync_to_async(realtime._numbered)(group, '<p id="first"></p>')
    await layer.group_send(group, first)
    assert await _receive_until(ws, 'id="first"')
    assert await ws.receive_nothing(timeout=0.2)
    # Numbered, then lost on the way (a full channel drops it): the next one shows the gap.
    await sync_to_async(realtime._numbered)(group, '<p id="lost"></p>')
    third = await sync_to_async(realtime._numbered)(group, '<p id="third"></p>')
    await layer.group_send(group, third)
    assert await _receive_until(ws, 'id="third"')
    assert (await ws.receive_from(timeout=3)) == RESYNC
    await ws.disconnect()


async def test_numbers_that_go_backwards_are_taken_as_they_come(cast_async):
    cast = cast_async
    group = realtime.audience_group(cast.project.pk, realtime.EDITORS)
    for _ in range(5):
        await sync_to_async(realtime._numbered)(group, "")
    ws = await _socket(cast.editor, cast.project.pk)
    await _drain(ws)
    # The counter was reset (a cache restarted): 1 follows whatever came before, quietly.
    await get_channel_layer().group_send(group, {"type": "board.html", "html": "<p id='a'></p>",
                                                 "group": group, "number": 1})
    await get_channel_layer().group_send(group, {"type": "board.html", "html": "<p id='b'></p>",
                                                 "group": group, "number": 2})
    assert RESYNC not in await _messages(ws)
    await ws.disconnect()


def test_an_edit_answers_while_its_pushes_are_still_on_the_way(cast, monkeypatch):
    layer = get_channel_layer()
    release, started = threading.Event(), threading.Event()

    async def stuck_group_send(group: str, message: dict) -> None:
        # A layer that takes its time (a slow Redis, a full server): the fan-out waits for
        # release, which comes only after the request has answered.
        started.set()
        await asyncio.get_running_loop().run_in_executor(None, release.wait, 5)

    monkeypatch.setattr(layer, "group_send", stuck_group_send)
    client = client_for(cast.editor)
    url = reverse("sb:shot", args=[cast.shot.pk])
    form = {"title": "Pushed later", "prompt": "A prompt", "mode": "text",
            "endpoint": cast.shot.endpoint, "resolution": "720p", "aspect_ratio": "16:9",
            "duration": "5", "version": cast.shot.version}
    began = time.monotonic()
    # A transactional test: the pushes go out after commit inside the request, as in production.
    response = client.post(url, form, headers={"HX-Request": "true"})
    answered = time.monotonic() - began
    try:
        assert response.status_code == 200
        assert "Saved." in response.content.decode()
        assert started.wait(timeout=5)
        # Answered, and every push handed over, while the layer was still stuck.
        assert not release.is_set()
        assert answered < 4
    finally:
        release.set()
