"""The production layout, run for real (issue 14): two Daphne servers and two `manage.py worker`
processes on one PostgreSQL database, Redis and an S3 bucket (moto), driven by Chromium and
the JSON API over HTTP.

Everything is a real process started here, from the README's "Production" commands: a fresh
PostgreSQL database of its own (created and dropped here), `migrate` and `collectstatic` (the
release step), the Procfile's web command twice on two ports and its worker command twice.
This process never touches the studio's database through the ORM: it seeds it with one
`manage.py shell` run, then reads it with plain SQL, as an outsider would.

PostgreSQL only (heavy): several workers really race there. Module-scoped, so the processes
start once for the four scenarios; CI's budget for the module is a few minutes.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import IN_CI
from tests.s3server import S3Server, free_port
from tests.test_browser_board import CHROMIUM, CHROMIUM_ARGS, _require_chromium

pytestmark = [pytest.mark.heavy, pytest.mark.browser]

ROOT = Path(__file__).resolve().parent.parent
HOST = "localhost"
# The smallest real take: Seedance 1.0 lite at 480p for 2 s without audio (as tests/test_ops.py).
QUICK_SHOT = {"mode": "text", "endpoint": "fal-ai/bytedance/seedance/v1/lite/text-to-video",
              "resolution": "480p", "aspect_ratio": "16:9", "duration": "2",
              "generate_audio": False}
# Slow enough that a worker can be caught in the middle of it.
SLOW_SHOT = {**QUICK_SHOT, "resolution": "720p", "duration": "5"}
TERMINAL = ("completed", "failed", "canceled")
# The edit → other server's browser goal (issue 14). Asserted only when STUDIO_STRICT=1 (a quiet
# machine: p95 65–93 ms there); otherwise the test asserts LOOSE_P95_S, a margin for a machine
# shared with other work (p95 ~290 ms at load average 8 before the edit path was trimmed),
# and prints the real numbers.
GOAL_P95_S = 0.150
LOOSE_P95_S = 0.5
EDITS = 20
# The hundred takes go to this many shots, as a board's worth of shots would get them (every
# push about a take carries its shot's take list, so one shot with 100 takes is another test).
BATCH_SHOTS = 20
# storyboard.generation.STUCK_AFTER, for the report.
STUCK_AFTER_S = 120

SEED = """
import json
from django.test import Client
from accounts.models import Role
from storyboard.models import ApiToken, Budget
from tests.factories import ProjectFactory, ShotFactory, TeamFactory, UserFactory

spec = json.loads(SPEC)
team = TeamFactory(name="Studio")
Budget.objects.create(team=team, limit_micros=10_000_000_000)
people = {}
for name in ("emma", "rita"):
    people[name] = UserFactory(username=name, first_name=name.title())
    team.add_member(people[name], Role.EDITOR)
project = ProjectFactory(team=team, name="Lighthouse")
shots = {kind: ShotFactory(project=project, title=kind.title(), position=i,
                           prompt="Slow push in on the lighthouse.", **fields)
         for i, (kind, fields) in enumerate(spec.items())}

def session(user):
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value

