"""How long the editing POST takes with N board sockets open, and when the last one has the push.

Runs the real ASGI application in-process on the in-memory channel layer: N websocket
communicators join a 300-shot board (as editors and viewers), then an editor saves a shot
through the test client. Reports the POST's own time and the time until every socket received
the card, against the same with no socket open. The POST must not grow with the sockets:
the push is rendered once per audience and handed to the event loop without waiting.

Run: .venv/bin/python -m bench.board_sockets [--sockets 200] [--shots 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path


async def _run(sockets: int, shots: int) -> list[tuple[int, float, float]]:
    from asgiref.sync import sync_to_async
    from channels.testing import WebsocketCommunicator
    from django.test import Client
    from django.urls import reverse

    from accounts.models import Role
    from storyboard.asgi import application
    from storyboard.models import Project
    from tests.factories import TeamFactory, UserFactory, build_board

    def setup():
        team = TeamFactory()
        editor, viewer = UserFactory(), UserFactory()
        team.add_member(editor, Role.EDITOR)
        team.add_member(viewer, Role.VIEWER)
        project = Project.objects.create(team=team, name="Sockets")
        board = build_board(project, shots=shots)
        clients = [Client(), Client()]
        clients[0].force_login(editor)
        clients[1].force_login(viewer)
        return project, board[shots // 2], clients

    project, shot, (editor, viewer) = await sync_to_async(setup)()
    cookies = [f"sessionid={c.cookies['sessionid'].value}".encode() for c in (editor, viewer)]
    url = reverse("sb:shot", args=[shot.pk])
    results = []
    for count in (0, sockets):
        open_sockets = []
        for i in range(count):
            ws = WebsocketCommunicator(application, f"/ws/projects/{project.pk}/", headers=[
                (b"origin", b"http://127.0.0.1:8000"), (b"cookie", cookies[i % 2])])
            assert (await ws.connect())[0]
            open_sockets.append(ws)
        for ws in open_sockets:
            while not await ws.receive_nothing(timeout=0.01):
                await ws.receive_output()
        title = f"Edited with {count} sockets"
        data = {"title": title, "prompt": "Slow push in.", "mode": shot.mode,
                "endpoint": shot.endpoint, "resolution": "720p", "aspect_ratio": "16:9",
                "duration": "5"}
        if shot.start_frame_id:
            data["start_frame"] = shot.start_frame_id
        started = time.perf_counter()
        response = await sync_to_async(editor.post)(url, data, HTTP_HX_REQUEST="true")
        post_ms = (time.perf_counter() - started) * 1000
        assert response.status_code == 200, response.content[:500]
        for ws in open_sockets:
            while title not in await ws.receive_from(timeout=10):
                pass
        all_ms = (time.perf_counter() - started) * 1000
        results.append((count, post_ms, all_ms))
        for ws in open_sockets:
            await ws.disconnect()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=200)
    parser.add_argument("--shots", type=int, default=300)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "storyboard.settings")
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("SQLITE_TEST_NAME",
                          str(Path(tempfile.gettempdir()) / f"bench-sockets-{os.getpid()}.sqlite3"))
    import django

    django.setup()
    from bench.board_scale import throwaway_database

    with throwaway_database():
        rows = asyncio.run(_run(args.sockets, args.shots))
    print(f"{args.shots}-shot board, in-memory layer, in-process sockets\n")
    print("| sockets | POST ms | until every socket has the card, ms |")
    print("|---:|---:|---:|")
    for count, post_ms, all_ms in rows:
        print(f"| {count} | {post_ms:.0f} | {all_ms:.0f} |")


if __name__ == "__main__":
    main()
