"""Protocol-faithful stand-ins for provider APIs, served over real sockets on 127.0.0.1."""

from __future__ import annotations