print("SEEDED " + json.dumps({
    "team": team.pk, "project": project.pk, "budget": team.budget.pk,
    "shots": {kind: shot.pk for kind, shot in shots.items()},
    "sessions": {name: session(user) for name, user in people.items()},
    "tokens": {name: ApiToken.issue(user=user, team=team, name="studio")[1]
               for name, user in people.items()},
}))
"""


def _pg_admin_url(database: str) -> str:
    from django.db import connection

    db = connection.settings_dict
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:" \
           f"{db.get('PORT') or 5432}/{database}"


@dataclass
class Studio:
    env: dict[str, str]
    logs: Path
    database_url: str
    s3: S3Server
    bucket: str
    servers: list[str] = field(default_factory=list)
    workers: list[subprocess.Popen] = field(default_factory=list)
    processes: list[subprocess.Popen] = field(default_factory=list)
    seed: dict = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)

    # Processes

    def spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        # A session of its own: teardown ends the whole group (Daphne's or a worker's threads
        # and anything they start), never a process by name.
        log = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.processes.append(process)
        self.names[process.pid] = name
        return process

    def run(self, *command: str, timeout: float = 180) -> str:
        done = subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)
        assert done.returncode == 0, f"manage.py {command[0]} failed:\n{done.stderr[-3000:]}"
        return done.stdout

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self.processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(10)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time each long-running process has used so far (user + system, all threads)."""
        tick = os.sysconf("SC_CLK_TCK")
        used = {}
        for process in self.processes:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
                used[self.names[process.pid]] = (int(fields[11]) + int(fields[12])) / tick
        return used

    def tail(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}"
                         for log in sorted(self.logs.glob("*.log")))

    # The database, read as an outsider

    def sql(self, query: str, *params) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def takes(self) -> dict[int, dict]:
        rows = self.sql("SELECT id, state, logs, actual_micros, estimated_micros, video "
                        "FROM storyboard_generation")
        return {r[0]: {"state": r[1], "logs": r[2], "actual": r[3], "estimate": r[4],
                       "video": r[5]} for r in rows}

    def tasks_by_take(self) -> dict[int, list[dict]]:
        rows = self.sql("SELECT status, worker_ids, args_kwargs "
                        "FROM django_tasks_database_dbtaskresult "
                        "WHERE task_path = 'storyboard.tasks.run_generation'")
        found: dict[int, list[dict]] = {}
        for status, worker_ids, args_kwargs in rows:
            take_id = args_kwargs["kwargs"]["take_id"]
            found.setdefault(take_id, []).append({"status": status, "workers": worker_ids})
        return found

    def quiet(self, *, dead: str = "") -> bool:
        """No take job waiting or running, but those a `dead` worker (an id part) claimed:
        django-tasks-db leaves those RUNNING for ever."""
        return all(t["status"] in ("SUCCESSFUL", "FAILED")
                   or (dead and t["workers"] and dead in t["workers"][-1])
                   for found in self.tasks_by_take().values() for t in found)

    # The JSON API over HTTP

    def api(self, server: int, person: str, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.seed['tokens'][person]}"}
        return httpx.request(method, f"{self.servers[server]}/api/v1{path}", headers=headers,
                             timeout=30, **kwargs)

    def generate(self, server: int, person: str, shot: str) -> str:
        response = self.api(server, person, "POST",
                            f"/shots/{self.seed['shots'][shot]}/generate")
        assert response.status_code == 202, response.text
        return response.json()["uid"]


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def _get_json(url: str) -> tuple[int, dict]:
    try:
        response = httpx.get(url, timeout=5)
    except httpx.TransportError:
        return 0, {}
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, {}


def _wait_for(condition, *, timeout: float, what: str, studio: Studio | None = None,
              every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s\n"
                                 f"{studio.tail() if studio else ''}")
        for process in (studio.processes if studio else []):
            if process.poll() is not None and process not in _killed:
                raise AssertionError(f"{what}: a process exited\n{studio.tail()}")
        time.sleep(every)


# Workers this module kills on purpose (their exit is no failure).
_killed: list[subprocess.Popen] = []


def _redis_url() -> str:
    url = os.getenv("REDIS_URL", "")
    if not url:
        message = "the studio needs Redis: set REDIS_URL"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture(scope="module")
