"""Fetching a finished video from a provider's URL into a local file, without becoming an SSRF
proxy.

A provider hands us a URL and we fetch it at once, from inside our network. The URL is
attacker-influenced (a compromised or spoofed provider, a webhook replay), so `fetch` only goes
where a finished video can legitimately be:

- `https` only, no user:password@, no fragments of other hosts hidden in odd characters;
- the host is exactly one of `allowed_hosts` (case and a trailing dot aside). An entry without a
  port allows port 443 only; "host:8443" allows that port for that host (the local emulator);
- IP-literal hosts are refused unless listed in `allowed_hosts` *and* inside `extra_networks`;
- the name is resolved once, every address must be publicly routable (or inside
  `extra_networks`, a test-only escape hatch that defaults to empty), and the connection goes
  to the address we checked: TLS SNI, certificate verification and the Host header still use
  the name, so DNS rebinding between our check and the connect cannot move us;
- no redirects, only 200, at most `max_bytes`, at most `deadline` seconds of wall clock for the
  whole transfer (a watchdog shuts the socket when time is up, so a server dripping a byte
  now and then cannot outlast it between two reads), and the result must start like an
  MP4/QuickTime file. A failure never leaves a partial file behind.

Everything wrong raises DownloadError: `permanent=True` when policy refused (retrying cannot
help), `permanent=False` for network trouble worth another try.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from storyboard.providers.base import ProviderError

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]
TransportFactory = Callable[[ssl.SSLContext], httpx.BaseTransport]

HTTPS_PORT = 443
MAX_URL_LENGTH = 8192
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0
USER_AGENT = "storyboard-downloader/1"
# Statuses that mean "not now" rather than "never".
TRANSIENT_STATUSES = frozenset({408, 425, 429})

# Printable ASCII without space or backslash: control characters, whitespace and non-ASCII are
# where URL parsers disagree with each other (urlsplit silently drops tabs and newlines).
SAFE_URL = re.compile(r"[!-\[\]-~]+")
HOST_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# A last label like "1", "0x7f" or "017700000001" makes browsers and resolvers read the whole
# name as a (possibly hex, octal or dword) IPv4 address.
NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)")
# NAT64's well-known prefix carries an IPv4 address in its last 32 bits.
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class DownloadError(ProviderError):
    """A download we refused or could not finish; `message` says which and why."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message, permanent=permanent)


@dataclass(frozen=True)
class Target:
    host: str  # lower case, no trailing dot; an IP address in its canonical text
    port: int
    path: str  # path and query exactly as given ("/" if empty); the fragment is dropped
    ip: IPAddress | None  # set when the URL names an address rather than a host


def fetch(url: str, dest: Path, *, allowed_hosts: Iterable[str],
          max_bytes: int = 500 * 1024**2, deadline: float = 300.0,
          extra_networks: Iterable[str] = (), verify: bool | str | ssl.SSLContext = True,
          resolver: Resolver | None = None,
          transport_factory: TransportFactory | None = None) -> int:
    """Download `url` to `dest` under the rules above; returns the number of bytes written.

    `verify`: True for the public CA bundle, a CA file path (tests), or an SSLContext; False
    disables certificate checks and exists only for tests. `resolver(host, port)` returns
    address strings (default: getaddrinfo). `transport_factory(ssl_context)` builds the httpx
    transport (default: httpx.HTTPTransport without retries, proxies or environment settings).
    """
    started = time.monotonic()
    networks = parse_networks(extra_networks)
    target = check_url(url, allowed_hosts, networks)
    address = pin_address(target, resolver or resolve, networks)
    transport = (transport_factory or default_transport)(ssl_context(verify))
    return _download(transport, target, address, Path(dest), max_bytes=max_bytes,
                     deadline=deadline, started=started)


# ---------------------------------------------------------------------------------------------
# Configuration


def parse_networks(extra_networks: Iterable[str]) -> tuple[IPNetwork, ...]:
    try:
        return tuple(ipaddress.ip_network(net, strict=True) for net in extra_networks)
    except (TypeError, ValueError) as e:
        raise DownloadError(f"extra_networks is misconfigured: {e}", permanent=True) from e


def allowed_origins(allowed_hosts: Iterable[str]) -> frozenset[tuple[str, int]]:
    """("host", port) pairs from entries like "v3.fal.media" (port 443) or "emulator:8443"."""
    if isinstance(allowed_hosts, str):
        # A bare string would be read letter by letter.
        allowed_hosts = (allowed_hosts,)
    origins = set()
    for entry in allowed_hosts:
        try:
            host, port = _split_netloc(str(entry).strip())
        except ValueError as e:
            raise DownloadError(f"allowed host {entry!r} is misconfigured: {e}",
                                permanent=True) from e
        origins.add((host, port))
    return frozenset(origins)


