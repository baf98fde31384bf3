"""Scaffolding the provider emulators share (issue #8 §9).

An emulator is a real threaded HTTP(S) server on 127.0.0.1 whose handler hands every request to
`Emulator.handle(method, path, query, headers, raw)` and answers with what that returns:

    class MyEmulator(Emulator):
        CALLS = ("create", "get", "webhook")

        def handle(self, method, path, query, headers, raw) -> tuple[str, Reply]:
            fault = self.faults.take("create")
            return "create", self.faulted(fault, lambda: Reply(200, {...}), self.fault_reply)

What lives here: the server lifecycle (start/stop, `with`, `url`, `scheme`, TLS from
tests.emulators.tls), `Reply` (which can also say "answer late", "answer once this event is
set" or "close the socket unanswered"), a `Faults` registry of `Fault`s that an emulator can
subclass for its own knobs, the `calls` record, background webhook senders with retries and an
event-driven `wait_for_deliveries`, and a `WebhookSink` to receive deliveries in tests.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from tests.emulators import tls, wire

# Replies --------------------------------------------------------------------------------


@dataclass
class Reply:
    """An answer. `body`: dict/list → JSON, bytes → as is, str → UTF-8 text."""

    status: int
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    # Answer this many seconds late (cut short by stop()).
    delay: float = 0.0
    # Answer only once this is set (or on stop()): a slow answer without a real sleep.
    hold: threading.Event | None = None
    # The operation happened; the client sees the connection close with no answer.
    drop: bool = False

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


# What fal.py's handle() returns for "drop"; kept so that port is a rename.
DROP = Reply(0, drop=True)


# Faults ---------------------------------------------------------------------------------


@dataclass
class Fault:
    """Something to do wrong on the next `times` calls of a kind. Subclass to add knobs."""

    call: str
    times: int = 1
    # Answer with this status (and `body`, else the emulator's documented body) instead.
    status: int | None = None
    body: Any = None
    retry_after: str | None = None
    # With `status`: do the operation anyway (e.g. the job exists), then answer `status`.
    create: bool = False
    # Do the operation, then close the socket without answering.
    drop_response: bool = False
    # Do the operation, then answer this late / once `hold` is set.
    slow: float = 0.0
    hold: threading.Event | None = None
    # For webhooks: skip the delivery / send this many extra copies.
    never: bool = False
    duplicates: int = 0


class Faults:
    """Faults for the next calls of a kind, consumed in the order they were added."""

    def __init__(self, calls: Iterable[str], kind: type[Fault] = Fault) -> None:
        self.calls = tuple(calls)
        self.kind = kind
        self._names = {f.name for f in fields(kind)} - {"call"}
        self._lock = threading.Lock()
        self._pending: list[Fault] = []

    def add(self, call: str, *, times: int = 1, retry_after: float | str | None = None,
            **knobs: Any) -> Fault:
        if call not in self.calls:
            raise ValueError(f"Unknown call {call!r}; use one of {self.calls}")
        unknown = set(knobs) - self._names
        if unknown:
            raise TypeError(f"Unknown fault options {sorted(unknown)}; use {sorted(self._names)}")
        fault = self.kind(call=call, times=times,
                          retry_after=None if retry_after is None else str(retry_after), **knobs)
        with self._lock:
            self._pending.append(fault)
        return fault

    def take(self, call: str) -> Fault | None:
        with self._lock:
            for fault in self._pending:
                if fault.call == call:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._pending.remove(fault)
                    return fault
        return None

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._pending)

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()


# Records --------------------------------------------------------------------------------


@dataclass
class Call:
    kind: str
    method: str
    path: str
    # None when the connection was dropped.
    status: int | None
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        """The body as JSON, or None when it is not."""
        return wire.maybe_json(self.body)


@dataclass
class Delivery:
    """One webhook POST attempt."""

    id: str
    url: str
    attempt: int
    # None when nothing answered (error names why).
    status: int | None
    headers: dict[str, str]
    body: bytes
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def json(self) -> Any:
        return wire.maybe_json(self.body)


# The server -----------------------------------------------------------------------------


class Emulator:
    """A threaded HTTP(S) server on 127.0.0.1 answering with `handle()`."""

    CALLS: tuple[str, ...] = ()
    FAULT: type[Fault] = Fault
    # Set (here, per instance, or via the constructor) before start() to serve https.
    tls = False

    def __init__(self, *, tls: bool | None = None) -> None:
        if tls is not None:
            self.tls = tls
        self.faults = Faults(self.CALLS, self.FAULT)
        self.calls: list[Call] = []
        self.deliveries: list[Delivery] = []
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._senders: list[threading.Thread] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def start(self) -> Self:
        handler = type("Handler", (Handler,), {"emulator": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        if self.tls:
            tls.wrap(self._server)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.01}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for sender in list(self._senders):
            sender.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the emulator first"
        host, port = self._server.server_address[:2]
        return f"{self.scheme}://{host}:{port}"

    @property
    def netloc(self) -> str:
        return self.url.split("://", 1)[1]

    # Requests

    def handle(self, method: str, path: str, query: dict[str, list[str]],
               headers: dict[str, str], raw: bytes) -> tuple[str, Reply]:
        """(call kind, answer) for a request; called on server threads."""
        raise NotImplementedError

    def faulted(self, fault: Fault | None, operation: Callable[[], Reply],
                fault_reply: Callable[[Fault], Reply]) -> Reply:
        """Run `operation` under `fault`: replaced, done-then-replaced, dropped or slowed."""
        if fault is not None and fault.status is not None and not fault.create:
            reply = fault_reply(fault)
        else:
            reply = operation()
            if fault is not None and fault.status is not None:
                reply = fault_reply(fault)
        if fault is not None:
            reply = replace(reply, delay=max(reply.delay, fault.slow),
                            hold=fault.hold or reply.hold, drop=reply.drop or fault.drop_response)
        return reply

    def pause(self, reply: Reply) -> None:
        if reply.delay:
            self._stopping.wait(reply.delay)
        if reply.hold is not None:
            while not reply.hold.wait(0.01) and not self._stopping.is_set():
                pass

    def record(self, call: Call) -> None:
        with self._changed:
            self.calls.append(call)
            self._changed.notify_all()

    def count(self, kind: str) -> int:
        with self._lock:
            return sum(1 for call in self.calls if call.kind == kind)

    # Webhooks

    def spawn(self, target: Callable[..., None], *args: Any) -> threading.Thread:
        """Run a sender in the background, as a provider's delivery queue would."""
        sender = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._senders.append(sender)
        sender.start()
        return sender

    def post_webhook(self, id: str, url: str, headers: dict[str, str], body: bytes, *,
                     attempts: int = 1, interval: float = 0.0, timeout: float = 5.0,
                     sleep: Callable[[float], object] | None = None) -> list[Delivery]:
        """POST up to `attempts` times until a 2xx, `interval` apart; records every attempt."""
        made: list[Delivery] = []
        for attempt in range(1, max(1, attempts) + 1):
            if self._stopping.is_set():
                break
            if attempt > 1:
                (sleep or self._stopping.wait)(interval)
            status, error = wire.post(url, headers, body, timeout=timeout,
                                      context=tls.client_context())
            delivery = Delivery(id, url, attempt, status, dict(headers), body, error)
            made.append(delivery)
            with self._changed:
                self.deliveries.append(delivery)
                self._changed.notify_all()
            if delivery.ok:
                break
        return made

    def wait_for_deliveries(self, count: int | None = None,
                            timeout: float = 5.0) -> list[Delivery]:
        """Wait until `count` attempts were made (None: until every sender has finished)."""
        deadline = time.monotonic() + timeout
        if count is None:
            for sender in list(self._senders):
                sender.join(max(0.0, deadline - time.monotonic()))
        with self._changed:
            self._changed.wait_for(
                lambda: count is None or len(self.deliveries) >= count,
                timeout=max(0.0, deadline - time.monotonic()))
            return list(self.deliveries)


