"""FalProvider against the fal emulator over real sockets, plus MockTransport unit tests.

The emulator (tests/emulators/fal.py) speaks the wire formats of provider-protocols.md §1; the
provider's retry sleep is a recorder, so nothing here waits on backoff.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import av
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from storyboard.providers.base import Job, ProviderError, WebhookRejected
from storyboard.providers.fal import FalProvider, app_base
from storyboard.providers.http import HttpProvider, describe_error
from tests.emulators.base import WebhookSink
from tests.emulators.fal import FalEmulator, Outcome

KEY = "test-fal-key"
START = 1_800_000_000.0
V2 = "bytedance/seedance-2.0/fast/text-to-video"
V1 = "fal-ai/bytedance/seedance/v1/lite/text-to-video"
I2V = "bytedance/seedance-2.0/fast/image-to-video"
R2V = "bytedance/seedance-2.0/fast/reference-to-video"
HEADERS = ("X-Fal-Webhook-Request-Id", "X-Fal-Webhook-User-Id", "X-Fal-Webhook-Timestamp",
           "X-Fal-Webhook-Signature")


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class UpperBound:
    """A random source that always draws the top of the range, to test the caps."""

    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.fixture(scope="module")
def mp4() -> bytes:
    # A real (tiny) MP4, so the CDN path serves something a decoder accepts.
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=24)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for shade in (0, 128, 255):
            frame = av.VideoFrame.from_image(Image.new("RGB", (32, 32), (shade, 0, 0)))
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buf.getvalue()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fal(mp4: bytes, clock: FakeClock) -> Iterator[FalEmulator]:
    with FalEmulator(key=KEY, video=mp4, clock=clock) as emulator:
        yield emulator


@pytest.fixture
def delays() -> list[float]:
    return []


@pytest.fixture
def provider(fal: FalEmulator, delays: list[float]) -> Iterator[FalProvider]:
    provider = FalProvider(name="fal", **fal.provider_options(), sleep=delays.append)
    yield provider
    provider.close()


def job(endpoint: str = V2, *, files: dict | None = None, webhook_url: str | None = None,
        **arguments: object) -> Job:
    return Job(uid="7f1c0c2e-0000-4000-8000-000000000001", endpoint=endpoint,
               arguments={"prompt": "a lighthouse at dusk", **arguments},
               files=files or {}, webhook_url=webhook_url)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def png(size: int) -> bytes:
    # PNG magic, then filler: the provider only looks at the first bytes.
    return (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * (size // 256 + 1))[:size]


def assert_full_jitter(delays: list[float], base: float = 0.1, cap: float = 10.0) -> None:
    for attempt, delay in enumerate(delays):
        assert 0 <= delay <= min(cap, base * 2 ** attempt)


# Queue: submit, status, result, cancel -------------------------------------------------


@pytest.mark.parametrize(("endpoint", "base", "extra"), [
    (V2, "bytedance/seedance-2.0", {}),
    ("bytedance/seedance-2.0/image-to-video", "bytedance/seedance-2.0",
     {"image_url": "https://example.com/start.png"}),
    (V1, "fal-ai/bytedance", {}),
])
def test_it_runs_a_job_through_the_queue(fal, provider, endpoint, base, extra):
    submitted = provider.submit(job(endpoint, resolution="720p", duration="5", **extra))

    seen = [provider.status(endpoint=endpoint, request_id=submitted.request_id)
            for _ in range(4)]
    result = provider.result(endpoint=endpoint, request_id=submitted.request_id)

    assert [(s.state, s.queue_position) for s in seen] == [
        ("queued", 2), ("queued", 1), ("running", None), ("completed", None)]
    assert seen[2].logs == ("Loading model",)
    assert seen[3].logs == ("Loading model", "Generated video")
    assert result.video_url == fal.video_url(submitted.request_id)
    assert result.seed == 42
    submit, *polls = fal.calls
    assert submit.path == f"/queue/{endpoint}"
    assert polls[0].path == f"/queue/{base}/requests/{submitted.request_id}/status?logs=1"
    assert polls[-1].path == f"/queue/{base}/requests/{submitted.request_id}"
    # The model input goes unwrapped, exactly as given.
    assert fal.jobs[submitted.request_id].input == {
        "prompt": "a lighthouse at dusk", "resolution": "720p", "duration": "5", **extra}


def test_it_sends_the_key_and_the_webhook_url(fal, provider):
    hook = "https://storyboard.example/hooks/fal/7f1c/?a=1&b=2"

    provider.submit(job(webhook_url=hook))

    call = fal.calls[0]
    assert call.headers["authorization"] == f"Key {KEY}"
    assert parse_qs(urlsplit(call.path).query) == {"fal_webhook": [hook]}
    assert fal.submits.by_webhook[hook] == 1


def test_it_serves_the_generated_video_from_the_cdn(fal, provider, mp4):
    submitted = provider.submit(job())
    fal.finish(submitted.request_id)
    result = provider.result(endpoint=V2, request_id=submitted.request_id)

    data = httpx.get(result.video_url).content

    assert data == mp4
    with av.open(io.BytesIO(data)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 3


def test_it_refuses_the_result_before_completion(provider):
    submitted = provider.submit(job())

    with pytest.raises(ProviderError, match="still in progress") as caught:
        provider.result(endpoint=V2, request_id=submitted.request_id)
    assert caught.value.permanent


@pytest.mark.parametrize(("outcome", "permanent", "error"), [
    # The status says only "Invalid status code: 422"; the words come from the result.
    (Outcome.model_error(), True, "prompt: field required"),
    (Outcome.runner_error(), False,
     "fal.ai had trouble running the model (Runner disconnected); try again."),
])
def test_it_reports_a_failed_job(fal, provider, outcome, permanent, error):
    fal.script(outcome)
    submitted = provider.submit(job())
    fal.finish(submitted.request_id)

    status = provider.status(endpoint=V2, request_id=submitted.request_id)

    assert status.state == "failed"
    assert status.error == error
    assert status.permanent is permanent


def test_it_raises_the_model_error_from_the_result(fal, provider):
    fal.script(Outcome.model_error())
    submitted = provider.submit(job())
    fal.finish(submitted.request_id)

    with pytest.raises(ProviderError, match="prompt: field required") as caught:
        provider.result(endpoint=V2, request_id=submitted.request_id)
    assert caught.value.permanent


def test_it_explains_a_content_policy_refusal(fal, provider):
    fal.script(Outcome.content_policy())
    submitted = provider.submit(job())
    fal.finish(submitted.request_id)

    with pytest.raises(ProviderError) as caught:
        provider.result(endpoint=V2, request_id=submitted.request_id)
    assert "content checker flagged the prompt" in caught.value.message
    assert caught.value.permanent


def test_it_cancels_a_queued_job(fal, provider):
    submitted = provider.submit(job())

    assert provider.cancel(endpoint=V2, request_id=submitted.request_id) is True
    status = provider.status(endpoint=V2, request_id=submitted.request_id)

    assert status.state == "canceled"
    assert fal.calls[1].method == "PUT"
    assert fal.calls[1].path == f"/queue/bytedance/seedance-2.0/requests/{submitted.request_id}" \
        "/cancel"
    assert fal.calls[1].status == 202


def test_it_cannot_cancel_a_finished_job(fal, provider):
    submitted = provider.submit(job())
    fal.finish(submitted.request_id)

    assert provider.cancel(endpoint=V2, request_id=submitted.request_id) is False
    assert fal.calls[-1].status == 400


def test_it_reports_an_unknown_request_on_cancel(provider):
    with pytest.raises(ProviderError) as caught:
        provider.cancel(endpoint=V2, request_id="no-such-request")
    assert caught.value.permanent


@pytest.mark.parametrize("endpoint", ["../../admin", "bytedance/seedance-2.0/x?y=1", "solo",
                                      "bytedance//x"])
def test_it_refuses_odd_endpoint_ids_without_calling_fal(fal, provider, endpoint):
    with pytest.raises(ProviderError) as caught:
        provider.submit(job(endpoint))
    assert caught.value.permanent
    assert fal.calls == []


@pytest.mark.parametrize(("endpoint", "base"), [
    ("bytedance/seedance-2.0/image-to-video", "bytedance/seedance-2.0"),
    ("bytedance/seedance-2.0/fast/text-to-video", "bytedance/seedance-2.0"),
    ("fal-ai/bytedance/seedance/v1/lite/text-to-video", "fal-ai/bytedance"),
    ("fal-ai/bytedance/seedance/v1.5/pro/image-to-video", "fal-ai/bytedance"),
    ("workflows/someone/flow/run", "workflows/someone/flow"),
    ("12345-my-app", "12345/my-app"),
    ("fal-ai/fast-sdxl", "fal-ai/fast-sdxl"),
])
def test_it_maps_endpoints_to_owner_and_alias(endpoint, base):
    assert app_base(endpoint) == base


def test_it_rejects_single_segment_ids():
    with pytest.raises(ValueError, match="Not a fal endpoint"):
        app_base("seedance")


def test_it_needs_a_key():
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured):
        FalProvider(name="fal")


def test_it_never_puts_the_key_in_errors_or_logs(fal, delays, caplog):
    provider = FalProvider(name="fal", **{**fal.provider_options(), "key": "sk-secret-9"},
                           sleep=delays.append)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(ProviderError) as refused:
        provider.submit(job())
    with pytest.raises(ProviderError) as failed:
        provider.status(endpoint=V2, request_id="x")

    assert "refused the credentials" in refused.value.message
    for text in (str(refused.value), str(failed.value), caplog.text, repr(provider)):
        assert "sk-secret-9" not in text


# Inputs: data URIs and fal storage -----------------------------------------------------


def test_it_inlines_small_files_as_data_uris(fal, provider, tmp_path):
    image = write(tmp_path / "start.png", png(1000))
    end = write(tmp_path / "end-frame", png(500))

    submitted = provider.submit(job(I2V, files={"image_url": [image], "end_image_url": [end]}))

    sent = fal.jobs[submitted.request_id].input
    assert sent["image_url"] == "data:image/png;base64," + base64.b64encode(
        image.read_bytes()).decode()
    # No extension: the content type comes from the magic bytes.
    assert sent["end_image_url"].startswith("data:image/png;base64,")
    assert fal.count("token") == fal.count("upload") == 0


def test_it_uploads_large_files_to_fal_storage(fal, delays, tmp_path):
    provider = FalProvider(name="fal", **fal.provider_options(), sleep=delays.append,
                           data_uri_max=1024)
    small = write(tmp_path / "a.png", png(1000))
    large = [write(tmp_path / f"ref{i}.png", png(5000 + i)) for i in range(2)]
    clip = write(tmp_path / "clip.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 2000)

    submitted = provider.submit(job(R2V, files={"image_urls": [small, *large],
                                                "video_urls": [clip]}))

    sent = fal.jobs[submitted.request_id].input
    assert sent["image_urls"][0].startswith("data:image/png;base64,")
    for url, path in zip(sent["image_urls"][1:], large, strict=True):
        assert httpx.get(url).content == path.read_bytes()
    assert httpx.get(sent["video_urls"][0]).headers["content-type"] == "video/mp4"
    # One token serves every upload, and uploads carry it instead of the API key.
    assert fal.count("token") == 1
    uploads = [c for c in fal.calls if c.kind == "upload"]
    assert len(uploads) == 3
    assert all(c.headers["authorization"].startswith("Bearer ") for c in uploads)
    assert all(KEY not in c.headers["authorization"] for c in uploads)
    assert uploads[0].headers["x-fal-file-name"] == "ref0.png"


def test_it_fetches_a_new_upload_token_when_it_expires(fal, delays, clock, tmp_path):
    provider = FalProvider(name="fal", **fal.provider_options(), sleep=delays.append,
                           data_uri_max=10)
    image = write(tmp_path / "a.png", png(100))

    provider.submit(job(I2V, files={"image_url": [image]}))
    clock.advance(3600 - 61)
    provider.submit(job(I2V, files={"image_url": [image]}))
    assert fal.count("token") == 1
    clock.advance(2)
    provider.submit(job(I2V, files={"image_url": [image]}))
    assert fal.count("token") == 2


def test_it_wants_one_file_for_a_single_url_argument(provider, tmp_path):
    image = write(tmp_path / "a.png", png(10))

    with pytest.raises(ProviderError, match="exactly one") as caught:
        provider.submit(job(files={"image_url": [image, image]}))
    assert caught.value.permanent


# Retries -------------------------------------------------------------------------------


def test_it_retries_a_rate_limited_submit(fal, provider, delays):
    fal.faults.add("submit", status=429, times=2)

    provider.submit(job())

    assert fal.submits.total == 3
    assert fal.submits.accepted == 1
    assert len(delays) == 2
    assert_full_jitter(delays)


def test_it_gives_up_after_five_attempts(fal, provider, delays):
    fal.faults.add("submit", status=429, times=10)

    with pytest.raises(ProviderError) as caught:
        provider.submit(job())

    assert fal.submits.total == 5
    assert fal.submits.accepted == 0
    assert len(delays) == 4
    assert_full_jitter(delays)
    assert not caught.value.permanent
    assert not caught.value.outcome_unknown


@pytest.mark.parametrize(("retry_after", "expected"), [(2, 2.0), (0, 0.0), (120, 10.0)])
def test_it_honours_retry_after_within_the_cap(fal, provider, delays, retry_after, expected):
    fal.faults.add("submit", status=429, retry_after=retry_after)

    provider.submit(job())

    assert delays == [expected]


@pytest.mark.parametrize("status", [502, 503, 504])
def test_it_retries_ingress_errors_on_submit(fal, provider, delays, status):
    fal.faults.add("submit", status=status, ingress=True, times=2)

    provider.submit(job())

    assert fal.submits.accepted == 1
    assert len(delays) == 2


@pytest.mark.parametrize("create", [False, True])
def test_it_never_resends_a_submit_after_a_fal_5xx(fal, provider, delays, create):
    # Whether or not fal queued it, a 5xx from fal itself leaves the outcome unknown.
    fal.faults.add("submit", status=500, create=create)

    with pytest.raises(ProviderError) as caught:
        provider.submit(job())

    assert caught.value.outcome_unknown
    assert fal.submits.total == 1
    assert fal.submits.accepted == int(create)
    assert delays == []


def test_it_never_resends_a_submit_whose_answer_was_dropped(fal, provider, delays):
    fal.faults.add("submit", drop_response=True)

    with pytest.raises(ProviderError) as caught:
        provider.submit(job())

    assert caught.value.outcome_unknown
    assert fal.submits.total == 1
    assert fal.submits.accepted == 1
    assert delays == []


def test_it_never_resends_a_submit_that_timed_out(fal, delays):
    provider = FalProvider(name="fal", **fal.provider_options(), sleep=delays.append,
                           timeout=httpx.Timeout(0.3))
    fal.faults.add("submit", slow=2)

    with pytest.raises(ProviderError) as caught:
        provider.submit(job())

    assert caught.value.outcome_unknown
    assert fal.submits.total == 1
    assert fal.submits.accepted == 1
    assert delays == []


def test_it_retries_a_submit_that_could_not_connect(delays):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens there now, so every connect is refused before any byte is sent.
    provider = FalProvider(name="fal", key=KEY, queue_url=f"http://127.0.0.1:{port}",
                           sleep=delays.append)

    with pytest.raises(ProviderError, match="could not be reached") as caught:
        provider.submit(job())

    assert not caught.value.outcome_unknown
    assert len(delays) == 4
    assert_full_jitter(delays)


def test_it_does_not_retry_a_validation_error(fal, provider, delays):
    fal.faults.add("submit", status=422)

    with pytest.raises(ProviderError, match="prompt: field required") as caught:
        provider.submit(job())

    assert caught.value.permanent
    assert not caught.value.outcome_unknown
    assert fal.submits.total == 1
    assert delays == []


def test_it_retries_status_polls_through_any_5xx_and_drops(fal, provider, delays):
    submitted = provider.submit(job())
    fal.faults.add("status", status=503, ingress=True)
    fal.faults.add("status", status=500)
    fal.faults.add("status", drop_response=True)

    status = provider.status(endpoint=V2, request_id=submitted.request_id)

    assert status.state == "queued"
    assert fal.count("status") == 4
    assert len(delays) == 3
    assert_full_jitter(delays)


def test_it_retries_a_slow_status_poll(fal, delays):
    provider = FalProvider(name="fal", **fal.provider_options(), sleep=delays.append,
                           timeout=httpx.Timeout(0.3))
    submitted = provider.submit(job())
    fal.faults.add("status", slow=1)

    assert provider.status(endpoint=V2, request_id=submitted.request_id).state == "queued"
    assert len(delays) == 1


# Webhooks over sockets -----------------------------------------------------------------


def accepting(provider: FalProvider, events: list):
    def respond(headers: dict[str, str], body: bytes) -> int:
        try:
            events.append(provider.parse_webhook(headers=headers, body=body))
        except WebhookRejected as exc:
            events.append(exc)
            return 401
        return 200
    return respond


def test_it_accepts_the_webhook_fal_sends_on_completion(fal, provider):
    events: list = []
    with WebhookSink(accepting(provider, events)) as sink:
        submitted = provider.submit(job(webhook_url=sink.url("/hooks/fal/7f1c/")))
        fal.finish(submitted.request_id)
        fal.wait_for_deliveries(1)

    [event] = events
    assert fal.deliveries[0].status == 200
    assert event.request_id == submitted.request_id
    assert event.status.state == "completed"
    assert event.result.video_url == fal.video_url(submitted.request_id)
    assert event.result.seed == 42


def test_it_accepts_every_duplicate_delivery(fal, provider):
    # Deduplication belongs to the webhook view; the provider judges each delivery alone.
    fal.faults.add("webhook", duplicates=2)
    events: list = []
    with WebhookSink(accepting(provider, events)) as sink:
        submitted = provider.submit(job(webhook_url=sink.url()))
        fal.finish(submitted.request_id)
        fal.wait_for_deliveries(3)

    assert [e.status.state for e in events] == ["completed"] * 3
    assert fal.count("jwks") == 1


def test_a_job_that_is_never_webhooked_is_found_by_polling(fal, provider):
    fal.faults.add("webhook", never=True)
    with WebhookSink() as sink:
        submitted = provider.submit(job(webhook_url=sink.url()))
        states = [provider.status(endpoint=V2, request_id=submitted.request_id).state
                  for _ in range(4)]
        fal.wait_for_deliveries()

    assert states[-1] == "completed"
    assert sink.received == []


# Webhook signature matrix (T5) ---------------------------------------------------------


@pytest.fixture
def delivery(fal, provider) -> tuple[dict[str, str], bytes]:
    submitted = provider.submit(job(webhook_url="https://storyboard.example/hooks/fal/"))
    fal.finish(submitted.request_id)
    body = fal.webhook_body(submitted.request_id)
    return fal.sign(body, request_id=submitted.request_id), body


def test_it_accepts_a_valid_delivery(provider, delivery):
    headers, body = delivery

    event = provider.parse_webhook(headers=headers, body=body)

    assert event.status.state == "completed"


def test_it_accepts_lower_case_header_names(provider, delivery):
    headers, body = delivery

    event = provider.parse_webhook(headers={k.lower(): v for k, v in headers.items()}, body=body)

    assert event.status.state == "completed"


def test_it_rejects_a_flipped_body_byte(provider, delivery):
    headers, body = delivery
    flipped = bytearray(body)
    flipped[len(body) // 2] ^= 0x01

    with pytest.raises(WebhookRejected, match="signature"):
        provider.parse_webhook(headers=headers, body=bytes(flipped))


@pytest.mark.parametrize(("skew", "accepted"), [
    (-301, False), (-300, True), (-299, True), (299, True), (300, True), (301, False)])
def test_it_allows_300_seconds_of_clock_skew(fal, provider, delivery, clock, skew, accepted):
    _, body = delivery
    request_id = json.loads(body)["request_id"]
    headers = fal.sign(body, request_id=request_id, timestamp=int(clock()) + skew)

    if accepted:
        assert provider.parse_webhook(headers=headers, body=body).status.state == "completed"
    else:
        with pytest.raises(WebhookRejected, match="timestamp"):
            provider.parse_webhook(headers=headers, body=body)


def test_it_rejects_a_delivery_for_another_fal_user(fal, provider, delivery):
    # Validly signed by fal, but for another customer who pointed their webhook at us.
    _, body = delivery
    headers = fal.sign(body, request_id=json.loads(body)["request_id"], user_id="someone-else")

    with pytest.raises(WebhookRejected, match="another fal user"):
        provider.parse_webhook(headers=headers, body=body)


def test_it_rejects_a_body_about_another_request(fal, provider, delivery):
    _, body = delivery
    headers = fal.sign(body, request_id="another-request")

    with pytest.raises(WebhookRejected, match="another request"):
        provider.parse_webhook(headers=headers, body=body)


@pytest.mark.parametrize("missing", HEADERS)
def test_it_rejects_a_delivery_missing_a_header(provider, delivery, missing):
    headers, body = delivery
    del headers[missing]

    with pytest.raises(WebhookRejected, match="missing header"):
        provider.parse_webhook(headers=headers, body=body)


@pytest.mark.parametrize("signature", ["zz" * 64, "ab" * 63, "ab" * 65, " " + "ab" * 63 + "a",
                                       "", "0x" + "ab" * 63])
def test_it_rejects_a_malformed_signature(provider, delivery, signature):
    headers, body = delivery
    headers["X-Fal-Webhook-Signature"] = signature

    with pytest.raises(WebhookRejected):
        provider.parse_webhook(headers=headers, body=body)


@pytest.mark.parametrize("timestamp", ["", "soon", "-1800000000", "1.8e9", " 1800000000"])
def test_it_rejects_a_malformed_timestamp(provider, delivery, timestamp):
    headers, body = delivery
    headers["X-Fal-Webhook-Timestamp"] = timestamp

    with pytest.raises(WebhookRejected):
        provider.parse_webhook(headers=headers, body=body)


def test_it_rejects_a_conflicting_duplicate_header(provider, delivery):
    headers, body = delivery
    headers["x-fal-webhook-user-id"] = "someone-else"

    with pytest.raises(WebhookRejected, match="twice"):
        provider.parse_webhook(headers=headers, body=body)


def test_it_follows_a_key_rotation_with_one_refetch(fal, provider, delivery, clock):
    headers, body = delivery
    provider.parse_webhook(headers=headers, body=body)
    assert fal.count("jwks") == 1
    clock.advance(120)
    fal.rotate_key()
    request_id = json.loads(body)["request_id"]

    rotated = fal.sign(body, request_id=request_id)
    assert provider.parse_webhook(headers=rotated, body=body).status.state == "completed"
    assert fal.count("jwks") == 2

    # Another miss within 60 s of that fetch must not fetch again.
    clock.advance(30)
    forged = fal.sign(body, request_id=request_id)
    forged["X-Fal-Webhook-Signature"] = Ed25519PrivateKey.generate().sign(b"x").hex()
    with pytest.raises(WebhookRejected, match="signature"):
        provider.parse_webhook(headers=forged, body=body)
    assert fal.count("jwks") == 2


def test_it_rejects_a_rotation_seen_too_soon_after_a_fetch(fal, provider, delivery, clock):
    # Throttling means a rotation within a minute of our fetch is refused; fal retries later.
    headers, body = delivery
    provider.parse_webhook(headers=headers, body=body)
    fal.rotate_key()
    clock.advance(10)
    rotated = fal.sign(body, request_id=json.loads(body)["request_id"])

    with pytest.raises(WebhookRejected):
        provider.parse_webhook(headers=rotated, body=body)
    clock.advance(60)
    assert provider.parse_webhook(headers=rotated, body=body).status.state == "completed"
    assert fal.count("jwks") == 2


def test_it_keeps_the_jwks_for_its_ttl(fal, provider, delivery, clock):
    headers, body = delivery
    provider.parse_webhook(headers=headers, body=body)
    clock.advance(200)
    provider.parse_webhook(headers=fal.sign(body, request_id=headers[HEADERS[0]]), body=body)
    assert fal.count("jwks") == 1

    clock.advance(86400)
    provider.parse_webhook(headers=fal.sign(body, request_id=headers[HEADERS[0]]), body=body)
    assert fal.count("jwks") == 2


def test_it_accepts_either_key_while_both_are_published(fal, provider, delivery, clock):
    headers, body = delivery
    fal.rotate_key(keep_old=True)
    rotated = fal.sign(body, request_id=headers[HEADERS[0]])

    assert provider.parse_webhook(headers=headers, body=body).status.state == "completed"
    assert provider.parse_webhook(headers=rotated, body=body).status.state == "completed"
    assert fal.count("jwks") == 1


def test_it_rejects_when_the_jwks_cannot_be_fetched(fal, provider, delivery):
    headers, body = delivery
    fal.faults.add("jwks", status=404)

    with pytest.raises(WebhookRejected, match="signing keys"):
        provider.parse_webhook(headers=headers, body=body)


def test_it_verifies_a_3_mb_body(fal, provider):
    submitted = provider.submit(job())
    body = json.dumps({"request_id": submitted.request_id, "status": "OK",
                       "payload": {"video": {"url": "https://v3.fal.media/files/x.mp4",
                                             "file_data": "A" * 3_000_000}, "seed": 7}}).encode()

    event = provider.parse_webhook(headers=fal.sign(body, request_id=submitted.request_id),
                                   body=body)

    assert len(body) > 3_000_000
    assert event.result.seed == 7


def test_it_reads_a_payload_error_as_a_permanent_failure(fal, provider):
    fal.script(Outcome.payload_error())
    submitted = provider.submit(job(webhook_url="https://storyboard.example/hooks/fal/"))
    fal.finish(submitted.request_id)
    body = fal.webhook_body(submitted.request_id)

    event = provider.parse_webhook(headers=fal.sign(body, request_id=submitted.request_id),
                                   body=body)

    assert event.status.state == "failed"
    assert event.status.permanent
    assert event.status.error.startswith("Response payload is not JSON serializable")
    assert event.result is None


@pytest.mark.parametrize(("outcome", "message", "permanent"), [
    (Outcome.model_error(), "prompt: field required", True),
    (Outcome.content_policy(), "content checker flagged the prompt", True),
    (Outcome.runner_error(), "Runner disconnected", False),
])
def test_it_reads_an_error_delivery_as_a_failure(fal, provider, outcome, message, permanent):
    fal.script(outcome)
    submitted = provider.submit(job(webhook_url="https://storyboard.example/hooks/fal/"))
    fal.finish(submitted.request_id)
    body = fal.webhook_body(submitted.request_id)

    event = provider.parse_webhook(headers=fal.sign(body, request_id=submitted.request_id),
                                   body=body)

    assert event.status.state == "failed"
    assert message in event.status.error
    assert event.status.permanent is permanent
    assert event.result is None


def test_it_rejects_webhooks_without_a_configured_user_id(fal, delivery):
    options = {**fal.provider_options(), "user_id": ""}
    provider = FalProvider(name="fal", **options)
    headers, body = delivery

    with pytest.raises(WebhookRejected, match="user_id"):
        provider.parse_webhook(headers=headers, body=body)


# MockTransport unit tests --------------------------------------------------------------


class Signer:
    """A JWKS served through httpx.MockTransport, for verifier tests without sockets."""

    def __init__(self, *, padded: bool = True) -> None:
        self.key = Ed25519PrivateKey.generate()
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).decode()
        self.jwks = {"keys": [
            {"kty": "RSA", "n": "ignored", "e": "AQAB"},
            {"kty": "OKP", "crv": "Ed25519", "x": x if padded else x.rstrip("=")},
        ]}
        self.fetches = 0

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            self.fetches += 1
            return httpx.Response(200, json=self.jwks)
        return httpx.MockTransport(handle)

    def sign(self, body: bytes, *, request_id: str = "req-1", user_id: str = "me",
             timestamp: str = str(int(START))) -> dict[str, str]:
        message = "\n".join([request_id, user_id, timestamp, hashlib.sha256(body).hexdigest()])
        return {"X-Fal-Webhook-Request-Id": request_id, "X-Fal-Webhook-User-Id": user_id,
                "X-Fal-Webhook-Timestamp": timestamp,
                "X-Fal-Webhook-Signature": self.key.sign(message.encode()).hex()}


def verifier(signer: Signer) -> FalProvider:
    return FalProvider(name="fal", key=KEY, user_id="me", transport=signer.transport(),
                       clock=lambda: START, sleep=lambda s: None)


OK_BODY = json.dumps({"request_id": "req-1", "gateway_request_id": "req-1", "status": "OK",
                      "payload": {"video": {"url": "https://v3.fal.media/files/a.mp4"},
                                  "seed": 3}}).encode()


@pytest.mark.parametrize("padded", [True, False])
def test_it_reads_jwks_keys_with_or_without_padding(padded):
    signer = Signer(padded=padded)

    event = verifier(signer).parse_webhook(headers=signer.sign(OK_BODY), body=OK_BODY)

    assert event.result.video_url == "https://v3.fal.media/files/a.mp4"
    assert event.result.seed == 3


def test_it_rejects_an_unknown_webhook_status():
    signer = Signer()
    body = json.dumps({"request_id": "req-1", "status": "MAYBE"}).encode()

    with pytest.raises(WebhookRejected, match="unknown webhook status"):
        verifier(signer).parse_webhook(headers=signer.sign(body), body=body)


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"\xff\xfe"])
def test_it_rejects_a_signed_body_that_is_not_a_json_object(body):
    signer = Signer()

    with pytest.raises(WebhookRejected, match="body"):
        verifier(signer).parse_webhook(headers=signer.sign(body), body=body)


MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10_000)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("set"), st.sampled_from(HEADERS), st.text(max_size=40)),
    st.tuples(st.just("drop"), st.sampled_from(HEADERS)),
    st.tuples(st.just("skew"), st.integers(-400, 400).filter(bool)),
    st.tuples(st.just("nibble"), st.integers(0, 127), st.integers(1, 15)),
)


def mutate(headers: dict[str, str], body: bytes, mutation: tuple) -> tuple[dict, bytes]:
    kind, *args = mutation
    headers = dict(headers)
    if kind == "flip" and body:
        index = args[0] % len(body)
        body = body[:index] + bytes([body[index] ^ args[1]]) + body[index + 1:]
    elif kind == "truncate":
        body = body[: args[0] % max(1, len(body))]
    elif kind == "append":
        body += args[0]
    elif kind == "set":
        headers[args[0]] = args[1]
    elif kind == "drop":
        headers.pop(args[0], None)
    elif kind == "skew" and HEADERS[2] in headers and headers[HEADERS[2]].isdigit():
        headers[HEADERS[2]] = str(int(headers[HEADERS[2]]) + args[0])
    elif kind == "nibble" and len(headers.get(HEADERS[3], "")) == 128:
        signature = headers[HEADERS[3]]
        digit = int(signature[args[0]], 16) ^ args[1]
        headers[HEADERS[3]] = signature[: args[0]] + f"{digit:x}" + signature[args[0] + 1:]
    return headers, body


def meaning(headers: dict[str, str], body: bytes) -> tuple:
    # Hex case is not a change of signature; everything else is.
    values = {k.lower(): v for k, v in headers.items()}
    signature = values.get(HEADERS[3].lower())
    values[HEADERS[3].lower()] = signature.lower() if signature is not None else None
    return tuple(sorted(values.items(), key=lambda item: item[0])), body


HYPOTHESIS_SIGNER = Signer()
HYPOTHESIS_VERIFIER = verifier(HYPOTHESIS_SIGNER)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(MUTATION, min_size=1, max_size=4))
def test_no_mutation_of_a_signed_delivery_is_accepted(mutations):
    headers, body = HYPOTHESIS_SIGNER.sign(OK_BODY), OK_BODY
    original = meaning(headers, body)
    for mutation in mutations:
        headers, body = mutate(headers, body, mutation)
    assume(meaning(headers, body) != original)

    with pytest.raises(WebhookRejected):
        HYPOTHESIS_VERIFIER.parse_webhook(headers=headers, body=body)


def mock_provider(handler, *, delays: list[float] | None = None, random=None) -> FalProvider:
    return FalProvider(name="fal", key=KEY, queue_url="https://queue.test",
                       transport=httpx.MockTransport(handler),
                       sleep=(delays if delays is not None else []).append, random=random)


def answering(*responses: httpx.Response | Exception):
    """A MockTransport handler answering in turn (repeating the last), counting requests."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = responses[min(len(seen), len(responses)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer
    handle.seen = seen  # type: ignore[attr-defined]
    return handle


