"""The eachlabs emulator against the documents it was written from, driven with plain httpx.

"2026-06" is the eachlabs Seedance 2.0 image-to-video page (seeds/004, "Last Updated
2026-06-01"); "2026-08" is provider-protocols.md §2. Nothing here goes through the app.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from typing import Any

import httpx
import pytest

from tests.emulators import delivery, tls
from tests.emulators.base import WebhookSink
from tests.emulators.eachlabs import LATER, SEED, STATUSES, EachlabsEmulator, Outcome

I2V = "bytedance-seedance-2-0-image-to-video"
FAST_T2V = "bytedance-seedance-2-0-text-to-video-fast"
FAST_I2V = "bytedance-seedance-2-0-image-to-video-fast"
V1_LITE = "seedance-v1-lite-text-to-video"
IMAGE = "https://storage.googleapis.com/magicpoint/inputs/start.jpg"
PROMPT = "A slow push in on a lighthouse at dusk."
BOTH = pytest.mark.parametrize("version", [SEED, LATER])


@contextmanager
def emulator(version: str, **options: Any) -> Iterator[EachlabsEmulator]:
    with EachlabsEmulator(version=version, tls=True, **options) as each:
        yield each


def client(each: EachlabsEmulator, headers: dict[str, str] | None = None) -> httpx.Client:
    """A plain httpx client; the version's documented credentials unless `headers` given."""
    sent = each.auth_headers() if headers is None else headers
    return httpx.Client(base_url=each.url, headers=sent, verify=tls.client_context(), timeout=5)


def create_body(version: str, model: str = I2V, **input: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {"prompt": PROMPT}
    if model in (I2V, FAST_I2V):
        arguments["image_url"] = IMAGE
    arguments.update(input)
    body: dict[str, Any] = {"model": model, "input": arguments}
    if version == LATER:
        body["version"] = "0.0.1"  # deprecated, ignored
    return body


def create(each: EachlabsEmulator, http: httpx.Client, body: dict[str, Any]) -> str:
    answer = http.post(each.create_path, json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()["predictionID"]


def assert_error(version: str, answer: httpx.Response, status: int, text: str = "") -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    if version == SEED:
        assert set(body) == {"status", "message", "details"}
        assert body["status"] == "error"
        assert text in f"{body['message']} {body['details']}"
    else:
        assert "error" in body
        assert "message" not in body
        assert text in f"{body['error']} {body.get('details', '')}"
        assert answer.headers["X-Request-Id"]


# Auth -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "good", "bad"), [
    (SEED, {"X-API-Key": "test-key"}, [{"X-API-Key": "wrong"}, {},
                                       {"Authorization": "Bearer test-key"}]),
    (LATER, {"Authorization": "Bearer test-key"}, [{"Authorization": "Bearer wrong"}, {},
                                                   {"Authorization": "test-key"},
                                                   {"X-API-Key": "test-key"}]),
])
def test_auth_is_the_documented_header_of_each_version(version, good, bad):
    with emulator(version) as each:
        with client(each, good) as http:
            create(each, http, create_body(version))
        for headers in bad:
            with client(each, headers) as http:
                assert_error(version, http.post(each.create_path, json=create_body(version)),
                             401, "X-API-Key" if version == SEED else "Invalid or missing API key")
                assert_error(version, http.get("/v1/prediction/anything"), 401)
        assert each.creates == each.created == 1


# Create, poll, deliver ------------------------------------------------------------------------


def test_seed_prediction_polls_processing_then_success_with_a_url_string():
    with emulator(SEED, steps=2) as each, client(each) as http:
        answer = http.post("/v1/prediction/", json=create_body(SEED))
        assert answer.status_code == 200
        assert set(answer.json()) == {"predictionID"}
        prediction_id = answer.json()["predictionID"]
        seen = [http.get(f"/v1/prediction/{prediction_id}").json() for _ in range(4)]
        assert [s["status"] for s in seen] == ["processing", "processing", "success", "success"]
        assert {s["status"] for s in seen} <= set(STATUSES[SEED])
        done = seen[-1]
        assert set(done) == {"status", "predictionID", "output", "metrics"}
        assert done["predictionID"] == prediction_id
        assert done["output"] == each.file_url(prediction_id)
        assert set(done["metrics"]) == {"predict_time"}  # no cost on the seed page
        video = httpx.get(done["output"], verify=tls.client_context())
        assert video.status_code == 200
        assert video.content == each.video
        assert video.headers["content-type"] == "video/mp4"
        # No duration asked: "auto", which this emulator makes 15 s, at the 720p rate.
        assert each.billed == {prediction_id: 15 * 302_400}
        assert each.gets[prediction_id] == 4


