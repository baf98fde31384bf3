"""TLS for the emulators: our downloader fetches finished videos over https only."""

from __future__ import annotations

import ssl
from functools import cache
from pathlib import Path
from tempfile import mkdtemp

import trustme


@cache
def test_ca() -> trustme.CA:
    return trustme.CA()


@cache
def ca_file() -> str:
    """The test CA as a PEM file, for `verify=` in httpx and the downloader."""
    path = Path(mkdtemp(prefix="emulator-ca-")) / "ca.pem"
    test_ca().cert_pem.write_to_path(str(path))
    return str(path)


def wrap(server) -> None:
    """Serve a started-but-not-serving http.server over TLS with a cert for 127.0.0.1."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    test_ca().issue_cert("127.0.0.1").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)


def client_context() -> ssl.SSLContext:
    """A client context trusting only the test CA."""
    return ssl.create_default_context(cafile=ca_file())
