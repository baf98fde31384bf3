"""EachlabsProvider over real sockets against the each::api emulator, for both documented
versions: "2026-06" (the seed page) and "2026-08" (provider-protocols.md §2).

A studio cannot know which version its key meets, so everything that differs between the two
runs against both (the `version` fixture); what only one version documents says so in its name.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured
from hypothesis import given, settings
from hypothesis import strategies as st

from storyboard.providers.base import (
    CannotCancel,
    Job,
    ProviderError,
    WebhookEvent,
    WebhookRejected,
)
from storyboard.providers.eachlabs import (
    DEFAULT_MODELS,
    FAST_T2V,
    I2V,
    KNOWN_MODELS,
    EachlabsProvider,
    video_url,
)
from tests.emulators import tls
from tests.emulators.base import WebhookSink
from tests.emulators.eachlabs import LATER, SEED, STATUSES, EachlabsEmulator, Outcome

KEY = "each-test-key-0123456789"
SECRET = "whsec-test-0123456789"
I2V_ENDPOINT = "bytedance/seedance-2.0/image-to-video"
FAST_T2V_ENDPOINT = "bytedance/seedance-2.0/fast/text-to-video"
V1_LITE_ENDPOINT = "fal-ai/bytedance/seedance/v1/lite/text-to-video"
START = "https://media.example.com/signed/start.png?sig=abc"
END = "https://media.example.com/signed/end.png?sig=def"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=[SEED, LATER])
def version(request) -> str:
    return request.param


@pytest.fixture
def emulator(version):
    with EachlabsEmulator(version=version, key=KEY, tls=True, webhook_interval=0) as emulator:
        yield emulator


@pytest.fixture
def later():
    with EachlabsEmulator(version=LATER, key=KEY, tls=True, webhook_interval=0) as emulator:
        yield emulator


@pytest.fixture
def delays() -> list[float]:
    return []


def make_provider(emulator: EachlabsEmulator, delays: list[float], **options) -> EachlabsProvider:
    return EachlabsProvider(**{
        "name": "eachlabs", "key": KEY, "api_url": emulator.url, "webhook_secret": SECRET,
        "sleep": delays.append, "timeout": 2.0,
        "transport": httpx.HTTPTransport(verify=tls.client_context()), **options})


@pytest.fixture
def provider(emulator, delays) -> EachlabsProvider:
    return make_provider(emulator, delays)


def i2v_job(*, webhook_url: str | None = None, **arguments) -> Job:
    """Seedance 2.0 image-to-video: the one model both versions document."""
    arguments = {"prompt": "A lighthouse at dusk, slow push in", "resolution": "480p",
                 "duration": "4", "aspect_ratio": "16:9", "generate_audio": True, **arguments}
    return Job(uid="5f0c1d2e-0000-4000-8000-000000000001", endpoint=I2V_ENDPOINT,
               arguments=arguments, files={"image_url": [Path("start.png")]},
               urls={"image_url": [START]}, webhook_url=webhook_url)


def job_for(endpoint: str, **arguments) -> Job:
    arguments = {"prompt": "A lighthouse at dusk, slow push in", **arguments}
    return Job(uid="5f0c1d2e-0000-4000-8000-000000000002", endpoint=endpoint,
               arguments=arguments)


def creates(emulator: EachlabsEmulator) -> list:
    return [call for call in emulator.calls if call.kind == "create"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- configuration -----------------------------------------------------------------------------


def test_it_requires_a_key() -> None:
    with pytest.raises(ImproperlyConfigured):
        EachlabsProvider(name="eachlabs")


def test_it_rejects_unknown_options() -> None:
    with pytest.raises(ImproperlyConfigured, match="colour"):
        EachlabsProvider(name="eachlabs", key=KEY, colour="red")


def test_it_keeps_the_key_and_secret_out_of_options_and_repr() -> None:
    provider = EachlabsProvider(name="eachlabs", key=KEY, webhook_secret=SECRET)
    for shown in (repr(provider.options), repr(provider)):
        assert KEY not in shown
        assert SECRET not in shown


def test_it_maps_the_documented_models_by_default() -> None:
    provider = EachlabsProvider(name="eachlabs", key=KEY)
    assert {endpoint: model.slug for endpoint, model in provider.models.items()} == \
        DEFAULT_MODELS
    # Undocumented on eachlabs: Seedance 2.0 standard text-to-video and reference-to-video.
    assert "bytedance/seedance-2.0/text-to-video" not in provider.models
    assert all("reference" not in endpoint for endpoint in provider.models)


def test_a_new_model_is_one_line_of_configuration() -> None:
    provider = EachlabsProvider(name="eachlabs", key=KEY, models={
        "bytedance/seedance-2.0/text-to-video": {
            "model": "bytedance-seedance-2-0-text-to-video", "schema": FAST_T2V.slug,
            "rates": {"480p": "0.1412", "720p": "0.3024"}},
        FAST_T2V_ENDPOINT: None,
    })
    model = provider.models["bytedance/seedance-2.0/text-to-video"]
    assert model.slug == "bytedance-seedance-2-0-text-to-video"
    assert model.params == FAST_T2V.params
    assert provider.per_second_rates("bytedance/seedance-2.0/text-to-video") == {
        "480p": 141_200, "720p": 302_400}
    assert FAST_T2V_ENDPOINT not in provider.models


@pytest.mark.parametrize("models", [{"a/b": "no-such-slug"}, {"a/b": {"schema": I2V.slug}},
                                    {"a/b": {"model": "x", "rates": {"480p": "cheap"}}}])
def test_a_mapping_to_an_undocumented_model_is_a_configuration_error(models) -> None:
    with pytest.raises(ImproperlyConfigured, match="a/b"):
        EachlabsProvider(name="eachlabs", key=KEY, models=models)


def test_it_is_configured_from_the_environment_like_fal() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EACHLABS_")}
    env.update(EACHLABS_KEY="k", EACHLABS_API_URL="https://each.example.com",
               EACHLABS_CDN_HOSTS="a.example.com, b.example.com", EACHLABS_CA_FILE="/ca.pem",
               EACHLABS_MODELS='{"x/y": "seedance-v1-pro-text-to-video"}',
               DJANGO_SETTINGS_MODULE="storyboard.settings")
    shown = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; import json; o = dict("
         "settings.VIDEO_PROVIDERS['eachlabs']['OPTIONS']); o.pop('key'); print(json.dumps(o))"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(shown.stdout) == {
        "webhook_secret": "", "api_url": "https://each.example.com", "ca_file": "/ca.pem",
        "cdn_hosts": ["a.example.com", "b.example.com"],
        "models": {"x/y": "seedance-v1-pro-text-to-video"}}


# -- auth ----------------------------------------------------------------------------------------


def test_it_sends_the_key_both_documented_ways_on_every_call(emulator, provider) -> None:
    request_id = provider.submit(i2v_job()).request_id
    provider.status(endpoint=I2V_ENDPOINT, request_id=request_id)
    with contextlib.suppress(CannotCancel):  # the seed page has no cancel
        provider.cancel(endpoint=I2V_ENDPOINT, request_id=request_id)

    assert {call.kind for call in emulator.calls} >= {"create", "get"}
    for call in emulator.calls:
        assert call.headers["x-api-key"] == KEY
        assert call.headers["authorization"] == f"Bearer {KEY}"


def test_it_never_logs_the_key(emulator, provider, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    emulator.faults.add("create", status=503)
    request_id = provider.submit(i2v_job()).request_id
    provider.status(endpoint=I2V_ENDPOINT, request_id=request_id)

    assert caplog.records
    assert KEY not in caplog.text


def test_a_wrong_key_is_permanent_in_eachlabs_words_and_never_shown(emulator, delays,
                                                                     version) -> None:
    provider = make_provider(emulator, delays, key="wrong-key-secret")

    with pytest.raises(ProviderError) as caught:
        provider.submit(i2v_job())
    assert caught.value.permanent
    said = "Missing / invalid X-API-Key" if version == SEED else "Invalid or missing API key"
    assert said in caught.value.message
    assert "wrong-key-secret" not in caught.value.message
    assert emulator.created == 0


# -- create ----------------------------------------------------------------------------------------


def test_it_finds_either_create_path_and_remembers_it(emulator, provider, version) -> None:
    provider.submit(i2v_job())
    provider.submit(i2v_job())

    paths = [call.path for call in emulator.calls if call.method == "POST"]
    if version == SEED:
        # The later form first: the seed router has no such route, so nothing was created.
        assert paths == ["/v1/prediction", "/v1/prediction/", "/v1/prediction/"]
    else:
        assert paths == ["/v1/prediction", "/v1/prediction"]
    assert emulator.created == 2


def test_it_creates_a_prediction_with_the_documented_shape(emulator, provider) -> None:
    submitted = provider.submit(i2v_job(seed=7))

    (call,) = [c for c in creates(emulator) if c.status == 200]
    assert call.json == {
        "model": "bytedance-seedance-2-0-image-to-video",
        "input": {"prompt": "A lighthouse at dusk, slow push in", "resolution": "480p",
                  "duration": "4", "aspect_ratio": "16:9", "generate_audio": True,
                  "seed": "7", "image_url": START},
    }
    assert "version" not in call.json  # deprecated
    assert submitted.request_id in emulator.predictions


def test_it_sends_the_webhook_secret_only_to_the_version_that_documents_it(
        emulator, provider, version) -> None:
    provider.submit(i2v_job(webhook_url="https://app.example.com/webhooks/eachlabs/x/t/"))

    (call,) = [c for c in creates(emulator) if c.status == 200]
    assert call.json["webhook_url"] == "https://app.example.com/webhooks/eachlabs/x/t/"
    if version == SEED:
        assert "webhook_secret" not in call.json
    else:
        assert call.json["webhook_secret"] == SECRET


def test_later_seedance_1_takes_integer_durations_and_seeds(later, delays) -> None:
    provider = make_provider(later, delays)
    submitted = provider.submit(job_for(V1_LITE_ENDPOINT, duration="6", resolution="1080p",
                                        aspect_ratio="16:9", camera_fixed=True, seed=42,
                                        enable_safety_checker=True))

    assert later.predictions[submitted.request_id].input == {
        "prompt": "A lighthouse at dusk, slow push in", "duration": 6, "resolution": "1080p",
        "aspect_ratio": "16:9", "camera_fixed": True, "seed": 42}


def test_it_leaves_out_the_random_seed(emulator, provider) -> None:
    submitted = provider.submit(i2v_job(seed=-1))

    assert "seed" not in emulator.predictions[submitted.request_id].input


REFUSED = [
    (I2V_ENDPOINT, {"resolution": "1080p"}, {"image_url"},
     "eachlabs' bytedance-seedance-2-0-image-to-video offers 480p, 720p, not 1080p"),
    ("bytedance/seedance-2.0/text-to-video", {}, set(),
     "eachlabs has no model configured for bytedance/seedance-2.0/text-to-video"),
    ("bytedance/seedance-2.0/reference-to-video", {}, {"image_urls"},
     "eachlabs has no model configured"),
    (FAST_T2V_ENDPOINT, {}, {"image_url"}, "does not take a start frame"),
    (I2V_ENDPOINT, {}, set(), "needs a start frame"),
    (V1_LITE_ENDPOINT, {"duration": "2"}, set(), "takes a duration from 3 to 12, not 2"),
    (V1_LITE_ENDPOINT, {"num_frames": 48}, set(), "does not take a frame count"),
    (V1_LITE_ENDPOINT, {"aspect_ratio": "auto"}, set(), "takes aspect_ratio"),
    (V1_LITE_ENDPOINT, {"enable_safety_checker": False}, set(),
     "does not take turning the safety checker off"),
]


@pytest.mark.parametrize(("endpoint", "arguments", "files", "words"), REFUSED)
def test_it_refuses_what_a_models_schema_does_not_allow_before_sending(
        emulator, provider, endpoint, arguments, files, words) -> None:
    arguments = {"prompt": "x", "resolution": "720p", **arguments}
    problems = provider.preflight(endpoint=endpoint, arguments=arguments, files=files)
    assert any(words in problem for problem in problems), problems

    job = Job(uid="u", endpoint=endpoint, arguments=arguments,
              files={name: [Path("a.png")] for name in files},
              urls={name: [START] for name in files})
    with pytest.raises(ProviderError) as caught:
        provider.submit(job)
    assert caught.value.permanent
    assert emulator.calls == []


@pytest.mark.parametrize("url", [
    "data:image/png;base64,iVBORw0KGgo=", "http://media.example.com/start.png",
    "https://localhost/start.png", "https://127.0.0.1:8443/start.png",
    "https://10.1.2.3/start.png",
])
def test_it_sends_input_files_only_as_public_https_urls(emulator, provider, url) -> None:
    job = i2v_job()
    job = Job(uid=job.uid, endpoint=job.endpoint, arguments=job.arguments, files=job.files,
              urls={"image_url": [url]})

    with pytest.raises(ProviderError) as caught:
        provider.submit(job)
    assert caught.value.permanent
    assert "public HTTPS address" in caught.value.message
    assert emulator.calls == []


def test_a_file_without_a_url_is_refused(emulator, provider) -> None:
    job = Job(uid="u", endpoint=I2V_ENDPOINT, arguments={"prompt": "x"},
              files={"image_url": [Path("start.png")]})

    with pytest.raises(ProviderError, match="no public HTTPS URL"):
        provider.submit(job)
    assert emulator.calls == []


def test_it_prices_per_second_by_resolution_with_eachlabs_table() -> None:
    provider = EachlabsProvider(name="eachlabs", key=KEY)
    assert provider.per_second_rates(I2V_ENDPOINT) == {"480p": 141_200, "720p": 302_400,
                                                       "1080p": 685_000}
    assert provider.per_second_rates(FAST_T2V_ENDPOINT) == {"480p": 112_900, "720p": 241_900}
    assert provider.per_second_rates("bytedance/seedance-2.0/text-to-video") is None


# -- create: retries as documented ------------------------------------------------------------


def test_it_retries_a_5xx_on_create_with_backoff(emulator, provider, delays) -> None:
    emulator.faults.add("create", status=503, times=2)

    submitted = provider.submit(i2v_job())

    assert submitted.request_id in emulator.predictions
    assert emulator.created == 1
    assert len(delays) == 2
    for attempt, delay in enumerate(delays):
        assert 0 <= delay <= 0.1 * 2 ** attempt


def test_a_5xx_after_eachlabs_created_it_anyway_leaves_a_second_prediction(
        emulator, provider) -> None:
    # The documents say a 5xx is to be retried, so it is; an eachlabs that created the
    # prediction before failing runs it all the same (see test_eachlabs_remote.py).
    emulator.faults.add("create", status=500, create=True)

    submitted = provider.submit(i2v_job())

    assert emulator.created == 2
    assert submitted.request_id in emulator.predictions


def test_it_gives_up_on_5xx_after_its_cap_in_eachlabs_words(emulator, provider, delays,
                                                            version) -> None:
    emulator.faults.add("create", status=500, times=10)

    with pytest.raises(ProviderError) as caught:
        provider.submit(i2v_job())
    assert not caught.value.permanent
    assert not caught.value.outcome_unknown
    said = "Internal server error" if version == SEED else "Failed to create prediction"
    assert caught.value.message == f"eachlabs kept failing (HTTP 500): {said}"
    assert len(delays) == 4
    assert emulator.created == 0


def test_it_waits_for_retry_after_on_429(emulator, provider, delays) -> None:
    emulator.faults.add("create", status=429, retry_after=7)
    emulator.faults.add("create", status=429, retry_after=600)

    provider.submit(i2v_job())

    # As long as eachlabs asks, up to the minute its per-minute limit can take.
    assert delays == [7.0, 60.0]
    assert emulator.created == 1


def test_a_dropped_answer_is_outcome_unknown_and_never_resent(emulator, provider,
                                                              delays) -> None:
    emulator.faults.add("create", drop_response=True)

    with pytest.raises(ProviderError) as caught:
        provider.submit(i2v_job())
    assert caught.value.outcome_unknown
    assert emulator.created == 1
    assert delays == []


def test_a_read_timeout_is_outcome_unknown_and_never_resent(emulator, delays) -> None:
    provider = make_provider(emulator, delays, timeout=0.2)
    # Find the create path first, so the slow answer is that of the route that exists.
    provider.submit(i2v_job())
    release = threading.Event()
    emulator.faults.add("create", hold=release)

    try:
        with pytest.raises(ProviderError) as caught:
            provider.submit(i2v_job())
    finally:
        release.set()
    assert caught.value.outcome_unknown
    assert emulator.created == 2
    assert delays == []


def test_it_retries_when_the_connection_never_opened(delays) -> None:
    provider = EachlabsProvider(name="eachlabs", key=KEY, api_url=f"https://127.0.0.1:{free_port()}",
                                sleep=delays.append, timeout=1.0)

    with pytest.raises(ProviderError) as caught:
        provider.submit(i2v_job())
    assert not caught.value.permanent
    assert not caught.value.outcome_unknown
    assert len(delays) == 4


def test_later_402_is_permanent_in_eachlabs_words(later, delays) -> None:
    later.faults.add("create", status=402)

    with pytest.raises(ProviderError) as caught:
        make_provider(later, delays).submit(i2v_job())
    assert caught.value.permanent
    assert caught.value.message == ("The eachlabs account is out of credit: payment required: "
                                    "Insufficient balance. Top up your account to continue.")


def test_a_refused_input_is_permanent_in_eachlabs_words(emulator, provider, version) -> None:
    emulator.faults.add("create", status=400)

    with pytest.raises(ProviderError) as caught:
        provider.submit(i2v_job())
    assert caught.value.permanent
    said = "Invalid input" if version == SEED else "Invalid input for model"
    assert caught.value.message == f"eachlabs refused the request: {said}"


def test_an_unknown_model_is_refused_in_eachlabs_words(emulator, delays, version) -> None:
    provider = make_provider(emulator, delays, models={
        I2V_ENDPOINT: {"model": "no-such-model", "schema": I2V.slug}})

    with pytest.raises(ProviderError) as caught:
        provider.submit(i2v_job())
    assert caught.value.permanent
    said = "Unknown model or prediction id" if version == SEED else "Model not found"
    assert said in caught.value.message
    assert "no-such-model" in caught.value.message


# -- status ----------------------------------------------------------------------------------------


def test_each_poll_moves_one_documented_step(emulator, provider, version) -> None:
    request_id = provider.submit(i2v_job()).request_id

    states = [provider.status(endpoint=I2V_ENDPOINT, request_id=request_id).state
              for _ in range(5)]

    if version == SEED:  # processing → success
        assert states == ["running", "running", "running", "completed", "completed"]
    else:  # created → starting → processing → success
        assert states == ["queued", "queued", "running", "completed", "completed"]


@pytest.mark.parametrize(("version", "raw"), [(v, s) for v in (SEED, LATER)
                                              for s in STATUSES[v]])
def test_it_reads_every_documented_status(emulator, provider, raw) -> None:
    request_id = provider.submit(i2v_job()).request_id
    emulator.set_status(request_id, raw)

    state = provider.status(endpoint=I2V_ENDPOINT, request_id=request_id).state

    assert state == {"created": "queued", "starting": "queued", "processing": "running",
                     "success": "completed", "error": "failed", "failed": "failed",
                     "cancelled": "canceled"}[raw]


def test_an_undocumented_status_keeps_waiting_and_is_logged_once(emulator, provider,
                                                                 caplog) -> None:
    request_id = provider.submit(i2v_job()).request_id
    odd = {"status": "hibernating", "predictionID": request_id}
    emulator.faults.add("get", status=200, body=odd, times=3)

    seen = [provider.status(endpoint=I2V_ENDPOINT, request_id=request_id) for _ in range(3)]

    assert {status.state for status in seen} == {"unknown"}
    assert "'hibernating'" in seen[0].logs[0]
    warnings = [r for r in caplog.records if "undocumented status" in r.getMessage()]
    assert len(warnings) == 1


def test_a_failed_prediction_reads_in_eachlabs_words(emulator, provider) -> None:
    emulator.script(Outcome.model_timeout())
    request_id = provider.submit(i2v_job()).request_id
    emulator.finish(request_id)

    status = provider.status(endpoint=I2V_ENDPOINT, request_id=request_id)

    assert status.state == "failed"
    assert status.error == "Error: Model timeout after 30s"
    assert not status.permanent  # a timeout may pass
    with pytest.raises(ProviderError) as caught:
        provider.result(endpoint=I2V_ENDPOINT, request_id=request_id)
    assert caught.value.message == "Error: Model timeout after 30s"


def test_later_failed_status_reads_its_error_message(later, delays) -> None:
    later.script(Outcome.content_policy(status="failed"))
    provider = make_provider(later, delays)
    request_id = provider.submit(i2v_job()).request_id
    later.finish(request_id)

    status = provider.status(endpoint=I2V_ENDPOINT, request_id=request_id)

    assert status.error == ("Content policy violation: the input was flagged by the safety "
                            "checker.")
    assert status.permanent


def test_status_retries_5xx_drops_and_429(emulator, provider, delays) -> None:
    request_id = provider.submit(i2v_job()).request_id
    delays.clear()
    emulator.faults.add("get", status=503, times=2)
    emulator.faults.add("get", drop_response=True)
    emulator.faults.add("get", status=429, retry_after=1)

    status = provider.status(endpoint=I2V_ENDPOINT, request_id=request_id)

    assert status.state in ("queued", "running")
    assert len(delays) == 4
    assert delays[3] == 1.0


def test_status_of_an_unknown_prediction_is_permanent(emulator, provider) -> None:
    with pytest.raises(ProviderError) as caught:
        provider.status(endpoint=I2V_ENDPOINT, request_id="no-such-prediction")
    assert caught.value.permanent


# -- result ----------------------------------------------------------------------------------------


def test_result_gives_the_video_url_which_serves_the_mp4(emulator, provider) -> None:
    request_id = provider.submit(i2v_job()).request_id
    emulator.finish(request_id)

    result = provider.result(endpoint=I2V_ENDPOINT, request_id=request_id)

    assert result.video_url == emulator.file_url(request_id)
    video = httpx.get(result.video_url, verify=tls.client_context())
    assert video.content == emulator.video


@pytest.mark.parametrize("output", [
    "https://storage.eachlabs.ai/p/1.mp4", {"url": "https://storage.eachlabs.ai/p/1.mp4"},
    ["https://storage.eachlabs.ai/p/1.mp4"],
])
def test_it_reads_both_documented_output_shapes(output) -> None:
    assert video_url(output) == "https://storage.eachlabs.ai/p/1.mp4"


@pytest.mark.parametrize("output", [None, "", "javascript:alert(1)", {"url": 5}, [], {}])
def test_it_finds_no_video_in_anything_else(output) -> None:
    assert video_url(output) == ""


def test_result_before_completion_is_not_permanent(emulator, provider) -> None:
    request_id = provider.submit(i2v_job()).request_id

    with pytest.raises(ProviderError) as caught:
        provider.result(endpoint=I2V_ENDPOINT, request_id=request_id)
    assert not caught.value.permanent
    assert "not finished" in caught.value.message


# -- cancel ----------------------------------------------------------------------------------------


def test_seed_cannot_cancel_and_says_so_plainly(delays) -> None:
    with EachlabsEmulator(version=SEED, key=KEY, tls=True) as seed:
        provider = make_provider(seed, delays)
        request_id = provider.submit(i2v_job()).request_id

        with pytest.raises(CannotCancel) as caught:
            provider.cancel(endpoint=I2V_ENDPOINT, request_id=request_id)
    assert caught.value.message == ("eachlabs could not stop this take: it will finish, and "
                                    "eachlabs will charge for it.")
    assert not seed.predictions[request_id].terminal


def test_later_cancel_is_believed_only_when_the_prediction_says_so(later, delays) -> None:
    provider = make_provider(later, delays)
    running = provider.submit(i2v_job()).request_id
    assert provider.cancel(endpoint=I2V_ENDPOINT, request_id=running) is True
    assert provider.status(endpoint=I2V_ENDPOINT, request_id=running).state == "canceled"

    finished = provider.submit(i2v_job()).request_id
    later.finish(finished)
    assert provider.cancel(endpoint=I2V_ENDPOINT, request_id=finished) is False

    # "Best-effort": the answer says cancelled, the prediction runs on (and will be billed).
    stubborn = provider.submit(i2v_job()).request_id
    later.faults.add("cancel", ignore=True)
    with pytest.raises(CannotCancel, match="still running"):
        provider.cancel(endpoint=I2V_ENDPOINT, request_id=stubborn)


def test_later_cancel_of_an_unknown_prediction_is_permanent(later, delays) -> None:
    with pytest.raises(ProviderError) as caught:
        make_provider(later, delays).cancel(endpoint=I2V_ENDPOINT, request_id="nope")
    assert caught.value.permanent
    assert not isinstance(caught.value, CannotCancel)


# -- webhooks: hints, read from both shapes ----------------------------------------------------


def test_the_emulators_delivery_is_read_as_a_hint(emulator, provider, version) -> None:
    with WebhookSink() as sink:
        request_id = provider.submit(i2v_job(webhook_url=sink.url())).request_id
        emulator.finish(request_id)
        (received,) = sink.wait(1)

    assert ("X-Webhook-Secret" in received.headers) is (version == LATER)
    event = provider.parse_webhook(headers=received.headers, body=received.body)
    assert event == WebhookEvent(request_id, event.status, confirm=True)
    assert event.status.state == "completed"
    assert event.result is None  # what to download comes from eachlabs, not the delivery


def test_a_failure_delivery_is_a_hint_too(emulator, provider) -> None:
    emulator.script(Outcome.model_timeout())
    with WebhookSink() as sink:
        request_id = provider.submit(i2v_job(webhook_url=sink.url())).request_id
        emulator.finish(request_id)
        (received,) = sink.wait(1)

    event = provider.parse_webhook(headers=received.headers, body=received.body)
    assert (event.request_id, event.status.state, event.confirm) == (request_id, "failed", True)


SEED_BODY = json.dumps({"exec_id": "pred-1", "status": "succeeded",
                        "output": "https://storage.eachlabs.ai/p/1.mp4", "error": ""}).encode()


@pytest.mark.parametrize("headers", [
    {"X-Webhook-Secret": ""},
    {"X-Webhook-Secret": "whsec-test-0123456780"},  # same length, last character differs
    {"X-Webhook-Secret": SECRET[:-1]},
    {"x-webhook-secret": SECRET + "0"},
    {"X-Webhook-Secret": "ünïcode-sécret"},
])
def test_a_wrong_secret_header_is_rejected(headers) -> None:
    provider = EachlabsProvider(name="eachlabs", key=KEY, webhook_secret=SECRET)
    with pytest.raises(WebhookRejected):
        provider.parse_webhook(headers=headers, body=SEED_BODY)


def test_a_secret_header_is_rejected_when_none_was_configured() -> None:
    provider = EachlabsProvider(name="eachlabs", key=KEY)
    with pytest.raises(WebhookRejected):
        provider.parse_webhook(headers={"X-Webhook-Secret": "guess"}, body=SEED_BODY)
    # No header at all is the seed page's delivery: the URL's token vouches for it.
    assert provider.parse_webhook(headers={}, body=SEED_BODY).request_id == "pred-1"


@pytest.mark.parametrize("body", [
    b"", b"{", b"not json", b"\xff\xfe", b"[]", b"null", b'"text"',
    b'{"status": "succeeded"}', b'{"exec_id": 5, "status": "succeeded"}',
    b'{"exec_id": ""}', b"[" * 100_000,
])
def test_malformed_deliveries_are_rejected(body) -> None:
    provider = EachlabsProvider(name="eachlabs", key=KEY, webhook_secret=SECRET)
    with pytest.raises(WebhookRejected):
        provider.parse_webhook(headers={"X-Webhook-Secret": SECRET}, body=body)


FUZZ_PROVIDER = EachlabsProvider(name="eachlabs", key=KEY, webhook_secret=SECRET)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
payloads = st.fixed_dictionaries({}, optional={
    "exec_id": st.text(max_size=12) | json_values,
    "status": st.sampled_from(["succeeded", "failed", "success", "error", ""]) | json_values,
    "output": json_values | st.fixed_dictionaries({"url": json_values}),
    "error": json_values, "flow_id": json_values,
})
bodies = (st.binary(max_size=200) | json_values.map(json.dumps)
          | payloads.map(json.dumps)).map(lambda b: b if isinstance(b, bytes) else b.encode())
header_sets = st.just({}) | st.just({"X-Webhook-Secret": SECRET}) | st.dictionaries(
    st.sampled_from(["X-Webhook-Secret", "x-webhook-secret", "Content-Type"])
    | st.text(max_size=10), st.just(SECRET) | st.text(max_size=30), max_size=3)


@settings(max_examples=200, deadline=None)
@given(headers=header_sets, body=bodies)
def test_parse_webhook_gives_a_hint_or_rejects(headers, body) -> None:
    try:
        event = FUZZ_PROVIDER.parse_webhook(headers=headers, body=body)
    except WebhookRejected:
        return
    assert event.confirm
    assert event.result is None
    assert event.request_id
    assert event.status.state in event.status.STATES


def test_every_known_model_has_prices_for_its_resolutions() -> None:
    for model in KNOWN_MODELS.values():
        assert set(model.resolutions) <= set(model.rates), model.slug