SUBMITTED = httpx.Response(200, json={"request_id": "req-1", "status": "IN_QUEUE"})
FAL_STAMP = {"x-fal-request-id": "req-1"}


@pytest.mark.parametrize(("failure", "attempts", "unknown", "permanent"), [
    (httpx.Response(429), 5, False, False),
    (httpx.Response(408), 5, False, False),
    (httpx.Response(409), 5, False, False),
    (httpx.Response(503, text="nginx"), 5, False, False),
    (httpx.Response(502, headers=FAL_STAMP), 1, True, False),
    (httpx.Response(500), 1, True, False),
    (httpx.Response(501, headers=FAL_STAMP), 1, True, False),
    (httpx.Response(400, json={"detail": "bad"}), 1, False, True),
    (httpx.Response(404), 1, False, True),
    (httpx.ConnectError("refused"), 5, False, False),
    (httpx.ConnectTimeout("slow connect"), 5, False, False),
    (httpx.ReadTimeout("slow answer"), 1, True, False),
    (httpx.WriteTimeout("slow send"), 1, True, False),
    (httpx.ReadError("reset"), 1, True, False),
    (httpx.RemoteProtocolError("hung up"), 1, True, False),
    (httpx.DecodingError("garbled"), 1, True, False),
    (httpx.UnsupportedProtocol("ftp"), 1, False, True),
])
def test_the_submit_retry_policy(failure, attempts, unknown, permanent):
    handler = answering(failure)

    with pytest.raises(ProviderError) as caught:
        mock_provider(handler).submit(job())

    assert len(handler.seen) == attempts
    assert caught.value.outcome_unknown is unknown
    assert caught.value.permanent is permanent