def studio() -> Iterator[Studio]:
    from django.db import connection

    # Module scope runs before the per-test PostgreSQL check in conftest; check here too.
    if connection.vendor != "postgresql":
        pytest.skip("heavy scenario: PostgreSQL only")
    _require_chromium()
    redis_url = _redis_url()
    name = f"test_studio_{os.getpid()}"
    admin = _pg_admin_url("postgres")
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    var = Path(tempfile.mkdtemp(prefix="studio-"))
    try:
        s3 = S3Server.start()
    except BaseException:
        _drop(admin, name, var)
        raise
    bucket = s3.new_bucket()
    ports = [free_port(), free_port()]
    env = {k: v for k, v in os.environ.items()
           if k not in ("DJANGO_ALLOW_ASYNC_UNSAFE", "PG_TEST_NAME", "SQLITE_TEST_NAME")}
    env.update(
        PRODUCTION="1", SECRET_KEY=secrets.token_urlsafe(60),
        ALLOWED_HOSTS=f"{HOST},127.0.0.1", SITE_URL=f"http://{HOST}:{ports[0]}",
        # Plain HTTP on localhost: no TLS proxy in front of the servers here.
        SECURE_SSL_REDIRECT="0", SECURE_HSTS_SECONDS="0",
        DATABASE_URL=_pg_admin_url(name), REDIS_URL=redis_url,
        CHANNEL_PREFIX=f"studio-{uuid.uuid4().hex[:8]}", VAR_DIR=str(var),
        EMBEDDED_WORKER="0", PYTHONPATH=str(ROOT),
        LOG_LEVEL=os.getenv("STUDIO_LOG_LEVEL", "WARNING"),
        WORKER_HEARTBEAT_EVERY="0.5", WORKER_RECONCILE_EVERY="1",
        # A hundred takes from two people in a minute is the point here.
        GENERATIONS_PER_MINUTE="1000", API_REQUESTS_PER_MINUTE="1000",
        **s3.env(bucket))
    studio = Studio(env=env, logs=var, database_url=_pg_admin_url(name), s3=s3, bucket=bucket)
    try:
        started = time.monotonic()
        # The Procfile's release step. collectstatic (≈20 s on 2 cores: WhiteNoise compresses
        # every file twice) runs beside the rest; only the web servers need its output.
        collect = studio.spawn("collectstatic", [sys.executable, "manage.py", "collectstatic",
                                                 "--noinput"])
        studio.run("migrate", "--noinput")
        shots = {"quick": QUICK_SHOT, "slow": SLOW_SHOT,
                 **{f"batch{n}": QUICK_SHOT for n in range(BATCH_SHOTS)}}
        studio.seed = json.loads(studio.run(
            "shell", "-c", SEED.replace("SPEC", repr(json.dumps(shots)))
        ).split("SEEDED ", 1)[1])
        for n in range(2):
            studio.workers.append(studio.spawn(f"worker{n}", [
                sys.executable, "manage.py", "worker", "--concurrency", "2",
                "--interval", "0.05"]))
        assert collect.wait(180) == 0, studio.tail()
        studio.processes.remove(collect)
        for n, port in enumerate(ports):
            # The Procfile's web command, on the loopback address.
            studio.spawn(f"web{n}", [sys.executable, "-m", "daphne", "--bind", "127.0.0.1",
                                     "--port", str(port), "--proxy-headers", "--access-log",
                                     "/dev/null", "storyboard.asgi:application"])
            studio.servers.append(f"http://{HOST}:{port}")
        for server in studio.servers:
            _wait_for(lambda s=server: _get_json(f"{s}/readyz")[0] == 200, timeout=60,
                      what="readyz", studio=studio)

        def both_workers_beat() -> bool:
            status, _ = _get_json(f"{studio.servers[0]}/healthz")
            pids = {row[0].rsplit("-", 1)[-1] for row in studio.sql(
                "SELECT worker FROM storyboard_workerbeat")}
            return status == 200 and pids >= {str(w.pid) for w in studio.workers}

        _wait_for(both_workers_beat, timeout=60, what="healthz with both workers",
                  studio=studio)
        print(f"\nstudio up in {time.monotonic() - started:.1f} s")
        yield studio
    finally:
        studio.stop_all()
        s3.stop()
        _drop(admin, name, var)


def _drop(admin: str, name: str, var: Path) -> None:
    import psycopg

    if os.getenv("STUDIO_KEEP") != "1":  # STUDIO_KEEP=1 keeps the processes' logs to read
        shutil.rmtree(var, ignore_errors=True)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def browser(studio):
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()
    playwright.stop()


