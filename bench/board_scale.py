"""The board at 10, 100 and 300 shots: the page, and what one edit pushes.

For each size it builds a board the way a team fills one (scenes every ten shots, start frames,
references with videos among them, chains, two finished takes per shot, one on the board) and
measures, with the database's query log:

- board GET: queries, server time (test client, whole request), bytes;
- one shot edit's push, as the app does it now: the card and the summary line, rendered once
  per audience (editors, viewers), against the naive push it replaced: the whole board
  re-rendered (`storyboard/board.html#board`) from the context the board used to build
  (no prefetching, so every card asks for its takes, its picture and its references).

Run: .venv/bin/python -m bench.board_scale [--sizes 10,100,300] [--repeat 5]
SQLite by default (a throwaway file); PostgreSQL with DATABASE_URL (test database PG_TEST_NAME,
default bench_board_scale, created and dropped).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "storyboard.settings")
    os.environ.setdefault("PG_TEST_NAME", "bench_board_scale")
    os.environ.setdefault("SQLITE_TEST_NAME",
                          str(Path(tempfile.gettempdir()) / f"bench-board-{os.getpid()}.sqlite3"))
    import django

    django.setup()


def _measure(run: Callable[[], object], repeat: int) -> tuple[int, float, object]:
    """(queries of one run, median ms over `repeat` runs, the last run's result)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times, result, queries = [], None, 0
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            result = run()
            times.append((time.perf_counter() - started) * 1000)
        queries = len(captured)
    return queries, statistics.median(times), result


def _naive_board(project) -> str:
    """The push every edit made before: the whole board, from the board's old context."""
    from django.template.loader import render_to_string

    from storyboard import realtime

    groups = project.board()
    shots = [s for _, group in groups for s in group]
    for shot in shots:
        shot.cached_estimate = shot.estimate()
    return render_to_string("storyboard/board.html#board", {
        "project": project, "groups": groups, "shot_count": len(shots), "oob": True,
        "membership": realtime.EDITORS, "scene_count": len(groups) - 1,
        "total_seconds": 0, "total_micros": 0, "left_micros": 0})


def _one_size(shots: int, repeat: int) -> dict:
    from django.db import transaction
    from django.test import Client
    from django.urls import reverse

    from accounts.models import Role
    from storyboard import realtime
    from storyboard.models import Project
    from tests.factories import TeamFactory, UserFactory, build_board

    team = TeamFactory()
    user = UserFactory()
    team.add_member(user, Role.EDITOR)
    project = Project.objects.create(team=team, name=f"Board of {shots}")
    board = build_board(project, shots=shots)
    client = Client()
    client.force_login(user)
    url = reverse("sb:board", args=[project.pk])
    client.get(url)  # templates compiled, caches warm

    sent: list[str] = []
    realtime._send = lambda group, message: sent.append(message["html"])

    def push_one_edit() -> list[str]:
        sent.clear()
        # on_commit runs at once outside a transaction: render and hand over, as after a save.
        realtime.shot_saved(board[shots // 2])
        return list(sent)

    get_q, get_ms, response = _measure(lambda: client.get(url), repeat)
    push_q, push_ms, messages = _measure(push_one_edit, repeat)
    naive_q, naive_ms, naive_html = _measure(lambda: _naive_board(project), repeat)
    assert not transaction.get_connection().in_atomic_block
    return {"shots": shots, "get_q": get_q, "get_ms": get_ms,
            "get_kib": len(response.content) / 1024,
            "push_q": push_q, "push_ms": push_ms,
            "push_kib": max(len(m.encode()) for m in messages) / 1024,
            "naive_q": naive_q, "naive_ms": naive_ms, "naive_kib": len(naive_html.encode()) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,300")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    _setup()
    from django.conf import settings
    from django.db import connection
    from django.test.utils import setup_test_environment

    setup_test_environment()
    settings.ALLOWED_HOSTS = ["*"]
    name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        rows = [_one_size(int(n), args.repeat) for n in args.sizes.split(",")]
    finally:
        connection.creation.destroy_test_db(name, verbosity=0)

    print(f"database: {connection.vendor}; median of {args.repeat} runs\n")
    print("| shots | board GET queries | GET ms | GET KiB | push queries | push render ms "
          "| push KiB | naive push queries | naive ms | naive KiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['shots']} | {r['get_q']} | {r['get_ms']:.1f} | {r['get_kib']:.0f} "
              f"| {r['push_q']} | {r['push_ms']:.1f} | {r['push_kib']:.1f} "
              f"| {r['naive_q']} | {r['naive_ms']:.1f} | {r['naive_kib']:.0f} |")
    first, last = rows[0], rows[-1]
    print(f"\n{last['shots']}/{first['shots']} shots: board GET queries "
          f"{last['get_q'] / first['get_q']:.2f}×, time {last['get_ms'] / first['get_ms']:.2f}×; "
          f"push queries {last['push_q'] / first['push_q']:.2f}×, "
          f"time {last['push_ms'] / first['push_ms']:.2f}×, "
          f"bytes {last['push_kib'] / first['push_kib']:.2f}× "
          f"(naive: {last['naive_q'] / first['naive_q']:.1f}× queries, "
          f"{last['naive_ms'] / first['naive_ms']:.1f}× time, "
          f"{last['naive_kib'] / first['naive_kib']:.1f}× bytes)")


if __name__ == "__main__":
    main()
