"""eachlabs (each::api) predictions: create, poll, cancel, and webhooks with a shared secret.

Wire formats are in /work/shared/reference/provider-protocols.md §2 (from eachlabs/mintlify-docs)
and the eachlabs Seedance model pages. Configured like the other providers:

    VIDEO_PROVIDERS = {"eachlabs": {
        "BACKEND": "storyboard.providers.eachlabs.EachlabsProvider",
        "OPTIONS": {"key": "...", "webhook_secret": "..."},
    }}

Creating a prediction costs money and eachlabs has no idempotency key, so a create is only ever
resent when eachlabs provably never saw it (connection refused, or 429, which is "not created,
not billed"). Any other doubt becomes ProviderError(outcome_unknown=True) and the take is
reconciled by polling. Reads and cancels are safe to repeat and are retried freely.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.utils import parsedate_to_datetime
from urllib.parse import quote

import httpx
from django.core.exceptions import ImproperlyConfigured

from storyboard.providers.base import (
    Job,
    ProviderError,
    Result,
    Status,
    Submitted,
    VideoProvider,
    WebhookEvent,
    WebhookRejected,
)

log = logging.getLogger(__name__)

# Our catalogue endpoint id → eachlabs model slug. An endpoint missing here is refused before
# anything is sent. Sources: the eachlabs model page (seeds/004) for 2.0 image-to-video,
# eachlabs/skills MODELS.md for the two fast slugs, eachlabs llms.txt for Seedance 1.0. The 2.0
# standard text-to-video slug is inferred from the same naming pattern (and third-party code).
# Reference-to-video and Seedance 1.0 image-to-video are not documented on eachlabs.
MODELS: dict[str, str] = {
    "bytedance/seedance-2.0/text-to-video": "bytedance-seedance-2-0-text-to-video",
    "bytedance/seedance-2.0/image-to-video": "bytedance-seedance-2-0-image-to-video",
    "bytedance/seedance-2.0/fast/text-to-video": "bytedance-seedance-2-0-text-to-video-fast",
    "bytedance/seedance-2.0/fast/image-to-video": "bytedance-seedance-2-0-image-to-video-fast",
    "fal-ai/bytedance/seedance/v1/lite/text-to-video": "seedance-v1-lite-text-to-video",
    "fal-ai/bytedance/seedance/v1/pro/text-to-video": "seedance-v1-pro-text-to-video",
}

# eachlabs's Seedance 1.0 pages type `duration` as an integer; our catalogue holds fal's strings.
INTEGER_DURATION = frozenset({
    "seedance-v1-lite-text-to-video",
    "seedance-v1-pro-text-to-video",
})

# `version` is "deprecated, ignored" in models.json, yet create-prediction.mdx still lists it as
# required; the model pages show 0.0.1, so sending it is harmless either way.
MODEL_VERSION = "0.0.1"

# A guess: eachlabs documents no output host. Its docs and examples show storage.eachlabs.ai and
# cdn.eachlabs.ai, and its own example inputs live on storage.googleapis.com. Override with
# OPTIONS["download_hosts"] once real outputs have been seen.
DEFAULT_DOWNLOAD_HOSTS = ("storage.eachlabs.ai", "cdn.eachlabs.ai", "storage.googleapis.com")

MAX_ATTEMPTS = 5
BACKOFF_BASE = 0.5
BACKOFF_CAP = 10.0
# Signed deliveries (newer docs) carry a timestamp; eachlabs suggests five minutes of slack.
WEBHOOK_TOLERANCE = 300

# Polling uses six states (docs disagree on failed/error, so both); webhooks use two.
STATES = {
    "created": "queued",
    "starting": "queued",
    "processing": "running",
    "success": "completed",
    "succeeded": "completed",
    "error": "failed",
    "failed": "failed",
    "cancelled": "canceled",
    "canceled": "canceled",
}

# Failure codes (errors.mdx, V1) after which the same input may well succeed later.
TRANSIENT_FAILURES = frozenset({
    "PROVIDER_AUTH_ERROR",
    "PROVIDER_RATE_LIMIT",
    "PROVIDER_SERVER_ERROR",
    "NETWORK_ERROR",
    "EXECUTION_TIMEOUT",
    "PIPELINE_CONFIG_ERROR",
    "PUBLISH_FAILED",
    "WORKER_LOST",
})

# Words in a cancel refusal meaning "too late, it already ended" (the wording is undocumented).
FINISHED_WORDS = ("already", "finished", "completed", "terminal", "succeeded", "not running")


class EachlabsProvider(VideoProvider):
    label = "eachlabs"

    def __init__(self, *, name: str, key: str = "", api_url: str = "https://api.eachlabs.ai",
                 webhook_secret: str = "", download_hosts: tuple[str, ...] | list[str] = (),
                 sleep: Callable[[float], object] = time.sleep,
                 transport: httpx.BaseTransport | None = None, timeout: float = 30.0,
                 require_signature: bool = False, **unknown: object) -> None:
        if unknown:
            raise ImproperlyConfigured(f"Unknown eachlabs OPTIONS: {', '.join(sorted(unknown))}")
        if not key:
            raise ImproperlyConfigured("The eachlabs provider needs OPTIONS['key'].")
        if not api_url.startswith(("https://", "http://")):
            raise ImproperlyConfigured("eachlabs OPTIONS['api_url'] must be an http(s) URL.")
        # The key and the secret stay out of self.options, which may end up in logs.
        super().__init__(name=name, api_url=api_url, timeout=timeout)
        self._key = key
        self.webhook_secret = webhook_secret
        self.api_url = api_url.rstrip("/")
        self.download_hosts = tuple(download_hosts or DEFAULT_DOWNLOAD_HOSTS)
        self.timeout = timeout
        self.require_signature = require_signature
        self._sleep = sleep
        self._transport = transport

    # -- the interface ----------------------------------------------------------------------

    def submit(self, job: Job) -> Submitted:
        slug = model_slug(job.endpoint)
        body: dict = {"model": slug, "version": MODEL_VERSION, "input": prediction_input(job, slug)}
        if job.webhook_url:
            if not self.webhook_secret:
                raise ProviderError("eachlabs webhooks need OPTIONS['webhook_secret'].",
                                    permanent=True)
            body["webhook_url"] = job.webhook_url
            body["webhook_secret"] = self.webhook_secret
        response = self._create(body)
        data = _json(response)
        prediction_id = data.get("predictionID") if isinstance(data, dict) else None
        if not isinstance(prediction_id, str) or not prediction_id:
            # eachlabs said yes, so a prediction probably exists; we just cannot name it.
            raise ProviderError("eachlabs accepted the request but sent no prediction id.",
                                outcome_unknown=True)
        log.info("eachlabs prediction %s created for job %s (%s)", prediction_id, job.uid, slug)
        return Submitted(prediction_id)

    def status(self, *, endpoint: str, request_id: str) -> Status:
        return prediction_status(self._prediction(request_id))

    def result(self, *, endpoint: str, request_id: str) -> Result:
        prediction = self._prediction(request_id)
        status = prediction_status(prediction)
        if status.state == "failed":
            raise ProviderError(status.error, permanent=status.permanent)
        if status.state == "canceled":
            raise ProviderError("The eachlabs prediction was canceled.", permanent=True)
        if status.state != "completed":
            raise ProviderError(f"The eachlabs prediction is not finished yet ({status.state}).")
        url = video_url(prediction.get("output"))
        if not url:
            raise ProviderError("eachlabs reported success but sent no video URL.", permanent=True)
        return Result(video_url=url, seed=_seed(prediction.get("input")))

    def cancel(self, *, endpoint: str, request_id: str) -> bool:
        response = self._call("POST", f"/v1/prediction/{quote(request_id, safe='')}/cancel")
        if response.status_code == 404:
            raise ProviderError(f"eachlabs has no prediction {request_id}.", permanent=True)
        if response.is_success:
            data = _json(response)
            said = data.get("status") if isinstance(data, dict) else None
            return STATES.get(str(said).lower()) not in ("completed", "failed")
        text = error_text(response)
        if response.status_code < 500 and any(w in text.lower() for w in FINISHED_WORDS):
            return False
        raise ProviderError(f"eachlabs could not cancel the prediction: {text}", permanent=True)

    def parse_webhook(self, *, headers: dict[str, str], body: bytes) -> WebhookEvent:
        if not self.webhook_secret:
            raise WebhookRejected("eachlabs webhooks are not configured (no webhook_secret).")
        lowered = {str(name).lower(): value for name, value in headers.items()}
        given = lowered.get("x-webhook-secret")
        if not isinstance(given, str) or not _same(given, self.webhook_secret):
            raise WebhookRejected("Missing or wrong X-Webhook-Secret.")
        self._check_signature(lowered, body)
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            raise WebhookRejected("The delivery is not JSON.") from None
        if not isinstance(payload, dict):
            raise WebhookRejected("The delivery is not a JSON object.")
        return webhook_event(payload)

    # -- HTTP -------------------------------------------------------------------------------

    @contextmanager
    def _client(self) -> Iterator[httpx.Client]:
        client = httpx.Client(
            base_url=self.api_url, timeout=self.timeout, transport=self._transport,
            headers={"Authorization": f"Bearer {self._key}", "Accept": "application/json"},
        )
        try:
            yield client
        finally:
            # An injected transport belongs to the caller, who may reuse it.
            if self._transport is None:
                client.close()

    def _create(self, body: dict) -> httpx.Response:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                # A fresh connection each attempt: a reused one that the server had closed
                # would fail like a lost answer and turn a harmless retry into "unknown".
                with self._client() as client:
                    response = client.post("/v1/prediction", json=body)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # The connection never opened, so eachlabs cannot have seen the request.
                if attempt == MAX_ATTEMPTS:
                    raise ProviderError(f"Could not reach eachlabs ({type(exc).__name__}); "
                                        "nothing was created.") from exc
                self._wait(_backoff(attempt))
                continue
            except httpx.HTTPError as exc:
                raise ProviderError(
                    f"The answer from eachlabs was lost ({type(exc).__name__}); the prediction "
                    "may exist, so it is not sent again.", outcome_unknown=True,
                ) from exc
            if response.status_code != 429:
                return check_created(response)
            # 429 means "not created, not billed", so asking again is safe.
            delay = _retry_after(response)
            delay = _backoff(attempt) if delay is None else delay
            if delay > BACKOFF_CAP:
                raise ProviderError(f"eachlabs is rate limiting and asked us to wait {delay:.0f} s;"
                                    " nothing was created.")
            if attempt == MAX_ATTEMPTS:
                break
            self._wait(delay)
        raise ProviderError(f"eachlabs was still rate limiting after {MAX_ATTEMPTS} attempts; "
                            "nothing was created.")

    def _call(self, method: str, path: str) -> httpx.Response:
        """A request that is safe to repeat: retried on 429, 5xx and any connection trouble."""
        problem = ""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                with self._client() as client:
                    response = client.request(method, path)
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
                delay = _backoff(attempt)
            else:
                if response.status_code != 429 and response.status_code < 500:
                    return response
                problem = f"HTTP {response.status_code}"
                delay = _retry_after(response)
                delay = _backoff(attempt) if delay is None else min(delay, BACKOFF_CAP)
            if attempt < MAX_ATTEMPTS:
                self._wait(delay)
        raise ProviderError(f"eachlabs did not answer after {MAX_ATTEMPTS} attempts ({problem}).")

    def _prediction(self, request_id: str) -> dict:
        response = self._call("GET", f"/v1/prediction/{quote(request_id, safe='')}")
        if response.status_code == 404:
            raise ProviderError(f"eachlabs has no prediction {request_id}.", permanent=True)
        if not response.is_success:
            raise ProviderError(f"eachlabs refused to show the prediction: {error_text(response)}",
                                permanent=True)
        data = _json(response)
        if not isinstance(data, dict):
            raise ProviderError("eachlabs sent an unreadable prediction.")
        return data

    def _wait(self, seconds: float) -> None:
        log.warning("eachlabs: retrying in %.2f s", seconds)
        self._sleep(seconds)

    def _check_signature(self, headers: dict, body: bytes) -> None:
        # Newer eachlabs docs sign deliveries (HMAC-SHA256 over "<timestamp>.<body>"); the
        # secret header alone is what the brief and older docs require, so a signature is
        # checked when present and only demanded with OPTIONS["require_signature"].
        signature = headers.get("x-webhook-signature")
        timestamp = headers.get("x-webhook-timestamp")
        if signature is None and timestamp is None and not self.require_signature:
            return
        if not isinstance(signature, str) or not signature.startswith("sha256="):
            raise WebhookRejected("Missing or malformed X-Webhook-Signature.")
        if not isinstance(timestamp, str) or not (timestamp.isascii() and timestamp.isdigit()):
            raise WebhookRejected("Missing or malformed X-Webhook-Timestamp.")
        if abs(time.time() - int(timestamp)) > WEBHOOK_TOLERANCE:
            raise WebhookRejected("The delivery's timestamp is too old or in the future.")
        signed = timestamp.encode() + b"." + bytes(body)
        expected = hmac.new(self.webhook_secret.encode(), signed, hashlib.sha256).hexdigest()
        if not _same(signature.removeprefix("sha256="), expected):
            raise WebhookRejected("The delivery's signature does not match.")


# -- request building -----------------------------------------------------------------------


def model_slug(endpoint: str) -> str:
    try:
        return MODELS[endpoint]
    except KeyError:
        raise ProviderError(
            f"eachlabs does not offer {endpoint}; choose fal or the offline renderer.",
            permanent=True,
        ) from None


def prediction_input(job: Job, slug: str) -> dict:
    """Seedance arguments as eachlabs takes them, with files as the job's public URLs."""
    arguments = dict(job.arguments)
    for name, paths in job.files.items():
        if paths and len(job.urls.get(name, [])) != len(paths):
            raise ProviderError(f"eachlabs fetches input files itself, but {name} has no public "
                                "URL.", permanent=True)
    for name, urls in job.urls.items():
        if urls:
            # Plural arguments (image_urls, video_urls…) are lists; singular ones one URL.
            arguments[name] = list(urls) if name.endswith("_urls") else urls[0]
    for name, value in arguments.items():
        if name.endswith(("_url", "_urls")) and not _public_urls(value):
            raise ProviderError(f"eachlabs needs public HTTPS URLs for {name}, never data URIs "
                                "or local addresses.", permanent=True)
    seed = arguments.pop("seed", None)
    # -1 is fal's "random"; eachlabs simply picks one when there is no seed.
    if seed is not None and seed != -1:
        arguments["seed"] = str(seed)
    if slug in INTEGER_DURATION and "duration" in arguments:
        try:
            arguments["duration"] = int(arguments["duration"])
        except (TypeError, ValueError):
            raise ProviderError(f"eachlabs's {slug} takes a duration in whole seconds.",
                                permanent=True) from None
    return arguments


