"""A protocol-faithful fal.ai emulator: a real HTTP server on 127.0.0.1.

It speaks what /work/shared/reference/provider-protocols.md §1 documents: the queue (submit,
status, result, cancel, with the owner/alias "subpath" rule), storage tokens and uploads, a CDN
serving the generated MP4 and uploaded files, a JWKS with an Ed25519 key it owns, and signed
webhooks. One server, four roots:

    /queue/...   → queue_url        /rest/...  → rest_url (and the JWKS)
    /cdn/...     → upload base_url and file downloads

    with FalEmulator(video=mp4_bytes) as fal:
        provider = FalProvider(name="fal", **fal.provider_options(), sleep=delays.append)
        fal.faults.add("submit", status=429, times=2)
        ...
        assert fal.submits.total == 3 and fal.submits.accepted == 1

Jobs are deterministic: each status poll answers with the job's current step and then moves it
one step on (IN_QUEUE 2 → IN_QUEUE 1 → IN_PROGRESS → COMPLETED), or tests call advance()/finish().
Once a job completes, a signed webhook is POSTed to its `fal_webhook` URL from a background
thread; wait_for_deliveries() waits for those. `deliveries` holds one record per POST: one per
copy sent unless `webhook_attempts` lets a copy be retried.

The server, replies, the faults registry, the calls and deliveries records and the senders are
tests.emulators.base's; this module keeps what is fal's: routes, queue semantics, signing,
schemas, outcomes, and the fault knobs only fal needs (`ingress`, `drip`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Self, cast
from urllib.parse import quote, unquote

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.emulators import wire
from tests.emulators.base import Delivery, Emulator, Fault, Handler, Reply

CALLS = ("submit", "status", "result", "cancel", "token", "upload", "file", "jwks", "webhook")
# What nginx in front of fal answers when the queue itself cannot be reached.
INGRESS_PAGE = (b"<html><head><title>503 Service Temporarily Unavailable</title></head><body>"
                b"<center><h1>503 Service Temporarily Unavailable</h1></center><hr>"
                b"<center>nginx</center></body></html>")
DEFAULT_VIDEO = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 64
DEFAULT_BODIES: dict[int, dict] = {
    400: {"detail": "Bad request"},
    401: {"detail": "Authentication is required to access this application."},
    404: {"detail": "Not found"},
    408: {"detail": "Request timeout"},
    409: {"detail": "Conflict"},
    422: {"detail": [{"loc": ["body", "prompt"], "msg": "field required",
                      "type": "value_error.missing"}]},
    429: {"detail": "Too many requests"},
    500: {"detail": "Internal Server Error", "error_type": "internal_error"},
    502: {"detail": "Runner sent an incomplete response",
          "error_type": "runner_incomplete_response"},
    503: {"detail": "Runner disconnected", "error_type": "runner_disconnected"},
    504: {"detail": "Request timed out", "error_type": "request_timeout"},
}
QUEUE_STEPS = ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")


# Faults --------------------------------------------------------------------------------


@dataclass
class FalFault(Fault):
    """base.Fault plus what only fal's front door and CDN do wrong."""

    # A load-balancer answer (HTML, no x-fal-request-id): fal-client treats it as never sent.
    ingress: bool = False
    # Answer, but send the body one byte every `drip` seconds (a slowloris CDN).
    drip: float = 0.0


# Records -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """How a job ends. Scripted with FalEmulator.script(); jobs default to ok()."""

    kind: str = "ok"
    seed: int = 42
    http_status: int = 200
    detail: Any = None
    error: str = ""
    error_type: str = ""

    @classmethod
    def ok(cls, seed: int = 42) -> Outcome:
        return cls("ok", seed=seed)

    @classmethod
    def model_error(cls, detail: list | None = None, http_status: int = 422) -> Outcome:
        detail = detail or DEFAULT_BODIES[422]["detail"]
        return cls("model_error", http_status=http_status, detail=detail,
                   error=f"Invalid status code: {http_status}")

    @classmethod
    def content_policy(cls) -> Outcome:
        detail = [{"loc": ["body", "prompt"], "type": "content_policy_violation",
                   "msg": "The prompt was flagged by a content checker.",
                   "url": "https://docs.fal.ai/errors#content_policy_violation"}]
        return cls.model_error(detail)

    @classmethod
    def runner_error(cls, error_type: str = "runner_disconnected",
                     error: str = "Runner disconnected", http_status: int = 503) -> Outcome:
        return cls("runner_error", http_status=http_status, detail=error, error=error,
                   error_type=error_type)

    @classmethod
    def payload_error(cls) -> Outcome:
        return cls("payload_error", error="Response payload is not JSON serializable. Either "
                   "return a JSON serializable object or use the queue endpoint to retrieve "
                   "the response.")