# Records, in the page, when a card's title or a take's status changes: on a shared clock
# (timeOrigin + now is wall time in ms, with sub-millisecond precision, for both pages of the
# one browser process).
WATCH = """
() => {
  window.__titles = {};
  window.__states = [];
  const board = document.body;
  new MutationObserver(() => {
    const at = performance.timeOrigin + performance.now();
    for (const title of document.querySelectorAll("#board .shot-title")) {
      const text = title.textContent.trim();
      if (!(text in window.__titles)) window.__titles[text] = at;
    }
    for (const badge of document.querySelectorAll("#board .shot-status .badge")) {
      const state = [...badge.classList].find(c => c.startsWith("badge-take-"));
      const last = window.__states[window.__states.length - 1];
      const entry = badge.closest(".shot-status").id + " " + state;
      if (state && last !== entry) window.__states.push(entry);
    }
  }).observe(board, {subtree: true, childList: true, characterData: true});
}
"""

# On the editor's page: when the save was clicked, and when its POST's answer arrived.
STAMP_SAVE = """
() => {
  window.__saves = [];
  document.addEventListener("click", (event) => {
    if (event.target.closest("button") && event.target.closest("button").textContent
        .includes("Save shot")) {
      window.__saves.push({clicked: performance.timeOrigin + performance.now()});
    }
  }, true);
  document.addEventListener("htmx:beforeSend", (event) => {
    const last = window.__saves[window.__saves.length - 1];
    if (last && !last.sent && event.detail.requestConfig.verb === "post") {
      last.sent = performance.timeOrigin + performance.now();
    }
  });
  document.addEventListener("htmx:afterRequest", (event) => {
    const last = window.__saves[window.__saves.length - 1];
    if (last && !last.answered && event.detail.requestConfig.verb === "post") {
      last.answered = performance.timeOrigin + performance.now();
    }
  });
}
"""


def _open_board(studio: Studio, browser, server: int, person: str):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.add_cookies([{"name": "sessionid", "value": studio.seed["sessions"][person],
                          "domain": HOST, "path": "/", "secure": True, "httpOnly": True}])
    page = context.new_page()
    page.goto(f"{studio.servers[server]}/projects/{studio.seed['project']}/")
    expect(page.locator("#live-state")).to_have_text("live")
    page.evaluate(WATCH)
    return page


@pytest.fixture
def pages(studio, browser):
    # Per test: two boards left open through the hundred takes below would take half the
    # machine's CPU for themselves (headless Chromium redrawing ~12 pushes a second each).
    a = _open_board(studio, browser, 0, "emma")
    b = _open_board(studio, browser, 1, "rita")
    yield a, b
    a.context.close()
    b.context.close()


def _poll(page, predicate: str, arg, *, timeout: float = 10) -> None:
    # Not wait_for_function: it evaluates its predicate with eval(), which the CSP forbids.
    # The times measured are stamped in the page, so this poll's pace does not change them.
    deadline = time.monotonic() + timeout
    while not page.evaluate(predicate, arg):
        assert time.monotonic() < deadline, f"{predicate} ({arg!r}) not within {timeout:g} s"
        page.wait_for_timeout(10)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def test_an_edit_on_server_a_appears_in_a_browser_on_server_b(studio, pages):
    from playwright.sync_api import expect

    a, b = pages
    shot = studio.seed["shots"]["quick"]
    a.locator(f"#shot-{shot} .shot-actions a", has_text="Open").click()
    expect(a.locator("#id_title")).to_be_visible()
    a.evaluate(STAMP_SAVE)
    totals, posts, sends = [], [], []
    for n in range(EDITS):
        title = f"Keeper's light {n} {uuid.uuid4().hex[:6]}"
        a.locator("#id_title").fill(title)
        a.get_by_role("button", name="Save shot").click()
        _poll(b, "title => title in window.__titles", title)
        _poll(a, "n => window.__saves.length === n + 1 && !!window.__saves[n].answered", n)
        seen = b.evaluate("title => window.__titles[title]", title)
        save = a.evaluate(f"window.__saves[{n}]")
        totals.append(seen - save["clicked"])
        posts.append(save["answered"] - save["clicked"])
        sends.append(save["sent"] - save["clicked"])
    p50, p95 = _percentile(totals, 0.5), _percentile(totals, 0.95)
    # The edit reaches B before A has its own answer: the push leaves at commit, and A's
    # answer (the re-rendered editor) is rendered after it.
    print(f"\nedit on A → DOM on B over {EDITS} edits: p50 {p50:.0f} ms, p95 {p95:.0f} ms, "
          f"max {max(totals):.0f} ms; the click → A's POST sent p50 "
          f"{_percentile(sends, 0.5):.0f} ms; A's answer after p50 "
          f"{_percentile(posts, 0.5):.0f} ms, p95 {_percentile(posts, 0.95):.0f} ms")
    limit = GOAL_P95_S if os.getenv("STUDIO_STRICT") == "1" else LOOSE_P95_S
    assert p95 < limit * 1000


