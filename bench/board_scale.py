"""The board at 10, 100 and 300 shots: the page, and what one edit pushes.

For each size it builds a board the way a team fills one (scenes every ten shots, start frames,
references with videos among them, chains, two finished takes per shot, one on the board) and
measures, with the database's query log:

- board GET: queries, server time (test client, whole request), bytes;
- one shot edit's push, as the app does it now: the card and the summary line, rendered once
  per audience (editors, viewers), against the naive push it replaced: the whole board
  re-rendered (`storyboard/board.html#board`) from the context the board used to build
  (no prefetching, so every card asks for its takes, its picture and its references).

Run: .venv/bin/python -m bench.board_scale [--sizes 10,100,300] [--repeat 9]
SQLite by default (a throwaway file); PostgreSQL with DATABASE_URL (test database PG_TEST_NAME,
default bench_board_scale, created and dropped).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "storyboard.settings")
    os.environ.setdefault("PG_TEST_NAME", "bench_board_scale")
    os.environ.setdefault("SQLITE_TEST_NAME",
                          str(Path(tempfile.gettempdir()) / f"bench-board-{os.getpid()}.sqlite3"))
    import django

    django.setup()


@contextlib.contextmanager
def throwaway_database() -> Iterator[None]:
    """Django's test environment on a database made for this run and dropped after it (the
    benches share this with the test suite's settings: PG_TEST_NAME, SQLITE_TEST_NAME)."""
    from django.conf import settings
    from django.db import connection
    from django.test.utils import setup_test_environment

    setup_test_environment()
    settings.ALLOWED_HOSTS = ["*"]
    name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        yield
    finally:
        connection.creation.destroy_test_db(name, verbosity=0)


def _measure(run: Callable[[], object]) -> tuple[int, float, object]:
    """(queries, ms, result) of one run."""
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    # The query log holds 9 000 entries; a full one would count nothing.
    reset_queries()
    with CaptureQueriesContext(connection) as captured:
        started = time.perf_counter()
        result = run()
        elapsed = (time.perf_counter() - started) * 1000
    return len(captured), elapsed, result


def _naive_board(project) -> str:
    """The push every edit made before: the whole board, from the board's old context."""
    from django.template.loader import render_to_string

    from storyboard import realtime

    # Every card whole (the naive board had no placeholders).
    groups = [(scene, group, []) for scene, group in project.board()]
    shots = [s for _, group, _ in groups for s in group]
    for shot in shots:
        shot.cached_estimate = shot.estimate()
    return render_to_string("storyboard/board.html#board", {
        "project": project, "groups": groups, "shot_count": len(shots), "oob": True,
        "membership": realtime.EDITORS, "scene_count": len(groups) - 1,
        "total_seconds": 0, "total_micros": 0, "left_micros": 0})


def _one_size(shots: int) -> dict[str, Callable[[], object]]:
    """A board of `shots` shots and the three things measured on it."""
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

    def push_one_edit() -> list[str]:
        sent: list[str] = []
        realtime._send = lambda group, message: sent.append(message["html"])
        # on_commit runs at once outside a transaction: render and hand over, as after a save.
        realtime.shot_saved(board[shots // 2])
        return sent

    return {"get": lambda: client.get(url), "push": push_one_edit,
            "naive": lambda: _naive_board(project)}


def _rounds(sizes: list[int], repeat: int) -> list[dict]:
    """Every size measured once per round, round after round, so a burst of load from other
    work on a shared machine lands on all sizes alike; then the median and the best of each."""
    from django.db import transaction

    boards = {n: _one_size(n) for n in sizes}
    runs: dict[tuple[int, str], list[tuple[int, float, object]]] = {}
    for _ in range(repeat):
        for n, board in boards.items():
            for what, run in board.items():
                runs.setdefault((n, what), []).append(_measure(run))
    assert not transaction.get_connection().in_atomic_block
    rows = []
    for n in sizes:
        row: dict = {"shots": n}
        for what in ("get", "push", "naive"):
            measured = runs[(n, what)]
            row[f"{what}_q"] = measured[-1][0]
            row[f"{what}_ms"] = statistics.median(m[1] for m in measured)
            row[f"{what}_best"] = min(m[1] for m in measured)
            row[f"{what}_result"] = measured[-1][2]
        row["get_kib"] = len(row.pop("get_result").content) / 1024
        row["push_kib"] = max(len(m.encode()) for m in row.pop("push_result")) / 1024
        row["naive_kib"] = len(row.pop("naive_result").encode()) / 1024
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,300")
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    _setup()
    from django.db import connection

    with throwaway_database():
        rows = _rounds([int(n) for n in args.sizes.split(",")], args.repeat)

    print(f"database: {connection.vendor}; median (best) of {args.repeat} interleaved rounds\n")
    print("| shots | board GET queries | GET ms | GET KiB | push queries | push render ms "
          "| push KiB | naive push queries | naive ms | naive KiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['shots']} | {r['get_q']} | {r['get_ms']:.1f} ({r['get_best']:.1f}) "
              f"| {r['get_kib']:.0f} "
              f"| {r['push_q']} | {r['push_ms']:.1f} | {r['push_kib']:.1f} "
              f"| {r['naive_q']} | {r['naive_ms']:.1f} | {r['naive_kib']:.0f} |")
    first, last = rows[0], rows[-1]
    print(f"\n{last['shots']}/{first['shots']} shots: board GET queries "
          f"{last['get_q'] / first['get_q']:.2f}×, time {last['get_ms'] / first['get_ms']:.2f}× "
          f"(best {last['get_best'] / first['get_best']:.2f}×); "
          f"push queries {last['push_q'] / first['push_q']:.2f}×, "
          f"time {last['push_ms'] / first['push_ms']:.2f}×, "
          f"bytes {last['push_kib'] / first['push_kib']:.2f}× "
          f"(naive: {last['naive_q'] / first['naive_q']:.1f}× queries, "
          f"{last['naive_ms'] / first['naive_ms']:.1f}× time, "
          f"{last['naive_kib'] / first['naive_kib']:.1f}× bytes)")


if __name__ == "__main__":
    main()
