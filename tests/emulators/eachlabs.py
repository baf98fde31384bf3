"""An each::api (eachlabs) emulator written from eachlabs' documents alone, one switch per version.

Sources, cited in comments by these keys:

- **[S:<section>]** the eachlabs model page "Bytedance | Seedance 2.0 | Image to Video",
  /work/shared/seeds/004_6a584a2e8c82ebe6.txt ("Last Updated: 2026-06-01"); a single line, so
  cited by its section headings (API Information, Pricing Rules, Input Schema, Example Request,
  Output Schema, Polling, Webhook, Errors, Usage Notes). Version **"2026-06"**.
- **[P:L<n>]** /work/shared/reference/provider-protocols.md line n (§2 eachlabs, §3 Seedance
  schemas, §4 open items), summarising eachlabs' docs as of 2026-08. Version **"2026-08"**.
  Where §2 is silent, "2026-08" keeps what [S] says (e.g. the standard image-to-video slug).

Each version follows its own document strictly; UNCONFIRMED items take the strict reading.

    with EachlabsEmulator(version="2026-06", input_hosts=(f"127.0.0.1:{port}",)) as each:
        each.faults.add("create", status=429, retry_after=3)
        each.faults.add("create", outcome=Outcome.model_timeout())
        ...
        assert each.creates == 1 and each.billed == {prediction_id: 1_209_600}

Predictions answer each GET with their current status and then move one step on (or call
advance()/finish()/finish_all(); `instant=True` finishes them at create). On success the video
(`video`: bytes, or a function of the Prediction) is served from the emulator's own "CDN" path,
the price is booked in `billed` (micro-USD) and the webhook, if any, is POSTed from a thread.
"""

from __future__ import annotations

import io
import ipaddress
import json
import re
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any
from urllib.parse import urlsplit

import av

from tests.emulators import wire
from tests.emulators.base import Emulator, Fault, Reply

SEED = "2026-06"
LATER = "2026-08"
VERSIONS = (SEED, LATER)

# [S:Polling] "processing | success | error". [P:L190] mdx lists created|starting|processing|
# success|error|cancelled, models.json starting|processing|success|failed|cancelled; both kept.
STATUSES: dict[str, tuple[str, ...]] = {
    SEED: ("processing", "success", "error"),
    LATER: ("created", "starting", "processing", "success", "error", "failed", "cancelled"),
}
# [P:L190] "Treat success|error|failed|cancelled as terminal."
TERMINAL = frozenset({"success", "error", "failed", "cancelled"})

DEFAULT_VIDEO = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 64
# What this emulator's model "decides" for duration "auto" ([S:Input Schema] "let the model
# decide"): the longest clip on offer, as tests/emulators/delivery.py assumes.
AUTO_SECONDS = 15
MICROS = Decimal(1_000_000)
# A plain router answer for routes a version does not document (the documents give no body).
NOWHERE = "404 page not found"


# Models and input schemas -------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    type: type
    required: bool = False
    choices: tuple[Any, ...] = ()
    low: int | None = None
    high: int | None = None
    # A file-typed parameter: a public HTTPS URL ([S:Usage Notes]).
    file: bool = False


@dataclass(frozen=True)
class Model:
    slug: str
    params: dict[str, Param]
    # USD per second of output, by resolution.
    rates: dict[str, Decimal]
    default_resolution: str
    # The clip length billed when the delivered video cannot be measured and none is asked for.
    default_seconds: int = AUTO_SECONDS


def _rates(*pairs: tuple[str, str]) -> dict[str, Decimal]:
    return {resolution: Decimal(rate) for resolution, rate in pairs}


RATIOS = ("auto", "21:9", "16:9", "4:3", "1:1", "3:4", "9:16")
SECONDS_20 = ("auto", *(str(n) for n in range(4, 16)))

# [S:Input Schema], every row: resolution "480p, 720p" only; duration and seed are strings.
SEED_I2V_PARAMS: dict[str, Param] = {
    "prompt": Param(str, required=True),
    "image_url": Param(str, required=True, file=True),
    "end_image_url": Param(str, file=True),
    "resolution": Param(str, choices=("480p", "720p")),
    "duration": Param(str, choices=SECONDS_20),
    "aspect_ratio": Param(str, choices=RATIOS),
    "generate_audio": Param(bool),
    "seed": Param(str),
    "end_user_id": Param(str),
}
# [S:Pricing Rules]: 720p $0.3024/s, 480p $0.1412/s, 1080p $0.685/s, "Default fallback (720p
# rate) when resolution is not specified". The 1080p rule is unreachable: the schema refuses it.
SEED_I2V = Model("bytedance-seedance-2-0-image-to-video", SEED_I2V_PARAMS,
                 _rates(("480p", "0.1412"), ("720p", "0.3024"), ("1080p", "0.685")), "720p")

