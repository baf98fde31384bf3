"""How fast one client or one person may log in, sign up, invite people and start takes.

Two kept libraries do the counting:

- django-axes locks out failed logins. Its database handler keeps the failures as AccessAttempt
  rows, so a lockout survives a restart, works the same on SQLite and PostgreSQL, and shows up
  in the admin; LoginLockout below gives the account and the client limits of their own.
- django-ratelimit counts everything else in the cache: Redis when REDIS_URL is set (shared by
  every server), else local memory, which is exact for the embedded default's one process.

Every refusal is a 429 with Retry-After and a sentence saying what happened and for how long.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass

from axes.handlers.database import AxesDatabaseHandler
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django_ratelimit.core import get_usage

TOO_MANY_REQUESTS = 429


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: REMOTE_ADDR, unless settings say which proxy hop to believe.

    Each proxy appends the address it saw to X-Forwarded-For, so with TRUSTED_PROXY_COUNT
    proxies of ours in front, the client is that many entries from the right. Entries further
    left were sent by the client itself and could say anything.
    """
    hops = settings.TRUSTED_PROXY_COUNT
    if hops:
        forwarded = [part.strip()
                     for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        if len(forwarded) >= hops:
            try:
                return str(ipaddress.ip_address(forwarded[-hops]))
            except ValueError:
                pass
    # None for requests that never came over a network, such as the test client's force_login.
    return request.META.get("REMOTE_ADDR") or None


def ratelimit_ip(request: HttpRequest) -> str:
    """RATELIMIT_IP_META_KEY: client_ip, refusing as django-ratelimit does when there is none."""
    address = client_ip(request)
    if address is None:
        raise ImproperlyConfigured(
            "The request has no REMOTE_ADDR. Behind a proxy that connects over a Unix socket, "
            "set TRUSTED_PROXY_COUNT so the client's address is read from X-Forwarded-For.")
    return address


def _in(seconds: int) -> str:
    if seconds < 60:
        return f"in {seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"in {minutes} minute{'s' if minutes != 1 else ''}"


def too_many(request: HttpRequest, message: str, seconds: int, *,
             template: str = "too_many.html", context: dict | None = None) -> HttpResponse:
    """Refuse with 429 and Retry-After: htmx shows the plain-text body as a toast (app.js),
    a full page shows `template` with the message as `throttled`."""
    if getattr(request, "htmx", False):
        response = HttpResponse(message, status=TOO_MANY_REQUESTS,
                                content_type="text/plain; charset=utf-8")
        response["HX-Reswap"] = "none"
    else:
        response = render(request, template, {**(context or {}), "throttled": message},
                          status=TOO_MANY_REQUESTS)
    response["Retry-After"] = str(seconds)
    return response


# Login lockout (django-axes)


class LoginLockout(AxesDatabaseHandler):
    """Axes' database handler with a limit for each lockout parameter.

    Axes compares one failure count with one AXES_FAILURE_LIMIT. An office or a mobile network
    puts many people behind one address, so a client may fail more often than an account; here
    the count is how many of our limits the request has reached, and AXES_FAILURE_LIMIT is 1.
    """

    def get_failures(self, request: HttpRequest, credentials: dict | None = None) -> int:
        return len(self.limits_reached(request, credentials))

    def limits_reached(self, request: HttpRequest,
                       credentials: dict | None = None) -> list[str]:
        limits = {"username": settings.LOGIN_FAILURES_PER_ACCOUNT,
                  "ip_address": settings.LOGIN_FAILURES_PER_CLIENT}
        attempts = self.get_user_attempts(request, credentials)
        reached = []
        # get_user_attempts returns one queryset per AXES_LOCKOUT_PARAMETERS entry, in order.
        for parameter, queryset in zip(settings.AXES_LOCKOUT_PARAMETERS, attempts, strict=True):
            failures = queryset.aggregate(n=Sum("failures_since_start"))["n"] or 0
            if failures >= limits[parameter]:
                reached.append(parameter)
        return reached


def login_lockout_response(request: HttpRequest, original_response: HttpResponse | None = None,
                           credentials: dict | None = None) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: the login page again, saying why and for how long."""
    # Axes' async middleware passes the credentials where the response belongs; the request
    # carries them either way.
    credentials = getattr(request, "axes_credentials", None) or {}
    reached = LoginLockout().limits_reached(request, credentials)
    minutes = settings.LOGIN_LOCKOUT_MINUTES
    # Every refused attempt starts the cool-off again, so the wait is always the whole of it.
    seconds = minutes * 60
    if "username" in reached or not reached:
        message = f"Too many failed logins for this account. Try again {_in(seconds)}."
    else:
        message = f"Too many failed logins from your network. Try again {_in(seconds)}."
    form = AuthenticationForm(request, initial={"username": credentials.get("username", "")})
    return too_many(request, message, seconds, template="accounts/login.html", context={
        "form": form, "next": request.POST.get("next") or request.GET.get("next", "")})


# Everything else (django-ratelimit)


@dataclass(frozen=True)
class Limit:
    group: str
    key: str  # what is counted: "ip" (the client, see client_ip) or "user"
    setting: str  # the setting that holds how many are allowed per period
    period: str  # "m" or "h"

    @property
    def rate(self) -> str:
        # Read on each use, so a changed setting (or a test's override) applies at once.
        return f"{getattr(settings, self.setting)}/{self.period}"


SIGNUP = Limit("signup", "ip", "SIGNUPS_PER_HOUR", "h")
INVITATION_CREATE = Limit("invitation-create", "user", "INVITATIONS_PER_HOUR", "h")
INVITATION_ACCEPT = Limit("invitation-accept", "user", "INVITATION_ACCEPTS_PER_HOUR", "h")
GENERATION_START = Limit("generation-start", "user", "GENERATIONS_PER_MINUTE", "m")
# Review links (storyboard/share_views.py): wrong passwords per link and client (checked
# with `within` the link), everything a guest sends, and tokens that open nothing.
GUEST_PASSWORD = Limit("guest-password", "ip", "GUEST_PASSWORD_TRIES_PER_HOUR", "h")
GUEST_POST = Limit("guest-post", "ip", "GUEST_POSTS_PER_MINUTE", "m")
GUEST_MISS = Limit("guest-miss", "ip", "GUEST_UNKNOWN_LINKS_PER_HOUR", "h")
# The JSON API (storyboard/api.py): every request, counted per token.
API_REQUEST = Limit("api", "storyboard.throttle.api_token_key", "API_REQUESTS_PER_MINUTE", "m")


def api_token_key(group: str, request: HttpRequest) -> str:
    """django-ratelimit's key for API_REQUEST: the token the request came with."""
    return f"token:{request.auth.pk}"


def retry_after(request: HttpRequest, limit: Limit, *, count: bool = True,
                within: str = "") -> int | None:
    """Seconds until `limit` lets this request through, or None when it may go ahead.

    The request is counted unless `count` is false; then it is only checked, for limits that
    count successes (see `record`). `within` counts separately per thing (say, one link).
    """
    usage = get_usage(request, group=_group(limit, within), key=limit.key, rate=limit.rate,
                      increment=count)
    if usage is None:  # RATELIMIT_ENABLE is off
        return None
    over = usage["count"] > usage["limit"] if count else usage["count"] >= usage["limit"]
    return max(1, usage["time_left"]) if over else None


def record(request: HttpRequest, limit: Limit, *, within: str = "") -> None:
    get_usage(request, group=_group(limit, within), key=limit.key, rate=limit.rate,
              increment=True)


def _group(limit: Limit, within: str) -> str:
    return f"{limit.group}:{within}" if within else limit.group


def refusal(what: str, seconds: int) -> str:
    """The sentence a 429 says: "Too many <what>. Try again in …"."""
    return f"Too many {what}. Try again {_in(seconds)}."


def refuse(request: HttpRequest, what: str, seconds: int, **kwargs) -> HttpResponse:
    """429 saying "Too many <what>. Try again in …"."""
    return too_many(request, refusal(what, seconds), seconds, **kwargs)