@dataclass
class EmulatedJob:
    request_id: str
    endpoint: str
    app: str
    input: dict
    webhook_url: str | None
    outcome: Outcome
    # Index into the state list: queue positions first, then IN_PROGRESS, then COMPLETED.
    step: int = 0
    queue_ahead: int = 2
    canceled: bool = False
    logs: list[dict] = field(default_factory=list)

    @property
    def state(self) -> str:
        if self.step < self.queue_ahead:
            return "IN_QUEUE"
        return "IN_PROGRESS" if self.step == self.queue_ahead else "COMPLETED"

    @property
    def queue_position(self) -> int:
        return self.queue_ahead - self.step


@dataclass
class SubmitCounter:
    """Paid submits as fal saw them: the number that must never exceed one per job."""

    total: int = 0
    accepted: int = 0
    by_request_id: Counter = field(default_factory=Counter)
    # Our webhook URL names our job, so this counts submits per job of ours.
    by_webhook: Counter = field(default_factory=Counter)


@dataclass
class Dripped(Reply):
    """A reply whose body goes out one byte every `drip` seconds; see _Handler."""

    drip: float = 0.0


# The emulator --------------------------------------------------------------------------


class FalEmulator(Emulator):
    CALLS = CALLS
    FAULT = FalFault

    def __init__(self, *, key: str = "test-fal-key", user_id: str = "emu-user-1",
                 video: bytes | Callable[[EmulatedJob], bytes] = DEFAULT_VIDEO,
                 queue_ahead: int = 2, auto_advance: bool = True,
                 instant: bool = False, clock: Callable[[], float] = time.time,
                 token_ttl: float = 3600, webhook_attempts: int = 1,
                 webhook_on_cancel: bool = False, strict: bool = True,
                 tls: bool | None = None) -> None:
        super().__init__(tls=tls)
        self.key = key
        self.user_id = user_id
        self.video = video
        self.queue_ahead = queue_ahead
        # Status polls move jobs on; off means only advance()/finish() do.
        self.auto_advance = auto_advance
        # Jobs complete (and webhook) as soon as they are submitted.
        self.instant = instant
        self.clock = clock
        self.token_ttl = token_ttl
        # POSTs per webhook copy until one is answered 2xx; each is one entry in `deliveries`.
        self.webhook_attempts = webhook_attempts
        self.webhook_on_cancel = webhook_on_cancel
        # Submits to a Seedance endpoint must match its documented input schema exactly.
        self.strict = strict
        self.jobs: dict[str, EmulatedJob] = {}
        self.submits = SubmitCounter()
        self.uploads: dict[str, tuple[str, bytes]] = {}
        self.tokens: set[str] = set()
        self._outcomes: deque[Outcome] = deque()
        self._signing_keys = [Ed25519PrivateKey.generate()]

    def start(self) -> Self:
        super().start()
        # base serves with its own Handler, which cannot drip a body. Nobody knows the port
        # before start() returns, so swapping the class here precedes every request.
        assert self._server is not None
        self._server.RequestHandlerClass = type("Handler", (_Handler,), {"emulator": self})
        return self

    # Addresses (`url` is base's: the one server behind every root)

    @property
    def queue_url(self) -> str:
        return f"{self.url}/queue"

    @property
    def rest_url(self) -> str:
        return f"{self.url}/rest"

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/rest/.well-known/jwks.json"

    def provider_options(self) -> dict[str, Any]:
        """FalProvider OPTIONS that point every call at this emulator."""
        return {"key": self.key, "user_id": self.user_id, "queue_url": self.queue_url,
                "rest_url": self.rest_url, "jwks_url": self.jwks_url,
                "cdn_hosts": ("127.0.0.1",), "clock": self.clock}

    def video_url(self, request_id: str) -> str:
        return f"{self.url}/cdn/output/{request_id}/video.mp4"

    # Steering jobs

    def script(self, *outcomes: Outcome) -> None:
        """How the next submitted jobs end, in order; later jobs succeed."""
        with self._lock:
            self._outcomes.extend(outcomes)

    def advance(self, request_id: str, steps: int = 1) -> EmulatedJob:
        with self._lock:
            job = self.jobs[request_id]
            for _ in range(steps):
                self._step(job)
            return job

    def finish(self, request_id: str) -> EmulatedJob:
        with self._lock:
            job = self.jobs[request_id]
            while job.state != "COMPLETED":
                self._step(job)
            return job

    # Keys and signatures

    def rotate_key(self, *, keep_old: bool = False) -> None:
        """Sign with a new key from now on; the JWKS lists it (and the old one if kept)."""
        with self._lock:
            new = Ed25519PrivateKey.generate()
            self._signing_keys = [new, *self._signing_keys] if keep_old else [new]

    def jwks(self) -> dict:
        with self._lock:
            keys = list(self._signing_keys)
        return {"keys": [_jwk(key, index) for index, key in enumerate(keys)]}

    def sign(self, body: bytes, *, request_id: str, user_id: str | None = None,
             timestamp: int | str | None = None) -> dict[str, str]:
        """The four X-Fal-Webhook-* headers for a delivery of `body`, signed as fal does."""
        user = self.user_id if user_id is None else user_id
        stamp = str(int(self.clock()) if timestamp is None else timestamp)
        message = "\n".join([request_id, user, stamp, hashlib.sha256(body).hexdigest()])
        with self._lock:
            key = self._signing_keys[0]
        return {
            "Content-Type": "application/json",
            "X-Fal-Webhook-Request-Id": request_id,
            "X-Fal-Webhook-User-Id": user,
            "X-Fal-Webhook-Timestamp": stamp,
            "X-Fal-Webhook-Signature": key.sign(message.encode("utf-8")).hex(),
        }

    def webhook_body(self, request_id: str) -> bytes:
        with self._lock:
            return json.dumps(self._webhook_payload(self.jobs[request_id])).encode()

    def deliver(self, request_id: str, url: str | None = None) -> Delivery:
        """Send the job's webhook now, from this thread, to its URL (or `url`)."""
        with self._lock:
            job = self.jobs[request_id]
            target = url or job.webhook_url
        assert target, f"job {request_id} has no webhook URL"
        return self._send(job, target)

    # Request handling (called from server threads)

    def handle(self, method: str, path: str, query: dict[str, list[str]],
               headers: dict[str, str], raw: bytes) -> tuple[str, Reply]:
        kind, route = _route(method, path)
        if kind == "unknown":
            return kind, Reply(404, {"detail": "Not found"})
        refused = self._refused(kind, headers)
        if refused is not None:
            return kind, refused
        fault = cast("FalFault | None", self.faults.take(kind))
        if kind == "submit" and fault is not None and fault.status is not None \
                and not fault.create:
            # fal saw the paid call even though it answered with an error instead of a job.
            self._count_submit(query)
        reply = self.faulted(fault, lambda: self._dispatch(kind, route, query, headers, raw),
                             _fault_reply)
        if fault is not None and fault.drip and not reply.drop:
            reply = Dripped(**{f.name: getattr(reply, f.name) for f in fields(Reply)},
                            drip=fault.drip)
        return kind, reply

    def _dispatch(self, kind: str, route: str, query: dict[str, list[str]],
                  headers: dict[str, str], raw: bytes) -> Reply:
        if kind == "submit":
            return self._submit(route, query, raw)
        if kind in ("status", "result", "cancel"):
            app, request_id = route.split("|", 1)
            return self._queue_call(kind, app, request_id, query)
        if kind == "token":
            return self._token(query)
        if kind == "upload":
            return self._upload(headers, raw)
        if kind == "file":
            return self._file(route)
        return Reply(200, self.jwks())

    def _refused(self, kind: str, headers: dict[str, str]) -> Reply | None:
        given = headers.get("authorization", "")
        keyed = kind in ("submit", "status", "result", "cancel", "token")
        if keyed and given != f"Key {self.key}":
            return Reply(401, DEFAULT_BODIES[401])
        if kind == "upload":
            scheme, _, token = given.partition(" ")
            with self._lock:
                known = token in self.tokens
            if scheme != "Bearer" or not known:
                return Reply(401, {"detail": "Invalid upload token"})
        return None

    def _count_submit(self, query: dict[str, list[str]]) -> None:
        with self._lock:
            self.submits.total += 1
            webhook = query.get("fal_webhook", [None])[0]
            if webhook:
                self.submits.by_webhook[webhook] += 1

    def _submit(self, endpoint: str, query: dict[str, list[str]], raw: bytes) -> Reply:
        self._count_submit(query)
        app = _app_base(endpoint)
        payload = wire.maybe_json(raw)
        if app is None:
            return Reply(404, {"detail": f"Application '{endpoint}' not found"})
        if not isinstance(payload, dict):
            return Reply(422, {"detail": [{"loc": ["body"], "msg": "Input should be a valid "
                                            "dictionary", "type": "dict_type"}]})
        problems = input_problems(endpoint, payload) if self.strict else []
        if problems:
            return Reply(422, {"detail": problems})
        job = self._create(endpoint, app, payload, query.get("fal_webhook", [None])[0])
        base = f"{self.queue_url}/{app}/requests/{job.request_id}"
        body = {"status": "IN_QUEUE", "request_id": job.request_id,
                "gateway_request_id": job.request_id, "response_url": base,
                "status_url": f"{base}/status", "cancel_url": f"{base}/cancel",
                "queue_position": job.queue_position if job.state == "IN_QUEUE" else 0}
        return Reply(200, body, {"x-fal-request-id": job.request_id})

    def _create(self, endpoint: str, app: str, payload: dict,
                webhook: str | None) -> EmulatedJob:
        with self._lock:
            outcome = self._outcomes.popleft() if self._outcomes else Outcome.ok()
            job = EmulatedJob(request_id=str(uuid.uuid4()), endpoint=endpoint, app=app,
                              input=payload, webhook_url=webhook, outcome=outcome,
                              queue_ahead=self.queue_ahead)
            self.jobs[job.request_id] = job
            self.submits.accepted += 1
            self.submits.by_request_id[job.request_id] += 1
            if self.instant:
                while job.state != "COMPLETED":
                    self._step(job)
            return job

    def _queue_call(self, kind: str, app: str, request_id: str,
                    query: dict[str, list[str]]) -> Reply:
        with self._lock:
            job = self.jobs.get(request_id)
            # The subpath rule: only owner/alias addresses a request, never the full endpoint.
            if job is None or job.app != app:
                if kind == "cancel":
                    return Reply(404, {"status": "NOT_FOUND"})
                return Reply(404, {"detail": "Request not found"})
            if kind == "status":
                logs = query.get("logs", ["0"])[0] in ("1", "true", "True")
                reply = Reply(200 if job.state == "COMPLETED" else 202,
                               self._status_body(job, logs=logs))
                if self.auto_advance:
                    self._step(job)
                return reply
            if kind == "result":
                return self._result(job)
            return self._cancel(job)

    def _status_body(self, job: EmulatedJob, *, logs: bool) -> dict:
        base = f"{self.queue_url}/{job.app}/requests/{job.request_id}"
        body: dict[str, Any] = {"status": job.state, "request_id": job.request_id,
                                "response_url": base, "status_url": f"{base}/status",
                                "cancel_url": f"{base}/cancel"}
        if job.state == "IN_QUEUE":
            body["queue_position"] = job.queue_position
            return body
        body["logs"] = list(job.logs) if logs else None
        body["metrics"] = {"inference_time": 1.5} if job.state == "COMPLETED" else {}
        if job.state == "COMPLETED":
            error, error_type = _status_error(job)
            if error:
                body["error"] = error
            if error_type:
                body["error_type"] = error_type
        return body

    def _result(self, job: EmulatedJob) -> Reply:
        stamp = {"x-fal-request-id": job.request_id}
        if job.canceled:
            return Reply(400, {"detail": "Request was cancelled",
                                "error_type": "client_cancelled"}, stamp)
        if job.state != "COMPLETED":
            return Reply(400, {"detail": "Request is still in progress"}, stamp)
        outcome = job.outcome
        if outcome.kind == "ok":
            return Reply(200, self._output(job), stamp)
        if outcome.kind == "model_error":
            return Reply(outcome.http_status, {"detail": outcome.detail}, stamp)
        if outcome.kind == "runner_error":
            return Reply(outcome.http_status, {"detail": outcome.detail,
                                                "error_type": outcome.error_type},
                          {**stamp, "X-Fal-Error-Type": outcome.error_type})
        return Reply(500, {"detail": outcome.error}, stamp)

    def _cancel(self, job: EmulatedJob) -> Reply:
        if job.state == "COMPLETED":
            return Reply(400, {"status": "ALREADY_COMPLETED"})
        # A queued job is dropped at once; a running one is signalled and stops right away
        # here (on fal it may still finish: the reply only says cancellation was requested).
        job.canceled = True
        while job.state != "COMPLETED":
            job.step += 1
        if self.webhook_on_cancel:
            self._start_webhook(job)
        return Reply(202, {"status": "CANCELLATION_REQUESTED"})

    def _token(self, query: dict[str, list[str]]) -> Reply:
        if query.get("storage_type", [""])[0] != "fal-cdn-v3":
            return Reply(400, {"detail": "Unsupported storage type"})
        token = uuid.uuid4().hex
        expires = datetime.fromtimestamp(self.clock() + self.token_ttl, tz=UTC)
        with self._lock:
            self.tokens.add(token)
        return Reply(200, {"token": token, "token_type": "Bearer",
                            "base_url": f"{self.url}/cdn", "expires_at": expires.isoformat()})

    def _upload(self, headers: dict[str, str], raw: bytes) -> Reply:
        name = headers.get("x-fal-file-name") or "upload.bin"
        key = f"{uuid.uuid4().hex}/{quote(name, safe='')}"
        with self._lock:
            self.uploads[key] = (headers.get("content-type", "application/octet-stream"), raw)
        return Reply(200, {"access_url": f"{self.url}/cdn/files/{key}"})

    def _video_of(self, request_id: str) -> bytes:
        # `video` is one file for every job, or a function of the job (what it asked for).
        if not callable(self.video):
            return self.video
        with self._lock:
            job = self.jobs.get(request_id)
        return self.video(job) if job is not None else b""

    def _file(self, route: str) -> Reply:
        if route.startswith("output/"):
            return Reply(200, self._video_of(route.split("/")[1]), content_type="video/mp4")
        with self._lock:
            found = self.uploads.get(route.removeprefix("files/"))
        if found is None:
            return Reply(404, {"detail": "Not found"})
        return Reply(200, found[1], content_type=found[0])

    def _step(self, job: EmulatedJob) -> None:
        # Called with the lock held.
        if job.state == "COMPLETED":
            return
        job.step += 1
        now = datetime.fromtimestamp(self.clock(), tz=UTC).isoformat()
        if job.state == "IN_PROGRESS":
            job.logs.append({"message": "Loading model", "level": "INFO", "source": "user",
                             "timestamp": now})
        if job.state == "COMPLETED":
            job.logs.append({"message": "Generated video", "level": "INFO", "source": "user",
                             "timestamp": now})
            self._start_webhook(job)

    # Webhooks

    def _output(self, job: EmulatedJob) -> dict:
        return {"video": {"url": self.video_url(job.request_id), "content_type": "video/mp4",
                          "file_name": "video.mp4",
                          "file_size": len(self._video_of(job.request_id))},
                "seed": job.outcome.seed}

    def _webhook_payload(self, job: EmulatedJob) -> dict:
        common = {"request_id": job.request_id, "gateway_request_id": job.request_id}
        outcome = job.outcome
        if job.canceled:
            return {**common, "status": "ERROR", "error": "Request was cancelled",
                    "payload": {"detail": "Request was cancelled",
                                "error_type": "client_cancelled"}}
        if outcome.kind == "ok":
            return {**common, "status": "OK", "payload": self._output(job)}
        if outcome.kind == "payload_error":
            return {**common, "status": "OK", "payload": None, "payload_error": outcome.error}
        payload: dict[str, Any] = {"detail": outcome.detail}
        if outcome.error_type:
            payload["error_type"] = outcome.error_type
        return {**common, "status": "ERROR", "error": outcome.error, "payload": payload}

    def _start_webhook(self, job: EmulatedJob) -> None:
        # Called with the lock held; delivery happens on its own thread, as fal's would.
        if not job.webhook_url:
            return
        fault = self.faults.take("webhook")
        if fault is not None and fault.never:
            return
        copies = 1 + (fault.duplicates if fault is not None else 0)
        self.spawn(self._send_copies, job, copies)

    def _send_copies(self, job: EmulatedJob, copies: int) -> None:
        assert job.webhook_url
        for _ in range(copies):
            self._send(job, job.webhook_url)

    def _send(self, job: EmulatedJob, url: str) -> Delivery:
        """One copy: up to `webhook_attempts` POSTs (each recorded); the last one made."""
        body = self.webhook_body(job.request_id)
        headers = self.sign(body, request_id=job.request_id)
        made = self.post_webhook(job.request_id, url, headers, body,
                                 attempts=self.webhook_attempts)
        # Nothing is made once the emulator is stopping; say so as a failed attempt would.
        return made[-1] if made else Delivery(job.request_id, url, 1, None, headers, body,
                                              "stopped")