def _public_urls(value: object) -> bool:
    values = value if isinstance(value, list) else [value]
    return all(isinstance(v, str) and v.startswith("https://") for v in values)


# -- response reading -------------------------------------------------------------------------


def check_created(response: httpx.Response) -> httpx.Response:
    """Turn a create answer other than 429 into the response or the right ProviderError."""
    code = response.status_code
    if response.is_success:
        return response
    if code == 402:
        raise ProviderError("The eachlabs account is out of credit.", permanent=True)
    if code >= 500:
        # eachlabs may have created (and will bill) the prediction before failing to answer.
        raise ProviderError(f"eachlabs failed while creating the prediction (HTTP {code}); it "
                            "may exist, so it is not sent again.", outcome_unknown=True)
    if code in (401, 403):
        raise ProviderError(f"eachlabs refused our API key: {error_text(response)}",
                            permanent=True)
    raise ProviderError(f"eachlabs refused the request: {error_text(response)}", permanent=True)


def prediction_status(prediction: dict) -> Status:
    raw = prediction.get("status")
    state = STATES.get(raw.lower()) if isinstance(raw, str) else None
    if state is None:
        raise ProviderError(f"eachlabs reported an unknown status {raw!r}.")
    logs = _logs(prediction.get("logs"))
    if state == "failed":
        message, permanent = failure(prediction.get("output"), prediction.get("error"))
        return Status("failed", logs=logs, error=message, permanent=permanent)
    return Status(state, logs=logs)


