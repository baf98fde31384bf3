"""Small wire helpers both emulators use: a webhook POST and lenient JSON parsing."""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit


def post(url: str, headers: dict[str, str], body: bytes) -> tuple[int | None, str]:
    """POST and report (status, "") or (None, error name); a delivery must never raise."""
    parts = urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    # Short: real providers wait longer (fal is said to allow 15 s), tests should not.
    connection = kind(parts.hostname or "", parts.port, timeout=5)
    target = parts.path or "/"
    if parts.query:
        target += f"?{parts.query}"
    try:
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, ""
    except (OSError, http.client.HTTPException) as exc:
        return None, type(exc).__name__
    finally:
        connection.close()


def maybe_json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None