def ssl_context(verify: bool | str | ssl.SSLContext) -> ssl.SSLContext:
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify is True:
        # The same CA bundle (certifi) httpx uses, without SSL_CERT_FILE & co from the env.
        return httpx.create_ssl_context(trust_env=False)
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        return ssl.create_default_context(cafile=str(verify))
    except (OSError, ssl.SSLError) as e:
        raise DownloadError(f"cannot load the CA file {verify}: {e}", permanent=True) from e


def default_transport(context: ssl.SSLContext) -> httpx.BaseTransport:
    # trust_env=False: an HTTPS_PROXY variable would send the connection somewhere we never
    # checked. retries=0: a retry would be a second, unchecked connect.
    return httpx.HTTPTransport(verify=context, trust_env=False, retries=0)


# ---------------------------------------------------------------------------------------------
# The URL


def check_url(url: str, allowed_hosts: Iterable[str],
              networks: tuple[IPNetwork, ...] = ()) -> Target:
    """The parsed URL if policy allows fetching it (before any DNS); DownloadError if not."""
    if not isinstance(url, str) or not url:
        raise _refuse("the video URL is empty")
    if len(url) > MAX_URL_LENGTH:
        raise _refuse(f"the video URL is longer than {MAX_URL_LENGTH} characters")
    if not SAFE_URL.fullmatch(url):
        raise _refuse("the video URL contains spaces, control or non-ASCII characters")
    try:
        parts = urlsplit(url)
    except ValueError as e:  # e.g. an unclosed "[" in the host
        raise _refuse(f"the video URL cannot be parsed: {e}") from e
    if parts.scheme != "https":
        raise _refuse(f"only https URLs are fetched, not {parts.scheme or 'this'}")
    if "@" in parts.netloc:
        raise _refuse("the video URL contains a user name or password")
    try:
        host, port = _split_netloc(parts.netloc)
    except ValueError as e:
        raise _refuse(f"the video URL has an unusable host: {e}") from e
    if (host, port) not in allowed_origins(allowed_hosts):
        where = host if port == HTTPS_PORT else f"{host} (port {port})"
        raise _refuse(f"{where} is not one of the provider's download hosts")
    ip = _ip_literal(host)
    if ip is not None and not _in_networks(ip, networks):
        raise _refuse(f"the video URL names the address {host} instead of a host")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not path.startswith("/"):
        raise _refuse("the video URL has no path")
    return Target(host=host, port=port, path=path, ip=ip)


def _split_netloc(netloc: str) -> tuple[str, int]:
    """(normalised host, port) from "host", "host:port", "[v6]" or "[v6]:port"."""
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise ValueError("unclosed [")
        literal, rest = netloc[1:end], netloc[end + 1:]
        if "%" in literal:
            raise ValueError("IPv6 zone identifiers are not allowed")
        host = str(ipaddress.IPv6Address(literal))
    else:
        host, colon, port_text = netloc.partition(":")
        rest = colon + port_text
        host = _normalise_name(host)
    return host, _port(rest)


def _normalise_name(name: str) -> str:
    name = name.lower()
    name = name.removesuffix(".")
    try:
        return str(ipaddress.IPv4Address(name))
    except ValueError:
        pass
    labels = name.split(".")
    if not name or len(name) > 253 or not all(HOST_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{name!r} is not a host name")
    if NUMERIC_LABEL.fullmatch(labels[-1]):
        raise ValueError(f"{name!r} reads as a numeric IP address")
    return name


def _port(rest: str) -> int:
    if not rest:
        return HTTPS_PORT
    if not rest.startswith(":") or not rest[1:].isdigit() or not rest[1:].isascii():
        raise ValueError("the port is not a number")
    port = int(rest[1:])
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range")
    return port


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# Addresses


def resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for `host`, in its order, without repeats."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _dns_trouble(host: str, error: Exception) -> str:
    """The resolver's failure in words (a clause), not the C library's "[Errno -2] …"."""
    code = getattr(error, "errno", None)
    if code in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None)):
        return f"no address was found for {host} (check the spelling)"
    if code == socket.EAI_AGAIN:
        return f"the name server did not answer for {host}, which is usually passing"
    return f"{host} could not be resolved ({error})"