def test_later_prediction_polls_created_starting_processing_then_success():
    with emulator(LATER) as each, client(each) as http:
        answer = http.post("/v1/prediction", json=create_body(LATER, resolution="480p",
                                                              duration="4"))
        assert answer.json() == {"status": "success",
                                 "message": "Prediction created successfully",
                                 "predictionID": answer.json()["predictionID"]}
        prediction_id = answer.json()["predictionID"]
        seen = [http.get(f"/v1/prediction/{prediction_id}").json() for _ in range(4)]
        assert [s["status"] for s in seen] == ["created", "starting", "processing", "success"]
        done = seen[-1]
        assert set(done) == {"id", "input", "status", "output", "logs", "metrics", "urls"}
        assert done["id"] == prediction_id
        assert done["input"]["resolution"] == "480p"
        assert done["output"] == each.file_url(prediction_id)
        assert done["logs"] is None
        assert done["urls"] == {"get": f"{each.url}/v1/prediction/{prediction_id}",
                                "cancel": f"{each.url}/v1/prediction/{prediction_id}/cancel"}
        # 480p: $0.1412/s × 4 s.
        assert each.billed == {prediction_id: 564_800}
        assert done["metrics"]["cost"] == pytest.approx(0.5648)


def test_instant_predictions_finish_at_create():
    with emulator(LATER, instant=True) as each, client(each) as http:
        prediction_id = create(each, http, create_body(LATER, FAST_T2V))
        assert http.get(f"/v1/prediction/{prediction_id}").json()["status"] == "success"


def test_the_video_can_be_a_function_of_the_prediction_and_is_billed_as_delivered():
    asked: list[dict] = []

    def video(prediction) -> bytes:
        asked.append(prediction.input)
        return delivery.clip(64, 36, 24)  # one second, whatever was asked

    with emulator(LATER, video=video, steps=0) as each, client(each) as http:
        prediction_id = create(each, http, create_body(LATER, duration="8"))
        done = http.get(f"/v1/prediction/{prediction_id}").json()
        assert asked == [create_body(LATER, duration="8")["input"]]
        assert each.predictions[prediction_id].seconds == 1
        assert each.billed == {prediction_id: 302_400}
        assert done["metrics"]["cost"] == pytest.approx(0.3024)
        got = httpx.get(done["output"], verify=tls.client_context()).content
        assert got == delivery.clip(64, 36, 24)


@pytest.mark.parametrize(("version", "model", "input", "micros"), [
    (SEED, I2V, {"resolution": "480p", "duration": "4"}, 564_800),
    (SEED, I2V, {"resolution": "720p", "duration": "5"}, 1_512_000),
    (SEED, I2V, {"duration": "5"}, 1_512_000),  # "Default fallback (720p rate)"
    (LATER, I2V, {"resolution": "480p", "duration": "10"}, 1_412_000),
    (LATER, FAST_T2V, {"resolution": "480p", "duration": "4"}, 451_600),
    (LATER, FAST_I2V, {"resolution": "720p", "duration": "15"}, 3_628_500),
    (LATER, V1_LITE, {"resolution": "720p", "duration": 5}, 180_000),
])
def test_billing_is_the_per_second_price_of_the_resolution(version, model, input, micros):
    with emulator(version, instant=True) as each, client(each) as http:
        prediction_id = create(each, http, create_body(version, model, **input))
        assert each.billed == {prediction_id: micros}
        assert each.creates_by_model == {model: 1}


def test_the_seed_1080p_rate_is_known_though_the_schema_refuses_1080p():
    each = EachlabsEmulator(version=SEED)
    assert each.price_micros(I2V, {"resolution": "1080p"}, Fraction(2)) == 1_370_000


