"""Presence on a busy board: coalesced to one update a second, on either channel layer."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from accounts.models import Role
from tests.factories import UserFactory
from tests.test_realtime import _drain, _socket

pytestmark = pytest.mark.django_db(transaction=True)

CROWD = 50


@sync_to_async
def _crowd(team, size: int) -> list:
    people = []
    for i in range(size):
        user = UserFactory(username=f"fan{i:02}", password=None)
        team.add_member(user, Role.VIEWER)
        people.append(user)
    return people


async def _presence_until_everyone(ws: WebsocketCommunicator, usernames: list[str],
                                   timeout: float = 15) -> tuple[int, str]:
    """Count presence updates until one lists everyone; returns the count and that update."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    count = 0
    while True:
        message = await ws.receive_from(timeout=max(0.05, deadline - loop.time()))
        if 'id="presence"' not in message:
            continue
        count += 1
        if all(f'data-user="{name}"' in message for name in usernames):
            return count, message


async def test_a_crowd_arriving_hears_a_handful_of_presence_updates(cast):
    people = await _crowd(cast.team, CROWD)
    sockets = [await _socket(person, cast.project.pk) for person in people]
    # Everyone arrives at once, as when a link to the board is shared in a meeting.
    assert all(ok for ok, _ in await asyncio.gather(*(ws.connect() for ws in sockets)))
    usernames = [person.username for person in people]
    results = await asyncio.gather(*(_presence_until_everyone(ws, usernames) for ws in sockets))
    counts = [count for count, _ in results]
    # One a second while the crowd arrives; without coalescing each socket hears every arrival.
    assert max(counts) <= 5, counts
    await asyncio.gather(*(ws.disconnect() for ws in sockets))


async def test_the_last_update_after_a_crowd_arrives_lists_everyone(cast):
    people = await _crowd(cast.team, 10)
    first = await _socket(cast.editor, cast.project.pk)
    assert (await first.connect())[0]
    await _drain(first)
    sockets = [await _socket(person, cast.project.pk) for person in people]
    await asyncio.gather(*(ws.connect() for ws in sockets))
    usernames = [cast.editor.username] + [person.username for person in people]
    _, html = await _presence_until_everyone(first, usernames)
    assert html.count('class="avatar"') == len(usernames)
    # Nothing more follows once it has been said.
    assert await first.receive_nothing(timeout=1.2)
    await asyncio.gather(*(ws.disconnect() for ws in [first, *sockets]))