RUNNING = {"badge-take-submitting", "badge-take-in_progress", "badge-take-downloading"}
WAITING_STATES = {"badge-take-held", "badge-take-pending"}


def test_a_take_started_on_server_b_reaches_both_browsers(studio, pages):
    b = pages[1]
    shot = studio.seed["shots"]["quick"]
    for page in pages:
        page.evaluate("() => { window.__states = []; }")
    studio.generate(1, "rita", "quick")
    done = f"shot-status-{shot} badge-take-completed"
    for page in pages:
        _poll(page, "done => window.__states.includes(done)", done, timeout=30)
    seen = [[entry.split()[1] for entry in page.evaluate("window.__states")
             if entry.startswith(f"shot-status-{shot} ")] for page in pages]
    print(f"\nstatus seen on A: {seen[0]}\nstatus seen on B: {seen[1]}")
    for states in seen:
        # Live, in order: waiting, then running on a worker, then done — never reloaded.
        assert states[-1] == "badge-take-completed"
        assert states.index("badge-take-completed") > min(
            states.index(s) for s in RUNNING if s in states)
        assert RUNNING & set(states)
    # The video comes from the bucket, signed, never through Daphne.
    [(uid,)] = studio.sql("SELECT uid FROM storyboard_generation WHERE shot_id = %s", shot)
    b.locator(f"#shot-{shot} .shot-actions a", has_text="Open").click()
    video = b.locator("#editor video").first
    video.wait_for()
    src = video.get_attribute("src")
    assert src == f"/takes/{uid}/video/"
    answer = b.context.request.get(f"{studio.servers[1]}{src}", max_redirects=0)
    location = answer.headers.get("location", "")
    assert answer.status == 302, answer.status
    assert location.startswith(f"{studio.s3.endpoint}/{studio.bucket}/")
    assert "X-Amz-Signature=" in location
    assert "X-Amz-Expires=300" in location
    assert httpx.get(location, timeout=10).content[4:8] == b"ftyp"


def _ledger_balances(studio: Studio) -> dict:
    """The team's books against its takes: every hold resolved once, charges = costs."""
    budget = studio.seed["budget"]
    [(held, spent, overrun)] = studio.sql(
        "SELECT held_micros, spent_micros, overrun_micros FROM storyboard_budget WHERE id = %s",
        budget)
    rows = studio.sql("SELECT take_id, kind, amount_micros FROM storyboard_ledgerentry "
                      "WHERE budget_id = %s AND take_id IS NOT NULL", budget)
    kinds: dict[int, Counter] = {}
    amounts: dict[tuple[int, str], int] = {}
    for take_id, kind, amount in rows:
        kinds.setdefault(take_id, Counter())[kind] += 1
        amounts[take_id, kind] = amounts.get((take_id, kind), 0) + amount
    takes = studio.takes()
    assert held == 0
    for take_id, take in takes.items():
        assert take["state"] == "completed", (take_id, take["state"])
        counted = kinds[take_id]
        assert counted["hold"] == 1
        assert max(counted["capture"], counted["release"], counted["overrun"]) <= 1
        assert counted["extra"] == 0
        hold = amounts[take_id, "hold"]
        capture = amounts.get((take_id, "capture"), 0)
        assert capture + amounts.get((take_id, "release"), 0) == hold
        assert capture + amounts.get((take_id, "overrun"), 0) == take["actual"]
    charges = sum(a for (_, kind), a in amounts.items() if kind == "capture")
    assert spent == charges
    assert spent + overrun == sum(take["actual"] for take in takes.values())
    return {"takes": len(takes), "spent": spent}


