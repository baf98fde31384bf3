"""The shared base of providers that speak HTTP: one httpx client and one retry policy.

The policy follows fal-client: retry 408, 409, 429, "ingress" 502/503/504 (answered by the load
balancer, so the request never reached fal's queue) and connection failures. On top of that, a
paid submit is never sent twice: when its fate is unknown (read timeout, dropped connection, a 5xx
from fal itself) the caller gets ProviderError(outcome_unknown=True) and reconciles by polling.
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from storyboard.providers.base import ProviderError, VideoProvider

logger = logging.getLogger(__name__)

# fal-client retries these everywhere: the server says it did not process the request.
RETRY_STATUSES = frozenset({408, 409, 429})
# Gateway errors; they are "ingress" (safe to resend) only when fal's app never answered.
INGRESS_STATUSES = frozenset({502, 503, 504})
# The request certainly never left this machine, so resending cannot bill twice.
NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

DEFAULT_TIMEOUT = httpx.Timeout(30, connect=10)
# Jitter needs no reproducibility in production; tests inject their own source.
_system_random = random.SystemRandom()
# Error texts end up in the UI and in logs; a whole HTML error page helps nobody.
MAX_MESSAGE = 500


class HttpStatusError(ProviderError):
    """A final non-2xx answer, with what the provider said, for callers that read it (cancel)."""

    def __init__(self, message: str, *, status_code: int, body: Any, error_type: str = "",
                 permanent: bool = False, outcome_unknown: bool = False) -> None:
        super().__init__(message, permanent=permanent, outcome_unknown=outcome_unknown)
        self.status_code = status_code
        self.body = body
        self.error_type = error_type


def describe_error(body: Any) -> tuple[str, str]:
    """Read fal's error shapes into (message for people, error type).

    `detail` is either a string (request errors) or a list of {loc, msg, type} (validation and
    model errors); eachlabs-style bodies carry a plain `error` string instead.
    """
    if not isinstance(body, dict):
        return "", ""
    error_type = body.get("error_type") if isinstance(body.get("error_type"), str) else ""
    detail = body.get("detail")
    if isinstance(detail, str) and detail:
        return _clip(detail), error_type
    if isinstance(detail, list) and detail:
        parts = [_describe_item(item) for item in detail if isinstance(item, dict)]
        if not error_type:
            error_type = next((item.get("type") for item in detail
                               if isinstance(item, dict) and isinstance(item.get("type"), str)),
                              "")
        message = "; ".join(dict.fromkeys(p for p in parts if p))
        if message:
            return _clip(message), error_type
    error = body.get("error")
    if isinstance(error, str) and error:
        return _clip(error), error_type
    return "", error_type


def _describe_item(item: dict) -> str:
    field = _field_name(item.get("loc"))
    if item.get("type") == "content_policy_violation":
        # People need to know what to change, not the checker's internals.
        where = f"the {field}" if field else "the input"
        return (f"The content checker flagged {where}. Change the wording or the input images "
                "and try again.")
    msg = item.get("msg") if isinstance(item.get("msg"), str) else ""
    if field and msg:
        return f"{field}: {msg}"
    return msg or field


def _field_name(loc: Any) -> str:
    # FastAPI locations start with where the value came from ("body"); the rest is the field.
    if not isinstance(loc, list):
        return ""
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query"):
        parts = parts[1:]
    return ".".join(parts)


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def is_ingress(response: httpx.Response) -> bool:
    # fal's own servers always stamp x-fal-request-id; a gateway error without it came from the
    # load balancer in front, before the request reached the queue.
    return (response.status_code in INGRESS_STATUSES
            and "x-fal-request-id" not in response.headers)


def _retry_after(response: httpx.Response) -> float | None:
    # Only the delta-seconds form; an HTTP date from a provider is rare enough to ignore.
    value = response.headers.get("retry-after", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _bare(url: str) -> str:
    # For logs: the query can carry our webhook URL; the path is enough to diagnose.
    return url.split("?", 1)[0]


class HttpProvider(VideoProvider):
    """A remote provider reached over HTTPS.

    OPTIONS: `transport` (an httpx transport; tests pass httpx.MockTransport), `timeout`
    (seconds or httpx.Timeout; default 30 s, 10 s to connect), `sleep` (the backoff sleep) and
    `random` (anything with .uniform(a, b)) so tests neither wait nor depend on chance.
    """

    retry_base = 0.1
    retry_cap = 10.0
    max_attempts = 5

    def __init__(self, *, name: str, transport: httpx.BaseTransport | None = None,
                 timeout: float | httpx.Timeout | None = None,
                 sleep: Callable[[float], None] | None = None,
                 random: Any = None, ca_file: str = "", **options: Any) -> None:
        super().__init__(name=name, **options)
        if transport is None and ca_file:
            # A private CA (a local emulator, a corporate proxy): trust it and nothing else.
            transport = httpx.HTTPTransport(verify=ssl.create_default_context(cafile=ca_file))
        self.transport = transport
        self.timeout = httpx.Timeout(timeout) if timeout is not None else DEFAULT_TIMEOUT
        self.sleep = sleep or time.sleep
        self.random = random or _system_random
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()

    @property
    def client(self) -> httpx.Client:
        # Built on first use so that merely configuring a provider opens nothing.
        with self._client_lock:
            if self._client is None:
                self._client = httpx.Client(transport=self.transport, timeout=self.timeout,
                                            follow_redirects=False,
                                            headers={"User-Agent": "storyboard"})
            return self._client

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def backoff_delay(self, attempt: int, retry_after: float | None = None) -> float:
        """AWS "full jitter": uniform over [0, min(cap, base·2^attempt)]; Retry-After wins."""
        if retry_after is not None:
            return min(self.retry_cap, retry_after)
        return self.random.uniform(0, min(self.retry_cap, self.retry_base * 2 ** attempt))

    def _request(self, method: str, url: str, *, json: Any = None, content: bytes | None = None,
                 headers: dict[str, str] | None = None,
                 retry_submit: bool = False) -> httpx.Response:
        """Send a request, retrying what is safe to retry; return a 2xx response or raise.

        `retry_submit=True` marks a paid, non-idempotent submit: it is resent only when the
        request provably never reached the provider (connection refused, 429, ingress 5xx).
        """
        for attempt in range(self.max_attempts):
            last = attempt == self.max_attempts - 1
            try:
                response = self.client.request(method, url, json=json, content=content,
                                               headers=headers)
            except NEVER_SENT as exc:
                if last:
                    raise ProviderError(
                        f"{self.label} could not be reached ({type(exc).__name__})."
                    ) from None
                self._pause(attempt, None, method, url, type(exc).__name__)
                continue
            except httpx.UnsupportedProtocol:
                raise ProviderError(f"The {self.label} URL is not http(s); check OPTIONS.",
                                    permanent=True) from None
            except httpx.RequestError as exc:
                # Timeouts, resets, hang-ups, undecodable answers: anything after connecting.
                if retry_submit:
                    # The bytes may have arrived and the job may exist (and be billed).
                    raise ProviderError(
                        f"The answer from {self.label} was lost ({type(exc).__name__}); "
                        "the request may have been accepted.",
                        outcome_unknown=True,
                    ) from None
                if last:
                    raise ProviderError(
                        f"{self.label} did not answer ({type(exc).__name__})."
                    ) from None
                self._pause(attempt, None, method, url, type(exc).__name__)
                continue
            if response.is_success:
                return response
            if not last and self._should_retry(response, retry_submit):
                self._pause(attempt, _retry_after(response), method, url,
                            f"HTTP {response.status_code}")
                continue
            raise self._status_error(response, retry_submit)
        raise AssertionError("unreachable: the last attempt always returns or raises")

    def _should_retry(self, response: httpx.Response, submit: bool) -> bool:
        code = response.status_code
        if code in RETRY_STATUSES or is_ingress(response):
            return True
        # A 5xx from the provider's app may come after the work was queued: resending a submit
        # could pay twice, but reading or cancelling again is harmless.
        return code >= 500 and not submit

    def _pause(self, attempt: int, retry_after: float | None, method: str, url: str,
               why: str) -> None:
        delay = self.backoff_delay(attempt, retry_after)
        logger.info("%s %s: %s; retry %d in %.2f s", method, _bare(url), why, attempt + 1, delay)
        self.sleep(delay)

    def _status_error(self, response: httpx.Response, submit: bool) -> HttpStatusError:
        code = response.status_code
        body = _json_or_none(response)
        message, error_type = describe_error(body)
        error_type = error_type or response.headers.get("x-fal-error-type", "")
        if code in (401, 403):
            # Never echo the key; saying which setting to check is enough.
            message = message or "the API key was refused"
            text = f"{self.label} refused the credentials (HTTP {code}): {message}"
        else:
            text = f"{self.label} answered HTTP {code}: {message or response.reason_phrase}"
        permanent = 400 <= code < 500 and code not in RETRY_STATUSES
        outcome_unknown = submit and code >= 500 and not is_ingress(response)
        logger.info("%s %s failed: HTTP %d %s", response.request.method,
                       _bare(str(response.request.url)), code, error_type)
        return HttpStatusError(text, status_code=code, body=body, error_type=error_type,
                               permanent=permanent, outcome_unknown=outcome_unknown)

