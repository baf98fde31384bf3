"""A protocol-faithful each::api emulator: a real HTTP server on 127.0.0.1.

It speaks the prediction API as /work/shared/reference/provider-protocols.md §2 documents it:
create, get and cancel with the documented bodies and status codes, Bearer auth, predictions
that advance one step per GET, an output URL served by the emulator itself, and a webhook POST
(with X-Webhook-Secret, plus the newer HMAC signature headers) when a prediction ends.

    with EachlabsEmulator(key="k", webhook_interval=0.05) as emulator:
        emulator.faults.add("create", status=429, times=2)
        ...  # point the provider at emulator.url
        assert emulator.creates == 3

Faults are consumed in the order added, per operation ("create", "get", "cancel", "file").
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from tests.emulators import tls, wire

# The Seedance slugs eachlabs lists; a create for any other model is a 404, as on eachlabs.
SEEDANCE_MODELS = frozenset({
    "bytedance-seedance-2-0-text-to-video",
    "bytedance-seedance-2-0-image-to-video",
    "bytedance-seedance-2-0-text-to-video-fast",
    "bytedance-seedance-2-0-image-to-video-fast",
    "seedance-v1-lite-text-to-video",
    "seedance-v1-pro-text-to-video",
})

SUCCEEDED = frozenset({"success", "succeeded"})
FAILED = frozenset({"error", "failed"})
FINISHED = SUCCEEDED | FAILED | {"cancelled"}

# Bodies eachlabs documents for each error status (errors.mdx, models.json).
ERROR_BODIES: dict[int, dict] = {
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

# A minimal MP4 header (an ftyp box), enough for "is this the file we served" checks.
DEFAULT_VIDEO = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 64


@dataclass
class Fault:
    op: str
    times: int
    # Answer with this status (and ERROR_BODIES or `body`) instead of doing the operation.
    status: int | None = None
    body: dict | None = None
    retry_after: str | None = None
    # Do the operation, then close the socket without answering.
    drop_response: bool = False
    # Do the operation, then wait this long before answering.
    slow: float = 0.0
    # For "create": the prediction created ends in an error / never sends its webhook.
    fail_prediction: bool = False
    never_webhook: bool = False


class Faults:
    OPS = ("create", "get", "cancel", "file")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[Fault] = []

    def add(self, op: str, *, times: int = 1, status: int | None = None,
            body: dict | None = None, retry_after: str | float | None = None,
            drop_response: bool = False, slow: float = 0.0, fail_prediction: bool = False,
            never_webhook: bool = False) -> None:
        if op not in self.OPS:
            raise ValueError(f"Unknown operation {op!r}; use one of {self.OPS}")
        fault = Fault(op=op, times=times, status=status, body=body,
                      retry_after=None if retry_after is None else str(retry_after),
                      drop_response=drop_response, slow=slow,
                      fail_prediction=fail_prediction, never_webhook=never_webhook)
        with self._lock:
            self._pending.append(fault)

    def take(self, op: str) -> Fault | None:
        with self._lock:
            for fault in self._pending:
                if fault.op == op:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._pending.remove(fault)
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()


@dataclass
class Prediction:
    id: str
    model: str
    input: dict
    webhook_url: str | None = None
    webhook_secret: str | None = None
    status: str = "created"
    # The statuses the next GETs will move through, one per GET.
    pending: list[str] = field(default_factory=list)
    output: object = None
    logs: object = None
    never_webhook: bool = False
    webhook_started: bool = False


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    status: int | None  # None: the socket was closed without an answer
    headers: dict[str, str]
    json: object


@dataclass(frozen=True)
class Delivery:
    prediction_id: str
    attempt: int
    status: int | None  # None: the receiver could not be reached
    error: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Reply:
    status: int
    body: object
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


# Returned by an operation to close the socket without any answer.
DROP = object()


class EachlabsEmulator:
    # Set before start() to serve https with the test CA (see tests.emulators.tls).
    tls = False

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def __init__(self, *, key: str = "test-key", video: bytes = DEFAULT_VIDEO,
                 steps: tuple[str, ...] = ("starting", "processing", "success"),
                 webhook_attempts: int = 3, webhook_interval: float = 10.0,
                 sign_webhooks: bool = True, models: frozenset[str] = SEEDANCE_MODELS,
                 fail_code: str = "PROVIDER_REJECTED",
                 fail_message: str = "The request was rejected by the content safety filter.",
                 ) -> None:
        self.key = key
        self.video = video
        self.steps = steps
        self.webhook_attempts = webhook_attempts
        self.webhook_interval = webhook_interval
        self.sign_webhooks = sign_webhooks
        self.models = models
        self.fail_code = fail_code
        self.fail_message = fail_message
        self.faults = Faults()
        self.predictions: dict[str, Prediction] = {}
        # Create requests that passed auth, whatever happened next (faults included).
        self.creates = 0
        self.creates_by_model: Counter[str] = Counter()
        self.gets: Counter[str] = Counter()
        self.cancels: Counter[str] = Counter()
        self.calls: list[Call] = []
        self.deliveries: list[Delivery] = []
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> EachlabsEmulator:
        handler = type("Handler", (_Handler,), {"emulator": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        if self.tls:
            # Real https, as the downloader requires; trust comes from tests.emulators.tls.
            tls.wrap(self._server)
        # A short poll interval keeps stop() (and so every test's teardown) quick.
        thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                  name="eachlabs-emulator", daemon=True)
        thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in list(self._threads):
            thread.join(timeout=5)

    def __enter__(self) -> EachlabsEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the emulator first"
        return f"{self.scheme}://127.0.0.1:{self._server.server_address[1]}"

    def file_url(self, prediction_id: str) -> str:
        return f"{self.url}/files/{prediction_id}.mp4"

    # -- test helpers -----------------------------------------------------------------------

    def finish(self, prediction_id: str) -> Prediction:
        """Run the prediction to its last step at once (and send its webhook)."""
        with self._lock:
            prediction = self.predictions[prediction_id]
            while prediction.pending:
                self._advance(prediction)
            return prediction

    def set_status(self, prediction_id: str, status: str, *, output: object = None,
                   logs: object = None) -> None:
        """Pin a prediction to any status and output; later GETs no longer move it."""
        with self._lock:
            prediction = self.predictions[prediction_id]
            prediction.pending.clear()
            prediction.status = status
            prediction.output = output
            prediction.logs = logs

    def wait_for_deliveries(self, count: int, timeout: float = 5.0) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.deliveries) >= count:
                    return list(self.deliveries)
            time.sleep(0.01)
        with self._lock:
            return list(self.deliveries)

    def wait(self, seconds: float) -> None:
        # Interruptible, so stop() does not hang behind a "slow" fault.
        self._stopping.wait(seconds)

    # -- the API ------------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> object:
        path = urlsplit(path).path
        parts = [p for p in path.split("/") if p]
        if method == "GET" and len(parts) == 2 and parts[0] == "files":
            return self._file(parts[1].removesuffix(".mp4"))
        if parts[:2] != ["v1", "prediction"]:
            return Reply(404, {"error": "Not found"})
        if headers.get("authorization") != f"Bearer {self.key}":
            return Reply(401, ERROR_BODIES[401])
        if method == "POST" and len(parts) == 2:
            return self._create(raw)
        if method == "GET" and len(parts) == 3:
            return self._get(parts[2])
        if method == "POST" and len(parts) == 4 and parts[3] == "cancel":
            return self._cancel(parts[2])
        return Reply(405, {"error": "Method not allowed"})

    def _create(self, raw: bytes) -> object:
        with self._lock:
            self.creates += 1
        fault = self.faults.take("create") or Fault(op="create", times=0)
        if fault.status is not None:
            return _fault_reply(fault)
        try:
            body = json.loads(raw)
        except ValueError:
            return Reply(400, {"error": "invalid request body"})
        problem = self._invalid(body)
        if problem is not None:
            return problem
        prediction = Prediction(
            id=str(uuid.uuid4()), model=body["model"], input=body["input"],
            webhook_url=body.get("webhook_url"), webhook_secret=body.get("webhook_secret"),
            pending=list(self.steps), never_webhook=fault.never_webhook,
        )
        if fault.fail_prediction and prediction.pending:
            prediction.pending[-1] = "error"
        with self._lock:
            self.predictions[prediction.id] = prediction
            self.creates_by_model[prediction.model] += 1
        self.wait(fault.slow)
        if fault.drop_response:
            return DROP
        return Reply(200, {"status": "success", "message": "Prediction created successfully",
                           "predictionID": prediction.id})

    def _invalid(self, body: object) -> Reply | None:
        if not isinstance(body, dict):
            return Reply(400, {"error": "invalid request body"})
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return Reply(400, {"error": "model field is required"})
        if model not in self.models:
            return Reply(404, {"error": "Failed to fetch model: model not found"})
        arguments = body.get("input")
        if not isinstance(arguments, dict):
            return Reply(400, {"error": "Invalid input for model"})
        details = _input_problem(model, arguments)
        if details:
            return Reply(400, {"error": "Invalid input for model", "details": details})
        return None

    def _get(self, prediction_id: str) -> object:
        fault = self.faults.take("get") or Fault(op="get", times=0)
        if fault.status is not None:
            return _fault_reply(fault)
        with self._lock:
            prediction = self.predictions.get(prediction_id)
            if prediction is None:
                return Reply(404, {"error": "Prediction not found"})
            self.gets[prediction_id] += 1
            self._advance(prediction)
            body = self._describe(prediction)
        self.wait(fault.slow)
        return DROP if fault.drop_response else Reply(200, body)

    def _cancel(self, prediction_id: str) -> object:
        fault = self.faults.take("cancel") or Fault(op="cancel", times=0)
        if fault.status is not None:
            return _fault_reply(fault)
        with self._lock:
            prediction = self.predictions.get(prediction_id)
            if prediction is None:
                return Reply(404, {"error": "Prediction not found"})
            self.cancels[prediction_id] += 1
            if prediction.status in SUCCEEDED | FAILED:
                # Undocumented: what eachlabs answers for a finished prediction is a guess.
                return Reply(400, {"error": "Prediction already finished"})
            prediction.status = "cancelled"
            prediction.pending.clear()
        self.wait(fault.slow)
        if fault.drop_response:
            return DROP
        return Reply(200, {"status": "cancelled", "message": "Prediction canceled successfully",
                           "predictionID": prediction_id})

    def _file(self, prediction_id: str) -> object:
        fault = self.faults.take("file") or Fault(op="file", times=0)
        if fault.status is not None:
            return _fault_reply(fault)
        with self._lock:
            found = self.predictions.get(prediction_id)
        if found is None or found.status not in SUCCEEDED:
            return Reply(404, b"Not found", content_type="text/plain")
        return Reply(200, self.video, content_type="video/mp4")

    # -- progression and webhooks -----------------------------------------------------------

    def _advance(self, prediction: Prediction) -> None:
        if not prediction.pending:
            return
        prediction.status = prediction.pending.pop(0)
        if prediction.status in SUCCEEDED:
            prediction.output = self.file_url(prediction.id)
            prediction.logs = "Generating video\nUploading output"
        elif prediction.status in FAILED:
            prediction.output = {"error_code": self.fail_code, "error_message": self.fail_message}
        elif prediction.status == "processing":
            prediction.logs = "Generating video"
        if prediction.status in SUCCEEDED | FAILED:
            self._start_webhook(prediction)

    def _describe(self, prediction: Prediction) -> dict:
        base = f"{self.url}/v1/prediction/{prediction.id}"
        finished = prediction.status in FINISHED
        return {
            "id": prediction.id,
            "input": prediction.input,
            "status": prediction.status,
            "output": prediction.output,
            "logs": prediction.logs,
            "metrics": {"predict_time": 12.5 if finished else None,
                        "cost": 0.05 if finished else None},
            "urls": {"cancel": f"{base}/cancel", "get": base},
        }

    def _start_webhook(self, prediction: Prediction) -> None:
        if not prediction.webhook_url or prediction.never_webhook or prediction.webhook_started:
            return
        prediction.webhook_started = True
        thread = threading.Thread(target=self._deliver, args=(prediction.id,),
                                  name=f"eachlabs-webhook-{prediction.id}", daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _deliver(self, prediction_id: str) -> None:
        with self._lock:
            prediction = self.predictions[prediction_id]
            url = prediction.webhook_url or ""
            body = json.dumps(_webhook_payload(prediction)).encode()
            headers = self._webhook_headers(prediction.webhook_secret, body)
        for attempt in range(1, self.webhook_attempts + 1):
            status, error = wire.post(url, headers, body)
            with self._lock:
                self.deliveries.append(Delivery(prediction_id, attempt, status, error,
                                                headers, body))
            if status is not None and 200 <= status < 300:
                return
            if attempt < self.webhook_attempts:
                self.wait(self.webhook_interval)
            if self._stopping.is_set():
                return

    def _webhook_headers(self, secret: str | None, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if not secret:
            return headers
        headers["X-Webhook-Secret"] = secret
        if self.sign_webhooks:
            # Signed once, before the first attempt: every retry carries the same pair.
            timestamp = str(int(time.time()))
            digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body,
                              hashlib.sha256).hexdigest()
            headers["X-Webhook-Timestamp"] = timestamp
            headers["X-Webhook-Signature"] = f"sha256={digest}"
        return headers

    def record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)


class _Handler(BaseHTTPRequestHandler):
    emulator: EachlabsEmulator
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = self.emulator.handle(method, self.path, headers, raw)
        status = None if reply is DROP else reply.status
        self.emulator.record(Call(method, self.path, status, headers, wire.maybe_json(raw)))
        if reply is DROP:
            self._drop()
            return
        self._answer(reply)

    def _answer(self, reply: Reply) -> None:
        body = reply.body
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Request-Id", str(uuid.uuid4()))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _drop(self) -> None:
        # The request was handled; the client sees the connection end with no answer.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, format: str, *args: object) -> None:
        # Quiet: the calls log is the record.
        return


def _fault_reply(fault: Fault) -> Reply:
    body = fault.body if fault.body is not None else ERROR_BODIES.get(
        fault.status or 500, {"error": f"HTTP {fault.status}"})
    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
    return Reply(fault.status or 500, body, headers)


def _input_problem(model: str, arguments: dict) -> str:
    """What eachlabs would reject in this input, or "" (a subset of the model schemas)."""
    if not isinstance(arguments.get("prompt"), str) or not arguments["prompt"]:
        return "prompt is required"
    if "image-to-video" in model and "image_url" not in arguments:
        return "image_url is required"
    for name, value in arguments.items():
        if not name.endswith(("_url", "_urls")):
            continue
        values = value if isinstance(value, list) else [value]
        for url in values:
            if not isinstance(url, str) or not url.startswith("https://"):
                return f"{name} must be a public HTTPS URL (data URIs are not accepted)"
    if "seed" in arguments and not isinstance(arguments["seed"], str):
        return "seed must be a string"
    if model.startswith("seedance-v1") and not isinstance(arguments.get("duration", 5), int):
        return "duration must be an integer"
    return ""


def _webhook_payload(prediction: Prediction) -> dict:
    if prediction.status in SUCCEEDED:
        return {"exec_id": prediction.id, "flow_id": None, "status": "succeeded",
                "output": {"url": prediction.output}, "error": ""}
    return {"exec_id": prediction.id, "flow_id": None, "status": "failed",
            "output": [{"id": "", "status": "", "output": "", "error": prediction.output}],
            "error": ""}