def pin_address(target: Target, resolver: Resolver, networks: tuple[IPNetwork, ...]) -> IPAddress:
    """The one address we will connect to, after checking every address the name has.

    One public and one private answer is refused outright: a resolver that mixes them is
    either misconfigured or helping an attacker, and which one we'd get is luck.
    """
    if target.ip is not None:
        return target.ip  # check_url already required it to be inside `networks`
    try:
        answers = list(resolver(target.host, target.port))
    except Exception as e:
        # socket.gaierror, timeouts, or whatever an injected resolver raises: DNS trouble.
        raise DownloadError(_dns_trouble(target.host, e), permanent=False) from e
    if not answers:
        raise DownloadError(f"{target.host} has no addresses", permanent=False)
    addresses = [_parse_address(target.host, answer) for answer in answers]
    for address in addresses:
        if not is_allowed_address(address, networks):
            raise _refuse(f"{target.host} resolves to {address}, which is not a public address")
    return addresses[0]


def _parse_address(host: str, answer: object) -> IPAddress:
    try:
        return ipaddress.ip_address(str(answer))
    except ValueError as e:
        raise _refuse(f"{host} resolved to {answer!r}, which is not an IP address") from e


def is_allowed_address(address: IPAddress, networks: tuple[IPNetwork, ...] = ()) -> bool:
    return _in_networks(address, networks) or is_public(address)


