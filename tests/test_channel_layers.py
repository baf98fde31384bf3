"""The channel layer as configured: quiet sockets stay open, bursts arrive whole."""

from __future__ import annotations

import os

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.urls import reverse

from storyboard import realtime
from tests.conftest import client_for
from tests.test_realtime import _drain, _receive_until, _socket

pytestmark = pytest.mark.django_db(transaction=True)

ON_REDIS = bool(settings.REDIS_URL)


def _quiet_seconds() -> float:
    # Just past channels_redis's blocking read, the moment a quiet socket used to die.
    # QUIET_SOCKET_SECONDS=60 runs the long version by hand.
    from channels_redis.core import RedisChannelLayer

    return float(os.getenv("QUIET_SOCKET_SECONDS", RedisChannelLayer.brpop_timeout + 1.5))


@pytest.mark.skipif(not ON_REDIS, reason="the in-memory layer has no read timeout")
async def test_a_quiet_socket_on_redis_still_hears_the_next_edit(cast):
    ws = await _socket(cast.viewer, cast.project.pk)
    assert (await ws.connect())[0]
    await _drain(ws)
    # Nothing at all reaches this process for longer than one blocking read.
    assert await ws.receive_nothing(timeout=_quiet_seconds())
    editor = await sync_to_async(client_for)(cast.editor)
    response = await sync_to_async(editor.post)(
        reverse("sb:shot", args=[cast.shot.pk]),
        {"title": "After the lull", "prompt": "Slow push in.", "mode": "text",
         "endpoint": "bytedance/seedance-2.0/fast/text-to-video", "resolution": "720p",
         "aspect_ratio": "16:9", "duration": "5"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    html = await _receive_until(ws, f'id="shot-{cast.shot.pk}"')
    assert "After the lull" in html
    await ws.disconnect()


async def test_a_burst_of_pushes_reaches_a_socket_whole(cast):
    """Far more than the layers' default capacity of 100, sent faster than it is read."""
    ws = await _socket(cast.viewer, cast.project.pk)
    assert (await ws.connect())[0]
    await _drain(ws)
    layer = get_channel_layer()
    group = realtime.project_group(cast.project.pk)
    for i in range(300):
        await layer.group_send(group, {"type": "board.html", "html": f'<p id="n">{i}</p>'})
    received = [await ws.receive_from(timeout=5) for _ in range(300)]
    assert received[-1] == '<p id="n">299</p>'
    await ws.disconnect()