# Webhooks ------------------------------------------------------------------------------------


def test_seed_webhook_body_has_no_secret_header_and_one_attempt():
    with WebhookSink(lambda headers, body: 500) as sink, \
            emulator(SEED, instant=True) as each, client(each) as http:
        body = create_body(SEED) | {"webhook_url": sink.url("/hooks/each")}
        prediction_id = create(each, http, body)
        each.wait_for_deliveries()
        received = sink.wait(1)
        assert len(received) == 1  # no retry documented on the seed page
        assert received[0].json == {"exec_id": prediction_id, "status": "succeeded",
                                      "output": each.file_url(prediction_id), "error": ""}
        assert received[0].headers["Content-Type"] == "application/json"
        assert "X-Webhook-Secret" not in received[0].headers
        assert received[0].path == "/hooks/each"


def test_later_webhook_sends_the_secret_verbatim_and_retries_three_times_10s_apart():
    waits: list[float] = []
    with WebhookSink(lambda headers, body: 503) as sink, \
            emulator(LATER, instant=True, sleep=waits.append) as each, client(each) as http:
        body = create_body(LATER) | {"webhook_url": sink.url(), "webhook_secret": "s3 cr=t/+=="}
        prediction_id = create(each, http, body)
        each.wait_for_deliveries()
        assert [d.attempt for d in each.deliveries] == [1, 2, 3]
        assert waits == [10.0, 10.0]
        received = sink.wait(3)
        assert {r.headers["X-Webhook-Secret"] for r in received} == {"s3 cr=t/+=="}
        assert received[0].json == {"exec_id": prediction_id, "flow_id": None,
                                      "status": "succeeded",
                                      "output": {"url": each.file_url(prediction_id)},
                                      "error": ""}
        attempts = http.get(f"/v1/webhooks/{prediction_id}").json()
        assert attempts == {"attempts": [{"status": "FAILED"}] * 3}


def test_later_webhook_stops_at_the_first_2xx():
    answers = iter([500, 204])
    with WebhookSink(lambda headers, body: next(answers)) as sink, \
            emulator(LATER, instant=True, sleep=lambda s: None) as each, client(each) as http:
        create(each, http, create_body(LATER) | {"webhook_url": sink.url()})
        each.wait_for_deliveries()
        assert [(d.attempt, d.status) for d in each.deliveries] == [(1, 500), (2, 204)]


@BOTH
def test_a_model_error_ends_the_prediction_with_the_documented_text(version):
    with WebhookSink() as sink, emulator(version, steps=1) as each, client(each) as http:
        each.faults.add("create", outcome=Outcome.model_timeout())
        body = create_body(version) | {"webhook_url": sink.url()}
        prediction_id = create(each, http, body)
        assert http.get(f"/v1/prediction/{prediction_id}").json()["status"] == "processing"
        failed = http.get(f"/v1/prediction/{prediction_id}").json()
        hook = sink.wait(1)[0].json
        if version == SEED:
            assert failed == {"status": "error", "predictionID": prediction_id,
                              "message": "Error: Model timeout after 30s",
                              "details": "model_timeout"}
            assert hook == {"exec_id": prediction_id, "status": "failed", "output": "",
                            "error": "Error: Model timeout after 30s"}
        else:
            assert failed["status"] == "error"
            assert failed["output"] == {"error_code": "model_timeout",
                                        "error_message": "Error: Model timeout after 30s"}
            assert hook == {"exec_id": prediction_id, "flow_id": None, "status": "failed",
                            "output": [{"id": "", "status": "", "output": "",
                                        "error": "Error: Model timeout after 30s"}],
                            "error": ""}
        assert each.billed == {}


def test_later_failures_may_also_read_failed():
    with emulator(LATER, instant=True) as each, client(each) as http:
        each.script(Outcome.content_policy(status="failed"))
        prediction_id = create(each, http, create_body(LATER))
        failed = http.get(f"/v1/prediction/{prediction_id}").json()
        assert failed["status"] == "failed"
        assert failed["output"]["error_code"] == "content_policy_violation"