class _Handler(Handler):
    """base's handler, plus a body sent one byte at a time for a Dripped reply."""

    emulator: FalEmulator

    def _answer(self, reply: Reply) -> None:
        if not isinstance(reply, Dripped) or not reply.drip:
            super()._answer(reply)
            return
        payload = reply.payload()
        self._send_head(reply, payload)
        # One byte at a time until the client hangs up or the emulator stops.
        self.close_connection = True
        for index in range(len(payload)):
            if self.emulator._stopping.wait(reply.drip):
                return
            try:
                self.wfile.write(payload[index:index + 1])
                self.wfile.flush()
            except OSError:
                return


# Seedance input schemas ----------------------------------------------------------------
# From fal's pages in /work/shared/seeds: 2.0 from the model pages and the API reference
# (000, 001, 003; fast shares the standard schema but stops at 720p), 1.0 from the lite
# image-to-video reference (002), whose common fields the 1.0 overview gives every endpoint.


@dataclass(frozen=True)
class Param:
    kind: type  # str, bool, int or list (of strings)
    required: bool = False
    choices: tuple[str, ...] = ()
    low: int | None = None
    high: int | None = None
    most: int | None = None  # list length


ASPECT = ("auto", "21:9", "16:9", "4:3", "1:1", "3:4", "9:16")
V2_COMMON = {
    "prompt": Param(str, required=True),
    "duration": Param(str, choices=("auto", *(str(n) for n in range(4, 16)))),
    "aspect_ratio": Param(str, choices=ASPECT),
    "generate_audio": Param(bool),
    "seed": Param(int),
    "end_user_id": Param(str),
}
V1_COMMON = {
    "prompt": Param(str, required=True),
    "resolution": Param(str, choices=("480p", "720p", "1080p")),
    "duration": Param(str, choices=tuple(str(n) for n in range(2, 13))),
    "camera_fixed": Param(bool),
    "seed": Param(int),
    "enable_safety_checker": Param(bool),
    "num_frames": Param(int, low=29, high=289),
}
V2_MODES = {
    "text-to-video": {},
    "image-to-video": {"image_url": Param(str, required=True), "end_image_url": Param(str)},
    "reference-to-video": {"image_urls": Param(list, most=9), "video_urls": Param(list, most=3),
                           "audio_urls": Param(list, most=3)},
}
V1_MODES = {
    # 1.0 text to video offers no "auto" ratio (there is nothing to infer it from).
    "text-to-video": {"aspect_ratio": Param(str, choices=(*ASPECT[1:], "9:21"))},
    "image-to-video": {"aspect_ratio": Param(str, choices=ASPECT),
                       "image_url": Param(str, required=True), "end_image_url": Param(str)},
}