# [P:L214] fast slugs: "inputs as §3.1 fast (`seed` as string)"; §3.1 [P:L222-L227, L234]:
# prompt, aspect_ratio, string duration, generate_audio, end_user_id, bitrate_mode, and
# resolution 480p/720p; image-to-video adds image_url (required) and end_image_url.
FAST_T2V_PARAMS: dict[str, Param] = {
    "prompt": Param(str, required=True),
    "resolution": Param(str, choices=("480p", "720p")),
    "duration": Param(str, choices=SECONDS_20),
    "aspect_ratio": Param(str, choices=RATIOS),
    "generate_audio": Param(bool),
    "seed": Param(str),
    "end_user_id": Param(str),
    "bitrate_mode": Param(str, choices=("standard", "high")),
}
FAST_I2V_PARAMS = {**FAST_T2V_PARAMS, "image_url": Param(str, required=True, file=True),
                   "end_image_url": Param(str, file=True)}
# [P:L271] "eachlabs charges the same: 480p $0.1129/s, 720p $0.2419/s [ES]".
FAST_RATES = _rates(("480p", "0.1129"), ("720p", "0.2419"))

# [P:L215] v1 slugs with "`duration` integer 3–12". Their other fields are not documented for
# eachlabs (UNCONFIRMED); taken from fal's v1 text-to-video rows [P:L244-L247, L252-L259]
# minus fal-only knobs (num_frames, enable_safety_checker): strict means "refuse the rest".
V1_PARAMS: dict[str, Param] = {
    "prompt": Param(str, required=True),
    "duration": Param(int, low=3, high=12),
    "resolution": Param(str, choices=("480p", "720p", "1080p")),
    "aspect_ratio": Param(str, choices=("21:9", "16:9", "4:3", "1:1", "3:4", "9:16", "9:21")),
    "camera_fixed": Param(bool),
    "seed": Param(int),
}
V1_PRO_PARAMS = {**V1_PARAMS, "aspect_ratio": Param(
    str, choices=("21:9", "16:9", "4:3", "1:1", "3:4", "9:16"))}
# UNCONFIRMED prices: [P:L275] v1 lite "$0.18 per 720p 5 s" (eachlabs mirror) = $0.036/s;
# [P:L272] v1 pro "≈$0.62 per 1080p 5 s" (fal) = $0.124/s. Other resolutions scale by area.
V1_LITE_RATES = _rates(("480p", "0.016"), ("720p", "0.036"), ("1080p", "0.081"))
V1_PRO_RATES = _rates(("480p", "0.024494"), ("720p", "0.055111"), ("1080p", "0.124"))

MODELS: dict[str, dict[str, Model]] = {
    SEED: {SEED_I2V.slug: SEED_I2V},
    LATER: {model.slug: model for model in (
        SEED_I2V,
        Model("bytedance-seedance-2-0-text-to-video-fast", FAST_T2V_PARAMS, FAST_RATES, "720p"),
        Model("bytedance-seedance-2-0-image-to-video-fast", FAST_I2V_PARAMS, FAST_RATES,
              "720p"),
        # fal's v1 defaults [P:L245, L254-L255]: 5 s; lite 720p, pro 1080p.
        Model("seedance-v1-lite-text-to-video", V1_PARAMS, V1_LITE_RATES, "720p", 5),
        Model("seedance-v1-pro-text-to-video", V1_PRO_PARAMS, V1_PRO_RATES, "1080p", 5),
    )},
}

# Create body fields. [S:Example Request] {model, input} and [S:Webhook] webhook_url: nothing
# else (so no `version`, though [S:API Information] shows "Version: 0.0.1" as page metadata).
# [P:L182] adds version ("Deprecated. This field is ignored") and webhook_secret.
CREATE_FIELDS: dict[str, frozenset[str]] = {
    SEED: frozenset({"model", "input", "webhook_url"}),
    LATER: frozenset({"model", "version", "input", "webhook_url", "webhook_secret"}),
}