@BOTH
def test_webhook_faults_never_and_duplicates(version):
    with WebhookSink() as sink, emulator(version, instant=True) as each, client(each) as http:
        each.faults.add("webhook", never=True)
        each.faults.add("webhook", duplicates=2)
        skipped = create(each, http, create_body(version) | {"webhook_url": sink.url()})
        tripled = create(each, http, create_body(version) | {"webhook_url": sink.url()})
        each.wait_for_deliveries()
        assert each.predictions[skipped].webhook_skipped
        assert [r.json["exec_id"] for r in sink.wait(3)] == [tripled] * 3


# Refusals -------------------------------------------------------------------------------------


def _with(version: str, model: str = I2V, **changes: Any) -> dict[str, Any]:
    body = create_body(version, model)
    for name, value in changes.items():
        if name.startswith("top_"):
            body[name.removeprefix("top_")] = value
        elif value is None:
            del body["input"][name]
        else:
            body["input"][name] = value
    return body


REFUSED = [
    # Undocumented create fields.
    (SEED, _with(SEED, top_version="0.0.1"), 400, "version"),
    (SEED, _with(SEED, top_webhook_secret="s"), 400, "webhook_secret"),
    (LATER, _with(LATER, top_priority="high"), 400, "priority"),
    # Unknown models, and models of the other version.
    (SEED, _with(SEED, top_model="no-such-model"), 404, "Unknown model"),
    (SEED, {"model": FAST_T2V, "input": {"prompt": PROMPT}}, 404, FAST_T2V),
    (LATER, _with(LATER, top_model="no-such-model"), 404, "Model not found"),
    (LATER, {"input": {"prompt": PROMPT}}, 400, "model field is required"),
    (LATER, {"model": I2V}, 400, "Invalid input for model"),
    # Outside the model's schema.
    (SEED, _with(SEED, resolution="1080p"), 400, "resolution"),
    (SEED, _with(SEED, duration=5), 400, "duration must be a str"),
    (SEED, _with(SEED, seed=42), 400, "seed must be a str"),
    (SEED, _with(SEED, generate_audio="true"), 400, "generate_audio"),
    (SEED, _with(SEED, duration="16"), 400, "duration"),
    (SEED, _with(SEED, bitrate_mode="high"), 400, "bitrate_mode"),
    (SEED, _with(SEED, image_url=None), 400, "image_url is required"),
    (SEED, _with(SEED, prompt=None), 400, "prompt is required"),
    (LATER, _with(LATER, FAST_T2V, resolution="1080p"), 400, "resolution"),
    (LATER, _with(LATER, FAST_T2V, image_url=IMAGE), 400, "image_url"),
    (LATER, _with(LATER, V1_LITE, duration="5"), 400, "duration must be a int"),
    (LATER, _with(LATER, V1_LITE, duration=13), 400, "between 3 and 12"),
    (LATER, _with(LATER, V1_LITE, duration=True), 400, "duration"),
    # Files: public HTTPS URLs only.
    (SEED, _with(SEED, image_url="data:image/png;base64,iVBORw0KGgo="), 400, "data URI"),
    (SEED, _with(SEED, image_url="http://cdn.example.com/a.png"), 400, "HTTPS"),
    (LATER, _with(LATER, image_url="https://localhost/a.png"), 400, "localhost"),
    (LATER, _with(LATER, image_url="https://127.0.0.1:9/a.png"), 400, "publicly"),
    (LATER, _with(LATER, end_image_url="https://10.1.2.3/b.png"), 400, "publicly"),
    (LATER, _with(LATER, FAST_I2V, image_url="https://[::1]/a.png"), 400, "publicly"),
]


@pytest.mark.parametrize(("version", "body", "status", "text"), REFUSED)
def test_out_of_document_creates_are_refused(version, body, status, text):
    with emulator(version) as each, client(each) as http:
        assert_error(version, http.post(each.create_path, json=body), status, text)
        assert (each.creates, each.created) == (1, 0)
        assert each.billed == {}


