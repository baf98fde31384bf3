"""T12: the provider video downloader refuses SSRF and never connects where it must not.

Hostile URLs are checked with an injected resolver and a spy on `socket.create_connection`
(the call httpcore makes for every TCP connection), so "0 connections" is measured at the
socket, not inferred. The positive path runs against a real TLS server on 127.0.0.1 with a
trustme CA: the connection goes to the pinned address while SNI, certificate verification and
the Host header use the name.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import httpx
import pytest
import trustme
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from storyboard.providers import download
from storyboard.providers.download import DownloadError, fetch

PUBLIC = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"
HOSTILE_HOSTS = ("v3.fal.media", "ten.test", "lan.test", "cgnat.test", "ula.test",
                 "linklocal.test", "zero.test", "mixed.test", "metadata.test", "loop.test",
                 "multicast.test", "reserved.test", "mapped.test", "nat64.test",
                 "sixtofour.test", "sitelocal.test", "junk.test")
ANSWERS = {
    "v3.fal.media": [PUBLIC],
    "public.test": [PUBLIC, PUBLIC_V6],
    "ten.test": ["10.0.0.1"],
    "lan.test": ["192.168.1.1"],
    "cgnat.test": ["100.64.0.1"],
    "ula.test": ["fd00::1"],
    "linklocal.test": ["fe80::1"],
    "zero.test": ["0.0.0.0"],  # noqa: S104
    "mixed.test": [PUBLIC, "10.0.0.1"],
    "metadata.test": ["169.254.169.254"],
    "loop.test": ["127.0.0.1"],
    "multicast.test": ["224.0.0.1"],
    "reserved.test": ["240.0.0.1"],
    "mapped.test": ["::ffff:10.0.0.1"],
    "nat64.test": ["64:ff9b::a00:1"],
    "sixtofour.test": ["2002:a00:1::1"],
    "sitelocal.test": ["fec0::1"],
    "junk.test": ["not-an-address"],
}


class FakeDNS:
    """A resolver whose answers are scripted per name (one list per call for rebinding)."""

    def __init__(self, answers: dict[str, list[str] | list[list[str]]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        answer = self.answers[host]
        if answer and isinstance(answer[0], list):  # one answer per call, the last repeating
            return list(answer[min(len(self.calls), len(answer)) - 1])
        return list(answer)


@pytest.fixture
def connects(monkeypatch) -> list[tuple[str, int]]:
    """Every TCP connect attempted; only the local test server is really reachable."""
    real = socket.create_connection
    seen: list[tuple[str, int]] = []

    def spy(address, *args, **kwargs):
        seen.append((address[0], address[1]))
        if address[0] != "127.0.0.1":
            raise ConnectionRefusedError(f"test spy: no connections to {address[0]}")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", spy)
    return seen


# ---------------------------------------------------------------------------------------------
# A real TLS server


def make_mp4() -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(12):
            frame = av.VideoFrame.from_image(Image.new("RGB", (64, 48), (index * 20, 90, 30)))
            frame.pts = index
            frame.time_base = Fraction(1, 24)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


MP4 = make_mp4()
FTYP_HEAD = MP4[:32]


@dataclass
class Server:
    port: int
    ca: trustme.CA
    ca_file: str
    requests: list[tuple[str, str]] = field(default_factory=list)  # (path, Host header)
    sni: list[str | None] = field(default_factory=list)

    def url(self, path: str, host: str = "media.test") -> str:
        return f"https://{host}:{self.port}{path}"

    def allowed(self, host: str = "media.test") -> tuple[str]:
        return (f"{host}:{self.port}",)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_state: Server

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep pytest output clean

    def do_GET(self) -> None:
        self.server_state.requests.append((self.path, self.headers.get("Host", "")))
        self.close_connection = True
        route = {
            "/video.mp4": self.video,
            "/redirect": self.redirect,
            "/huge-length": self.huge_length,
            "/endless": self.endless,
            "/drip": self.drip,
            "/drip-headers": self.drip_headers,
            "/page": self.page,
            "/tiny": self.tiny,
        }.get(self.path)
        if route:
            route()
        elif self.path.startswith("/status/"):
            self.answer(int(self.path.rsplit("/", 1)[1]), b"nope")
        else:
            self.answer(404, b"not found")

    def answer(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def video(self) -> None:
        self.answer(200, MP4, Content_Type="video/mp4")

    def redirect(self) -> None:
        self.answer(302, b"", Location="https://169.254.169.254/latest/meta-data/")

    def page(self) -> None:
        self.answer(200, b"<!doctype html><html><script>alert(1)</script></html>")

    def tiny(self) -> None:
        self.answer(200, b"\x00\x00")

    def huge_length(self) -> None:
        # A claimed terabyte; the body would only start after a pause a reader would notice.
        self.send_response(200)
        self.send_header("Content-Length", str(10**12))
        self.end_headers()
        self.wfile.flush()
        self.trickle(lambda: FTYP_HEAD, pause=3.0, limit=1)

    def endless(self) -> None:
        self.send_response(200)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(FTYP_HEAD)
        self.trickle(lambda: bytes(256 * 1024), pause=0, limit=100_000)

    def drip(self) -> None:
        self.send_response(200)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(FTYP_HEAD)
        self.trickle(lambda: b"\x00", pause=0.02, limit=500)

    def drip_headers(self) -> None:
        # Slowloris: every byte comes well within a read timeout, the headers never end.
        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
        self.trickle(lambda: b"X", pause=0.1, limit=300)

    def trickle(self, piece: Callable[[], bytes], *, pause: float, limit: int) -> None:
        # Until the client hangs up (or a limit, so a broken test never leaves a thread behind).
        try:
            for _ in range(limit):
                time.sleep(pause)
                self.wfile.write(piece())
                self.wfile.flush()
        except OSError:
            pass


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    ca = trustme.CA()
    cert = ca.issue_cert("media.test", "127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    with ca.cert_pem.tempfile() as ca_file:
        state = Server(port=httpd.server_address[1], ca=ca, ca_file=ca_file)
        context.sni_callback = lambda _sock, name, _ctx: state.sni.append(name)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        handler = type("BoundHandler", (Handler,), {"server_state": state})
        httpd.RequestHandlerClass = handler
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield state
        finally:
            httpd.shutdown()
            httpd.server_close()


@pytest.fixture
def local(server: Server) -> Server:
    server.requests.clear()
    server.sni.clear()
    return server


def fetch_local(server: Server, path: str, dest: Path, **options) -> int:
    options = {"allowed_hosts": server.allowed(), "verify": server.ca_file,
               "extra_networks": ["127.0.0.0/8"],
               "resolver": FakeDNS({"media.test": ["127.0.0.1"]}), **options}
    return fetch(server.url(path, options.pop("host", "media.test")), dest, **options)


def assert_nothing_written(dest: Path) -> None:
    assert not dest.exists()
    assert not dest.with_suffix(".part").exists()
    assert list(dest.parent.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Hostile URLs: refused with no connection at all

HOSTILE_URLS = [
    "http://v3.fal.media/x.mp4",
    "file:///etc/passwd",
    "gopher://v3.fal.media:70/_GET%20/",
    "ftp://v3.fal.media/x.mp4",
    "data:video/mp4;base64,AAAAGGZ0eXBpc29t",
    "javascript:alert(1)",
    "//v3.fal.media/x.mp4",
    "https://169.254.169.254/latest/meta-data/",
    "https://[::ffff:127.0.0.1]/",
    "https://0x7f.1/",
    "https://2130706433/",
    "https://017700000001/",
    "https://127.1/",
    "https://127.0.0.1/",
    "https://0.0.0.0/",
    "https://[::1]/",
    "https://[::]/",
    "https://[fe80::1%25eth0]/",
    "https://localhost/x.mp4",
    "https://v3.fal.media.evil.tld/x",
    "https://evil-v3.fal.media/x",
    "https://v3.fal.media%2eevil.tld/x",
    "https://user:pass@v3.fal.media/x",
    "https://v3.fal.media@evil.tld/x",
    "https://evil.tld\\@v3.fal.media/x",
    "https://v3.fal.media\t.evil.tld/x",
    "https://v3.fal.media:22/x",
    "https://v3.fal.media:443:443/x",
    "https://[::1/x",
    "https://ten.test/x.mp4",
    "https://lan.test/x.mp4",
    "https://cgnat.test/x.mp4",
    "https://ula.test/x.mp4",
    "https://linklocal.test/x.mp4",
    "https://zero.test/x.mp4",
    "https://mixed.test/x.mp4",
    "https://metadata.test/latest/meta-data/",
    "https://loop.test/x.mp4",
    "https://multicast.test/x.mp4",
    "https://reserved.test/x.mp4",
    "https://mapped.test/x.mp4",
    "https://nat64.test/x.mp4",
    "https://sixtofour.test/x.mp4",
    "https://sitelocal.test/x.mp4",
    "https://junk.test/x.mp4",
]


def test_at_least_thirty_hostile_urls() -> None:
    assert len(HOSTILE_URLS) >= 30


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_hostile_url_is_refused_without_connecting(url, connects, tmp_path) -> None:
    dns = FakeDNS(ANSWERS)
    made: list[ssl.SSLContext] = []

    def transport(context: ssl.SSLContext) -> httpx.BaseTransport:
        made.append(context)
        return download.default_transport(context)

    dest = tmp_path / "video.mp4"
    with pytest.raises(DownloadError) as refused:
        fetch(url, dest, allowed_hosts=HOSTILE_HOSTS, resolver=dns, transport_factory=transport)
    assert refused.value.permanent, refused.value.message
    assert connects == []
    assert made == []  # refused before a transport even existed
    assert len(dns.calls) <= 1  # resolved at most once
    assert_nothing_written(dest)


def test_private_answers_are_refused_even_when_the_name_is_allowed(connects, tmp_path) -> None:
    dns = FakeDNS(ANSWERS)
    with pytest.raises(DownloadError, match=r"10\.0\.0\.1.*not a public address"):
        fetch("https://mixed.test/x.mp4", tmp_path / "v.mp4", allowed_hosts=HOSTILE_HOSTS,
              resolver=dns)
    assert dns.calls == ["mixed.test"]
    assert connects == []


def test_a_dns_failure_is_transient(connects, tmp_path) -> None:
    with pytest.raises(DownloadError) as failed:
        fetch("https://v3.fal.media/x.mp4", tmp_path / "v.mp4", allowed_hosts=["v3.fal.media"],
              resolver=FakeDNS({}))
    assert not failed.value.permanent
    assert connects == []


def test_loopback_is_refused_unless_the_test_network_is_opened(local, connects,
                                                               tmp_path) -> None:
    # extra_networks defaults to empty: the emulator's 127.0.0.1 is off limits in production.
    with pytest.raises(DownloadError, match="not a public address"):
        fetch_local(local, "/video.mp4", tmp_path / "v.mp4", extra_networks=())
    assert connects == []
    assert local.requests == []


# ---------------------------------------------------------------------------------------------
# The pinned connection, against the real TLS server


def test_downloads_a_real_mp4_through_the_pinned_address(local, connects, tmp_path) -> None:
    dest = tmp_path / "video.mp4"
    written = fetch_local(local, "/video.mp4", dest)
    assert written == len(MP4)
    assert dest.read_bytes() == MP4
    assert not dest.with_suffix(".part").exists()
    with av.open(str(dest)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 12
    # TCP to the address we checked; TLS and HTTP spoke the name.
    assert connects == [("127.0.0.1", local.port)]
    assert local.sni == ["media.test"]
    assert local.requests == [("/video.mp4", f"media.test:{local.port}")]


def test_the_certificate_is_verified_against_the_name(local, connects, tmp_path) -> None:
    # Same address, same server, but the name it answers for is not on its certificate.
    dns = FakeDNS({"wrong.test": ["127.0.0.1"]})
    with pytest.raises(DownloadError, match="certificate") as refused:
        fetch_local(local, "/video.mp4", tmp_path / "v.mp4", host="wrong.test",
                    allowed_hosts=local.allowed("wrong.test"), resolver=dns)
    assert refused.value.permanent
    assert connects == [("127.0.0.1", local.port)]
    assert local.sni == ["wrong.test"]
    assert local.requests == []  # no HTTP was spoken over the unverified connection


def test_an_untrusted_ca_is_refused(local, tmp_path) -> None:
    # verify=True: the public CA bundle, which has never heard of the test CA.
    with pytest.raises(DownloadError, match="certificate"):
        fetch_local(local, "/video.mp4", tmp_path / "v.mp4", verify=True)
    assert local.requests == []


def test_an_ip_literal_inside_extra_networks_works_for_the_emulator(local, connects,
                                                                   tmp_path) -> None:
    dest = tmp_path / "video.mp4"
    dns = FakeDNS({})
    written = fetch(local.url("/video.mp4", "127.0.0.1"), dest,
                    allowed_hosts=local.allowed("127.0.0.1"), verify=local.ca_file,
                    extra_networks=["127.0.0.0/8"], resolver=dns)
    assert written == len(MP4)
    assert dns.calls == []  # nothing to resolve
    assert connects == [("127.0.0.1", local.port)]


def test_an_ip_literal_outside_extra_networks_is_refused(local, connects, tmp_path) -> None:
    with pytest.raises(DownloadError, match="names the address"):
        fetch(local.url("/video.mp4", "127.0.0.1"), tmp_path / "v.mp4",
              allowed_hosts=local.allowed("127.0.0.1"), verify=local.ca_file)
    assert connects == []


def test_dns_rebinding_cannot_move_the_connection(local, connects, tmp_path) -> None:
    # First answer passes the check; every later one points inside the network.
    dns = FakeDNS({"media.test": [["127.0.0.1"], ["10.0.0.1"]]})
    dest = tmp_path / "video.mp4"
    assert fetch_local(local, "/video.mp4", dest, resolver=dns) == len(MP4)
    assert dns.calls == ["media.test"]
    assert connects == [("127.0.0.1", local.port)]
    assert local.sni == ["media.test"]


def test_dns_rebinding_with_a_spy_transport(tmp_path) -> None:
    dns = FakeDNS({"v3.fal.media": [[PUBLIC], ["10.0.0.1"]]})
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=MP4)

    dest = tmp_path / "video.mp4"
    fetch("https://v3.fal.media/files/abc/video.mp4?sig=1", dest,
          allowed_hosts=["v3.fal.media"], resolver=dns,
          transport_factory=lambda _context: httpx.MockTransport(handler))
    assert dns.calls == ["v3.fal.media"]
    [request] = seen
    assert request.url.host == PUBLIC  # connected to the first, checked, answer
    assert request.url.raw_path == b"/files/abc/video.mp4?sig=1"
    assert request.headers["host"] == "v3.fal.media"
    assert request.extensions["sni_hostname"] == "v3.fal.media"
    assert dest.read_bytes() == MP4


def test_a_redirect_is_refused_without_following(local, connects, tmp_path) -> None:
    dest = tmp_path / "video.mp4"
    with pytest.raises(DownloadError, match="redirect") as refused:
        fetch_local(local, "/redirect", dest)
    assert refused.value.permanent
    assert [path for path, _host in local.requests] == ["/redirect"]
    assert connects == [("127.0.0.1", local.port)]
    assert_nothing_written(dest)


def test_an_oversized_content_length_is_refused_before_reading(local, tmp_path) -> None:
    dest = tmp_path / "video.mp4"
    started = time.monotonic()
    with pytest.raises(DownloadError, match="at most") as refused:
        fetch_local(local, "/huge-length", dest, max_bytes=1024 * 1024)
    # The server holds the body back for 3 s: refusing sooner means nothing was read.
    assert time.monotonic() - started < 2.0
    assert refused.value.permanent
    assert_nothing_written(dest)


def test_an_endless_body_is_cut_at_the_cap(local, tmp_path) -> None:
    dest = tmp_path / "video.mp4"
    started = time.monotonic()
    with pytest.raises(DownloadError, match="larger than") as refused:
        fetch_local(local, "/endless", dest, max_bytes=2 * 1024 * 1024, deadline=10)
    assert time.monotonic() - started < 5.0
    assert refused.value.permanent
    assert_nothing_written(dest)


def test_a_slow_drip_is_cut_at_the_deadline(local, tmp_path) -> None:
    dest = tmp_path / "video.mp4"
    started = time.monotonic()
    with pytest.raises(DownloadError, match="longer than allowed") as failed:
        fetch_local(local, "/drip", dest, deadline=0.5)
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 2.0
    assert not failed.value.permanent
    assert_nothing_written(dest)


def test_a_drip_that_never_finishes_the_headers_is_cut_at_the_deadline(local, tmp_path) -> None:
    dest = tmp_path / "video.mp4"
    started = time.monotonic()
    with pytest.raises(DownloadError, match="longer than allowed") as failed:
        fetch_local(local, "/drip-headers", dest, deadline=0.5)
    # Each byte beats the read timeout; only the watchdog ends this (the server goes on 30 s).
    assert time.monotonic() - started < 1.5
    assert not failed.value.permanent
    assert_nothing_written(dest)


@pytest.mark.parametrize("path", ["/page", "/tiny"])
def test_a_body_that_is_not_mp4_is_refused_and_removed(local, tmp_path, path) -> None:
    dest = tmp_path / "video.mp4"
    with pytest.raises(DownloadError, match="not an MP4") as refused:
        fetch_local(local, path, dest)
    assert refused.value.permanent
    assert_nothing_written(dest)


@pytest.mark.parametrize(("status", "permanent"),
                         [(404, True), (403, True), (429, False), (500, False), (503, False)])
def test_error_statuses(local, tmp_path, status, permanent) -> None:
    dest = tmp_path / "video.mp4"
    with pytest.raises(DownloadError, match=str(status)) as failed:
        fetch_local(local, f"/status/{status}", dest)
    assert failed.value.permanent is permanent
    assert_nothing_written(dest)


def test_a_compressed_body_is_refused(tmp_path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        # A streamed body: httpx would otherwise decode it before we see the header.
        return httpx.Response(200, content=iter([MP4]), headers={"Content-Encoding": "gzip"})

    with pytest.raises(DownloadError, match="gzip"):
        fetch("https://v3.fal.media/v.mp4", tmp_path / "v.mp4", allowed_hosts=["v3.fal.media"],
              resolver=FakeDNS(ANSWERS),
              transport_factory=lambda _context: httpx.MockTransport(handler))
    assert_nothing_written(tmp_path / "v.mp4")


@pytest.mark.parametrize("address", [
    "10.0.0.1", "172.16.0.1", "192.168.1.1", "100.64.0.1", "127.0.0.1", "169.254.169.254",
    "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255", "192.0.0.1",  # noqa: S104
    "198.18.0.1",
    "::1", "::", "fe80::1", "fd00::1", "fec0::1", "ff02::1", "::ffff:127.0.0.1",
    "::ffff:10.0.0.1", "64:ff9b::a00:1", "2002:a00:1::1", "2001:db8::1",
    # Python counts NAT64 (inside ::/8) as reserved: refused even for a public IPv4 inside.
    "100::1", "64:ff9b::808:808",
])
def test_non_public_addresses(address) -> None:
    assert not download.is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", [PUBLIC, PUBLIC_V6, "8.8.8.8", "2002:808:808::1",
                                     # On a dual-stack socket this *is* 8.8.8.8.
                                     "::ffff:8.8.8.8"])
def test_public_addresses(address) -> None:
    assert download.is_public(ipaddress.ip_address(address))


# ---------------------------------------------------------------------------------------------
# Property: whatever the URL, no connection unless the name and every address are allowed

ALLOWED = ("v3.fal.media", "mixed.test", "ten.test", "public.test")
SSL_CONTEXT = ssl.create_default_context()

schemes = st.sampled_from(["https", "HTTPS", "http", "file", "ftp", "gopher", "data", "ws", ""])
separators = st.sampled_from(["://", ":", ":///", "//", ":\\\\"])
userinfo = st.sampled_from(["", "", "", "user:pass@", "@", "v3.fal.media@", "evil.tld@"])
hosts = st.one_of(
    st.sampled_from([*ALLOWED, "V3.FAL.MEDIA.", "v3.fal.media..", "v3.fal.media.evil.tld",
                     "evil-v3.fal.media", "127.0.0.1", "[::1]", "[::ffff:127.0.0.1]", "0x7f.1",
                     "2130706433", "127.1", "localhost", "169.254.169.254", "[fe80::1%25lo]",
                     "lan.test", "v3.fal.media\\@evil.tld", "v3.fal.media%2e"]),
    st.text(max_size=20),
)
ports = st.one_of(st.sampled_from(["", "", ":443", ":80", ":0", ":65536", ":x", ":", ":+443"]),
                  st.integers(min_value=-5, max_value=70000).map(lambda n: f":{n}"))
paths = st.one_of(st.sampled_from(["", "/", "/x.mp4", "/a?b=c#d", "#@evil.tld", "?@x"]),
                  st.text(max_size=20))
# Near misses of a good URL, so a fair share of examples gets as far as connecting.
plausible_hosts = st.sampled_from(ALLOWED).flatmap(
    lambda host: st.sampled_from([host, host.upper(), f"{host}.", f"{host}..", f"x{host}"]))
plausible = st.builds(
    lambda *parts: "".join(parts), st.sampled_from(["https://", "HTTPS://"]), plausible_hosts,
    st.sampled_from(["", ":443", ":8443"]), st.sampled_from(["/", "/x.mp4?", "?", "#"]),
    st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=30),
)
urls = st.one_of(
    st.text(max_size=80),
    st.builds(lambda *parts: "".join(parts), schemes, separators, userinfo, hosts, ports, paths),
    plausible,
    plausible,
)
dns_answers = st.one_of(
    st.sampled_from([[PUBLIC], [PUBLIC_V6, PUBLIC]]),
    st.sampled_from([["10.0.0.1"], [PUBLIC, "10.0.0.1"], ["127.0.0.1"], ["::ffff:192.168.0.1"],
                     [], ["garbage"]]),
)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(url=urls, answers=st.fixed_dictionaries({host: dns_answers for host in ALLOWED}))
# The paths that do connect, so every run covers them whatever Hypothesis draws.
@example(url="https://v3.fal.media/x.mp4", answers={"v3.fal.media": [PUBLIC]})
@example(url="HTTPS://Public.Test./a?b#c", answers={"public.test": [PUBLIC, PUBLIC_V6]})
@example(url="https://mixed.test/x.mp4", answers={"mixed.test": [PUBLIC, "10.0.0.1"]})
def test_fetch_never_connects_where_it_must_not(url, answers, connects, tmp_path) -> None:
    dns = FakeDNS(answers)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(404)

    with contextlib.suppress(DownloadError):
        fetch(url, tmp_path / "v.mp4", allowed_hosts=ALLOWED, resolver=dns, verify=SSL_CONTEXT,
              transport_factory=lambda _context: httpx.MockTransport(handler))
    event("fetched" if seen else "refused")  # see --hypothesis-show-statistics
    assert connects == []
    assert len(dns.calls) <= 1
    for request in seen:
        host = request.headers["host"]
        assert host in ALLOWED  # port 443 only: no ":port" in the Host header
        resolved = [ipaddress.ip_address(a) for a in answers[host]]
        assert all(download.is_public(address) for address in resolved)
        assert ipaddress.ip_address(request.url.host) == resolved[0]
        assert request.extensions["sni_hostname"] == host