def _renders(take: dict) -> int:
    # The offline renderer's "submit": each attempt at a take writes this line once.
    return sum(1 for line in take["logs"] if line.startswith("Rendering an offline preview"))


def test_a_hundred_takes_run_over_both_workers_each_once(studio):
    before = set(studio.takes())
    cpu_before = studio.cpu_seconds()
    started = time.monotonic()
    # As a pipeline would send them: a few at a time, alternately to each server.
    with ThreadPoolExecutor(4) as pool:
        uids = list(pool.map(lambda n: studio.generate(n % 2, ("emma", "rita")[n % 2],
                                                       f"batch{n % BATCH_SHOTS}"), range(100)))
    asked = time.monotonic() - started
    assert len(set(uids)) == 100

    def all_done() -> bool:
        return studio.quiet() and sum(1 for take in studio.takes().values()
                                      if take["state"] in TERMINAL) == len(before) + 100

    # Generous: about 50 s on a quiet 2-core machine, several times that under CI's load.
    _wait_for(all_done, timeout=600, what="100 takes finished", studio=studio, every=0.2)
    took = time.monotonic() - started
    takes = {pk: take for pk, take in studio.takes().items() if pk not in before}
    assert all(take["state"] == "completed" for take in takes.values())
    # Each take rendered once, by one job that one worker ran once (a take that waited in
    # the queue past STUCK_AFTER is queued again by the reconciler, and says so; that second
    # job finds it started and does nothing).
    assert all(_renders(take) == 1 for take in takes.values())
    tasks = studio.tasks_by_take()
    for pk, take in takes.items():
        assert [t["status"] for t in tasks[pk]] == ["SUCCESSFUL"] * len(tasks[pk])
        assert all(len(t["workers"]) == 1 for t in tasks[pk])
        assert len(tasks[pk]) == 1 or "Still waiting for a worker; queued again." in take["logs"]
    requeued = sum(len(tasks[pk]) - 1 for pk in takes)
    by_process = Counter(t["workers"][0].rsplit("-", 2)[1] for pk in takes for t in tasks[pk])
    print(f"\n100 takes: asked in {asked:.1f} s, all done after {took:.1f} s; "
          f"jobs per worker process: {dict(by_process)}; queued again after "
          f"{STUCK_AFTER_S} s waiting: {requeued}; CPU s used meanwhile: "
          f"{ {k: round(v - cpu_before.get(k, 0), 1) for k, v in studio.cpu_seconds().items()} }")
    assert set(by_process) == {str(worker.pid) for worker in studio.workers}
    # Their files are in the bucket, none on a server's disk.
    keys = studio.s3.keys(studio.bucket)
    assert {take["video"] for take in takes.values()} <= keys
    _ledger_balances(studio)


