"""Video providers, configured like Django's STORAGES:

    VIDEO_PROVIDERS = {"local": {"BACKEND": "storyboard.providers.local.LocalProvider",
                                 "OPTIONS": {...}}}

Only this package talks to provider APIs (and imports httpx).
"""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from storyboard.providers.base import (
    Canceled,
    CannotCancel,
    Job,
    ProviderError,
    Rendered,
    Result,
    Status,
    Submitted,
    VideoProvider,
    WebhookEvent,
    WebhookRejected,
)

__all__ = [
    "Canceled",
    "CannotCancel",
    "Job",
    "ProviderError",
    "Rendered",
    "Result",
    "Status",
    "Submitted",
    "VideoProvider",
    "WebhookEvent",
    "WebhookRejected",
    "default_provider_name",
    "get_provider",
    "per_second_rates",
]


@cache
def get_provider(name: str) -> VideoProvider:
    try:
        config = settings.VIDEO_PROVIDERS[name]
    except KeyError:
        raise ImproperlyConfigured(
            f"No video provider called {name!r} in VIDEO_PROVIDERS"
        ) from None
    cls = import_string(config["BACKEND"])
    return cls(name=name, **config.get("OPTIONS", {}))


def default_provider_name() -> str:
    return settings.DEFAULT_VIDEO_PROVIDER


def per_second_rates(endpoint: str) -> dict[str, int] | None:
    """The default provider's own per-second price table for `endpoint`, if it bills that way
    (eachlabs); None: the catalogue's per-token price applies."""
    return get_provider(default_provider_name()).per_second_rates(endpoint)