def _schemas() -> dict[str, dict[str, Param]]:
    schemas = {}
    for mode, extra in V2_MODES.items():
        for tier, resolutions in (("", ("480p", "720p", "1080p")), ("fast/", ("480p", "720p"))):
            schemas[f"bytedance/seedance-2.0/{tier}{mode}"] = {
                **V2_COMMON, "resolution": Param(str, choices=resolutions), **extra}
    for tier in ("lite", "pro"):
        for mode, extra in V1_MODES.items():
            schemas[f"fal-ai/bytedance/seedance/v1/{tier}/{mode}"] = {**V1_COMMON, **extra}
    return schemas


SCHEMAS = _schemas()


def input_problems(endpoint: str, payload: dict) -> list[dict]:
    """fal's 422 `detail` items for a submit that does not match the endpoint's schema."""
    schema = SCHEMAS.get(endpoint)
    if schema is None:
        return []
    problems = [_problem(name, "Extra inputs are not permitted", "extra_forbidden")
                for name in payload if name not in schema]
    for name, param in schema.items():
        if name not in payload:
            if param.required:
                problems.append(_problem(name, "field required", "value_error.missing"))
            continue
        problem = _value_problem(param, payload[name])
        if problem:
            problems.append(_problem(name, *problem))
    return problems