@pytest.mark.parametrize(("failure", "attempts", "permanent"), [
    (httpx.Response(500, headers=FAL_STAMP), 5, False),
    (httpx.Response(502, headers=FAL_STAMP), 5, False),
    (httpx.ReadTimeout("slow answer"), 5, False),
    (httpx.RemoteProtocolError("hung up"), 5, False),
    (httpx.Response(422, json={"detail": "nope"}), 1, True),
])
def test_the_status_retry_policy(failure, attempts, permanent):
    handler = answering(failure)

    with pytest.raises(ProviderError) as caught:
        mock_provider(handler).status(endpoint=V2, request_id="req-1")

    assert len(handler.seen) == attempts
    assert not caught.value.outcome_unknown
    assert caught.value.permanent is permanent


def test_a_status_poll_recovers_after_a_read_timeout():
    body = {"status": "IN_PROGRESS", "logs": [{"message": "step 1"}, "bare"]}
    handler = answering(httpx.ReadTimeout("slow"), httpx.Response(202, json=body))

    status = mock_provider(handler).status(endpoint=V2, request_id="req-1")

    assert status.state == "running"
    assert status.logs == ("step 1", "bare")


def test_a_submit_recovers_after_a_refused_connection():
    handler = answering(httpx.ConnectError("refused"), SUBMITTED)

    assert mock_provider(handler).submit(job()).request_id == "req-1"
    assert len(handler.seen) == 2


