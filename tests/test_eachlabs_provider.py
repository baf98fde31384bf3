"""EachlabsProvider end to end over real sockets, against the each::api emulator."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import queue
import socket
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from urllib.parse import urlsplit

import pytest
from django.core.exceptions import ImproperlyConfigured
from hypothesis import given, settings
from hypothesis import strategies as st

from storyboard.providers.base import Job, ProviderError, WebhookEvent, WebhookRejected
from storyboard.providers.eachlabs import MODELS, EachlabsProvider
from tests.emulators.eachlabs import EachlabsEmulator

KEY = "each-test-key-0123456789"
SECRET = "whsec-test-0123456789"
T2V_FAST = "bytedance/seedance-2.0/fast/text-to-video"
I2V = "bytedance/seedance-2.0/image-to-video"
START = "https://media.example.com/signed/start.png?sig=abc"
END = "https://media.example.com/signed/end.png?sig=def"


@pytest.fixture
def emulator():
    with EachlabsEmulator(key=KEY, webhook_interval=0.05) as emulator:
        yield emulator


@pytest.fixture
def delays() -> list[float]:
    return []


@pytest.fixture
def provider(emulator, delays) -> EachlabsProvider:
    return EachlabsProvider(name="eachlabs", key=KEY, api_url=emulator.url,
                            webhook_secret=SECRET, sleep=delays.append, timeout=2.0)


def make_job(endpoint: str = T2V_FAST, *, webhook_url: str | None = None,
             files: dict | None = None, urls: dict | None = None, **arguments) -> Job:
    arguments = {"prompt": "A lighthouse at dusk, slow push in", **arguments}
    return Job(uid="5f0c1d2e-0000-4000-8000-000000000001", endpoint=endpoint,
               arguments=arguments, files=files or {}, urls=urls or {},
               webhook_url=webhook_url)


def i2v_job(**kwargs) -> Job:
    files = {"image_url": [Path("start.png")], "end_image_url": [Path("end.png")]}
    urls = {"image_url": [START], "end_image_url": [END]}
    return make_job(I2V, files=files, urls=urls, **kwargs)


def create_calls(emulator: EachlabsEmulator) -> list:
    return [c for c in emulator.calls if c.method == "POST" and c.path == "/v1/prediction"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def signed(body: bytes, *, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() if at is None else at))
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body,
                      hashlib.sha256).hexdigest()
    return {"X-Webhook-Secret": secret, "X-Webhook-Timestamp": timestamp,
            "X-Webhook-Signature": f"sha256={digest}"}


# -- configuration ------------------------------------------------------------------------


def test_it_requires_a_key() -> None:
    with pytest.raises(ImproperlyConfigured):
        EachlabsProvider(name="eachlabs")


def test_it_rejects_unknown_options() -> None:
    with pytest.raises(ImproperlyConfigured, match="colour"):
        EachlabsProvider(name="eachlabs", key=KEY, colour="red")


def test_it_keeps_the_key_and_secret_out_of_options() -> None:
    provider = EachlabsProvider(name="eachlabs", key=KEY, webhook_secret=SECRET)
    assert KEY not in repr(provider.options)
    assert SECRET not in repr(provider.options)
    assert provider.label == "eachlabs"
    assert "storage.eachlabs.ai" in provider.download_hosts


# -- create ---------------------------------------------------------------------------------


def test_it_creates_a_prediction_with_the_documented_shape(emulator, provider) -> None:
    submitted = provider.submit(make_job(resolution="720p", duration="5"))

    assert submitted.request_id in emulator.predictions
    (call,) = create_calls(emulator)
    assert call.status == 200
    assert call.headers["authorization"] == f"Bearer {KEY}"
    assert call.json == {
        "model": "bytedance-seedance-2-0-text-to-video-fast",
        "version": "0.0.1",
        "input": {"prompt": "A lighthouse at dusk, slow push in", "resolution": "720p",
                  "duration": "5"},
    }


def test_it_sends_the_webhook_url_and_secret(emulator, provider) -> None:
    provider.submit(make_job(webhook_url="https://app.example.com/hooks/eachlabs/abc"))

    (call,) = create_calls(emulator)
    assert call.json["webhook_url"] == "https://app.example.com/hooks/eachlabs/abc"
    assert call.json["webhook_secret"] == SECRET


def test_it_refuses_a_webhook_without_a_secret(emulator, delays) -> None:
    provider = EachlabsProvider(name="eachlabs", key=KEY, api_url=emulator.url,
                                sleep=delays.append)

    with pytest.raises(ProviderError) as caught:
        provider.submit(make_job(webhook_url="https://app.example.com/hooks/x"))
    assert caught.value.permanent
    assert emulator.creates == 0


@pytest.mark.parametrize(("endpoint", "slug"), sorted(MODELS.items()))
def test_it_maps_every_offered_endpoint_to_its_slug(emulator, provider, endpoint, slug) -> None:
    if "image-to-video" in endpoint:
        job = make_job(endpoint, files={"image_url": [Path("a.png")]},
                       urls={"image_url": [START]})
    else:
        job = make_job(endpoint)

    provider.submit(job)

    assert emulator.creates_by_model == {slug: 1}


@pytest.mark.parametrize("endpoint", [
    "bytedance/seedance-2.0/reference-to-video",
    "bytedance/seedance-2.0/fast/reference-to-video",
    "fal-ai/bytedance/seedance/v1/lite/image-to-video",
    "fal-ai/bytedance/seedance/v1/pro/image-to-video",
])
def test_it_refuses_endpoints_eachlabs_does_not_offer(emulator, provider, endpoint) -> None:
    with pytest.raises(ProviderError) as caught:
        provider.submit(make_job(endpoint))

    assert caught.value.permanent
    assert caught.value.message == (
        f"eachlabs does not offer {endpoint}; choose fal or the offline renderer."
    )
    assert emulator.creates == 0


def test_it_sends_input_files_as_the_given_urls(emulator, provider) -> None:
    job = i2v_job()
    submitted = provider.submit(job)

    seen = emulator.predictions[submitted.request_id].input
    assert seen["image_url"] == job.urls["image_url"][0]
    assert seen["end_image_url"] == job.urls["end_image_url"][0]
    assert "data:" not in json.dumps(create_calls(emulator)[0].json)


def test_it_sends_plural_file_arguments_as_lists(emulator, provider) -> None:
    job = make_job(files={"image_urls": [Path("a.png"), Path("b.png")]},
                   urls={"image_urls": [START, END]})
    submitted = provider.submit(job)

    assert emulator.predictions[submitted.request_id].input["image_urls"] == [START, END]


def test_it_refuses_a_file_without_a_public_url(emulator, provider) -> None:
    job = make_job(I2V, files={"image_url": [Path("start.png")]}, urls={})

    with pytest.raises(ProviderError) as caught:
        provider.submit(job)
    assert caught.value.permanent
    assert "image_url" in caught.value.message
    assert emulator.creates == 0


@pytest.mark.parametrize("url", [
    "data:image/png;base64,iVBORw0KGgo=",
    "http://localhost:8000/media/start.png",
    "file:///tmp/start.png",
])
def test_it_refuses_urls_eachlabs_cannot_fetch(emulator, provider, url) -> None:
    job = make_job(I2V, files={"image_url": [Path("start.png")]}, urls={"image_url": [url]})

    with pytest.raises(ProviderError) as caught:
        provider.submit(job)
    assert caught.value.permanent
    assert emulator.creates == 0


def test_it_sends_the_seed_as_a_string(emulator, provider) -> None:
    submitted = provider.submit(make_job(seed=42))

    assert emulator.predictions[submitted.request_id].input["seed"] == "42"


def test_it_leaves_out_the_random_seed(emulator, provider) -> None:
    submitted = provider.submit(make_job(seed=-1))

    assert "seed" not in emulator.predictions[submitted.request_id].input


def test_it_sends_seedance_1_durations_as_integers(emulator, provider) -> None:
    endpoint = "fal-ai/bytedance/seedance/v1/lite/text-to-video"
    submitted = provider.submit(make_job(endpoint, duration="6"))

    assert emulator.predictions[submitted.request_id].input["duration"] == 6


# -- create: retries and lost answers -----------------------------------------------------------


def test_it_retries_429_with_full_jitter(emulator, provider, delays) -> None:
    emulator.faults.add("create", status=429, times=2)

    submitted = provider.submit(make_job())

    assert submitted.request_id in emulator.predictions
    assert emulator.creates == 3
    assert len(emulator.predictions) == 1
    assert len(delays) == 2
    for attempt, delay in enumerate(delays):
        assert 0 <= delay <= min(10.0, 0.5 * 2**attempt)


def test_it_honours_retry_after(emulator, provider, delays) -> None:
    emulator.faults.add("create", status=429, retry_after=3)

    provider.submit(make_job())

    assert delays == [3.0]


def test_it_gives_up_after_five_attempts(emulator, provider, delays) -> None:
    emulator.faults.add("create", status=429, times=10)

    with pytest.raises(ProviderError) as caught:
        provider.submit(make_job())
    assert not caught.value.permanent
    assert not caught.value.outcome_unknown
    assert emulator.creates == 5
    assert len(delays) == 4
    assert emulator.predictions == {}


def test_it_does_not_wait_minutes_for_retry_after(emulator, provider, delays) -> None:
    emulator.faults.add("create", status=429, retry_after=60)

    with pytest.raises(ProviderError) as caught:
        provider.submit(make_job())
    assert not caught.value.outcome_unknown
    assert "60 s" in caught.value.message
    assert emulator.creates == 1
    assert delays == []


def test_it_retries_when_the_connection_never_opened(delays) -> None:
    provider = EachlabsProvider(name="eachlabs", key=KEY, api_url=f"http://127.0.0.1:{free_port()}",
                                sleep=delays.append, timeout=1.0)

    with pytest.raises(ProviderError) as caught:
        provider.submit(make_job())
    assert not caught.value.permanent
    assert not caught.value.outcome_unknown
    assert len(delays) == 4


def test_a_dropped_answer_is_outcome_unknown_and_never_resent(emulator, provider,
                                                              delays) -> None:
    emulator.faults.add("create", drop_response=True)

    with pytest.raises(ProviderError) as caught:
        provider.submit(make_job())
    assert caught.value.outcome_unknown
    assert emulator.creates == 1
    assert len(emulator.predictions) == 1
    assert delays == []


def test_a_read_timeout_is_outcome_unknown_and_never_resent(emulator, delays) -> None:
    provider = EachlabsProvider(name="eachlabs", key=KEY, api_url=emulator.url,
                                sleep=delays.append, timeout=0.3)
    emulator.faults.add("create", slow=2.0)

    with pytest.raises(ProviderError) as caught:
        provider.submit(make_job())
    assert caught.value.outcome_unknown
    assert emulator.creates == 1
    assert delays == []


def test_a_500_on_create_is_outcome_unknown_and_not_resent(emulator, provider, delays) -> None:
    emulator.faults.add("create", status=500)

    with pytest.raises(ProviderError) as caught:
        provider.submit(make_job())
    assert caught.value.outcome_unknown
    assert emulator.creates == 1
    assert delays == []


def test_402_is_permanent_with_the_credit_message(emulator, provider) -> None:
    emulator.faults.add("create", status=402)

    with pytest.raises(ProviderError) as caught:
        provider.submit(make_job())
    assert caught.value.permanent
    assert caught.value.message == "The eachlabs account is out of credit."


def test_a_refused_input_is_permanent_in_plain_words(emulator, provider) -> None:
    job = make_job(I2V)  # no image_url: the emulator answers 400 as eachlabs does

    with pytest.raises(ProviderError) as caught:
        provider.submit(job)
    assert caught.value.permanent
    assert "Invalid input for model; image_url is required" in caught.value.message


@pytest.mark.parametrize("code", [400, 401, 403, 422])
def test_client_errors_are_permanent(emulator, provider, code) -> None:
    emulator.faults.add("create", status=code)

    with pytest.raises(ProviderError) as caught:
        provider.submit(make_job())
    assert caught.value.permanent
    assert not caught.value.outcome_unknown
    assert emulator.creates == 1


def test_a_wrong_key_is_permanent_and_never_shown(emulator, delays) -> None:
    provider = EachlabsProvider(name="eachlabs", key="wrong-key-secret", api_url=emulator.url,
                                sleep=delays.append)

    with pytest.raises(ProviderError) as caught:
        provider.submit(make_job())
    assert caught.value.permanent
    assert "Invalid or missing API key" in caught.value.message
    assert "wrong-key-secret" not in caught.value.message


# -- status -----------------------------------------------------------------------------------


def test_each_poll_advances_one_step(emulator, provider) -> None:
    request_id = provider.submit(make_job()).request_id

    states = [provider.status(endpoint=T2V_FAST, request_id=request_id).state
              for _ in range(4)]

    assert states == ["queued", "running", "completed", "completed"]
    assert emulator.gets[request_id] == 4


@pytest.mark.parametrize(("raw", "state"), [
    ("created", "queued"),
    ("starting", "queued"),
    ("processing", "running"),
    ("success", "completed"),
    ("succeeded", "completed"),
    ("error", "failed"),
    ("failed", "failed"),
    ("cancelled", "canceled"),
])
def test_it_maps_every_documented_status(emulator, provider, raw, state) -> None:
    request_id = provider.submit(make_job()).request_id
    emulator.set_status(request_id, raw)

    assert provider.status(endpoint=T2V_FAST, request_id=request_id).state == state


def test_an_unknown_status_is_an_error_not_a_guess(emulator, provider) -> None:
    request_id = provider.submit(make_job()).request_id
    emulator.set_status(request_id, "hibernating")

    with pytest.raises(ProviderError) as caught:
        provider.status(endpoint=T2V_FAST, request_id=request_id)
    assert not caught.value.permanent


@pytest.mark.parametrize(("logs", "lines"), [
    ("loading model\nstep 1/30", ("loading model", "step 1/30")),
    (["loading model", "step 2/30"], ("loading model", "step 2/30")),
    (None, ()),
])
def test_it_reads_logs_in_every_shape(emulator, provider, logs, lines) -> None:
    request_id = provider.submit(make_job()).request_id
    emulator.set_status(request_id, "processing", logs=logs)

    assert provider.status(endpoint=T2V_FAST, request_id=request_id).logs == lines


def test_a_failed_prediction_reports_the_error_text(emulator, provider) -> None:
    emulator.faults.add("create", fail_prediction=True)
    request_id = provider.submit(make_job()).request_id
    emulator.finish(request_id)

    status = provider.status(endpoint=T2V_FAST, request_id=request_id)

    assert status.state == "failed"
    assert status.error == emulator.fail_message
    assert status.permanent
    with pytest.raises(ProviderError) as caught:
        provider.result(endpoint=T2V_FAST, request_id=request_id)
    assert caught.value.message == emulator.fail_message
    assert caught.value.permanent


def test_a_transient_failure_code_is_not_permanent(emulator, provider) -> None:
    request_id = provider.submit(make_job()).request_id
    emulator.set_status(request_id, "error", output={
        "error_code": "PROVIDER_SERVER_ERROR",
        "error_message": "The model service is temporarily unavailable.",
    })

    status = provider.status(endpoint=T2V_FAST, request_id=request_id)

    assert status.error == "The model service is temporarily unavailable."
    assert not status.permanent


def test_a_legacy_failure_string_is_shown(emulator, provider) -> None:
    request_id = provider.submit(make_job()).request_id
    emulator.set_status(request_id, "failed", output="Error: Model timeout after 30s")

    status = provider.status(endpoint=T2V_FAST, request_id=request_id)

    assert status.error == "Error: Model timeout after 30s"


def test_status_retries_server_errors_and_drops(emulator, provider, delays) -> None:
    request_id = provider.submit(make_job()).request_id
    emulator.faults.add("get", status=503, times=2)
    emulator.faults.add("get", drop_response=True)
    emulator.faults.add("get", status=429, retry_after=1)

    status = provider.status(endpoint=T2V_FAST, request_id=request_id)

    assert status.state in ("queued", "running")
    assert len(delays) == 4
    assert delays[3] == 1.0


def test_status_gives_up_without_claiming_permanence(emulator, provider, delays) -> None:
    request_id = provider.submit(make_job()).request_id
    emulator.faults.add("get", status=500, times=10)

    with pytest.raises(ProviderError) as caught:
        provider.status(endpoint=T2V_FAST, request_id=request_id)
    assert not caught.value.permanent
    assert len(delays) == 4


def test_status_of_an_unknown_prediction_is_permanent(provider) -> None:
    with pytest.raises(ProviderError) as caught:
        provider.status(endpoint=T2V_FAST, request_id="no-such-prediction")
    assert caught.value.permanent


# -- result -----------------------------------------------------------------------------------


def fetch(url: str) -> tuple[int, bytes]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    try:
        connection.request("GET", parts.path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_result_gives_the_video_url_which_serves_the_mp4(emulator, provider) -> None:
    request_id = provider.submit(make_job(seed=7)).request_id
    emulator.finish(request_id)

    result = provider.result(endpoint=T2V_FAST, request_id=request_id)

    assert result.video_url == emulator.file_url(request_id)
    assert result.seed == 7
    assert fetch(result.video_url) == (200, emulator.video)


@pytest.mark.parametrize("shape", ["string", "object", "list", "list of objects"])
def test_result_reads_every_output_shape(emulator, provider, shape) -> None:
    request_id = provider.submit(make_job()).request_id
    url = "https://storage.eachlabs.ai/predictions/abc/video.mp4"
    output = {"string": url, "object": {"url": url}, "list": [url],
              "list of objects": [{"url": url}]}[shape]
    emulator.set_status(request_id, "success", output=output)

    assert provider.result(endpoint=T2V_FAST, request_id=request_id).video_url == url


def test_result_before_completion_is_not_permanent(emulator, provider) -> None:
    request_id = provider.submit(make_job()).request_id

    with pytest.raises(ProviderError) as caught:
        provider.result(endpoint=T2V_FAST, request_id=request_id)
    assert not caught.value.permanent
    assert "not finished" in caught.value.message


# -- cancel -----------------------------------------------------------------------------------


def test_cancel_returns_true_and_the_status_is_canceled(emulator, provider) -> None:
    request_id = provider.submit(make_job()).request_id

    assert provider.cancel(endpoint=T2V_FAST, request_id=request_id) is True
    assert provider.status(endpoint=T2V_FAST, request_id=request_id).state == "canceled"
    assert emulator.cancels[request_id] == 1


def test_cancel_after_completion_returns_false(emulator, provider) -> None:
    request_id = provider.submit(make_job()).request_id
    emulator.finish(request_id)

    assert provider.cancel(endpoint=T2V_FAST, request_id=request_id) is False


def test_cancel_of_an_unknown_prediction_is_permanent(provider) -> None:
    with pytest.raises(ProviderError) as caught:
        provider.cancel(endpoint=T2V_FAST, request_id="no-such-prediction")
    assert caught.value.permanent


def test_a_canceled_prediction_sends_no_webhook(emulator, provider) -> None:
    request_id = provider.submit(make_job(webhook_url="http://127.0.0.1:9/hook")).request_id
    provider.cancel(endpoint=T2V_FAST, request_id=request_id)
    emulator.finish(request_id)

    assert emulator.wait_for_deliveries(1, timeout=0.2) == []


# -- webhooks: verification --------------------------------------------------------------------


SUCCESS = json.dumps({"exec_id": "pred-1", "flow_id": None, "status": "succeeded",
                      "output": {"url": "https://storage.eachlabs.ai/p/1.mp4"},
                      "error": ""}).encode()
FAILURE = json.dumps({"exec_id": "pred-2", "flow_id": None, "status": "failed", "output": [
    {"id": "", "status": "", "output": "", "error": {
        "error_code": "EXECUTION_TIMEOUT",
        "error_message": "The execution exceeded its time limit."}}], "error": ""}).encode()


def test_the_right_secret_gives_an_event(provider) -> None:
    event = provider.parse_webhook(headers={"X-Webhook-Secret": SECRET}, body=SUCCESS)

    assert event.request_id == "pred-1"
    assert event.status.state == "completed"
    assert event.result is not None
    assert event.result.video_url == "https://storage.eachlabs.ai/p/1.mp4"


def test_the_secret_header_name_is_case_insensitive(provider) -> None:
    event = provider.parse_webhook(headers={"x-webhook-secret": SECRET}, body=SUCCESS)

    assert event.request_id == "pred-1"


def test_a_failure_delivery_carries_the_message(provider) -> None:
    event = provider.parse_webhook(headers={"X-Webhook-Secret": SECRET}, body=FAILURE)

    assert event.status.state == "failed"
    assert event.status.error == "The execution exceeded its time limit."
    assert not event.status.permanent
    assert event.result is None


@pytest.mark.parametrize("headers", [
    {},
    {"X-Webhook-Secret": ""},
    {"X-Webhook-Secret": "whsec-test-0123456780"},  # same length, last character differs
    {"X-Webhook-Secret": SECRET[:-1]},  # one character short
    {"X-Webhook-Secret": SECRET + "0"},  # one character long
    {"X-Webhook-Secret": "ünïcode-sécret"},
    {"Authorization": f"Bearer {SECRET}"},
])
def test_a_missing_or_wrong_secret_is_rejected(provider, headers) -> None:
    with pytest.raises(WebhookRejected):
        provider.parse_webhook(headers=headers, body=SUCCESS)


@pytest.mark.parametrize("body", [
    b"", b"{", b"not json", b"\xff\xfe", b"[]", b"null", b'"text"',
    b'{"status": "succeeded"}', b'{"exec_id": 5, "status": "succeeded"}',
    b'{"exec_id": "x", "status": "exploded"}', b"[" * 100_000,
])
def test_malformed_deliveries_are_rejected(provider, body) -> None:
    with pytest.raises(WebhookRejected):
        provider.parse_webhook(headers={"X-Webhook-Secret": SECRET}, body=body)


def test_nothing_is_accepted_without_a_configured_secret() -> None:
    provider = EachlabsProvider(name="eachlabs", key=KEY)

    with pytest.raises(WebhookRejected):
        provider.parse_webhook(headers={"X-Webhook-Secret": ""}, body=SUCCESS)


def test_a_valid_signature_is_accepted(provider) -> None:
    event = provider.parse_webhook(headers=signed(SUCCESS), body=SUCCESS)

    assert event.status.state == "completed"


def test_a_signature_over_another_body_is_rejected(provider) -> None:
    with pytest.raises(WebhookRejected):
        provider.parse_webhook(headers=signed(FAILURE), body=SUCCESS)


def test_a_stale_signature_is_rejected(provider) -> None:
    with pytest.raises(WebhookRejected):
        provider.parse_webhook(headers=signed(SUCCESS, at=time.time() - 301), body=SUCCESS)


def test_a_signature_can_be_required(emulator) -> None:
    provider = EachlabsProvider(name="eachlabs", key=KEY, webhook_secret=SECRET,
                                require_signature=True)

    with pytest.raises(WebhookRejected):
        provider.parse_webhook(headers={"X-Webhook-Secret": SECRET}, body=SUCCESS)
    assert provider.parse_webhook(headers=signed(SUCCESS), body=SUCCESS).request_id == "pred-1"


# -- webhooks: real delivery from the emulator ---------------------------------------------------


class Receiver:
    """A tiny webhook endpoint: answers the given statuses in turn, keeps what it got."""

    def __init__(self, answers: tuple[int, ...] = (200,)) -> None:
        self.received: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()
        answers_left = list(answers)
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.put((dict(self.headers.items()), body))
                status = answers_left.pop(0) if len(answers_left) > 1 else answers_left[0]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
               daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/eachlabs"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


def test_the_emulators_webhook_is_parsed_into_a_completed_event(emulator, provider,
                                                               receiver) -> None:
    request_id = provider.submit(make_job(webhook_url=receiver.url)).request_id
    emulator.finish(request_id)

    headers, body = receiver.received.get(timeout=5)
    assert headers["X-Webhook-Secret"] == SECRET
    assert headers["X-Webhook-Signature"].startswith("sha256=")
    event = provider.parse_webhook(headers=headers, body=body)
    assert event.request_id == request_id
    assert event.status.state == "completed"
    assert event.result is not None
    assert event.result.video_url == emulator.file_url(request_id)


def test_the_emulators_failure_webhook_is_parsed(emulator, provider, receiver) -> None:
    emulator.faults.add("create", fail_prediction=True)
    request_id = provider.submit(make_job(webhook_url=receiver.url)).request_id
    emulator.finish(request_id)

    headers, body = receiver.received.get(timeout=5)
    event = provider.parse_webhook(headers=headers, body=body)
    assert event.status.state == "failed"
    assert event.status.error == emulator.fail_message


def test_the_emulator_retries_a_webhook_three_times_in_all(emulator, provider) -> None:
    receiver = Receiver(answers=(500, 503, 200))
    try:
        request_id = provider.submit(make_job(webhook_url=receiver.url)).request_id
        emulator.finish(request_id)

        deliveries = emulator.wait_for_deliveries(3)
    finally:
        receiver.close()
    assert [d.status for d in deliveries] == [500, 503, 200]
    # Every attempt of one delivery carries the same signature and timestamp.
    assert len({d.headers["X-Webhook-Signature"] for d in deliveries}) == 1


def test_the_emulator_stops_after_three_failed_attempts(emulator, provider) -> None:
    receiver = Receiver(answers=(500,))
    try:
        request_id = provider.submit(make_job(webhook_url=receiver.url)).request_id
        emulator.finish(request_id)
        emulator.wait_for_deliveries(4, timeout=0.5)
    finally:
        receiver.close()
    assert [d.attempt for d in emulator.deliveries] == [1, 2, 3]


def test_a_never_webhook_fault_sends_nothing(emulator, provider, receiver) -> None:
    emulator.faults.add("create", never_webhook=True)
    request_id = provider.submit(make_job(webhook_url=receiver.url)).request_id
    emulator.finish(request_id)

    assert emulator.wait_for_deliveries(1, timeout=0.2) == []
    assert provider.status(endpoint=T2V_FAST, request_id=request_id).state == "completed"


# -- webhooks: anything at all ---------------------------------------------------------------------

FUZZ_PROVIDER = EachlabsProvider(name="eachlabs", key=KEY, webhook_secret=SECRET)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
payloads = st.fixed_dictionaries({}, optional={
    "exec_id": st.text(max_size=12) | json_values,
    "status": st.sampled_from(["succeeded", "failed", "success", "error", "cancelled",
                               "processing", "SUCCEEDED", ""]) | json_values,
    "output": json_values | st.fixed_dictionaries({"url": json_values})
    | st.lists(st.fixed_dictionaries({"error": json_values}), max_size=2),
    "error": json_values,
})
bodies = (st.binary(max_size=200) | json_values.map(json.dumps)
          | payloads.map(json.dumps)).map(lambda b: b if isinstance(b, bytes) else b.encode())
secret_values = st.just(SECRET) | st.text(max_size=30) | st.just(SECRET.upper())
# Half the time the right secret alone, so the payload parsing gets fuzzed too.
header_sets = st.just({"X-Webhook-Secret": SECRET}) | st.dictionaries(
    st.sampled_from(["X-Webhook-Secret", "x-webhook-secret", "X-Webhook-Signature",
                     "X-Webhook-Timestamp", "Content-Type"]) | st.text(max_size=10),
    secret_values, max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(headers=header_sets, body=bodies)
def test_parse_webhook_gives_an_event_or_rejects(headers, body) -> None:
    try:
        event = FUZZ_PROVIDER.parse_webhook(headers=headers, body=body)
    except WebhookRejected:
        return
    assert isinstance(event, WebhookEvent)
    assert event.request_id
    assert event.status.state in event.status.STATES