def _in_networks(address: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def is_public(address: IPAddress) -> bool:
    """Globally routable, and not any of the special ranges `is_global` lets through."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return False
        if address.ipv4_mapped is not None:
            # ::ffff:a.b.c.d is a.b.c.d on a dual-stack socket.
            return is_public(address.ipv4_mapped)
        if address.is_site_local:
            return False
        if any(not is_public(inner) for inner in _embedded_ipv4(address)):
            return False
    return address.is_global and not (
        address.is_private or address.is_loopback or address.is_link_local
        or address.is_multicast or address.is_reserved or address.is_unspecified
    )


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    # Transition addresses reach an IPv4 host through a relay: check that host too.
    inner = []
    if address.sixtofour is not None:
        inner.append(address.sixtofour)
    if address.teredo is not None:
        inner.append(address.teredo[1])
    if address in NAT64:
        inner.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return inner


# ---------------------------------------------------------------------------------------------
# The transfer


class Watchdog:
    """Ends a transfer when its time is up, whatever the server does.

    Read timeouts only bound the wait for the *next* bytes: a server sending one byte every few
    seconds never trips them. httpx cannot shorten a timeout mid-stream, so a timer shuts the
    connection's socket down at the deadline, which wakes a blocked read at once. The socket is
    a duplicate of httpcore's (taken when the TCP connect completes), so it stays valid when
    TLS wraps the original and is ours to close.
    """

    def __init__(self, *, started: float, deadline: float) -> None:
        self.deadline = deadline
        self.until = started + deadline
        self.expired = threading.Event()
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(self.left(), self._fire)
        self._timer.daemon = True

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None

    @property
    def late(self) -> bool:
        return self.expired.is_set() or time.monotonic() > self.until

    def left(self) -> float:
        return max(0.0, self.until - time.monotonic())

    def trace(self, event: str, info: dict) -> None:
        """httpcore's trace hook: keep hold of the connection's socket once it exists."""
        if event != "connection.connect_tcp.complete":
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            self._socket = socket.fromfd(sock.fileno(), sock.family, sock.type)
        if self.expired.is_set():
            self._fire()

    def _fire(self) -> None:
        self.expired.set()
        with self._lock:
            if self._socket is not None:
                # shutdown, not close: it acts on the connection both descriptors share.
                with contextlib.suppress(OSError):
                    self._socket.shutdown(socket.SHUT_RDWR)


def _download(transport: httpx.BaseTransport, target: Target, address: IPAddress, dest: Path,
              *, max_bytes: int, deadline: float, started: float) -> int:
    part = dest.with_suffix(".part")
    try:
        with (Watchdog(started=started, deadline=deadline) as watchdog,
              httpx.Client(transport=transport, trust_env=False,
                           follow_redirects=False) as client):
            try:
                request = _request(client, target, address, watchdog)
                response = client.send(request, stream=True)
                try:
                    _check_response(response, max_bytes)
                    written = _stream(response, part, max_bytes=max_bytes, watchdog=watchdog)
                finally:
                    response.close()
            except (httpx.HTTPError, OSError) as e:
                if watchdog.late:
                    # Whatever broke, it broke because the watchdog cut the connection.
                    raise _too_slow(deadline) from e
                raise
        os.replace(part, dest)
        return written
    except BaseException as e:
        part.unlink(missing_ok=True)
        failure = _as_download_error(target, e)
        if failure is None or failure is e:
            raise
        raise failure from e


def _too_slow(deadline: float) -> DownloadError:
    logger.info("Download cut at its deadline of %g s", deadline)
    return DownloadError("the download took longer than allowed", permanent=False)


def _as_download_error(target: Target, error: BaseException) -> DownloadError | None:
    """What a failure during the transfer means for the caller (None: not ours to translate)."""
    if isinstance(error, DownloadError):
        return error
    if isinstance(error, httpx.TimeoutException):
        return DownloadError(f"the download timed out ({type(error).__name__})", permanent=False)
    if isinstance(error, httpx.HTTPError):
        return _network_error(target, error)
    if isinstance(error, OSError):
        return DownloadError(f"could not write the download: {error}", permanent=False)
    return None


def _request(client: httpx.Client, target: Target, address: IPAddress,
             watchdog: Watchdog) -> httpx.Request:
    """GET the validated address; the name goes into TLS SNI and the Host header.

    httpcore wraps the socket with `server_hostname=sni_hostname`, and the default SSL context
    has `check_hostname` on, so the certificate is verified against the name, not the address.
    """
    netloc = f"[{address}]" if address.version == 6 else str(address)
    url = httpx.URL(f"https://{netloc}:{target.port}").copy_with(
        raw_path=target.path.encode("ascii"))
    default_port = target.port == HTTPS_PORT
    host_header = target.host if default_port else f"{target.host}:{target.port}"
    if target.ip is not None and target.ip.version == 6:
        host_header = f"[{target.host}]" if default_port else f"[{target.host}]:{target.port}"
    extensions: dict = {"trace": watchdog.trace}
    if target.ip is None:
        extensions["sni_hostname"] = target.host
    # No single wait may outlast what is left of the deadline (the watchdog ends the rest).
    left = max(0.001, watchdog.left())
    timeout = httpx.Timeout(min(READ_TIMEOUT, left), connect=min(CONNECT_TIMEOUT, left))
    return client.build_request(
        "GET", url, timeout=timeout, extensions=extensions,
        # identity: the byte cap then counts what lands on disk, and no decompression bomb.
        headers={"Host": host_header, "Accept-Encoding": "identity", "User-Agent": USER_AGENT},
    )


def _check_response(response: httpx.Response, max_bytes: int) -> None:
    status = response.status_code
    if 300 <= status < 400:
        raise _refuse(f"the provider answered with a redirect ({status}); redirects are not "
                      "followed")
    if status != 200:
        transient = status >= 500 or status in TRANSIENT_STATUSES
        raise DownloadError(f"the provider answered {status} instead of the video",
                            permanent=not transient)
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise _refuse(f"the provider sent the video {encoding}-encoded")
    length = response.headers.get("content-length")
    if length is not None and length.strip().isdigit() and int(length) > max_bytes:
        raise _refuse(f"the video is {int(length)} bytes; at most {max_bytes} are accepted")


def _stream(response: httpx.Response, part: Path, *, max_bytes: int, watchdog: Watchdog) -> int:
    written = 0
    head = b""
    with part.open("wb") as fp:
        # iter_bytes is iter_raw here (only identity encoding gets this far), and it also
        # works for transports that hand over an already-read body. No chunk_size: that
        # would buffer 64 KiB before yielding, and a slow drip would never reach the check.
        for chunk in response.iter_bytes():
            if watchdog.late:
                raise _too_slow(watchdog.deadline)
            written += len(chunk)
            if written > max_bytes:
                raise _refuse(f"the video is larger than {max_bytes} bytes")
            if len(head) < 8:
                head += chunk[:8 - len(head)]
                # Refuse a web page as soon as it shows itself, not after downloading it.
                if len(head) == 8 and not looks_like_mp4(head):
                    raise _refuse("the download is not an MP4 or QuickTime video")
            fp.write(chunk)
    if watchdog.expired.is_set():
        # Cut by the watchdog: without a Content-Length, that looks like a clean end.
        raise _too_slow(watchdog.deadline)
    if not looks_like_mp4(head):
        raise _refuse("the download is not an MP4 or QuickTime video")
    return written


def looks_like_mp4(head: bytes) -> bool:
    """An ISO base media file (MP4, MOV) opens with an `ftyp` box: 4 bytes of size, "ftyp"."""
    return len(head) >= 8 and head[4:8] == b"ftyp" and int.from_bytes(head[:4], "big") >= 8


def _network_error(target: Target, error: httpx.HTTPError) -> DownloadError:
    if _caused_by(error, ssl.SSLCertVerificationError):
        # Someone answered for the name without its certificate: not something to retry.
        return _refuse(f"the certificate of {target.host} could not be verified")
    return DownloadError(f"the download from {target.host} failed: {error or type(error).__name__}",
                         permanent=False)


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = error
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _refuse(message: str) -> DownloadError:
    return DownloadError(message, permanent=True)
