"""eachlabs (each::api) predictions, working with both versions of eachlabs' documents.

The two documents disagree, and a studio cannot know which one its key meets:

- "2026-06": the Seedance 2.0 image-to-video model page (/work/shared/seeds/, "Last Updated
  2026-06-01");
- "2026-08": eachlabs' later docs, summarised in reference/provider-protocols.md §2.

So every call works with both. The key goes in both documented headers (`X-API-Key`, 2026-06;
`Authorization: Bearer`, 2026-08). Create is `POST /v1/prediction` (2026-08) or
`/v1/prediction/` (2026-06): the first form that does not answer "no such route" (a 404/405
without an eachlabs error body: nothing was created, so trying the other is safe) is
remembered per provider instance, and only the later form carries the later field
`webhook_secret` (the seed page refuses fields it does not list). `version` is deprecated and
never sent. Statuses, output shapes and error bodies of both versions are read; a status
neither lists keeps the take waiting and is logged once per take.

Webhooks are only hints. The URL carries an unguessable per-take token (checked by the view),
the secret header is checked when one comes (2026-08 only), and the workflow asks
`GET /v1/prediction/{id}` before any state or money moves (WebhookEvent.confirm).

Retries as both documents say: a 5xx is retried with backoff, create included; 429 waits for
Retry-After; a request that never connected is resent. Only a lost answer (the request went
out, nothing came back) is "outcome unknown", and then it is never sent again.

Configured like the other providers; OPTIONS["models"] maps our endpoints to eachlabs models,
over the documented defaults (DEFAULT_MODELS):

    VIDEO_PROVIDERS = {"eachlabs": {
        "BACKEND": "storyboard.providers.eachlabs.EachlabsProvider",
        "OPTIONS": {"key": "...", "models": {
            "fal-ai/bytedance/seedance/v1/pro/text-to-video": "seedance-v1-pro-text-to-video",
            "my/endpoint": {"model": "new-slug", "schema": "a-known-slug",
                            "rates": {"480p": "0.12", "720p": "0.25"}},
        }},
    }}
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote, urlsplit

from django.core.exceptions import ImproperlyConfigured

from storyboard.providers.base import (
    CannotCancel,
    Job,
    ProviderError,
    Result,
    Status,
    Submitted,
    WebhookEvent,
    WebhookRejected,
)
from storyboard.providers.http import HttpProvider, HttpStatusError, _json_or_none

logger = logging.getLogger(__name__)

# 2026-08 documents the path without the slash, 2026-06 shows it with one; tried in this order
# until one answers as a route (then that one is used first).
CREATE_PATHS = ("/v1/prediction", "/v1/prediction/")
LATER_CREATE_PATH = CREATE_PATHS[0]

# A guess: neither document names the host outputs come from. The docs' examples show
# storage.eachlabs.ai / cdn.eachlabs.ai, and eachlabs' own example inputs live on
# storage.googleapis.com. EACHLABS_CDN_HOSTS overrides it once real outputs have been seen.
DEFAULT_CDN_HOSTS = ("storage.eachlabs.ai", "cdn.eachlabs.ai", "storage.googleapis.com")

# Polling statuses of both versions: 2026-06 "processing | success | error"; 2026-08 mdx
# created|starting|processing|success|error|cancelled, models.json adds failed.
STATES = {
    "created": "queued",
    "starting": "queued",
    "processing": "running",
    "success": "completed",
    "error": "failed",
    "failed": "failed",
    "cancelled": "canceled",
}
# Webhook statuses (both versions): "succeeded" or "failed". Only a hint either way.
WEBHOOK_STATES = {"succeeded": "completed", "failed": "failed"}

# Failure codes after which the same input may well succeed later (2026-08 errors.mdx V1
# codes, plus the model timeout both versions' texts name).
TRANSIENT_FAILURES = frozenset({
    "PROVIDER_RATE_LIMIT", "PROVIDER_SERVER_ERROR", "NETWORK_ERROR", "EXECUTION_TIMEOUT",
    "WORKER_LOST", "model_timeout",
})

# Words for people; what eachlabs said is appended where it said anything.
CANNOT_STOP = "eachlabs could not stop this take: it will finish, and eachlabs will charge for it."
# Error texts end up in the UI; a whole error page helps nobody.
MAX_WORDS = 500
# How many (prediction, status) pairs an unknown status was already logged for.
UNKNOWN_MEMORY = 1000


# -- models and their documented input schemas --------------------------------------------------


@dataclass(frozen=True)
class Param:
    type: type
    required: bool = False
    choices: tuple[Any, ...] = ()
    low: int | None = None
    high: int | None = None
    # A file argument: eachlabs fetches it itself from a public HTTPS URL.
    file: bool = False


@dataclass(frozen=True)
class Model:
    slug: str
    params: dict[str, Param]
    # Micro-dollars per second of output, by the resolution asked for.
    rates: dict[str, int]

    @property
    def resolutions(self) -> tuple[str, ...]:
        return self.params["resolution"].choices if "resolution" in self.params else ()


def _micros(rates: dict[str, str]) -> dict[str, int]:
    return {resolution: int(Decimal(usd) * 1_000_000) for resolution, usd in rates.items()}


RATIOS = ("auto", "21:9", "16:9", "4:3", "1:1", "3:4", "9:16")
V2_SECONDS = ("auto", *(str(n) for n in range(4, 16)))

# The seed page's Input Schema, row by row: resolution 480p/720p only; duration and seed are
# strings. Its Pricing Rules: 480p $0.1412/s, 720p $0.3024/s, 1080p $0.685/s.
I2V = Model("bytedance-seedance-2-0-image-to-video", {
    "prompt": Param(str, required=True),
    "image_url": Param(str, required=True, file=True),
    "end_image_url": Param(str, file=True),
    "resolution": Param(str, choices=("480p", "720p")),
    "duration": Param(str, choices=V2_SECONDS),
    "aspect_ratio": Param(str, choices=RATIOS),
    "generate_audio": Param(bool),
    "seed": Param(str),
    "end_user_id": Param(str),
}, _micros({"480p": "0.1412", "720p": "0.3024", "1080p": "0.685"}))

# provider-protocols §2 "Seedance slugs": the fast slugs take "inputs as §3.1 fast (`seed` as
# string)"; §3.1 lists bitrate_mode and 480p/720p. "eachlabs charges the same: 480p $0.1129/s,
# 720p $0.2419/s".
_FAST = {k: v for k, v in I2V.params.items() if not v.file} | {
    "bitrate_mode": Param(str, choices=("standard", "high"))}
FAST_RATES = _micros({"480p": "0.1129", "720p": "0.2419"})
FAST_T2V = Model("bytedance-seedance-2-0-text-to-video-fast", _FAST, FAST_RATES)
FAST_I2V = Model("bytedance-seedance-2-0-image-to-video-fast", _FAST | {
    "image_url": Param(str, required=True, file=True), "end_image_url": Param(str, file=True),
}, FAST_RATES)

# §2: "seedance-v1-lite-text-to-video, seedance-v1-pro-text-to-video (`duration` integer
# 3–12)". Their other fields are not documented for eachlabs; fal's v1 text-to-video rows
# (§3.2) without fal's own knobs. Prices UNCONFIRMED: lite "$0.18 per 720p 5 s" (the eachlabs
# mirror) = $0.036/s, pro "≈$0.62 per 1080p 5 s" = $0.124/s, other resolutions by area.
_V1 = {
    "prompt": Param(str, required=True),
    "duration": Param(int, low=3, high=12),
    "resolution": Param(str, choices=("480p", "720p", "1080p")),
    "aspect_ratio": Param(str, choices=("21:9", "16:9", "4:3", "1:1", "3:4", "9:16", "9:21")),
    "camera_fixed": Param(bool),
    "seed": Param(int),
}
V1_LITE = Model("seedance-v1-lite-text-to-video", _V1,
                _micros({"480p": "0.016", "720p": "0.036", "1080p": "0.081"}))
V1_PRO = Model("seedance-v1-pro-text-to-video", _V1 | {"aspect_ratio": Param(
    str, choices=("21:9", "16:9", "4:3", "1:1", "3:4", "9:16"))},
    _micros({"480p": "0.024494", "720p": "0.055111", "1080p": "0.124"}))

KNOWN_MODELS: dict[str, Model] = {m.slug: m for m in (I2V, FAST_T2V, FAST_I2V, V1_LITE, V1_PRO)}

# Our endpoint → eachlabs model, for the models the documents name. Seedance 2.0 standard
# text-to-video and every reference-to-video have no documented eachlabs model.
DEFAULT_MODELS: dict[str, str] = {
    "bytedance/seedance-2.0/image-to-video": I2V.slug,
    "bytedance/seedance-2.0/fast/text-to-video": FAST_T2V.slug,
    "bytedance/seedance-2.0/fast/image-to-video": FAST_I2V.slug,
    "fal-ai/bytedance/seedance/v1/lite/text-to-video": V1_LITE.slug,
    "fal-ai/bytedance/seedance/v1/pro/text-to-video": V1_PRO.slug,
}

# Arguments our catalogue sends that are fal's own knobs: left out at fal's default (it is
# eachlabs' behaviour too), refused otherwise, since eachlabs has no way to honour them.
FAL_ONLY_DEFAULTS = {"enable_safety_checker": True, "camera_fixed": False}
TYPE_NAMES = {str: "text", int: "a whole number", bool: "true or false"}
# Our names for arguments, in messages.
ARGUMENT_NAMES = {
    "image_url": "a start frame", "end_image_url": "an end frame",
    "image_urls": "reference images", "video_urls": "reference videos",
    "audio_urls": "reference audio", "num_frames": "a frame count",
    "enable_safety_checker": "turning the safety checker off", "camera_fixed": "a fixed camera",
}


def configured_models(overrides: dict[str, Any] | None) -> dict[str, Model]:
    """DEFAULT_MODELS with OPTIONS["models"] on top: a known slug, None to drop an endpoint,
    or {"model": slug, "schema": known slug, "rates": {resolution: "USD per second"}}."""
    mapping: dict[str, Any] = {**DEFAULT_MODELS, **(overrides or {})}
    models: dict[str, Model] = {}
    for endpoint, value in mapping.items():
        if value is None:
            continue
        if isinstance(value, str):
            if value not in KNOWN_MODELS:
                raise ImproperlyConfigured(
                    f"eachlabs OPTIONS['models'][{endpoint!r}]: {value!r} is not a documented "
                    f"model ({', '.join(KNOWN_MODELS)}); give it as {{'model': ..., 'schema': "
                    "<a documented model it takes the inputs of>, 'rates': {...}}.")
            models[endpoint] = KNOWN_MODELS[value]
            continue
        try:
            schema = KNOWN_MODELS[value.get("schema", value["model"])]
            rates = _micros(value["rates"]) if "rates" in value else schema.rates
            models[endpoint] = replace(schema, slug=str(value["model"]), rates=rates)
        except (AttributeError, KeyError, TypeError, InvalidOperation, ValueError) as e:
            raise ImproperlyConfigured(
                f"eachlabs OPTIONS['models'][{endpoint!r}] must name a documented model, or be "
                f"{{'model': slug, 'schema': documented slug, 'rates': {{...}}}} ({e!r}).",
            ) from None
    return models


def prediction_input(model: Model, arguments: dict[str, Any],
                     urls: dict[str, list[str]]) -> tuple[dict[str, Any], list[str]]:
    """The `input` eachlabs' schema for `model` takes, and why it would refuse (plain words).

    Values are converted to the schema's JSON types (2.0 `duration`/`seed` are strings, 1.0's
    integers); `seed` -1 (fal's "random") is left out; files are the given public URLs.
    """
    sent: dict[str, Any] = {}
    problems: list[str] = []
    for name, value in {**arguments, **{n: u for n, u in urls.items() if u}}.items():
        param = model.params.get(name)
        if param is None:
            if name in FAL_ONLY_DEFAULTS and value == FAL_ONLY_DEFAULTS[name]:
                continue
            problems.append(f"eachlabs' {model.slug} does not take "
                            f"{ARGUMENT_NAMES.get(name, name)}.")
            continue
        if name == "seed" and value in (None, -1, "-1"):
            continue
        if param.file:
            value = value[0] if isinstance(value, list) and len(value) == 1 else value
            problem = _url_problem(value)
            if problem:
                problems.append(f"eachlabs fetches {ARGUMENT_NAMES.get(name, name)} itself, "
                                f"so it needs {problem}.")
                continue
        converted = _as(param.type, value)
        if converted is None:
            problems.append(f"eachlabs' {model.slug} takes {name} as "
                            f"{TYPE_NAMES[param.type]}, not {value!r}.")
        elif param.choices and converted not in param.choices:
            problems.append(_choice_problem(model, name, converted, param.choices))
        elif (param.low is not None and converted < param.low) or (
                param.high is not None and converted > param.high):
            problems.append(f"eachlabs' {model.slug} takes a {name} from {param.low} to "
                            f"{param.high}, not {converted}.")
        else:
            sent[name] = converted
    for name, param in model.params.items():
        if param.required and name not in sent and name not in arguments \
                and not urls.get(name):
            problems.append(f"eachlabs' {model.slug} needs {ARGUMENT_NAMES.get(name, name)}.")
    return sent, problems


def _choice_problem(model: Model, name: str, value: Any, choices: tuple[Any, ...]) -> str:
    if name == "resolution":
        return (f"eachlabs' {model.slug} offers {', '.join(choices)}, not {value}; choose "
                "one of those, or generate with another provider.")
    shown = ", ".join(str(c) for c in choices)
    return f"eachlabs' {model.slug} takes {name} {shown}; not {value}."


def _as(kind: type, value: Any) -> Any:
    """`value` as the JSON type a schema asks for, or None when it is not one."""
    if kind is bool:
        return value if isinstance(value, bool) else None
    if kind is int:
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        return int(value) if isinstance(value, str) and value.isdigit() else None
    if kind is str:
        if isinstance(value, bool):
            return None
        return value if isinstance(value, str) else str(value) if isinstance(value, int) \
            else None
    return value if isinstance(value, kind) else None


def _url_problem(value: Any) -> str:
    """Both documents: "publicly-reachable HTTPS URLs only … Data-URIs and localhost URLs are
    rejected"."""
    if not isinstance(value, str) or value.lower().startswith("data:"):
        return "a public HTTPS address (never a data URI)"
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        return "a public HTTPS address"
    host = parts.hostname
    if host == "localhost" or host.endswith(".localhost"):
        return "a public HTTPS address, not localhost"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return ""
    return "" if address.is_global else "a public HTTPS address, not a private one"


# -- reading eachlabs' answers --------------------------------------------------------------------


def _text(value: Any) -> str:
    return " ".join(value.split()) if isinstance(value, str) else ""


def _clip(text: str) -> str:
    return text if len(text) <= MAX_WORDS else text[: MAX_WORDS - 1] + "…"


def error_words(body: Any) -> str:
    """What an eachlabs error body says: 2026-06 {status:"error", message, details}, 2026-08
    {error, details?}."""
    if not isinstance(body, dict):
        return ""
    said = _text(body.get("error")) or _text(body.get("message"))
    details = _text(body.get("details")) if not isinstance(body.get("details"), (dict, list)) \
        else json.dumps(body["details"])[:200]
    if said and details and details not in said:
        return _clip(f"{said}: {details}")
    return _clip(said or details)


def failure_words(prediction: dict[str, Any]) -> tuple[str, bool]:
    """A failed prediction's message in eachlabs' words, and whether retrying cannot help.

    2026-06 polls say `message` / `details`; 2026-08 polls `output: {error_code,
    error_message}` (or a top-level `error`).
    """
    output = prediction.get("output")
    code = words = ""
    if isinstance(output, dict):
        words = _text(output.get("error_message")) or _text(output.get("error"))
        code = _text(output.get("error_code"))
    details = _text(prediction.get("details"))
    words = words or _text(prediction.get("message")) or _text(prediction.get("error")) \
        or details
    code = code or details
    words = _clip(words) or "eachlabs reported that the prediction failed, without saying why."
    return words, code not in TRANSIENT_FAILURES


def video_url(output: Any) -> str:
    """The video in either documented shape: a URL string (2026-06, and 2026-08 polls) or an
    object with `url` (2026-08 webhooks); a list of either is read by its first item."""
    if isinstance(output, list):
        output = output[0] if output else None
    if isinstance(output, dict):
        output = output.get("url")
    if isinstance(output, str) and output.startswith("https://"):
        return output
    return ""


def _logs(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(line for line in value.splitlines() if line.strip())
    if isinstance(value, list):
        return tuple(str(line) for line in value)
    return ()


def _seed(arguments: Any) -> int | None:
    seed = arguments.get("seed") if isinstance(arguments, dict) else None
    try:
        return int(seed) if seed is not None else None
    except (TypeError, ValueError):
        return None


def _is_eachlabs_error(body: Any) -> bool:
    # A route eachlabs has answers in its own shape; a router's "404 page not found" does not.
    return isinstance(body, dict) and any(k in body for k in ("error", "message", "status"))


def _same(given: str, expected: str) -> bool:
    # Bytes, because compare_digest refuses non-ASCII str; constant time either way.
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


class EachlabsProvider(HttpProvider):
    """OPTIONS: key (required), api_url, webhook_secret, cdn_hosts, models, plus
    HttpProvider's transport, timeout, sleep, random and ca_file."""

    label = "eachlabs"
    needs_public_inputs = True
    # Both documents: "5xx — retry with backoff"; 429 waits as long as Retry-After says, up to
    # the minute the seed page's "100 creates / min" can take to clear.
    retry_cap = 60.0

    def __init__(self, *, name: str, key: str = "", api_url: str = "https://api.eachlabs.ai",
                 webhook_secret: str = "",
                 cdn_hosts: tuple[str, ...] | list[str] = DEFAULT_CDN_HOSTS,
                 models: dict[str, Any] | None = None, transport: Any = None,
                 timeout: Any = None, sleep: Any = None, random: Any = None,
                 ca_file: str = "", **unknown: Any) -> None:
        if unknown:
            raise ImproperlyConfigured(f"Unknown eachlabs OPTIONS: {', '.join(sorted(unknown))}")
        if not key:
            raise ImproperlyConfigured(f"VIDEO_PROVIDERS[{name!r}] needs OPTIONS['key'].")
        if not api_url.startswith(("https://", "http://")):
            raise ImproperlyConfigured("eachlabs OPTIONS['api_url'] must be an http(s) URL.")
        # The key and the secret stay out of self.options, which may end up in logs.
        super().__init__(name=name, transport=transport, timeout=timeout, sleep=sleep,
                         random=random, ca_file=ca_file)
        self._key = key
        self.webhook_secret = webhook_secret
        self.api_url = api_url.rstrip("/")
        self.download_hosts = tuple(cdn_hosts)
        self.models = configured_models(models)
        # The create path that answered as a route last time (see CREATE_PATHS).
        self._create_path: str | None = None
        self._unknown_seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._unknown_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<EachlabsProvider {self.name!r} api={self.api_url}>"

    def _auth(self) -> dict[str, str]:
        # Both documented forms on every call, so either version accepts the key. Never logged:
        # httpx logs the request line only, and so do we.
        return {"X-API-Key": self._key, "Authorization": f"Bearer {self._key}",
                "Accept": "application/json"}

    # -- before anything is spent ------------------------------------------------------------

    def _model(self, endpoint: str) -> Model | None:
        return self.models.get(endpoint)

    def preflight(self, *, endpoint: str, arguments: dict, files: set[str]) -> list[str]:
        model = self._model(endpoint)
        if model is None:
            return [f"eachlabs has no model configured for {endpoint}; choose another endpoint, "
                    "or map it to an eachlabs model in EACHLABS_MODELS."]
        # Files become URLs later; here only which ones there will be counts.
        placeholders = {name: ["https://files.invalid/x"] for name in files}
        return prediction_input(model, arguments, placeholders)[1]

    def per_second_rates(self, endpoint: str) -> dict[str, int] | None:
        model = self._model(endpoint)
        return dict(model.rates) if model else None

    # -- the interface -----------------------------------------------------------------------

    def submit(self, job: Job) -> Submitted:
        model = self._model(job.endpoint)
        if model is None:
            raise ProviderError(f"eachlabs has no model configured for {job.endpoint}.",
                                permanent=True)
        missing = [name for name, paths in job.files.items()
                   if paths and len(job.urls.get(name) or []) != len(paths)]
        if missing:
            raise ProviderError(f"eachlabs fetches input files itself, but {', '.join(missing)} "
                                "has no public HTTPS URL.", permanent=True)
        arguments, problems = prediction_input(model, job.arguments, job.urls)
        if problems:
            raise ProviderError(" ".join(problems), permanent=True)
        response = self._create(model.slug, arguments, job.webhook_url)
        body = _json_or_none(response)
        prediction_id = body.get("predictionID") if isinstance(body, dict) else None
        if not isinstance(prediction_id, str) or not prediction_id:
            # eachlabs said yes, so a prediction probably exists; we just cannot name it.
            raise ProviderError("eachlabs accepted the request without naming the prediction.",
                                outcome_unknown=True)
        logger.info("eachlabs prediction %s created for take %s (%s)", prediction_id, job.uid,
                    model.slug)
        return Submitted(prediction_id)

    def status(self, *, endpoint: str, request_id: str) -> Status:
        return self._status_of(self._prediction(request_id), request_id)

    def result(self, *, endpoint: str, request_id: str) -> Result:
        prediction = self._prediction(request_id)
        status = self._status_of(prediction, request_id)
        if status.state == "failed":
            raise ProviderError(status.error, permanent=status.permanent)
        if status.state == "canceled":
            raise ProviderError("The eachlabs prediction was cancelled.", permanent=True)
        if status.state != "completed":
            raise ProviderError(f"The eachlabs prediction is not finished yet "
                                f"({prediction.get('status')!r}).")
        url = video_url(prediction.get("output"))
        if not url:
            raise ProviderError("eachlabs reported success but named no video.", permanent=True)
        return Result(video_url=url, seed=_seed(prediction.get("input")))

    def cancel(self, *, endpoint: str, request_id: str) -> bool:
        try:
            self._request("POST", f"{self._prediction_url(request_id)}/cancel",
                          headers=self._auth())
        except HttpStatusError as e:
            if e.status_code in (404, 405) and not _is_eachlabs_error(e.body):
                # The seed page has no cancel at all: its router answers 404 (or 405).
                raise CannotCancel(CANNOT_STOP) from None
            if e.status_code == 404:
                raise ProviderError(f"eachlabs has no prediction {request_id}.",
                                    permanent=True) from None
            raise CannotCancel(f"{CANNOT_STOP} (It said: {error_words(e.body) or e.message})") \
                from None
        # "Best-effort" (2026-08): believe the prediction, not the answer to the cancel.
        status = self.status(endpoint=endpoint, request_id=request_id)
        if status.state == "canceled":
            return True
        if status.state in ("completed", "failed"):
            return False
        raise CannotCancel(f"{CANNOT_STOP} (It accepted the cancel, but the prediction is "
                           "still running.)")

    def parse_webhook(self, *, headers: dict[str, str], body: bytes) -> WebhookEvent:
        lowered = {str(name).lower(): value for name, value in headers.items()}
        given = lowered.get("x-webhook-secret")
        # 2026-08 sends the secret verbatim when create carried one; 2026-06 never does, so its
        # absence proves nothing (the URL's token is the credential), but a wrong one is forged.
        if given is not None and not (self.webhook_secret and isinstance(given, str)
                                      and _same(given, self.webhook_secret)):
            raise WebhookRejected("Wrong X-Webhook-Secret.")
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            raise WebhookRejected("The delivery is not JSON.") from None
        if not isinstance(payload, dict):
            raise WebhookRejected("The delivery is not a JSON object.")
        exec_id = payload.get("exec_id")
        if not isinstance(exec_id, str) or not exec_id or len(exec_id) > 128:
            raise WebhookRejected("The delivery names no prediction (exec_id).")
        raw = payload.get("status")
        state = WEBHOOK_STATES.get(raw, "unknown") if isinstance(raw, str) else "unknown"
        return WebhookEvent(exec_id, Status(state), confirm=True)

    # -- HTTP --------------------------------------------------------------------------------

    def _create(self, slug: str, arguments: dict[str, Any],
                webhook_url: str | None) -> Any:
        paths = list(CREATE_PATHS)
        if self._create_path:
            paths.sort(key=lambda path: path != self._create_path)
        for path in paths:
            body: dict[str, Any] = {"model": slug, "input": arguments}
            if webhook_url:
                body["webhook_url"] = webhook_url
                if self.webhook_secret and path == LATER_CREATE_PATH:
                    body["webhook_secret"] = self.webhook_secret
            try:
                response = self._request("POST", self.api_url + path, json=body,
                                         headers=self._auth(), retry_submit=True)
            except HttpStatusError as e:
                if e.status_code in (404, 405) and not _is_eachlabs_error(e.body):
                    # No such route here: nothing was created, so the other form is safe.
                    continue
                self._create_path = path
                raise
            self._create_path = path
            return response
        raise ProviderError(f"eachlabs has no prediction endpoint at {self.api_url} (tried "
                            f"POST {' and '.join(CREATE_PATHS)}); check EACHLABS_API_URL.",
                            permanent=True)

    def _prediction_url(self, request_id: str) -> str:
        return f"{self.api_url}/v1/prediction/{quote(request_id, safe='')}"

    def _prediction(self, request_id: str) -> dict[str, Any]:
        response = self._request("GET", self._prediction_url(request_id), headers=self._auth())
        body = _json_or_none(response)
        if not isinstance(body, dict):
            raise ProviderError("eachlabs sent an unreadable prediction.")
        return body

    def _status_of(self, prediction: dict[str, Any], request_id: str) -> Status:
        raw = prediction.get("status")
        state = STATES.get(raw) if isinstance(raw, str) else None
        if state is None:
            note = (f"eachlabs reported the status {raw!r}, which neither of its documents "
                    "lists; still waiting.")
            self._log_unknown_once(request_id, repr(raw))
            return Status("unknown", logs=(note,))
        logs = _logs(prediction.get("logs"))
        if state == "failed":
            words, permanent = failure_words(prediction)
            return Status("failed", logs=logs, error=words, permanent=permanent)
        return Status(state, logs=logs)

    def _log_unknown_once(self, request_id: str, raw: str) -> None:
        with self._unknown_lock:
            if (request_id, raw) in self._unknown_seen:
                return
            self._unknown_seen[(request_id, raw)] = None
            while len(self._unknown_seen) > UNKNOWN_MEMORY:
                self._unknown_seen.popitem(last=False)
        logger.warning("eachlabs prediction %s has the undocumented status %s; waiting",
                       request_id, raw)

    def _should_retry(self, response: Any, submit: bool) -> bool:
        # Both documents: 429 is "not created, not billed"; "5xx — retry with backoff". An
        # explicit answer is never a lost one, so even create is retried.
        return response.status_code == 429 or response.status_code >= 500

    def _status_error(self, response: Any, submit: bool) -> HttpStatusError:
        code = response.status_code
        body = _json_or_none(response)
        words = error_words(body) or response.reason_phrase or f"HTTP {code}"
        if code in (401, 403):
            text = f"eachlabs refused the API key (HTTP {code}): {words}. Check EACHLABS_KEY."
        elif code == 402:
            text = f"The eachlabs account is out of credit: {words}"
        elif code == 429:
            text = f"eachlabs kept asking us to slow down ({words}); nothing was created."
        elif code >= 500:
            text = f"eachlabs kept failing (HTTP {code}): {words}"
        else:
            text = f"eachlabs refused the request: {words}"
        logger.info("eachlabs %s %s: HTTP %d", response.request.method,
                    response.request.url.path, code)
        return HttpStatusError(text, status_code=code, body=body,
                               permanent=400 <= code < 500 and code != 429)