@BOTH
def test_allow_listed_input_hosts_pass_but_still_need_https(version):
    with emulator(version, input_hosts=("127.0.0.1:8443",)) as each, client(each) as http:
        ok = _with(version, image_url="https://127.0.0.1:8443/start.png")
        create(each, http, ok)
        other_port = _with(version, image_url="https://127.0.0.1:8444/start.png")
        assert_error(version, http.post(each.create_path, json=other_port), 400, "publicly")
        plain = _with(version, image_url="http://127.0.0.1:8443/start.png")
        assert_error(version, http.post(each.create_path, json=plain), 400, "HTTPS")


@pytest.mark.parametrize(("version", "method", "path", "status"), [
    (SEED, "POST", "/v1/prediction", 404),  # only the documented ".../prediction/"
    (LATER, "POST", "/v1/prediction/", 404),  # trailing slash UNCONFIRMED: refused
    (SEED, "POST", "/v1/prediction/some-id/cancel", 404),  # no cancel on the seed page
    (SEED, "GET", "/v1/webhooks/some-id", 404),
    (LATER, "DELETE", "/v1/prediction/some-id", 405),
    (LATER, "GET", "/v1/predictions", 404),
])
def test_undocumented_routes_are_not_found(version, method, path, status):
    with emulator(version) as each, client(each) as http:
        answer = http.request(method, path, json=create_body(version))
        assert answer.status_code == status
        assert answer.headers["content-type"].startswith("text/plain")
        assert each.creates == each.created == 0


@BOTH
def test_an_unknown_prediction_is_404(version):
    with emulator(version) as each, client(each) as http:
        assert_error(version, http.get("/v1/prediction/nope"), 404,
                     "prediction id" if version == SEED else "Prediction not found")


# Cancel --------------------------------------------------------------------------------------


def test_later_cancel_is_best_effort():
    with WebhookSink() as sink, emulator(LATER) as each, client(each) as http:
        hooked = create_body(LATER) | {"webhook_url": sink.url()}
        running = create(each, http, hooked)
        answer = http.post(f"/v1/prediction/{running}/cancel")
        assert answer.json() == {"status": "cancelled",
                                 "message": "Prediction canceled successfully",
                                 "predictionID": running}
        assert http.get(f"/v1/prediction/{running}").json()["status"] == "cancelled"
        # A finished prediction keeps its status and its charge.
        done = create(each, http, create_body(LATER))
        each.finish(done)
        assert http.post(f"/v1/prediction/{done}/cancel").status_code == 200
        assert http.get(f"/v1/prediction/{done}").json()["status"] == "success"
        # Best effort can fail: the answer says cancelled, the prediction runs on.
        each.faults.add("cancel", ignore=True)
        stubborn = create(each, http, create_body(LATER))
        assert http.post(f"/v1/prediction/{stubborn}/cancel").json()["status"] == "cancelled"
        each.finish_all()
        assert set(each.billed) == {done, stubborn}
        assert each.cancels == {running: 1, done: 1, stubborn: 1}
        each.wait_for_deliveries()
        assert sink.received == []  # no webhook on cancel
        assert_error(LATER, http.post("/v1/prediction/nope/cancel"), 404, "Prediction not found")


def test_seed_has_no_cancel():
    with emulator(SEED) as each, client(each) as http:
        prediction_id = create(each, http, create_body(SEED))
        assert http.post(f"/v1/prediction/{prediction_id}/cancel").status_code == 404
        assert http.get(f"/v1/prediction/{prediction_id}").json()["status"] == "processing"
        assert each.cancels == {}


# Faults --------------------------------------------------------------------------------------


@BOTH
def test_5xx_on_create_with_and_without_the_prediction(version):
    with emulator(version) as each, client(each) as http:
        each.faults.add("create", status=503)
        assert_error(version, http.post(each.create_path, json=create_body(version)), 503)
        assert (each.creates, each.created) == (1, 0)
        each.faults.add("create", status=500, create=True)
        assert_error(version, http.post(each.create_path, json=create_body(version)), 500)
        assert (each.creates, each.created) == (2, 1)
        # It runs (and is paid for) although its creator never learnt its id.
        (orphan,) = each.predictions
        each.finish_all()
        assert list(each.billed) == [orphan]