# Error bodies -------------------------------------------------------------------------------

# [S:Errors] body {"status": "error", "message": "...", "details": "..."}; messages from the
# code table's "Meaning" column.
SEED_MESSAGES: dict[int, str] = {
    400: "Invalid input",
    401: "Missing / invalid X-API-Key",
    404: "Unknown model or prediction id",
    429: "Rate limit — 100 creates / min, 10 concurrent per key",
}
# [P:L192-L203].
LATER_BODIES: dict[int, dict[str, Any]] = {
    400: {"error": "Invalid input for model"},
    401: {"error": "Invalid or missing API key"},
    402: {"status": 402, "error": "payment required",
          "details": "Insufficient balance. Top up your account to continue."},
    403: {"error": "Forbidden"},
    404: {"error": "Prediction not found"},
    422: {"error": "invalid request body"},
    429: {"status": 429, "error": "too many requests",
          "details": "Concurrency limit reached: 10 predictions in flight."},
    500: {"error": "Failed to create prediction"},
}


def error_body(version: str, status: int, details: str = "",
               error: str | None = None) -> dict[str, Any]:
    """The documented error body of `version` for an HTTP `status` (`error`: 2026-08 text)."""
    if version == SEED:
        message = SEED_MESSAGES.get(status, "Internal server error" if status >= 500
                                    else f"HTTP {status}")
        return {"status": "error", "message": message, "details": details}
    body = dict(LATER_BODIES.get(status, {"error": f"HTTP {status}"}))
    if error is not None:
        body["error"] = error
    if details:
        # [P:L192] "optionally with `status` and `details`".
        body["details"] = details
    return body


# Records --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """How a prediction ends; inject with faults.add("create", outcome=...) or script()."""

    kind: str = "ok"
    message: str = ""
    code: str = ""
    # 2026-08 only: "error" (production, changelog 2026-07-07) or "failed" (models.json)
    # [P:L190]. 2026-06 knows only "error" [S:Polling].
    status: str = "error"

    @classmethod
    def ok(cls) -> Outcome:
        return cls()

    @classmethod
    def error(cls, message: str, code: str = "model_error", status: str = "error") -> Outcome:
        if status not in ("error", "failed"):
            raise ValueError("a failed prediction ends 'error' or 'failed'")
        return cls("error", message=message, code=code, status=status)

    @classmethod
    def model_timeout(cls, status: str = "error") -> Outcome:
        # The documented failure text, [P:L209].
        return cls.error("Error: Model timeout after 30s", "model_timeout", status)

    @classmethod
    def content_policy(cls, status: str = "error") -> Outcome:
        # No documented wording; ours.
        return cls.error("Content policy violation: the input was flagged by the safety "
                         "checker.", "content_policy_violation", status)


@dataclass
class EachlabsFault(Fault):
    # "create": the prediction created (a normal or faulted create) ends like this.
    outcome: Outcome | None = None
    # "cancel" (2026-08): answer the documented body but let the prediction run on, as the
    # "best-effort" [P:L191] cancel allows.
    ignore: bool = False


@dataclass
class Prediction:
    id: str
    model: str
    input: dict[str, Any]
    webhook_url: str | None
    webhook_secret: str | None
    outcome: Outcome
    # The non-terminal statuses GETs see, in order.
    plan: tuple[str, ...]
    created_at: float
    step: int = 0
    status: str = ""
    finished_at: float | None = None
    video: bytes | None = None
    seconds: Fraction | None = None
    cost_micros: int = 0
    webhook_skipped: bool = False
    # Held at a status by set_status(): GETs no longer move it (finish() still does).
    pinned: bool = False

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


# The emulator ---------------------------------------------------------------------------------

_DEFAULT = object()


