"""Budget hold latency under 50-way contention on PostgreSQL.

50 threads, released together by a barrier, each try to hold $1 against a $10 budget, round
after round. Compared with the naive way (lock the row with SELECT … FOR UPDATE, read, check in
Python, write) that the single conditional UPDATE replaces.

Run: .venv/bin/python -m bench.hold_latency [--rounds 40] [--threads 50]
(uses DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test, in a throwaway database)
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

THREADS = 50
AMOUNT = 1_000_000
LIMIT = 10_000_000


def _setup() -> None:
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
    os.environ.setdefault("PG_TEST_NAME", "bench_storyboard")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "storyboard.settings")
    import django

    django.setup()


def _naive_hold(budget_id: int, amount: int) -> bool:
    from django.db import transaction

    from storyboard.models import Budget, LedgerEntry

    with transaction.atomic():
        budget = Budget.objects.select_for_update().get(pk=budget_id)
        if budget.held_micros + budget.spent_micros + amount > budget.limit_micros:
            return False
        budget.held_micros += amount
        budget.save(update_fields=["held_micros"])
        LedgerEntry.objects.create(budget=budget, amount_micros=amount, kind="hold")
        return True


def _ours(budget_id: int, amount: int) -> bool:
    from storyboard.models import Budget, BudgetRefused

    try:
        Budget(pk=budget_id).hold(take=None, amount=amount, user=None)
        return True
    except BudgetRefused:
        return False


def _round(method, threads: int) -> tuple[list[float], int]:
    from django.db import connection

    from storyboard.models import Budget
    from tests.factories import TeamFactory

    budget = Budget.objects.create(team=TeamFactory(), limit_micros=LIMIT)
    barrier = threading.Barrier(threads)
    times: list[float] = []
    granted: list[bool] = []
    lock = threading.Lock()

    def one() -> None:
        # Connect first: the race (and the measurement) is about the hold, not the handshake.
        connection.ensure_connection()
        barrier.wait()
        started = time.perf_counter()
        ok = method(budget.pk, AMOUNT)
        elapsed = time.perf_counter() - started
        with lock:
            times.append((elapsed, ok))
            granted.append(ok)
        connection.close()

    workers = [threading.Thread(target=one) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    budget.refresh_from_db()
    assert budget.held_micros == sum(granted) * AMOUNT <= LIMIT
    return times, sum(granted)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--threads", type=int, default=THREADS)
    args = parser.parse_args()
    _setup()
    from django.db import connection

    name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        results = {}
        for label, method in (("conditional UPDATE (ours)", _ours),
                              ("SELECT FOR UPDATE (naive)", _naive_hold)):
            times, grants = [], []
            for _ in range(args.rounds):
                round_times, granted = _round(method, args.threads)
                times.extend(round_times)
                grants.append(granted)
            results[label] = (times, grants)
    finally:
        connection.creation.destroy_test_db(name, verbosity=0)
    print(f"Budget hold latency, {args.threads} threads × {args.rounds} rounds, "
          f"{connection.vendor}")
    print(f"{'method':<28}{'calls':<9}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}"
          f"{'granted/round':>15}")
    medians = {}
    for label, (times, grants) in results.items():
        for part, keep in (("all", None), ("granted", True), ("refused", False)):
            values = [t for t, ok in times if keep is None or ok == keep]
            print(f"{label if part == 'all' else '':<28}{part:<9}"
                  f"{_percentile(values, .5) * 1000:>9.1f}{_percentile(values, .95) * 1000:>9.1f}"
                  f"{max(values) * 1000:>9.1f}"
                  f"{statistics.mean(grants) if part == 'all' else '':>15}")
        medians[label] = statistics.median(t for t, _ in times)
    ours, naive = medians.values()
    print(f"naive / ours, p50 of all calls: {naive / ours:.2f}×  (the naive lock-read-write is "
          "only safe where SELECT FOR UPDATE locks; on SQLite it does not)")


if __name__ == "__main__":
    main()
