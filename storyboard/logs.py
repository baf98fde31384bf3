"""Structured logs: one JSON object per line, for a log collector to index without parsing prose.

LOG_FORMAT=json (the production default) switches every handler to `JsonFormatter`. Three kinds
of line carry fields of their own: one per HTTP request (`RequestLogMiddleware`, logger
"storyboard.requests"), one per take state transition (`take_moved`, logger
"storyboard.takes") and one per outgoing webhook attempt (`webhook_attempt`, logger
"storyboard.webhooks"). Fields ride on the record as `extra={"fields": {...}}`, so the text format
still prints the plain message and nothing here is needed to read logs on a laptop.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

requests_log = logging.getLogger("storyboard.requests")
takes_log = logging.getLogger("storyboard.takes")
webhooks_log = logging.getLogger("storyboard.webhooks")

# URL kwargs that are credentials: a review link's token, a signed input name, a webhook token.
# Their values never reach a log line (anyone who reads the logs could open the link).
SECRET_KWARGS = ("link_token", "signed", "webhook_token")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        # default=str: a stray UUID or datetime in the fields must not lose the whole line.
        return json.dumps(line, default=str, ensure_ascii=False)


def _safe_path(request: HttpRequest) -> str:
    path = request.path
    match = request.resolver_match
    if match is not None:
        for name in SECRET_KWARGS:
            if value := match.kwargs.get(name):
                path = path.replace(str(value), "[secret]")
    return path


def _log_request(request: HttpRequest, response: HttpResponse, started: float, *,
                 user) -> None:
    fields = {
        "event": "request",
        "method": request.method,
        "path": _safe_path(request),
        "status": response.status_code,
        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        "user_id": user.pk if user is not None and user.is_authenticated else None,
    }
    requests_log.info("%s %s %s", fields["method"], fields["path"], fields["status"],
                      extra={"fields": fields})


class RequestLogMiddleware:
    """One line per request: method, path (credentials blanked), status, duration, user id.

    Sync and async: under Daphne a sync-only middleware would push every request through a
    thread hop just to be timed.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if iscoroutinefunction(self):
            return self._acall(request)
        started = time.perf_counter()
        response = self.get_response(request)
        _log_request(request, response, started, user=getattr(request, "user", None))
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = await self.get_response(request)
        # request.user would query the database from the event loop; auser() does it in a
        # thread, and costs nothing when the view already looked the user up.
        user = await request.auser() if hasattr(request, "auser") else None
        _log_request(request, response, started, user=user)
        return response


def take_moved(*, take_id: int, take_uid: object, project_id: int, was: str, now: str) -> None:
    """The line for one committed state transition of a take."""
    fields = {"event": "take_transition", "take_id": take_id, "take": str(take_uid),
              "project_id": project_id, "from": was, "to": now}
    takes_log.info("take %s: %s → %s", take_uid, was, now, extra={"fields": fields})


def safe_url(url: str) -> str:
    """A team's webhook address fit for a log line: a query string often carries a receiver's
    token, so it is written as [secret] (as tokens in our own paths are)."""
    base, question, _query = url.partition("?")
    base = base.split("#", 1)[0]
    return f"{base}?[secret]" if question else base


def webhook_attempt(*, delivery_id: int, event_id: object, event: str, endpoint_id: int,
                    team_id: int, url: str, attempt: int, outcome: str, status: int | None,
                    response_ms: int | None, error: str) -> None:
    """The line for one attempt to send a webhook (never its secret, signature or body)."""
    fields = {"event": "webhook_attempt", "delivery_id": delivery_id,
              "event_id": str(event_id), "type": event, "endpoint_id": endpoint_id,
              "team_id": team_id, "url": safe_url(url), "attempt": attempt, "outcome": outcome,
              "status": status, "response_ms": response_ms, "error": error}
    webhooks_log.info("webhook %s %s to endpoint %s: %s", event, event_id, endpoint_id, outcome,
                      extra={"fields": fields})
