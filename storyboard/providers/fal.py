"""fal.ai through its queue API (reference/provider-protocols.md §1).

Submit, then either a signed webhook or polling: status (with logs and queue position), result,
cancel. Inputs go inline as data URIs when small, else to fal's storage first. The API key only
ever travels to `queue_url` and `rest_url`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import mimetypes
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.core.exceptions import ImproperlyConfigured

from storyboard.providers.base import (
    Job,
    ProviderError,
    Result,
    Status,
    Submitted,
    WebhookEvent,
    WebhookRejected,
)
from storyboard.providers.http import HttpProvider, HttpStatusError, describe_error

logger = logging.getLogger(__name__)

# Infrastructure failures (reference "Request Error Types"): the same input may well succeed on
# another try, unlike a validation or content-policy error.
INFRA_ERROR_TYPES = frozenset({
    "request_timeout", "startup_timeout", "runner_scheduling_failure",
    "runner_connection_timeout", "runner_disconnected", "runner_connection_refused",
    "runner_connection_error", "runner_incomplete_response", "runner_server_error",
    "client_disconnected", "internal_error",
})
CANCELED_ERROR_TYPES = frozenset({"client_cancelled"})
TIMEOUT_ERROR_TYPES = frozenset({"request_timeout", "startup_timeout", "generation_timeout"})
# What to change, per model error type (fal's error reference; the types seen on Seedance
# are content_policy_violation, no_media_generated, generation_timeout,
# feature_not_supported and image_too_small). "{where}" names the input, "{msg}" is fal's text.
MODEL_ERROR_ADVICE = {
    "content_policy_violation": "The content checker flagged {where}. Change the wording or "
                                "the input images and try again.",
    "image_load_error": "fal.ai could not read {where} as an image. Use a JPEG, PNG or WebP "
                        "that opens on your computer, and try again.",
    "file_download_error": "fal.ai could not download {where}. Try again; if it keeps "
                           "failing, upload the file again.",
    "image_too_small": "{where} is too small for this model ({msg}). Use a larger image.",
    "image_too_large": "{where} is too large for this model ({msg}). Use a smaller image.",
    "file_too_large": "{where} is too large for this model ({msg}). Use a smaller file.",
    "unsupported_image_format": "{where} is in a format this model does not take. Use a "
                                "JPEG, PNG or WebP image.",
    "unsupported_video_format": "{where} is in a format this model does not take. Use an MP4 "
                                "or MOV video.",
    "unsupported_audio_format": "{where} is in a format this model does not take. Use an MP3 "
                                "or WAV file.",
    "video_duration_too_long": "{where} is too long for this model ({msg}). Use a shorter "
                               "clip.",
    "video_duration_too_short": "{where} is too short for this model ({msg}). Use a longer "
                                "clip.",
    "audio_duration_too_long": "{where} is too long for this model ({msg}). Use a shorter "
                               "clip.",
    "audio_duration_too_short": "{where} is too short for this model ({msg}). Use a longer "
                                "clip.",
    "no_media_generated": "The model produced no video for this prompt. Try again, or change "
                          "the prompt.",
    "generation_timeout": "fal.ai timed out; try again.",
    "feature_not_supported": "This endpoint does not support that ({msg}). Change the shot's "
                             "settings and try again.",
}
# Our names for the inputs fal's error locations point at.
INPUT_NAMES = {
    "prompt": "the prompt", "image_url": "the start frame", "end_image_url": "the end frame",
    "image_urls": "a reference image", "video_urls": "a reference video",
    "audio_urls": "a reference audio file",
}

HEADER_REQUEST_ID = "x-fal-webhook-request-id"
HEADER_USER_ID = "x-fal-webhook-user-id"
HEADER_TIMESTAMP = "x-fal-webhook-timestamp"
HEADER_SIGNATURE = "x-fal-webhook-signature"
WEBHOOK_HEADERS = (HEADER_REQUEST_ID, HEADER_USER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE)
# fal's documented tolerance between its signing clock and ours.
WEBHOOK_TOLERANCE = 300
# A verification miss may mean fal rotated its keys; refetching more often than this would let
# anyone with junk deliveries make us hammer the JWKS endpoint.
JWKS_REFETCH_THROTTLE = 60
# Refresh the upload token this early so an upload never starts with one about to expire.
TOKEN_MARGIN = 60

ENDPOINT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9._-]+)*")
SINGLE_SEGMENT_APP_RE = re.compile(r"([0-9]+)-([a-zA-Z0-9-]+)")
TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")
# An Ed25519 signature is 64 bytes; bytes.fromhex alone would also accept spaces.
SIGNATURE_RE = re.compile(r"[0-9a-fA-F]{128}")
MAGIC_TYPES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"ID3", "audio/mpeg"),
)


def app_base(endpoint: str) -> str:
    """The owner/alias part of an endpoint id: status, result and cancel live under it only.

    `bytedance/seedance-2.0/fast/text-to-video` → `bytedance/seedance-2.0`;
    `fal-ai/bytedance/seedance/v1/lite/text-to-video` → `fal-ai/bytedance`.
    """
    parts = endpoint.split("/")
    namespace = []
    if parts[0] in ("workflows", "comfy"):
        namespace, parts = [parts[0]], parts[1:]
    if len(parts) >= 2 and all(parts[:2]):
        return "/".join([*namespace, parts[0], parts[1]])
    single = SINGLE_SEGMENT_APP_RE.fullmatch(parts[0]) if len(parts) == 1 else None
    if single and not namespace:
        return f"{single.group(1)}/{single.group(2)}"
    raise ValueError(f"Not a fal endpoint id: {endpoint!r}")


@dataclass(frozen=True)
class _UploadToken:
    token: str
    token_type: str
    base_url: str
    expires_at: float


class FalProvider(HttpProvider):
    """OPTIONS: key (required), user_id (required to accept webhooks), queue_url, rest_url,
    jwks_url, cdn_hosts, data_uri_max, jwks_ttl, clock, plus HttpProvider's transport, timeout,
    sleep and random."""

    label = "fal.ai"

    def __init__(self, *, name: str, key: str = "", user_id: str = "",
                 queue_url: str = "https://queue.fal.run",
                 rest_url: str = "https://rest.fal.ai",
                 jwks_url: str = "https://rest.alpha.fal.ai/.well-known/jwks.json",
                 cdn_hosts: tuple[str, ...] | list[str] = (
                     "v3.fal.media", "v3b.fal.media", "fal.media"),
                 data_uri_max: int = 512 * 1024, jwks_ttl: float = 86400,
                 clock: Callable[[], float] | None = None, **options: Any) -> None:
        super().__init__(name=name, **options)
        if not key:
            raise ImproperlyConfigured(f"VIDEO_PROVIDERS[{name!r}] needs OPTIONS['key'].")
        self._key = key
        self.user_id = user_id
        self.queue_url = queue_url.rstrip("/")
        self.rest_url = rest_url.rstrip("/")
        self.jwks_url = jwks_url
        self.cdn_hosts = tuple(cdn_hosts)
        self.download_hosts = self.cdn_hosts
        self.data_uri_max = int(data_uri_max)
        self.jwks_ttl = float(jwks_ttl)
        self.clock = clock or time.time
        self._token: _UploadToken | None = None
        self._token_lock = threading.Lock()
        self._jwks: list[Ed25519PublicKey] | None = None
        self._jwks_fetched_at = 0.0
        self._jwks_tried_at = float("-inf")
        self._jwks_lock = threading.Lock()

    def __repr__(self) -> str:
        # The default would be harmless today; this keeps it so if options ever get printed.
        return f"<FalProvider {self.name!r} queue={self.queue_url}>"

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Key {self._key}"}

    # Queue API ---------------------------------------------------------------------------

    def submit(self, job: Job) -> Submitted:
        base = self._checked_base(job.endpoint)
        payload = dict(job.arguments)
        for argument, paths in job.files.items():
            payload[argument] = self._file_argument(argument, paths)
        url = f"{self.queue_url}/{job.endpoint}"
        if job.webhook_url:
            url += "?" + urlencode({"fal_webhook": job.webhook_url})
        response = self._request("POST", url, json=payload, headers=self._auth(),
                                 retry_submit=True)
        body = _json_or_empty(response)
        request_id = body.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            # fal said yes but we cannot tell to what: exactly the lost-answer case.
            raise ProviderError(f"{self.label} accepted the request without a request id.",
                                outcome_unknown=True)
        logger.info("Submitted %s to fal %s as %s", job.uid, base, request_id)
        return Submitted(request_id)

    def status(self, *, endpoint: str, request_id: str) -> Status:
        url = f"{self._request_url(endpoint, request_id)}/status?logs=1"
        body = _json_or_empty(self._request("GET", url, headers=self._auth()))
        state = body.get("status")
        logs = _log_lines(body.get("logs"))
        if state == "IN_QUEUE":
            return Status("queued", queue_position=_int_or_none(body.get("queue_position")),
                          logs=logs)
        if state == "IN_PROGRESS":
            return Status("running", logs=logs)
        if state == "COMPLETED":
            if body.get("error") or body.get("error_type"):
                return self._failed_status(endpoint, request_id, body, logs)
            return Status("completed", logs=logs)
        raise ProviderError(f"{self.label} reported an unknown status {state!r}.")

    def _failed_status(self, endpoint: str, request_id: str, body: dict,
                       logs: tuple[str, ...]) -> Status:
        error_type = body.get("error_type") if isinstance(body.get("error_type"), str) else ""
        error = body.get("error") if isinstance(body.get("error"), str) else ""
        if error_type in CANCELED_ERROR_TYPES:
            return Status("canceled", logs=logs, error=error or "Canceled.")
        detail = None
        if error_type not in INFRA_ERROR_TYPES:
            # A model error's status says only "Invalid status code: 422"; what went wrong,
            # in fal's words, is what the result answers (as the webhook's payload carries).
            detail = self._error_body(endpoint, request_id)
        message = plain_error(detail, error=error, error_type=error_type)
        return Status("failed", logs=logs, error=message,
                      permanent=error_type not in INFRA_ERROR_TYPES)

    def _error_body(self, endpoint: str, request_id: str) -> Any:
        try:
            response = self._request("GET", self._request_url(endpoint, request_id),
                                     headers=self._auth())
        except HttpStatusError as exc:
            return exc.body
        except ProviderError:
            return None
        return _json_or_empty(response)

    def result(self, *, endpoint: str, request_id: str) -> Result:
        url = self._request_url(endpoint, request_id)
        body = _json_or_empty(self._request("GET", url, headers=self._auth()))
        result = _video_result(body)
        if result is None:
            message, _ = describe_error(body)
            raise ProviderError(message or f"{self.label} returned a result without a video.",
                                permanent=True)
        return result

    def cancel(self, *, endpoint: str, request_id: str) -> bool:
        url = f"{self._request_url(endpoint, request_id)}/cancel"
        try:
            response = self._request("PUT", url, headers=self._auth())
        except HttpStatusError as exc:
            said = exc.body.get("status") if isinstance(exc.body, dict) else None
            if said == "ALREADY_COMPLETED":
                return False
            if said == "NOT_FOUND" or exc.status_code == 404:
                raise ProviderError(f"{self.label} knows no request {request_id}.",
                                    permanent=True) from None
            raise
        said = _json_or_empty(response).get("status")
        if said in ("CANCELLATION_REQUESTED", "OK"):
            return True
        if said == "ALREADY_COMPLETED":
            return False
        if said == "NOT_FOUND":
            raise ProviderError(f"{self.label} knows no request {request_id}.", permanent=True)
        raise ProviderError(f"{self.label} answered a cancel with {said!r}.")

    def _checked_base(self, endpoint: str) -> str:
        # The endpoint becomes part of a URL that carries our key: allow only id characters.
        if not ENDPOINT_RE.fullmatch(endpoint) or ".." in endpoint:
            raise ProviderError(f"Not a fal endpoint id: {endpoint!r}", permanent=True)
        try:
            return app_base(endpoint)
        except ValueError as exc:
            raise ProviderError(str(exc), permanent=True) from None

    def _request_url(self, endpoint: str, request_id: str) -> str:
        base = self._checked_base(endpoint)
        return f"{self.queue_url}/{base}/requests/{quote(request_id, safe='')}"

    # Inputs ----------------------------------------------------------------------------

    def _file_argument(self, argument: str, paths: list[Path]) -> str | list[str]:
        urls = [self._file_url(Path(p)) for p in paths]
        if argument.endswith("_urls"):
            return urls
        if len(urls) != 1:
            raise ProviderError(f"{argument} takes exactly one file, got {len(urls)}.",
                                permanent=True)
        return urls[0]

    def _file_url(self, path: Path) -> str:
        data = path.read_bytes()
        content_type = _content_type(path, data)
        if len(data) <= self.data_uri_max:
            return f"data:{content_type};base64,{base64.b64encode(data).decode('ascii')}"
        return self._upload(data, content_type, path.name)

    def _upload(self, data: bytes, content_type: str, file_name: str) -> str:
        token = self._upload_token()
        headers = {"Authorization": f"{token.token_type} {token.token}",
                   "Content-Type": content_type, "X-Fal-File-Name": file_name}
        try:
            response = self._request("POST", f"{token.base_url}/files/upload", content=data,
                                     headers=headers)
        except ProviderError:
            # A refused token must not stay cached for its remaining lifetime.
            with self._token_lock:
                self._token = None
            raise
        access_url = _json_or_empty(response).get("access_url")
        if not isinstance(access_url, str) or not access_url.startswith(("https://", "http://")):
            raise ProviderError(f"{self.label} storage returned no file URL.")
        return access_url

    def _upload_token(self) -> _UploadToken:
        with self._token_lock:
            token = self._token
            if token is not None and self.clock() < token.expires_at - TOKEN_MARGIN:
                return token
            url = f"{self.rest_url}/storage/auth/token?storage_type=fal-cdn-v3"
            body = _json_or_empty(self._request("POST", url, json={}, headers=self._auth()))
            token = _parse_token(body)
            if token is None:
                raise ProviderError(f"{self.label} storage returned no upload token.")
            self._token = token
            return token

    # Webhooks --------------------------------------------------------------------------

    def parse_webhook(self, *, headers: dict[str, str], body: bytes) -> WebhookEvent:
        values = _webhook_headers(headers)
        request_id, user_id, timestamp, signature = (values[h] for h in WEBHOOK_HEADERS)
        if not TIMESTAMP_RE.fullmatch(timestamp):
            raise WebhookRejected("timestamp is not a number of seconds")
        if abs(self.clock() - int(timestamp)) > WEBHOOK_TOLERANCE:
            raise WebhookRejected("timestamp is too far from now")
        if not SIGNATURE_RE.fullmatch(signature):
            raise WebhookRejected("signature is not 64 hex-encoded bytes")
        if not self.user_id:
            raise WebhookRejected("no fal user_id is configured to accept webhooks for")
        # Every fal customer's webhooks are signed with the same keys: a valid signature only
        # proves fal sent it, so the user id says it was sent for us.
        if user_id != self.user_id:
            raise WebhookRejected("the delivery is for another fal user")
        message = "\n".join(
            [request_id, user_id, timestamp, hashlib.sha256(body).hexdigest()]
        ).encode("utf-8")
        self._verify(bytes.fromhex(signature), message)
        data = _json_object(body)
        if data.get("request_id") != request_id:
            raise WebhookRejected("the body is about another request than the headers")
        return _webhook_event(request_id, data)

    def _verify(self, signature: bytes, message: bytes) -> None:
        if _verifies(self._jwks_keys(refresh=False), signature, message):
            return
        # A miss may mean fal rotated its keys since we cached them.
        keys = self._jwks_keys(refresh=True)
        if keys is None or not _verifies(keys, signature, message):
            raise WebhookRejected("signature does not verify")

    def _jwks_keys(self, *, refresh: bool) -> list[Ed25519PublicKey] | None:
        """The cached keys; on refresh, new keys, or None when throttled."""
        with self._jwks_lock:
            now = self.clock()
            fresh = now - self._jwks_fetched_at < self.jwks_ttl
            if self._jwks is not None and fresh and not refresh:
                return self._jwks
            if refresh and now - self._jwks_tried_at < JWKS_REFETCH_THROTTLE:
                return None
            # Failed fetches count too, so an outage is not hammered by every delivery.
            self._jwks_tried_at = now
            try:
                response = self._request("GET", self.jwks_url)
            except ProviderError as exc:
                raise WebhookRejected(f"fal's signing keys could not be fetched: {exc}") from None
            keys = _parse_jwks(_json_or_empty(response))
            if not keys:
                raise WebhookRejected("fal's JWKS holds no Ed25519 keys")
            self._jwks, self._jwks_fetched_at = keys, now
            logger.info("Fetched %d fal webhook signing keys", len(keys))
            return keys


# Reading fal's answers -------------------------------------------------------------------


def _json_or_empty(response: Any) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _log_lines(logs: Any) -> tuple[str, ...]:
    # Entries are {message, level, source, timestamp}; tolerate bare strings and null.
    if not isinstance(logs, list):
        return ()
    lines = []
    for entry in logs:
        message = entry.get("message") if isinstance(entry, dict) else entry
        if isinstance(message, str):
            lines.append(message)
    return tuple(lines)


def plain_error(body: Any, *, error: str = "", error_type: str = "") -> str:
    """What went wrong and what to change, from fal's error body (a result's or a webhook's
    payload) and the `error`/`error_type` its status or webhook gave. Falls back to fal's own
    message, and never to a bare "Invalid status code"."""
    items = body.get("detail") if isinstance(body, dict) else None
    if isinstance(items, list) and any(isinstance(item, dict) for item in items):
        words = [_plain_item(item) for item in items if isinstance(item, dict)]
        message = " ".join(dict.fromkeys(w for w in words if w))
        if message:
            return message
    described, found_type = describe_error(body)
    error_type = found_type or error_type
    if error_type in TIMEOUT_ERROR_TYPES:
        return "fal.ai timed out; try again."
    if error_type in INFRA_ERROR_TYPES:
        return f"fal.ai had trouble running the model ({described or error}); try again."
    if described:
        return described
    if error and not error.startswith("Invalid status code"):
        return error
    said = f" ({error})" if error else ""
    return f"fal.ai could not generate this take and gave no reason{said}."


def _plain_item(item: dict) -> str:
    kind = item.get("type") if isinstance(item.get("type"), str) else ""
    advice = MODEL_ERROR_ADVICE.get(kind)
    if advice is None:
        return describe_error({"detail": [item]})[0]
    loc = item.get("loc") if isinstance(item.get("loc"), list) else []
    fields = [str(part) for part in loc if part not in ("body", "query")]
    field = fields[0] if fields else ""
    where = INPUT_NAMES.get(field, f"the {field}" if field else "an input")
    msg = item.get("msg") if isinstance(item.get("msg"), str) else ""
    text = advice.format(where=where, msg=msg.rstrip(".") or kind.replace("_", " "))
    return text[0].upper() + text[1:] if advice.startswith("{where}") else text


def _video_result(body: Any) -> Result | None:
    video = body.get("video") if isinstance(body, dict) else None
    url = video.get("url") if isinstance(video, dict) else None
    if not isinstance(url, str) or not url:
        return None
    return Result(video_url=url, seed=_int_or_none(body.get("seed")))


def _content_type(path: Path, head: bytes) -> str:
    guessed, _ = mimetypes.guess_type(path.name)
    if guessed:
        return guessed
    # Stored inputs may carry no extension; the first bytes tell the common cases apart.
    for magic, content_type in MAGIC_TYPES:
        if head.startswith(magic):
            return content_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[4:8] == b"ftyp":
        return "video/mp4"
    return "application/octet-stream"


def _parse_token(body: dict) -> _UploadToken | None:
    token, base_url = body.get("token"), body.get("base_url")
    if not isinstance(token, str) or not isinstance(base_url, str) or not token:
        return None
    if not base_url.startswith(("https://", "http://")):
        return None
    try:
        expires_at = datetime.fromisoformat(str(body.get("expires_at"))).timestamp()
    except ValueError:
        # Unknown lifetime: use it once rather than cache something that may be dead.
        expires_at = 0.0
    token_type = body.get("token_type") if isinstance(body.get("token_type"), str) else ""
    return _UploadToken(token=token, token_type=token_type or "Bearer",
                        base_url=base_url.rstrip("/"), expires_at=expires_at)


# Webhook helpers -------------------------------------------------------------------------


def _webhook_headers(headers: dict[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower not in WEBHOOK_HEADERS:
            continue
        # Two spellings of one header with different values: nothing says which one fal signed.
        if lower in found and found[lower] != value:
            raise WebhookRejected(f"header {lower} appears twice")
        found[lower] = value
    for name in WEBHOOK_HEADERS:
        if not found.get(name):
            raise WebhookRejected(f"missing header {name}")
    return found


def _b64url_decode(value: str) -> bytes:
    # Live JWKS values carry "=" padding although base64url in JWK omits it; accept both.
    stripped = value.strip().rstrip("=")
    return base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))


def _parse_jwks(body: dict) -> list[Ed25519PublicKey]:
    keys = []
    for jwk in body.get("keys") or []:
        if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue
        x = jwk.get("x")
        if not isinstance(x, str):
            continue
        try:
            keys.append(Ed25519PublicKey.from_public_bytes(_b64url_decode(x)))
        except (ValueError, binascii.Error):
            logger.warning("Skipping an unreadable key in fal's JWKS")
    return keys


def _verifies(keys: list[Ed25519PublicKey] | None, signature: bytes, message: bytes) -> bool:
    for key in keys or ():
        try:
            key.verify(signature, message)
        except InvalidSignature:
            continue
        return True
    return False


def _json_object(body: bytes) -> dict:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookRejected("the body is not JSON") from None
    if not isinstance(data, dict):
        raise WebhookRejected("the body is not a JSON object")
    return data


def _webhook_event(request_id: str, data: dict) -> WebhookEvent:
    said = data.get("status")
    payload = data.get("payload")
    if said == "OK" and isinstance(payload, dict):
        # Without a video in the payload the caller fetches the result the usual way.
        return WebhookEvent(request_id, Status("completed"), _video_result(payload))
    if said == "OK":
        error = data.get("payload_error")
        message = error if isinstance(error, str) and error else "fal sent no result payload."
        return WebhookEvent(request_id, Status("failed", error=message, permanent=True))
    if said == "ERROR":
        return WebhookEvent(request_id, _webhook_error_status(data, payload))
    raise WebhookRejected(f"unknown webhook status {said!r}")


def _webhook_error_status(data: dict, payload: Any) -> Status:
    message, error_type = describe_error(payload)
    error = data.get("error") if isinstance(data.get("error"), str) else ""
    if not error_type and isinstance(data.get("error_type"), str):
        error_type = data["error_type"]
    if error_type in CANCELED_ERROR_TYPES:
        return Status("canceled", error=message or error or "Canceled.")
    return Status("failed", error=plain_error(payload, error=error, error_type=error_type),
                  permanent=error_type not in INFRA_ERROR_TYPES)