class EachlabsEmulator(Emulator):
    CALLS = ("create", "get", "cancel", "file", "webhook", "webhooks")
    FAULT = EachlabsFault

    def __init__(self, *, version: str = LATER, key: str = "test-key",
                 video: bytes | Callable[[Prediction], bytes] = DEFAULT_VIDEO,
                 steps: int = 3, instant: bool = False, auto_advance: bool = True,
                 input_hosts: tuple[str, ...] = (), webhooks: bool = True,
                 webhook_attempts: int | None = None, webhook_interval: float = 10.0,
                 webhook_timeout: float = 30.0, sleep: Callable[[float], object] | None = None,
                 max_in_flight: int | object | None = _DEFAULT, creates_per_minute: int = 100,
                 clock: Callable[[], float] = time.monotonic, tls: bool | None = None) -> None:
        if version not in VERSIONS:
            raise ValueError(f"version must be one of {VERSIONS}")
        super().__init__(tls=tls)
        self.version = version
        self.key = key
        self.video = video
        # GETs that answer a non-terminal status before the terminal one.
        self.steps = steps
        self.instant = instant
        self.auto_advance = auto_advance
        # "host:port" (or "host") input URLs may use although not public: tests serve inputs
        # from 127.0.0.1. Still HTTPS only.
        self.input_hosts = tuple(h.lower() for h in input_hosts)
        # False: never POST webhooks ([P:L212] UNCONFIRMED for model predictions).
        self.webhooks = webhooks
        # [P:L207] "3 attempts total, ~10 s apart"; [S:Webhook] documents no retry: one.
        self.webhook_attempts = webhook_attempts or (1 if version == SEED else 3)
        self.webhook_interval = webhook_interval
        # [S:Webhook] "Return 2xx within 30 seconds"; 2026-08 gives none, same kept.
        self.webhook_timeout = webhook_timeout
        # Waits between webhook attempts go here instead of the clock when given.
        self.sleep = sleep
        # [S:Errors] 429 "100 creates / min, 10 concurrent per key". [P:L202] the in-flight
        # cap holds "when balance ≤ $10" (10; 2 for metered models): off unless set.
        self.max_in_flight: int | None = (
            (10 if version == SEED else None) if max_in_flight is _DEFAULT
            else max_in_flight)  # type: ignore[assignment]
        # [P:L205] per-minute limit UNCONFIRMED for 2026-08: strict, so enforced as well.
        self.creates_per_minute = creates_per_minute
        self.clock = clock
        self.statuses = STATUSES[version]
        self.models = MODELS[version]
        self.predictions: dict[str, Prediction] = {}
        # Authorised POSTs to create (faulted ones too: each may have cost money).
        self.creates = 0
        # Predictions actually created, per model.
        self.creates_by_model: Counter[str] = Counter()
        self.gets: Counter[str] = Counter()
        self.cancels: Counter[str] = Counter()
        # Micro-USD charged per prediction, booked when it succeeds.
        self.billed: dict[str, int] = {}
        self._outcomes: deque[Outcome] = deque()
        self._recent_creates: deque[float] = deque()

    # Addresses and steering

    @property
    def created(self) -> int:
        """Predictions created (payable once they succeed)."""
        return sum(self.creates_by_model.values())

    @property
    def create_path(self) -> str:
        # [S:Example Request] POST .../v1/prediction/ ; [P:L182] POST /v1/prediction, the
        # trailing-slash form UNCONFIRMED: each version answers only its documented form.
        return "/v1/prediction/" if self.version == SEED else "/v1/prediction"

    @property
    def create_url(self) -> str:
        return f"{self.url}{self.create_path}"

    def prediction_url(self, prediction_id: str) -> str:
        return f"{self.url}/v1/prediction/{prediction_id}"

    def file_url(self, prediction_id: str) -> str:
        return f"{self.url}/cdn/predictions/{prediction_id}/video.mp4"

    def auth_headers(self, key: str | None = None) -> dict[str, str]:
        """The documented credentials header of this version."""
        key = self.key if key is None else key
        return {"X-API-Key": key} if self.version == SEED else {"Authorization": f"Bearer {key}"}

    def script(self, *outcomes: Outcome) -> None:
        """How the next created predictions end, in order; later ones succeed."""
        with self._lock:
            self._outcomes.extend(outcomes)

    def advance(self, prediction_id: str, steps: int = 1) -> Prediction:
        with self._lock:
            prediction = self.predictions[prediction_id]
            for _ in range(steps):
                self._advance(prediction)
            return prediction

    def finish(self, prediction_id: str) -> Prediction:
        with self._lock:
            prediction = self.predictions[prediction_id]
            while not prediction.terminal:
                self._advance(prediction, force=True)
            return prediction

    def set_status(self, prediction_id: str, status: str) -> Prediction:
        """Move a prediction to one of this version's statuses; GETs then leave it there.

        A terminal status ends it as it would end (billing, webhook); statuses the version's
        document does not list are refused.
        """
        if status not in self.statuses:
            raise ValueError(f"{status!r} is not a {self.version} status: {self.statuses}")
        with self._lock:
            prediction = self.predictions[prediction_id]
            if prediction.terminal:
                raise ValueError(f"prediction {prediction_id} already ended {prediction.status}")
            prediction.pinned = True
            if status == "cancelled":
                prediction.status = status
                prediction.finished_at = self.clock()
            elif status in TERMINAL:
                failing = status != "success"
                if failing != (prediction.outcome.kind == "error"):
                    prediction.outcome = (Outcome.model_timeout(status) if failing
                                          else Outcome.ok())
                if failing:
                    prediction.outcome = replace(prediction.outcome, status=status)
                self._finish(prediction)
            else:
                prediction.status = status
            return prediction

    def finish_all(self) -> list[Prediction]:
        """Run every prediction to its end, as eachlabs would whether or not anyone polls."""
        with self._lock:
            return [self.finish(prediction_id) for prediction_id in list(self.predictions)]

    def price_micros(self, model: str, arguments: dict[str, Any], seconds: Fraction) -> int:
        """Micro-USD for `seconds` of output, at the rate for the asked resolution."""
        spec = self.models[model]
        resolution = arguments.get("resolution") or spec.default_resolution
        exact = spec.rates[resolution] * MICROS * Decimal(seconds.numerator) / seconds.denominator
        return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))

    def webhook_body(self, prediction_id: str) -> dict[str, Any]:
        with self._lock:
            return self._webhook_payload(self.predictions[prediction_id])

    # Requests

    def handle(self, method: str, path: str, query: dict[str, list[str]],
               headers: dict[str, str], raw: bytes) -> tuple[str, Reply]:
        kind, target = self._route(method, path)
        if kind == "unknown":
            return kind, Reply(404, NOWHERE, content_type="text/plain; charset=utf-8")
        if kind == "method":
            return kind, Reply(405, "405 method not allowed", {"Allow": target},
                               content_type="text/plain; charset=utf-8")
        if kind == "file":
            # The output URL is a public CDN link, fetched without credentials.
            return kind, self.faulted(self.faults.take(kind), lambda: self._file(target),
                                      self._fault_reply)
        if not self._authorized(headers):
            return kind, self._error(401)
        if kind == "create":
            with self._lock:
                self.creates += 1
        fault = self.faults.take(kind)
        operations: dict[str, Callable[[], Reply]] = {
            "create": lambda: self._create(raw, fault),
            "get": lambda: self._get(target),
            "cancel": lambda: self._cancel(target, fault),
            "webhooks": lambda: self._attempts(target),
        }
        return kind, self.faulted(fault, operations[kind], self._fault_reply)

    def _route(self, method: str, path: str) -> tuple[str, str]:
        routes = [(self.create_path, "POST", "create"),
                  (r"/v1/prediction/(?P<id>[^/]+)", "GET", "get"),
                  (r"/cdn/predictions/(?P<id>[^/]+)/video\.mp4", "GET", "file")]
        if self.version == LATER:
            # [P:L191] cancel and [P:L211] webhook attempts; [S] documents neither route.
            routes += [(r"/v1/prediction/(?P<id>[^/]+)/cancel", "POST", "cancel"),
                       (r"/v1/webhooks/(?P<id>[^/]+)", "GET", "webhooks")]
        allowed = []
        for pattern, verb, kind in routes:
            found = re.fullmatch(pattern, path)
            if found is None:
                continue
            if verb == method:
                return kind, found.groupdict().get("id", "")
            allowed.append(verb)
        return ("method", ", ".join(allowed)) if allowed else ("unknown", "")

    def _authorized(self, headers: dict[str, str]) -> bool:
        if self.version == SEED:
            # [S:Usage Notes] "send `X-API-Key: YOUR_API_KEY`"; [S:Errors] 401 otherwise.
            return headers.get("x-api-key") == self.key
        # [P:L181] Bearer; X-API-Key still accepted is UNCONFIRMED: strict, refused.
        return headers.get("authorization") == f"Bearer {self.key}"

    def _error(self, status: int, details: str = "", error: str | None = None,
               **headers: str) -> Reply:
        extra = dict(headers)
        if self.version == LATER:
            # [P:L192] error answers carry header X-Request-Id.
            extra["X-Request-Id"] = str(uuid.uuid4())
        return Reply(status, error_body(self.version, status, details, error), extra)

    def _fault_reply(self, fault: Fault) -> Reply:
        status = fault.status or 500
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        reply = self._error(status, **headers)
        if fault.body is not None:
            reply.body = fault.body
        return reply

    # Create

    def _create(self, raw: bytes, fault: Fault | None) -> Reply:
        body = wire.maybe_json(raw)
        if not isinstance(body, dict):
            return self._error(400, "the request body must be a JSON object")
        limited = self._limited()
        if limited:
            # [P:L202] "not created, not billed".
            return self._error(429, limited)
        unknown = sorted(set(body) - CREATE_FIELDS[self.version])
        if unknown:
            return self._error(400, f"unknown field(s): {', '.join(unknown)}")
        model = body.get("model")
        if not model:
            # [P:L196] "model field is required".
            return self._error(400, "model field is required", error="model field is required")
        if not isinstance(model, str) or model not in self.models:
            # [S:Errors] 404 "Unknown model". [P:L200] lists 404 for predictions only; an
            # unknown model gets 404 there too, in its {"error": ...} shape (our wording).
            return self._error(404, f"unknown model {model!r}", error="Model not found")
        arguments = body.get("input")
        if not isinstance(arguments, dict):
            return self._error(400, "input must be a JSON object")
        for name in ("webhook_url", "webhook_secret"):
            if name in body and not isinstance(body[name], str):
                return self._error(400, f"{name} must be a string")
        problem = _input_problem(self.models[model], arguments, self.input_hosts)
        if problem:
            return self._error(400, problem)
        prediction = self._start(model, arguments, body, fault)
        if self.version == SEED:
            # [S] never shows the create answer; only that it names the `predictionID`
            # ([S:Webhook] "`exec_id` equals the `predictionID` from create").
            return Reply(200, {"predictionID": prediction.id})
        # [P:L182].
        return Reply(200, {"status": "success", "message": "Prediction created successfully",
                           "predictionID": prediction.id})

    def _limited(self) -> str:
        with self._lock:
            now = self.clock()
            while self._recent_creates and now - self._recent_creates[0] >= 60:
                self._recent_creates.popleft()
            if len(self._recent_creates) >= self.creates_per_minute:
                return f"{self.creates_per_minute} creates / min"
            running = sum(1 for p in self.predictions.values() if not p.terminal)
            if self.max_in_flight is not None and running >= self.max_in_flight:
                return f"{self.max_in_flight} predictions in flight"
        return ""

    def _start(self, model: str, arguments: dict[str, Any], body: dict[str, Any],
               fault: Fault | None) -> Prediction:
        with self._lock:
            outcome = self._outcomes.popleft() if self._outcomes else Outcome.ok()
            if isinstance(fault, EachlabsFault) and fault.outcome is not None:
                outcome = fault.outcome
            prediction = Prediction(
                id=str(uuid.uuid4()), model=model, input=arguments,
                webhook_url=body.get("webhook_url"), webhook_secret=body.get("webhook_secret"),
                outcome=outcome, plan=self._plan(), created_at=self.clock())
            self.predictions[prediction.id] = prediction
            self.creates_by_model[model] += 1
            self._recent_creates.append(prediction.created_at)
            if prediction.plan and not self.instant:
                prediction.status = prediction.plan[0]
            else:
                self._finish(prediction)
            return prediction

    def _plan(self) -> tuple[str, ...]:
        if self.version == SEED:
            return ("processing",) * self.steps
        # created → starting → processing ([P:L190], mdx order); a short plan keeps the last.
        full = ("created", "starting", "processing")
        return full[max(0, 3 - self.steps):] + ("processing",) * max(0, self.steps - 3)

    # Get, cancel, files

    def _get(self, prediction_id: str) -> Reply:
        with self._lock:
            prediction = self.predictions.get(prediction_id)
            if prediction is None:
                return self._error(404, f"prediction {prediction_id} not found")
            self.gets[prediction_id] += 1
            body = self._describe(prediction)
            if self.auto_advance:
                self._advance(prediction)
            return Reply(200, body)

    def _describe(self, prediction: Prediction) -> dict[str, Any]:
        elapsed = round((prediction.finished_at or self.clock()) - prediction.created_at, 3)
        if self.version == SEED:
            # [S:Output Schema] {status, predictionID, output: URL string, metrics:
            # {predict_time}}; [S:Polling] `error` → "read `message` / `details`".
            body: dict[str, Any] = {"status": prediction.status, "predictionID": prediction.id}
            if prediction.status == "success":
                body["output"] = self.file_url(prediction.id)
                body["metrics"] = {"predict_time": elapsed}
            elif prediction.status == "error":
                body["message"] = prediction.outcome.message
                body["details"] = prediction.outcome.code
            return body
        # [P:L183-L189]: output is the video URL string for Seedance; failed polls carry
        # output {error_code, error_message} [P:L190].
        output: Any = None
        metrics: dict[str, Any] = {}
        if prediction.status == "success":
            output = self.file_url(prediction.id)
            metrics = {"predict_time": elapsed, "cost": prediction.cost_micros / 1_000_000}
        elif prediction.status in ("error", "failed"):
            output = {"error_code": prediction.outcome.code,
                      "error_message": prediction.outcome.message}
            metrics = {"predict_time": elapsed, "cost": 0.0}
        base = self.prediction_url(prediction.id)
        return {"id": prediction.id, "input": prediction.input, "status": prediction.status,
                "output": output, "logs": None, "metrics": metrics,
                "urls": {"cancel": f"{base}/cancel", "get": base}}

    def _cancel(self, prediction_id: str, fault: Fault | None) -> Reply:
        with self._lock:
            prediction = self.predictions.get(prediction_id)
            if prediction is None:
                return self._error(404, f"prediction {prediction_id} not found")
            self.cancels[prediction_id] += 1
            ignored = isinstance(fault, EachlabsFault) and fault.ignore
            # Best-effort [P:L191]: a finished prediction keeps its status (and its charge).
            if not prediction.terminal and not ignored:
                prediction.status = "cancelled"
                prediction.finished_at = self.clock()
                # No webhook on cancel [P:L207]; nothing delivered, nothing billed.
            return Reply(200, {"status": "cancelled", "message": "Prediction canceled "
                               "successfully", "predictionID": prediction_id})

    def _attempts(self, prediction_id: str) -> Reply:
        with self._lock:
            if prediction_id not in self.predictions:
                return self._error(404, f"prediction {prediction_id} not found")
            tried = [d for d in self.deliveries if d.id == prediction_id]
        # [P:L211] only attempts[].status PENDING|SUCCESS|FAILED is documented.
        return Reply(200, {"attempts": [{"status": "SUCCESS" if d.ok else "FAILED"}
                                        for d in tried]})

    def _file(self, prediction_id: str) -> Reply:
        with self._lock:
            prediction = self.predictions.get(prediction_id)
            video = prediction.video if prediction is not None else None
        if video is None:
            return Reply(404, NOWHERE, content_type="text/plain; charset=utf-8")
        return Reply(200, video, content_type="video/mp4")

    # Progress (called with the lock held)

    def _advance(self, prediction: Prediction, *, force: bool = False) -> None:
        if prediction.terminal or (prediction.pinned and not force):
            return
        if prediction.pinned:
            self._finish(prediction)
            return
        prediction.step += 1
        if prediction.step < len(prediction.plan):
            prediction.status = prediction.plan[prediction.step]
        else:
            self._finish(prediction)

    def _finish(self, prediction: Prediction) -> None:
        prediction.finished_at = self.clock()
        outcome = prediction.outcome
        if outcome.kind == "ok":
            prediction.video = self._video_of(prediction)
            prediction.seconds = _seconds_of(prediction.video) or _asked_seconds(
                self.models[prediction.model], prediction.input)
            # [S:Pricing] "per second based on output duration": billed on what was delivered.
            prediction.cost_micros = self.price_micros(prediction.model, prediction.input,
                                                       prediction.seconds)
            self.billed[prediction.id] = prediction.cost_micros
            prediction.status = "success"
        else:
            # Failed predictions deliver no output, so nothing is billed (no document says).
            prediction.status = "error" if self.version == SEED else outcome.status
        self._start_webhook(prediction)
        self._changed.notify_all()

    def _video_of(self, prediction: Prediction) -> bytes:
        return self.video(prediction) if callable(self.video) else self.video

    # Webhooks

    def _webhook_payload(self, prediction: Prediction) -> dict[str, Any]:
        ok = prediction.status == "success"
        if self.version == SEED:
            # [S:Webhook] {exec_id, status: succeeded|failed, output: URL, error}.
            return {"exec_id": prediction.id, "status": "succeeded" if ok else "failed",
                    "output": self.file_url(prediction.id) if ok else "",
                    "error": "" if ok else prediction.outcome.message}
        # [P:L208-L209].
        if ok:
            return {"exec_id": prediction.id, "flow_id": None, "status": "succeeded",
                    "output": {"url": self.file_url(prediction.id)}, "error": ""}
        return {"exec_id": prediction.id, "flow_id": None, "status": "failed",
                "output": [{"id": "", "status": "", "output": "",
                            "error": prediction.outcome.message}], "error": ""}

    def webhook_headers(self, prediction: Prediction) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.version == LATER and prediction.webhook_secret is not None:
            # [P:L210] sent verbatim, no HMAC. [S:Webhook] has no secret at all.
            headers["X-Webhook-Secret"] = prediction.webhook_secret
        return headers

    def _start_webhook(self, prediction: Prediction) -> None:
        if not prediction.webhook_url or not self.webhooks or prediction.status == "cancelled":
            return
        fault = self.faults.take("webhook")
        if fault is not None and fault.never:
            prediction.webhook_skipped = True
            return
        copies = 1 + (fault.duplicates if fault is not None else 0)
        body = json.dumps(self._webhook_payload(prediction)).encode()
        self.spawn(self._send_copies, prediction.id, prediction.webhook_url,
                   self.webhook_headers(prediction), body, copies)

    def _send_copies(self, prediction_id: str, url: str, headers: dict[str, str], body: bytes,
                     copies: int) -> None:
        for _ in range(copies):
            self.post_webhook(prediction_id, url, headers, body,
                              attempts=self.webhook_attempts, interval=self.webhook_interval,
                              timeout=self.webhook_timeout, sleep=self.sleep)