class Handler(BaseHTTPRequestHandler):
    emulator: Emulator
    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate writes; with Nagle on, each answer waits ~40 ms.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def _serve(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        kind, reply = self.emulator.handle(method, parts.path, parse_qs(parts.query), headers,
                                           raw)
        self.emulator.pause(reply)
        self.emulator.record(Call(kind, method, self.path, None if reply.drop else reply.status,
                                  headers, raw))
        if reply.drop:
            self._drop()
        else:
            self._answer(reply)

    def _answer(self, reply: Reply) -> None:
        payload = reply.payload()
        self._send_head(reply, payload)
        self.wfile.write(payload)

    def _send_head(self, reply: Reply, payload: bytes) -> None:
        """Status line and headers; subclasses that send the body their own way reuse it."""
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, format: str, *args: object) -> None:
        # Quiet: the calls log is the record.
        return


# A receiver for deliveries ----------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def json(self) -> Any:
        return wire.maybe_json(self.body)


class WebhookSink:
    """Receives webhook POSTs, records them and answers `respond(headers, body)` (200)."""

    def __init__(self, respond: Callable[[dict[str, str], bytes], int] | None = None, *,
                 tls: bool = False) -> None:
        self.respond = respond or (lambda headers, body: 200)
        self.tls = tls
        self.received: list[Received] = []
        self._changed = threading.Condition()
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self) -> WebhookSink:
        sink = self

        class Receiver(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = dict(self.headers.items())
                status = sink.respond(headers, body)
                with sink._changed:
                    sink.received.append(Received(self.path, headers, body, status))
                    sink._changed.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        self._server.daemon_threads = True
        if self.tls:
            tls.wrap(self._server)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01},
                         daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str = "/hooks/") -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host}:{port}{path}"

    def wait(self, count: int = 1, timeout: float = 5.0) -> list[Received]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.received) >= count, timeout=timeout)
            return list(self.received)