def test_the_studio_rides_out_the_database_dropping_every_connection(studio):
    # What a PostgreSQL restart or failover does to the pools of both servers and workers.
    shot = studio.seed["shots"]["quick"]
    for server in (0, 1):
        for _ in range(3):  # every pool holds open connections now
            assert studio.api(server, "emma", "GET", f"/shots/{shot}").status_code == 200
    dropped = studio.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    assert len(dropped) >= 4
    statuses = Counter(studio.api(server, person, "GET", f"/shots/{shot}").status_code
                       for server in (0, 1) for person in ("emma", "rita") for _ in range(10))
    assert statuses == {200: 40}
    assert all(_get_json(f"{url}/readyz")[0] == 200 for url in studio.servers)
    # The workers' loops carry on: takes started now are each rendered once.
    before = set(studio.takes())
    for n in range(4):
        studio.generate(n % 2, ("emma", "rita")[n % 2], "quick")
    _wait_for(lambda: studio.quiet() and all(
        take["state"] in TERMINAL for pk, take in studio.takes().items() if pk not in before),
              timeout=120, what="the takes after the drop", studio=studio, every=0.1)
    takes = {pk: take for pk, take in studio.takes().items() if pk not in before}
    assert [take["state"] for take in takes.values()] == ["completed"] * 4
    assert all(_renders(take) == 1 for take in takes.values())
    assert all(worker.poll() is None for worker in studio.workers)
    _ledger_balances(studio)


def test_a_worker_killed_mid_job_loses_nothing(studio):
    victim, survivor = studio.workers
    before = set(studio.takes())
    for n in range(6):
        studio.generate(n % 2, ("emma", "rita")[n % 2], "slow")
    victim_id = f"-{victim.pid}-"

    def victim_mid_render() -> list[int]:
        rows = studio.sql(
            "SELECT g.id FROM storyboard_generation g JOIN django_tasks_database_dbtaskresult t "
            "ON (t.args_kwargs -> 'kwargs' ->> 'take_id')::int = g.id "
            "WHERE t.status = 'RUNNING' AND g.state = 'in_progress' AND g.progress < 0.5 "
            "AND t.worker_ids ->> -1 LIKE %s", f"%{victim_id}%")
        return [row[0] for row in rows]

    _wait_for(lambda: victim_mid_render(), timeout=60, what="the victim claims a take",
              studio=studio, every=0.02)
    _killed.append(victim)
    os.kill(victim.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    victim.wait(10)
    cut = victim_mid_render()
    assert cut, "the victim's take finished before the kill"
    # Cut short, with its money still held, and nothing charged or released.
    held = studio.sql("SELECT take_id, kind FROM storyboard_ledgerentry WHERE take_id = ANY(%s)",
                      cut)
    assert sorted(held) == sorted((pk, "hold") for pk in cut)
    assert studio.sql("SELECT held_micros > 0 FROM storyboard_budget")[0][0]
    # What the reconciler sees after STUCK_AFTER (2 minutes) untouched, without the wait.
    studio.sql("UPDATE storyboard_generation SET updated = now() - interval '10 minutes' "
               "WHERE id = ANY(%s)", cut)
    _wait_for(lambda: studio.quiet(dead=victim_id) and all(
        take["state"] in TERMINAL for pk, take in studio.takes().items() if pk not in before),
              timeout=300, what="every take finished after the kill", studio=studio, every=0.2)
    takes = {pk: take for pk, take in studio.takes().items() if pk not in before}
    assert len(takes) == 6
    assert all(take["state"] == "completed" for take in takes.values())
    for pk in cut:
        # Rendered again from the start (a local render costs nothing to redo), finished once.
        assert "The worker stopped; rendering again." in takes[pk]["logs"]
        assert _renders(takes[pk]) == 2
    assert all(_renders(take) == 1 for pk, take in takes.items() if pk not in cut)
    _ledger_balances(studio)
    # The survivor did the rest; it never ran a job twice.
    tasks = studio.tasks_by_take()
    for pk in cut:
        # The dead worker's job stays RUNNING (django-tasks-db has no lease to expire); the
        # reconciler's job for the take ran on the survivor, once.
        statuses = Counter((t["status"], victim_id in t["workers"][-1]) for t in tasks[pk])
        assert statuses == {("RUNNING", True): 1, ("SUCCESSFUL", False): 1}
    assert survivor.poll() is None
    print(f"\nkill -9 mid-render: {len(cut)} take(s) cut short, all 6 done "
          f"{time.monotonic() - killed_at:.1f} s after the kill")