# Helpers --------------------------------------------------------------------------------------


def _input_problem(model: Model, arguments: dict[str, Any], input_hosts: tuple[str, ...]) -> str:
    """Why `arguments` fall outside the model's documented schema ("" when they don't)."""
    unknown = sorted(set(arguments) - set(model.params))
    if unknown:
        return f"unknown parameter(s) for {model.slug}: {', '.join(unknown)}"
    for name, param in model.params.items():
        if name not in arguments:
            if param.required:
                return f"{name} is required"
            continue
        value = arguments[name]
        # JSON types strictly: true is not an integer, "5" is not 5 ([S:Usage Notes] "send
        # real JSON values, not stringified payloads").
        if type(value) is not param.type:
            return f"{name} must be a {param.type.__name__}, not {type(value).__name__}"
        if param.choices and value not in param.choices:
            return f"{name} must be one of {', '.join(map(str, param.choices))}"
        if (param.low is not None and value < param.low) or \
                (param.high is not None and value > param.high):
            return f"{name} must be between {param.low} and {param.high}"
        if param.file:
            problem = _url_problem(value, input_hosts)
            if problem:
                return f"{name}: {problem}"
    return ""


def _url_problem(value: str, input_hosts: tuple[str, ...]) -> str:
    # [S:Usage Notes] "publicly-reachable HTTPS URLs only ... Data-URIs and localhost URLs are
    # rejected"; [P:L214] "public HTTPS URLs only, data URIs rejected".
    if value.lower().startswith("data:"):
        return "data URIs are rejected; upload the file and pass its HTTPS URL"
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        return "must be a publicly-reachable HTTPS URL"
    netloc = parts.netloc.rsplit("@", 1)[-1].lower()
    if netloc in input_hosts or parts.hostname in input_hosts:
        return ""
    host = parts.hostname
    if host == "localhost" or host.endswith(".localhost"):
        return "localhost URLs are rejected"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return ""
    return "" if address.is_global else "must be publicly reachable"


def _seconds_of(data: bytes) -> Fraction | None:
    """The delivered clip's length, when it is a real video."""
    try:
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            if stream.frames and stream.average_rate:
                return Fraction(stream.frames) / Fraction(stream.average_rate)
            if container.duration:
                return Fraction(container.duration, 1_000_000)
    except (av.error.FFmpegError, IndexError, ValueError):
        return None
    return None


def _asked_seconds(model: Model, arguments: dict[str, Any]) -> Fraction:
    duration = arguments.get("duration")
    if duration is None or duration == "auto":
        return Fraction(model.default_seconds)
    return Fraction(int(duration))