def test_a_2xx_without_a_request_id_leaves_the_outcome_unknown():
    handler = answering(httpx.Response(200, json={"status": "IN_QUEUE"}))

    with pytest.raises(ProviderError) as caught:
        mock_provider(handler).submit(job())
    assert caught.value.outcome_unknown


def test_backoff_delays_reach_the_cap_and_no_further():
    delays: list[float] = []
    handler = answering(httpx.Response(429))
    provider = mock_provider(handler, delays=delays, random=UpperBound())
    provider.max_attempts = 10

    with pytest.raises(ProviderError):
        provider.submit(job())

    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0]


def test_the_client_is_built_on_first_use():
    provider = HttpProvider(name="x", transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    assert provider._client is None

    client = provider.client

    assert client is provider.client
    assert client.timeout == httpx.Timeout(30, connect=10)
    provider.close()
    assert provider._client is None


@pytest.mark.parametrize(("status_body", "state", "permanent"), [
    ({"status": "COMPLETED", "error": "Runner disconnected",
      "error_type": "runner_disconnected"}, "failed", False),
    ({"status": "COMPLETED", "error": "Request timed out", "error_type": "request_timeout"},
     "failed", False),
    ({"status": "COMPLETED", "error": "Invalid status code: 422"}, "failed", True),
    ({"status": "COMPLETED", "error": "Cancelled", "error_type": "client_cancelled"},
     "canceled", True),
    ({"status": "COMPLETED", "logs": None}, "completed", True),
    ({"status": "IN_QUEUE", "queue_position": 0}, "queued", True),
])
def test_it_maps_fal_statuses(status_body, state, permanent):
    handler = answering(httpx.Response(200, json=status_body))

    status = mock_provider(handler).status(endpoint=V2, request_id="req-1")

    assert status.state == state
    assert status.permanent is permanent


def test_it_refuses_an_unknown_status():
    handler = answering(httpx.Response(200, json={"status": "FAILED"}))

    with pytest.raises(ProviderError, match="unknown status"):
        mock_provider(handler).status(endpoint=V2, request_id="req-1")


def test_it_escapes_request_ids_in_urls():
    handler = answering(httpx.Response(200, json={"status": "IN_QUEUE", "queue_position": 0}))

    mock_provider(handler).status(endpoint=V2, request_id="../../x?y")

    assert handler.seen[0].url.raw_path == (
        b"/bytedance/seedance-2.0/requests/..%2F..%2Fx%3Fy/status?logs=1")


def test_a_result_without_a_video_is_an_error():
    handler = answering(httpx.Response(200, json={"seed": 1}))

    with pytest.raises(ProviderError, match="without a video") as caught:
        mock_provider(handler).result(endpoint=V2, request_id="req-1")
    assert caught.value.permanent


@pytest.mark.parametrize(("body", "message", "error_type"), [
    ({"detail": "Request timed out", "error_type": "request_timeout"}, "Request timed out",
     "request_timeout"),
    ({"detail": [{"loc": ["body", "prompt"], "msg": "field required",
                  "type": "value_error.missing"}]}, "prompt: field required",
     "value_error.missing"),
    ({"detail": [{"loc": ["body", "image_urls", 2], "msg": "too big", "type": "x"},
                 {"loc": ["body", "duration"], "msg": "bad value", "type": "y"}]},
     "image_urls.2: too big; duration: bad value", "x"),
    ({"detail": [{"loc": ["body", "image_url"], "msg": "flagged",
                  "type": "content_policy_violation"}]},
     "The content checker flagged the image_url. Change the wording or the input images and "
     "try again.", "content_policy_violation"),
    ({"error": "Invalid input for model"}, "Invalid input for model", ""),
    ({"detail": "x" * 2000}, "x" * 499 + "…", ""),
    ("not a dict", "", ""),
    ({}, "", ""),
])
def test_it_describes_fal_errors(body, message, error_type):
    assert describe_error(body) == (message, error_type)