def _value_problem(param: Param, value: Any) -> tuple[str, str] | None:
    if param.kind is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return "value is not a valid list of strings", "type_error.list"
        if param.most is not None and len(value) > param.most:
            return f"ensure this value has at most {param.most} items", \
                "value_error.list.max_items"
        return None
    # JSON true is not an integer here, whatever Python thinks.
    if not isinstance(value, param.kind) or (param.kind is int and isinstance(value, bool)):
        return f"value is not a valid {param.kind.__name__}", f"type_error.{param.kind.__name__}"
    if param.choices and value not in param.choices:
        permitted = ", ".join(repr(c) for c in param.choices)
        return f"value is not a valid enumeration member; permitted: {permitted}", \
            "type_error.enum"
    if param.low is not None and value < param.low:
        return f"ensure this value is greater than or equal to {param.low}", \
            "value_error.number.not_ge"
    if param.high is not None and value > param.high:
        return f"ensure this value is less than or equal to {param.high}", \
            "value_error.number.not_le"
    return None


def _problem(name: str, msg: str, kind: str) -> dict:
    return {"loc": ["body", name], "msg": msg, "type": kind}


# Helpers -------------------------------------------------------------------------------


def _route(method: str, path: str) -> tuple[str, str]:
    """(call kind, what it is about) for a request path."""
    if path == "/rest/.well-known/jwks.json" and method == "GET":
        return "jwks", ""
    if path == "/rest/storage/auth/token" and method == "POST":
        return "token", ""
    if path == "/cdn/files/upload" and method == "POST":
        return "upload", ""
    if path.startswith("/cdn/") and method == "GET":
        return "file", unquote(path.removeprefix("/cdn/"))
    if not path.startswith("/queue/"):
        return "unknown", ""
    rest = path.removeprefix("/queue/")
    if "/requests/" not in rest:
        return ("submit", rest) if method == "POST" else ("unknown", "")
    app, _, tail = rest.partition("/requests/")
    request_id, _, action = unquote(tail).partition("/")
    kinds = {("GET", ""): "result", ("GET", "status"): "status", ("PUT", "cancel"): "cancel"}
    kind = kinds.get((method, action), "unknown")
    return kind, f"{app}|{request_id}"


