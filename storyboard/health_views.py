"""/healthz and /readyz, for load balancers, orchestrators and monitoring.

Open to anyone on purpose, like a login page: a probe carries no session. They show only
which check passed or failed, in plain words, never a detail of the setup (storyboard/health.py).
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from storyboard import health


def _answer(checks: dict[str, Callable[[], dict]]) -> JsonResponse:
    ok, results = health.run(checks)
    return JsonResponse({"status": "ok" if ok else "failing", "checks": results},
                        status=200 if ok else 503)


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    return _answer(health.HEALTH)


@never_cache
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    return _answer(health.READINESS)