@BOTH
def test_429_with_retry_after_creates_nothing(version):
    with emulator(version, instant=True) as each, client(each) as http:
        each.faults.add("create", status=429, retry_after=7, times=2)
        for _ in range(2):
            answer = http.post(each.create_path, json=create_body(version))
            assert_error(version, answer, 429)
            assert answer.headers["Retry-After"] == "7"
        create(each, http, create_body(version))
        assert (each.creates, each.created) == (3, 1)
        assert len(each.billed) == 1
        assert each.count("create") == 3


@BOTH
def test_a_dropped_create_still_creates(version):
    with emulator(version) as each, client(each) as http:
        each.faults.add("create", drop_response=True)
        with pytest.raises(httpx.RemoteProtocolError):
            http.post(each.create_path, json=create_body(version))
        assert each.creates == each.created == 1
        assert [c.status for c in each.calls if c.kind == "create"] == [None]


def test_a_slow_answer_waits_for_its_event():
    release = threading.Event()
    answered = threading.Event()
    with emulator(LATER) as each, client(each) as http:
        each.faults.add("create", hold=release)

        def post() -> None:
            http.post(each.create_path, json=create_body(LATER))
            answered.set()

        worker = threading.Thread(target=post)
        worker.start()
        assert not answered.wait(0.05)
        assert each.created == 1  # created already; only the answer is late
        release.set()
        assert answered.wait(2)
        worker.join()


@BOTH
def test_get_and_file_faults(version):
    with emulator(version, instant=True) as each, client(each) as http:
        prediction_id = create(each, http, create_body(version))
        each.faults.add("get", status=502)
        each.faults.add("get", drop_response=True)
        each.faults.add("file", status=503)
        assert_error(version, http.get(f"/v1/prediction/{prediction_id}"), 502)
        with pytest.raises(httpx.RemoteProtocolError):
            http.get(f"/v1/prediction/{prediction_id}")
        assert http.get(f"/v1/prediction/{prediction_id}").json()["status"] == "success"
        video = each.file_url(prediction_id)
        assert httpx.get(video, verify=tls.client_context()).status_code == 503
        assert httpx.get(video, verify=tls.client_context()).content == each.video


def test_seed_rate_limits_10_concurrent_and_100_a_minute():
    now = [0.0]

    def clock() -> float:
        return now[0]

    with emulator(SEED, clock=clock) as each, client(each) as http:
        for _ in range(10):
            create(each, http, create_body(SEED))
        assert_error(SEED, http.post(each.create_path, json=create_body(SEED)), 429,
                     "10 predictions in flight")
        each.finish_all()
        for _ in range(90):
            create(each, http, create_body(SEED))
            each.finish_all()
        assert_error(SEED, http.post(each.create_path, json=create_body(SEED)), 429,
                     "100 creates / min")
        now[0] = 60.0
        create(each, http, create_body(SEED))
        assert (each.creates, each.created) == (103, 101)


def test_later_in_flight_cap_is_opt_in():
    with emulator(LATER, max_in_flight=2) as each, client(each) as http:
        create(each, http, create_body(LATER))
        create(each, http, create_body(LATER))
        assert_error(LATER, http.post(each.create_path, json=create_body(LATER)), 429,
                     "too many requests")


@pytest.mark.parametrize(("version", "status", "allowed"), [
    (SEED, "processing", True), (SEED, "error", True), (SEED, "created", False),
    (SEED, "failed", False), (SEED, "cancelled", False), (SEED, "succeeded", False),
    (LATER, "starting", True), (LATER, "failed", True), (LATER, "cancelled", True),
    (LATER, "succeeded", False), (LATER, "hibernating", False),
])
def test_set_status_only_takes_the_versions_statuses(version, status, allowed):
    with emulator(version) as each, client(each) as http:
        prediction_id = create(each, http, create_body(version))
        if not allowed:
            with pytest.raises(ValueError, match="status"):
                each.set_status(prediction_id, status)
            return
        each.set_status(prediction_id, status)
        seen = [http.get(f"/v1/prediction/{prediction_id}").json()["status"] for _ in range(5)]
        assert seen == [status] * 5
        assert (prediction_id in each.billed) is False