def _app_base(endpoint: str) -> str | None:
    # Written independently of the provider's, so a shared bug cannot hide.
    parts = [p for p in endpoint.split("/") if p]
    namespace = parts[:1] if parts and parts[0] in ("workflows", "comfy") else []
    parts = parts[len(namespace):]
    if len(parts) < 2:
        return None
    return "/".join(namespace + parts[:2])


def _status_error(job: EmulatedJob) -> tuple[str, str]:
    if job.canceled:
        return "Request was cancelled", "client_cancelled"
    if job.outcome.kind in ("model_error", "runner_error"):
        return job.outcome.error, job.outcome.error_type
    return "", ""


def _fault_reply(fault: Fault) -> Reply:
    status = fault.status or 500
    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
    if isinstance(fault, FalFault) and fault.ingress:
        # The load balancer answered: HTML, and no x-fal-request-id.
        return Reply(status, INGRESS_PAGE, headers, content_type="text/html")
    body = fault.body if fault.body is not None else DEFAULT_BODIES.get(
        status, {"detail": f"HTTP {status}"})
    headers["x-fal-request-id"] = str(uuid.uuid4())
    if isinstance(body, dict) and isinstance(body.get("error_type"), str):
        headers["X-Fal-Error-Type"] = body["error_type"]
    return Reply(status, body, headers)


def _jwk(key: Ed25519PrivateKey, index: int) -> dict:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    # Live fal keys carry "=" padding; keep it so the provider's tolerance is exercised.
    return {"kty": "OKP", "crv": "Ed25519", "kid": f"emu-{index}",
            "x": base64.urlsafe_b64encode(raw).decode("ascii")}




