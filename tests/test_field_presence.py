"""Who is editing which field of a shot, relayed over the board socket (issue #10)."""

from __future__ import annotations

import pytest

from tests.factories import ProjectFactory, ShotFactory
from tests.test_realtime import _drain, _receive_until, _socket

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cast_async(cast):
    return cast


async def _connected(user, project_id):
    ws = await _socket(user, project_id)
    connected, _ = await ws.connect()
    assert connected
    return ws


async def test_it_tells_the_others_who_is_editing_a_field(cast_async):
    cast = cast_async
    emma = await _connected(cast.editor, cast.project.pk)
    rita = await _connected(cast.reviewer, cast.project.pk)
    await _drain(emma)
    await _drain(rita)

    await emma.send_json_to({"shot": str(cast.shot.pk), "editing": "prompt", "HEADERS": {}})
    html = await _receive_until(rita, "is editing this")
    avatar = f'id="editing-{cast.shot.pk}-u{cast.editor.pk}"'
    assert f'hx-swap-oob="beforeend:#editors-{cast.shot.pk}-prompt"' in html
    assert avatar in html
    assert f'data-user="{cast.editor.username}"' in html
    # The person editing is not told about themselves.
    assert await emma.receive_nothing(timeout=0.2)

    await emma.send_json_to({"shot": str(cast.shot.pk), "editing": ""})
    html = await _receive_until(rita, avatar)
    assert 'hx-swap-oob="delete"' in html
    assert "beforeend" not in html

    # A closed tab stops editing too.
    await emma.send_json_to({"shot": str(cast.shot.pk), "editing": "title"})
    await _receive_until(rita, "#editors-")
    await emma.disconnect()
    html = await _receive_until(rita, avatar)
    assert "beforeend" not in html
    await rita.disconnect()


@pytest.mark.parametrize("message", [
    pytest.param({"editing": "prompt"}, id="no-shot"),
    pytest.param({"editing": "<script>", "shot": "SHOT"}, id="unknown-field"),
    pytest.param({"editing": "prompt", "shot": "OTHER"}, id="another-teams-shot"),
    pytest.param({"editing": "prompt", "shot": "SIBLING"}, id="another-projects-shot"),
])
async def test_it_relays_nothing_for_a_bad_editing_message(cast_async, message):
    cast = cast_async
    from asgiref.sync import sync_to_async

    other = await sync_to_async(ShotFactory)(project=await sync_to_async(ProjectFactory)(
        team=cast.other_team))
    sibling = await sync_to_async(ShotFactory)(project=await sync_to_async(ProjectFactory)(
        team=cast.team))
    ids = {"SHOT": cast.shot.pk, "OTHER": other.pk, "SIBLING": sibling.pk}
    message = {k: str(ids.get(v, v)) for k, v in message.items()}
    emma = await _connected(cast.editor, cast.project.pk)
    rita = await _connected(cast.reviewer, cast.project.pk)
    await _drain(emma)
    await _drain(rita)
    await emma.send_json_to(message)
    assert await rita.receive_nothing(timeout=0.3)
    await emma.disconnect()
    await rita.disconnect()


async def test_it_relays_nothing_from_a_read_only_role(cast_async):
    cast = cast_async
    emma = await _connected(cast.editor, cast.project.pk)
    vera = await _connected(cast.viewer, cast.project.pk)
    await _drain(emma)
    await _drain(vera)
    await vera.send_json_to({"shot": str(cast.shot.pk), "editing": "prompt"})
    assert await emma.receive_nothing(timeout=0.3)
    await vera.disconnect()
    await emma.disconnect()
