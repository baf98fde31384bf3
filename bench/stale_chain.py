"""A new chosen take at the top of a chain: the chain below goes stale, live.

On a 300-shot board (built like bench.board_scale's) with a chain of 2, 10 or 50 shots, each
continuing the one before with a chosen take that started from its upstream's, one
`chains.choose_take` at the top marks every shot below stale and pushes what changed: their
cards, the summary line and the stale panel of any shot page open on them, rendered once per
audience. It measures that whole step (queries, time including rendering, bytes pushed) against
the naive push it would otherwise take: the whole board re-rendered for every screen.

Run: .venv/bin/python -m bench.stale_chain [--chains 2,10,50] [--shots 300] [--repeat 5]
SQLite by default (a throwaway file); PostgreSQL with DATABASE_URL.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

from bench.board_scale import _naive_board, _setup, throwaway_database


def _one_chain(length: int, *, shots: int, repeat: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from accounts.models import Role
    from storyboard import chains, realtime
    from storyboard.models import Generation, Project, Shot
    from tests.factories import TeamFactory, UserFactory, build_board

    team = TeamFactory()
    user = UserFactory()
    team.add_member(user, Role.EDITOR)
    project = Project.objects.create(team=team, name=f"Chain of {length}")
    board = build_board(project, shots=shots)
    chain = board[100:100 + length]
    for above, below in itertools.pairwise(chain):
        below.continues_from = above
    Shot.objects.bulk_update(chain, ["continues_from"])
    chosen = [Generation.objects.get(pk=s.selected_take_id) for s in chain]
    for above, below in itertools.pairwise(chosen):
        below.upstream = above
    Generation.objects.bulk_update(chosen, ["upstream"])
    top = Shot.objects.get(pk=chain[0].pk)
    other = Generation.objects.filter(shot=top).exclude(pk=top.selected_take_id).get()
    takes = [other, chosen[0]]

    sent: list[str] = []
    realtime._send = lambda group, message, **kw: sent.append(message["html"])
    times, queries, pushed, marked = [], 0, 0, 0
    for run in range(repeat):
        # Each run starts from a fresh chain, and swaps the top's take the other way.
        Shot.objects.filter(project=project).update(stale_reason="", stale_since=None)
        # The second shot's take started from the top's take of now, which this run replaces.
        Generation.objects.filter(pk=chosen[1].pk).update(upstream=takes[(run + 1) % 2])
        sent.clear()
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            chains.choose_take(shot=top, take=takes[run % 2], user=user)
            times.append((time.perf_counter() - started) * 1000)
        queries = len(captured)
        pushed = sum(len(html.encode()) for html in sent)
        marked = Shot.objects.filter(project=project).exclude(stale_reason="").count()
    naive_times = []
    for _ in range(repeat):
        started = time.perf_counter()
        naive = _naive_board(project)
        naive_times.append((time.perf_counter() - started) * 1000)
    # The naive way sends the whole board to each audience (editors, viewers).
    naive_bytes = 2 * len(naive.encode())
    return {"length": length, "marked": marked, "queries": queries,
            "ms": statistics.median(times), "kib": pushed / 1024,
            "naive_ms": 2 * statistics.median(naive_times), "naive_kib": naive_bytes / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", default="2,10,50")
    parser.add_argument("--shots", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    _setup()
    from django.db import connection

    with throwaway_database():
        rows = [_one_chain(int(n), shots=args.shots, repeat=args.repeat)
                for n in args.chains.split(",")]

    print(f"database: {connection.vendor}; {args.shots}-shot board; median of {args.repeat} "
          "runs\n")
    print("| chain | marked stale | queries | mark + render ms | pushed KiB "
          "| naive (whole board ×2) ms | naive KiB | bytes ratio | time ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['length']} | {r['marked']} | {r['queries']} | {r['ms']:.1f} "
              f"| {r['kib']:.1f} | {r['naive_ms']:.1f} | {r['naive_kib']:.0f} "
              f"| {r['naive_kib'] / r['kib']:.0f}× | {r['naive_ms'] / r['ms']:.1f}× |")


if __name__ == "__main__":
    main()