def webhook_event(payload: dict) -> WebhookEvent:
    exec_id = payload.get("exec_id")
    if not isinstance(exec_id, str) or not exec_id:
        raise WebhookRejected("The delivery names no prediction (exec_id).")
    raw = payload.get("status")
    state = STATES.get(raw.lower()) if isinstance(raw, str) else None
    if state is None:
        raise WebhookRejected(f"The delivery has an unknown status {raw!r}.")
    if state == "completed":
        url = video_url(payload.get("output"))
        # Without a URL the event still says "done"; result() can fetch the output.
        return WebhookEvent(exec_id, Status("completed"), Result(url) if url else None)
    if state == "failed":
        message, permanent = failure(payload.get("output"), payload.get("error"))
        return WebhookEvent(exec_id, Status("failed", error=message, permanent=permanent))
    return WebhookEvent(exec_id, Status(state))


def video_url(output: object) -> str:
    """The video URL in any documented output shape: a string, {"url": …}, or a list."""
    if isinstance(output, list):
        output = output[0] if output else None
    if isinstance(output, dict):
        output = output.get("url") or output.get("video_url") or output.get("video")
        if isinstance(output, dict):
            output = output.get("url")
    if isinstance(output, str) and output.startswith(("https://", "http://")):
        return output
    return ""


