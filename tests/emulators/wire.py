"""Small wire helpers the emulators use: a webhook POST and lenient JSON parsing."""

from __future__ import annotations

import http.client
import json
import ssl
from typing import Any
from urllib.parse import urlsplit


def post(url: str, headers: dict[str, str], body: bytes, *, timeout: float = 5,
         context: ssl.SSLContext | None = None) -> tuple[int | None, str]:
    """POST and report (status, "") or (None, error name); a delivery must never raise."""
    parts = urlsplit(url)
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(parts.hostname or "", parts.port,
                                                 timeout=timeout, context=context)
    else:
        # Short by default: real providers wait longer (fal is said to allow 15 s).
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port,
                                                timeout=timeout)
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
