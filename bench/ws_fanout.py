"""Websocket fan-out: one shot edit → every open board socket has it.

Runs the app under Daphne in a subprocess (SQLite; the in-memory channel layer, or the Redis
layer with `--redis`), opens 50/200/500 real board websockets from this process (each signed in
as a viewer of its own), then saves a shot through the real HTTP endpoint, as the editor's
browser does, and times how long until each socket has the change. The edit goes through
`shot_edit`, so whatever that view pushes (a whole board today, one card once deltas land) is
what gets measured.

Reported per layer and size: connect time and failed connections, presence messages each socket
received while everyone arrived, the edit POST's own time, p50/p95/max from the POST until a
socket has the edit, sockets that missed it (nothing within `--deadline` s), bytes per push and
the server's RSS.

`--servers N` runs N Daphne processes on the Redis layer (the production layout, README
"Production"), spreads the sockets over them round-robin and POSTs the edit to the first: the
time then includes the hop through Redis to the other servers. Bytes per edit are everything the
sockets received for it (the card push and the fields push), per socket and in all.

Run: .venv/bin/python -m bench.ws_fanout [--sizes 50,200,500] [--edits 3] [--layers memory,redis]
     .venv/bin/python -m bench.ws_fanout --servers 2 --sizes 500 --layers redis
Redis: REDIS_URL (default redis://127.0.0.1:6379/9); keys are prefixed CHANNEL_PREFIX (default
`bench-fanout`).

`--idle 60` instead keeps one socket quiet for 60 s on each layer, then checks that the next
edit still reaches it (the Redis layer used to drop quiet sockets after 5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import html.parser
import logging
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
# At most this many handshakes in flight, as browsers opening a board over a minute would be.
CONNECT_CONCURRENCY = 50


# --- A minimal websocket client (RFC 6455): enough for text frames, pings and close. ---

class Closed(Exception):
    pass


class Socket:
    """One client websocket. The bench needs no library for this, and adds no dependency."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, path: str, cookie: str) -> Socket:
        reader, writer = await asyncio.open_connection(HOST, port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      f"Sec-WebSocket-Version: 13\r\nOrigin: http://{HOST}:{port}\r\n"
                      f"Cookie: {cookie}\r\n\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            writer.close()
            raise Closed(head.split(b"\r\n", 1)[0].decode())
        return cls(reader, writer)

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        # Clients must mask every frame.
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(header + mask + masked)

    async def receive(self) -> bytes:
        """The next text or binary message; answers pings; raises Closed on a close or EOF."""
        parts: list[bytes] = []
        while True:
            try:
                first, second = await self.reader.readexactly(2)
                length = second & 0x7F
                if length == 126:
                    (length,) = struct.unpack("!H", await self.reader.readexactly(2))
                elif length == 127:
                    (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
                payload = await self.reader.readexactly(length)
            except (asyncio.IncompleteReadError, ConnectionError) as error:
                raise Closed("connection lost without a close frame") from error
            opcode = first & 0x0F
            if opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                raise Closed(f"close frame {code}")
            if opcode == 0x9:
                self._send_frame(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            parts.append(payload)
            if first & 0x80:
                return b"".join(parts)

    def close(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            self._send_frame(0x8, struct.pack("!H", 1000))
        self.writer.close()


@dataclass
class Viewer:
    """One board socket and what it heard."""

    cookie: str
    socket: Socket | None = None
    failed: str = ""
    presence: int = 0
    received: int = 0
    seen: dict[bytes, tuple[float, int]] = field(default_factory=dict)
    watching: set[bytes] = field(default_factory=set)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def listen(self) -> None:
        assert self.socket is not None
        try:
            while True:
                message = await self.socket.receive()
                now = time.perf_counter()
                self.received += len(message)
                if b'id="presence"' in message:
                    self.presence += 1
                for marker in self.watching:
                    if marker in message and marker not in self.seen:
                        self.seen[marker] = (now, len(message))
                        self.arrived.set()
        except Closed as error:
            self.failed = self.failed or str(error)


# --- Data and server ---

def _env(var: Path, redis_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(VAR_DIR=str(var), EMBEDDED_WORKER="0", DJANGO_SETTINGS_MODULE="storyboard.settings",
               PYTHONPATH=str(ROOT))
    if redis_url:
        env.update(REDIS_URL=redis_url,
                   CHANNEL_PREFIX=os.getenv("CHANNEL_PREFIX", "bench-fanout"))
    return env


@dataclass
class Board:
    project_id: int
    shot_id: int
    editor_cookie: str
    viewer_cookies: list[str]


def _prepare(viewers: int) -> Board:
    """The demo team, `viewers` extra viewers, and a signed-in session for each."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from accounts.models import Role
    from storyboard.demo import load_demo
    from storyboard.models import Shot

    team, project, _ = load_demo()
    user_model = get_user_model()

    def cookie(user) -> str:
        client = Client()
        client.force_login(user)
        return f"sessionid={client.cookies['sessionid'].value}"

    cookies = []
    for i in range(viewers):
        user, created = user_model.objects.get_or_create(username=f"fan{i:03}",
                                                         defaults={"first_name": f"Fan {i}"})
        if created:
            user.set_unusable_password()
            user.save()
            team.add_member(user, Role.VIEWER)
        cookies.append(cookie(user))
    shot = Shot.objects.filter(project=project).order_by("position").first()
    return Board(project.pk, shot.pk, cookie(user_model.objects.get(username="emma")), cookies)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _start_server(env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "daphne", "-b", HOST, "-p", str(port),
                               "storyboard.asgi:application"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return server, port
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("the server did not start")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- The edit, through the real endpoint ---

class _FormFields(html.parser.HTMLParser):
    """The named fields of the form that posts to `action`, as a browser would send them."""

    def __init__(self, action: str) -> None:
        super().__init__()
        self.action = action
        self.inside = False
        self.fields: list[tuple[str, str]] = []
        self._select: str | None = None
        self._selected: str | None = None
        self._first_option: str | None = None
        self._textarea: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.inside = a.get("action") == self.action
        if not self.inside:
            return
        if tag == "input" and a.get("name"):
            kind = a.get("type", "text")
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            if kind not in ("submit", "button", "file"):
                self.fields.append((a["name"], a.get("value", "on" if kind == "checkbox" else "")))
        elif tag == "select" and a.get("name"):
            self._select, self._selected, self._first_option = a["name"], None, None
        elif tag == "option" and self._select:
            if self._first_option is None:
                self._first_option = a.get("value", "")
            if "selected" in a:
                self._selected = a.get("value", "")
        elif tag == "textarea" and a.get("name"):
            self._textarea, self._text = a["name"], []

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select" and self._select:
            value = self._selected if self._selected is not None else self._first_option
            self.fields.append((self._select, value or ""))
            self._select = None
        elif tag == "textarea" and self._textarea:
            self.fields.append((self._textarea, "".join(self._text).removeprefix("\n")))
            self._textarea = None


class Editor:
    """Emma's browser: fetches the shot editor and saves it with a new title."""

    def __init__(self, port: int, board: Board) -> None:
        import httpx

        self.url = f"/shots/{board.shot_id}/"
        name, value = board.editor_cookie.split("=", 1)
        self.client = httpx.Client(base_url=f"http://{HOST}:{port}", timeout=60,
                                   cookies={name: value})

    def save_title(self, title: str) -> float:
        """POST the editor form with `title`; returns the request's own time in seconds."""
        page = self.client.get(self.url, headers={"HX-Request": "true"})
        page.raise_for_status()
        parser = _FormFields(self.url)
        parser.feed(page.text)
        fields = [(k, v) for k, v in parser.fields if k != "title"] + [("title", title)]
        headers = {"HX-Request": "true", "X-CSRFToken": _csrf_from(page.text)}
        started = time.perf_counter()
        response = self.client.post(self.url, data=dict(_merge(fields)), headers=headers)
        took = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"the edit POST answered {response.status_code}")
        return took


def _merge(fields: list[tuple[str, str]]) -> dict[str, list[str]]:
    merged: dict[str, list[str]] = {}
    for name, value in fields:
        merged.setdefault(name, []).append(value)
    return merged


def _csrf_from(text: str) -> str:
    marker = 'name="csrfmiddlewaretoken" value="'
    start = text.index(marker) + len(marker)
    return text[start:text.index('"', start)]


# --- One measurement ---

@dataclass
class Result:
    layer: str
    sockets: int
    servers: int = 1
    connect_s: float = 0.0
    failed: int = 0
    presence_each: float = 0.0
    post_ms: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    missed: int = 0
    push_bytes: int = 0
    # Everything the sockets received per edit: in all, and per socket.
    edit_bytes: list[int] = field(default_factory=list)
    rss_mib: float = 0.0


async def _open_all(ports: list[int], path: str, viewers: list[Viewer]) -> None:
    """Open every viewer's socket, round-robin over the servers' `ports`."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(n: int, viewer: Viewer) -> None:
        port = ports[n % len(ports)]
        async with gate:
            try:
                viewer.socket = await asyncio.wait_for(Socket.open(port, path, viewer.cookie),
                                                       timeout=30)
            except (TimeoutError, Closed, OSError) as error:
                viewer.failed = f"connect: {error!r}"

    await asyncio.gather(*(one(n, v) for n, v in enumerate(viewers)))


async def _settled(viewers: list[Viewer], *, quiet: float, limit: float) -> None:
    """Wait until every socket has heard presence, then until none has for `quiet` seconds
    (at most `limit` seconds in all)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and not all(v.presence or v.failed for v in viewers):
        await asyncio.sleep(0.1)
    last = -1
    while time.monotonic() < deadline:
        total = sum(v.presence for v in viewers)
        if total == last:
            return
        last = total
        await asyncio.sleep(quiet)


async def _measure(ports: list[int], board: Board, layer: str, size: int, edits: int,
                   deadline: float, server_pids: list[int]) -> Result:
    result = Result(layer, size, servers=len(ports))
    viewers = [Viewer(cookie) for cookie in board.viewer_cookies[:size]]
    started = time.perf_counter()
    await _open_all(ports, f"/ws/projects/{board.project_id}/", viewers)
    result.connect_s = time.perf_counter() - started
    live = [v for v in viewers if v.socket is not None]
    listeners = [asyncio.create_task(v.listen()) for v in live]
    # Everyone's arrival is announced; let that settle before the edit, as on a real board.
    await _settled(live, quiet=1.5, limit=120)
    result.presence_each = sum(v.presence for v in live) / max(1, len(live))
    editor = Editor(ports[0], board)
    for _ in range(edits):
        received = sum(v.received for v in live)
        marker = f"Fan-out {uuid.uuid4().hex[:8]}"
        token = marker.encode()
        for viewer in live:
            viewer.watching.add(token)
        t0 = time.perf_counter()
        result.post_ms.append(await asyncio.to_thread(editor.save_title, marker) * 1000)
        end = t0 + deadline
        for viewer in live:
            while token not in viewer.seen and not viewer.failed:
                viewer.arrived.clear()
                remaining = end - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(viewer.arrived.wait(), timeout=remaining)
                except TimeoutError:
                    break
        for viewer in live:
            if token in viewer.seen:
                at, size_bytes = viewer.seen[token]
                result.latencies.append(at - t0)
                result.push_bytes = max(result.push_bytes, size_bytes)
            elif not viewer.failed:
                result.missed += 1
        # The next edit starts from a quiet board; what arrived meanwhile is this edit's too.
        await asyncio.sleep(0.5)
        result.edit_bytes.append(sum(v.received for v in live) - received)
    result.rss_mib = sum(_rss_mib(pid) for pid in server_pids)
    result.failed = sum(1 for v in viewers if v.failed)
    for task in listeners:
        task.cancel()
    for viewer in live:
        viewer.socket.close()
    editor.client.close()
    return result


async def _idle(port: int, board: Board, layer: str, seconds: float) -> str:
    viewer = Viewer(board.viewer_cookies[0])
    await _open_all([port], f"/ws/projects/{board.project_id}/", [viewer])
    if viewer.socket is None:
        return f"{layer}: could not connect ({viewer.failed})"
    listener = asyncio.create_task(viewer.listen())
    await asyncio.sleep(seconds)
    if viewer.failed:
        return f"{layer}: FAILED, the socket died while quiet ({viewer.failed})"
    marker = f"Idle {uuid.uuid4().hex[:8]}".encode()
    viewer.watching.add(marker)
    editor = Editor(port, board)
    await asyncio.to_thread(editor.save_title, marker.decode())
    try:
        await asyncio.wait_for(viewer.arrived.wait(), timeout=5)
        outcome = f"{layer}: ok, the edit arrived after {seconds:g} s of silence"
    except TimeoutError:
        outcome = f"{layer}: FAILED, no edit after {seconds:g} s of silence ({viewer.failed})"
    listener.cancel()
    viewer.socket.close()
    editor.client.close()
    return outcome


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _report(results: list[Result], edits: int) -> None:
    print(f"Websocket fan-out, one shot edit → every socket ({datetime.now():%Y-%m-%d %H:%M}, "
          f"{edits} edit(s) per row)")
    print(f"{'layer':<8}{'servers':>8}{'sockets':>8}{'connect s':>10}{'failed':>7}"
          f"{'presence/sock':>14}{'POST ms':>9}{'p50 ms':>8}{'p95 ms':>8}{'max ms':>8}"
          f"{'missed':>7}{'KiB/push':>9}{'KiB/edit/sock':>14}{'KiB/edit':>10}{'RSS MiB':>8}")
    for r in results:
        lat = r.latencies or [float("nan")]
        per_edit = sum(r.edit_bytes) / max(1, len(r.edit_bytes))
        live = max(1, r.sockets - r.failed)
        print(f"{r.layer:<8}{r.servers:>8}{r.sockets:>8}{r.connect_s:>10.1f}{r.failed:>7}"
              f"{r.presence_each:>14.1f}{max(r.post_ms or [0]):>9.0f}"
              f"{_percentile(lat, .5) * 1000:>8.0f}{_percentile(lat, .95) * 1000:>8.0f}"
              f"{max(lat) * 1000:>8.0f}{r.missed:>7}{r.push_bytes / 1024:>9.1f}"
              f"{per_edit / live / 1024:>14.2f}{per_edit / 1024:>10.0f}{r.rss_mib:>8.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="50,200,500")
    parser.add_argument("--edits", type=int, default=3)
    parser.add_argument("--layers", default="memory,redis")
    parser.add_argument("--deadline", type=float, default=10.0,
                        help="seconds after the POST before a socket counts as having missed it")
    parser.add_argument("--idle", type=float, default=0.0,
                        help="instead of fan-out: one socket quiet this long, then an edit")
    parser.add_argument("--servers", type=int, default=1,
                        help="Daphne processes, sockets spread over them (Redis layer only "
                             "for more than one: the in-memory layer stays in its process)")
    args = parser.parse_args()
    if args.servers > 1 and "memory" in args.layers.split(","):
        parser.error("--servers above 1 needs --layers redis")
    sizes = [int(s) for s in args.sizes.split(",")]
    redis_url = os.getenv("REDIS_URL", "redis://127.0.0.1:6379/9")
    var = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    os.environ.update(_env(var, None))
    import django

    django.setup()
    # Sign-ins and HTTP requests log at INFO; the table is the output.
    logging.disable(logging.INFO)
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    board = _prepare(1 if args.idle else max(sizes))
    results, outcomes = [], []
    try:
        for layer in args.layers.split(","):
            env = _env(var, redis_url if layer == "redis" else None)
            for size in [1] if args.idle else sizes:
                # Fresh servers per row, so RSS and queues start from nothing.
                servers = [_start_server(env) for _ in range(args.servers)]
                ports = [port for _, port in servers]
                try:
                    if args.idle:
                        outcomes.append(asyncio.run(_idle(ports[0], board, layer, args.idle)))
                    else:
                        results.append(asyncio.run(_measure(
                            ports, board, layer, size, args.edits, args.deadline,
                            [server.pid for server, _ in servers])))
                finally:
                    for server, _ in servers:
                        server.terminate()
                    for server, _ in servers:
                        server.wait(10)
    finally:
        shutil.rmtree(var, ignore_errors=True)
    if args.idle:
        print("\n".join(outcomes))
    else:
        _report(results, args.edits)


if __name__ == "__main__":
    main()