def failure(output: object, error: object) -> tuple[str, bool]:
    """A failed prediction's message for people, and whether retrying cannot help."""
    # Webhooks wrap the detail in a list: [{"error": {...} or "text"}].
    if isinstance(output, list) and output and isinstance(output[0], dict):
        output = output[0].get("error")
    code = ""
    message = ""
    if isinstance(output, dict):
        code = str(output.get("error_code") or "")
        message = str(output.get("error_message") or output.get("error") or "")
    elif isinstance(output, str):
        message = output
    if not message and error:
        message = error if isinstance(error, str) else json.dumps(error)[:500]
    message = message.strip()[:500] or "eachlabs reported that the prediction failed."
    # Without a code nothing says a retry would help, so no money is spent on one by default.
    return message, code not in TRANSIENT_FAILURES


def error_text(response: httpx.Response) -> str:
    """The error an eachlabs error body states, in plain words."""
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:300] or f"HTTP {response.status_code}"
    if not isinstance(data, dict):
        return str(data)[:300]
    parts = [data.get(name) for name in ("error", "message", "details")]
    words = [p if isinstance(p, str) else json.dumps(p) for p in parts if p]
    return "; ".join(words)[:300] or f"HTTP {response.status_code}"


def _logs(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(value.splitlines())
    if isinstance(value, list):
        return tuple(str(line) for line in value)
    return (str(value),)


def _seed(arguments: object) -> int | None:
    seed = arguments.get("seed") if isinstance(arguments, dict) else None
    try:
        return int(seed) if seed is not None else None
    except (TypeError, ValueError):
        return None


def _json(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def _backoff(attempt: int) -> float:
    # Full jitter (AWS): spreads retries from many workers instead of syncing them.
    return random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _same(given: str, expected: str) -> bool:
    # Bytes, because compare_digest refuses non-ASCII str; constant time either way.
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))
