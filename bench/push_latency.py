"""Push latency: a take changes state in the worker → the browser's DOM shows it.

Runs the app as the README does (Daphne with the embedded worker, SQLite, in-memory channel
layer) in a subprocess, drives Chromium with Playwright, generates takes with the offline
renderer and compares, for the moment a take finishes:

- push: the websocket fragment swapped in by htmx (what the product does);
- polling: the naive alternative, the same editor fetched every 2 s (htmx `every 2s`).

Run: .venv/bin/python -m bench.push_latency [--takes 15]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
POLL_SECONDS = 2.0

# Installed on the page: when each take's badge first says "Done", by push and by polling.
WATCH_JS = """
(pollUrl) => {
  window.seen = {push: {}, poll: {}};
  const note = (kind, root) => root.querySelectorAll('.take').forEach(t => {
    const badge = t.querySelector('.badge');
    if (badge && badge.textContent.trim() === 'Done' && !(t.id in window.seen[kind]))
      window.seen[kind][t.id] = Date.now();
  });
  new MutationObserver(() => note('push', document)).observe(
    document.getElementById('editor'), {subtree: true, childList: true, characterData: true});
  setInterval(async () => {
    const html = await (await fetch(pollUrl, {headers: {'HX-Request': 'true'}})).text();
    const box = document.createElement('div'); box.innerHTML = html; note('poll', box);
  }, POLL_MS);
}
""".replace("POLL_MS", str(int(POLL_SECONDS * 1000)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(var: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(VAR_DIR=str(var), EMBEDDED_WORKER="1", LOCAL_QUEUE_DELAY="0",
               DJANGO_SETTINGS_MODULE="storyboard.settings")
    return env


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--takes", type=int, default=15)
    args = parser.parse_args()
    var = Path(tempfile.mkdtemp(prefix="bench-push-"))
    env = _env(var)
    python = sys.executable
    subprocess.run([python, "manage.py", "demo", "--no-serve"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    port = _free_port()
    server = subprocess.Popen([python, "manage.py", "runserver", f"127.0.0.1:{port}",
                               "--noreload"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        os.environ.update(env)
        # Playwright's sync API keeps an event loop in this thread; the ORM reads here are
        # plain blocking reads of the bench's own database.
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
        import django

        django.setup()
        push, poll = _measure(port, args.takes)
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(var, ignore_errors=True)
    _report(push, poll)


def _measure(port: int, takes: int) -> tuple[list[float], list[float]]:
    from playwright.sync_api import sync_playwright

    from storyboard.models import Generation, Shot

    shot = Shot.objects.order_by("position").first()
    # The smallest real take (Seedance 1.0 lite, 480p, 2 s), so the bench measures the push.
    Shot.objects.filter(pk=shot.pk).update(
        mode="text", endpoint="fal-ai/bytedance/seedance/v1/lite/text-to-video",
        resolution="480p", duration="2", start_frame=None)
    base = f"http://127.0.0.1:{port}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page()
        page.goto(f"{base}/accounts/login/")
        page.fill("#id_username", "emma")
        page.fill("#id_password", "storyboard-demo")
        page.click("button.primary")
        page.goto(f"{base}/projects/{shot.project_id}/")
        page.wait_for_selector("#live-state[data-state=live]")
        page.locator(f"#shot-{shot.pk} .shot-actions a").click()
        page.wait_for_selector("#generate")
        page.evaluate(WATCH_JS, f"{base}/shots/{shot.pk}/")
        for _ in range(takes):
            before = Generation.objects.count()
            page.locator("#generate").click()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                take = Generation.objects.order_by("-pk").first()
                if Generation.objects.count() > before and take.is_terminal:
                    break
                time.sleep(0.05)
            # Let the 2 s poller see it too before the next take starts.
            page.wait_for_timeout(int(POLL_SECONDS * 1000) + 500)
        seen = page.evaluate("window.seen")
        browser.close()
    push, poll = [], []
    for take in Generation.objects.filter(state=Generation.State.COMPLETED):
        done = take.finished_at.timestamp() * 1000
        key = f"take-{take.uid}"
        if key in seen["push"]:
            push.append((seen["push"][key] - done) / 1000)
        if key in seen["poll"]:
            poll.append((seen["poll"][key] - done) / 1000)
    return push, poll


def _report(push: list[float], poll: list[float]) -> None:
    print(f"Push latency, worker state change → DOM ({datetime.now():%Y-%m-%d %H:%M})")
    print(f"{'method':<22}{'n':>4}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}")
    for name, values in (("websocket push", push), (f"htmx poll every {POLL_SECONDS:g} s", poll)):
        if not values:
            print(f"{name:<22}{0:>4}   (no samples)")
            continue
        print(f"{name:<22}{len(values):>4}{_percentile(values, .5) * 1000:>10.0f}"
              f"{_percentile(values, .95) * 1000:>10.0f}{max(values) * 1000:>10.0f}")
    if push and poll:
        print(f"polling / push, p50: {statistics.median(poll) / statistics.median(push):.1f}×")


if __name__ == "__main__":
    main()
