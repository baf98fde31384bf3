"""POSTing one signed webhook to an address a team typed in, without becoming an SSRF proxy.

A team's owner chooses where our workers send requests from inside our network, so the same
rules as the result downloader (download.py) apply, with the differences a webhook needs:

- any public host may be named (there is no list of allowed hosts), also by a public IP address;
  `http` only when the deployment allows it (`allow_http`, for development and tests);
- no user:password@, no spaces, control or non-ASCII characters, at most MAX_URL_LENGTH;
- the name is resolved once, every address must be publicly routable (or inside
  `extra_networks`, the test-only escape hatch), and the connection goes to the address we
  checked (TLS SNI, certificate checks and the Host header still use the name), so a DNS
  answer that changes between the check and the connect cannot move us;
- no redirects followed, no proxies from the environment, a short connect timeout and a short
  deadline for the whole exchange (download.Watchdog), and at most MAX_RESPONSE_BYTES of the
  answer read (it is only shown in the delivery log).

`check` is the first half alone (no request), for validating an address when it is saved.
Everything wrong raises OutboundError: `permanent=True` when policy refused (no request was
made, and retrying cannot help), `permanent=False` for network trouble worth another try.
"""

from __future__ import annotations

import ipaddress
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from storyboard.providers import download
from storyboard.providers.base import ProviderError

MAX_URL_LENGTH = 2000
CONNECT_TIMEOUT = 5.0
DEADLINE = 10.0
MAX_RESPONSE_BYTES = 4096
DEFAULT_PORTS = {"https": 443, "http": 80}
PUBLIC_ONLY = "webhooks go to public internet addresses only"


class OutboundError(ProviderError):
    """A webhook request refused by policy (`permanent`) or failed on the way; the message says
    which, in plain words."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message, permanent=permanent)


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # lower case, no trailing dot; an IP address in its canonical text
    port: int
    path: str  # path and query as given ("/" if empty); a fragment is dropped
    ip: download.IPAddress | None  # set when the URL names an address rather than a host
    address: download.IPAddress  # the address we connect to, checked


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes  # at most MAX_RESPONSE_BYTES of it
    elapsed_ms: int


def check(url: str, *, allow_http: bool = False, extra_networks: Iterable[str] = (),
          resolver: download.Resolver | None = None) -> Target:
    """The URL's target if policy allows sending to it (after resolving it); OutboundError if
    not. Sends nothing."""
    networks = _networks(extra_networks)
    scheme, host, port, path, ip = _parse(url, allow_http=allow_http, networks=networks)
    if ip is not None:
        address = ip
    else:
        try:
            address = download.pin_address(
                download.Target(host=host, port=port, path=path, ip=None),
                resolver or download.resolve, networks)
        except download.DownloadError as e:
            raise OutboundError(_sentence(e.message, permanent=e.permanent),
                                permanent=e.permanent) from e
    return Target(scheme=scheme, host=host, port=port, path=path, ip=ip, address=address)


def post(url: str, body: bytes, *, headers: Mapping[str, str], allow_http: bool = False,
         extra_networks: Iterable[str] = (), verify: bool | str | ssl.SSLContext = True,
         connect_timeout: float = CONNECT_TIMEOUT, deadline: float = DEADLINE,
         resolver: download.Resolver | None = None,
         transport_factory: download.TransportFactory | None = None) -> Answer:
    """POST `body` to `url` under the rules above and return the answer, whatever its status
    (the caller decides what counts as delivered). Redirects are answers too: never followed."""
    started = time.monotonic()
    target = check(url, allow_http=allow_http, extra_networks=extra_networks, resolver=resolver)
    try:
        context = download.ssl_context(verify)
    except download.DownloadError as e:
        raise OutboundError(e.message, permanent=True) from e
    transport = (transport_factory or download.default_transport)(context)
    try:
        with (download.Watchdog(started=started, deadline=deadline) as watchdog,
              httpx.Client(transport=transport, trust_env=False,
                           follow_redirects=False) as client):
            try:
                request = _request(client, target, body, headers, watchdog,
                                   connect_timeout=connect_timeout)
                response = client.send(request, stream=True)
                try:
                    answer = _read(response, watchdog)
                finally:
                    response.close()
            except (httpx.HTTPError, OSError) as e:
                if watchdog.late:
                    raise OutboundError(f"no answer within {deadline:g} s",
                                        permanent=False) from e
                raise
    except OutboundError:
        raise
    except httpx.TimeoutException as e:
        raise OutboundError(f"timed out ({_timeout_kind(e)})", permanent=False) from e
    except (httpx.HTTPError, OSError) as e:
        if download._caused_by(e, ssl.SSLCertVerificationError):
            raise OutboundError(f"the certificate of {target.host} could not be verified",
                                permanent=False) from e
        raise OutboundError(f"could not reach {target.host}: {e or type(e).__name__}",
                            permanent=False) from e
    return Answer(status=answer[0], body=answer[1],
                  elapsed_ms=round((time.monotonic() - started) * 1000))


# ---------------------------------------------------------------------------------------------


def _networks(extra_networks: Iterable[str]) -> tuple[download.IPNetwork, ...]:
    try:
        return download.parse_networks(extra_networks)
    except download.DownloadError as e:
        raise OutboundError(e.message, permanent=True) from e


def _sentence(message: str, *, permanent: bool) -> str:
    # download.py's words are clauses ("x resolves to 10.0.0.1, which is not a public
    # address"); the person who typed the address reads a sentence.
    return f"Refused because {message}; {PUBLIC_ONLY}." if permanent else f"DNS: {message}."


def _refuse(message: str) -> OutboundError:
    return OutboundError(message, permanent=True)


def _parse(url: str, *, allow_http: bool, networks: tuple[download.IPNetwork, ...]
           ) -> tuple[str, str, int, str, download.IPAddress | None]:
    if not isinstance(url, str) or not url:
        raise _refuse("The address is empty.")
    if len(url) > MAX_URL_LENGTH:
        raise _refuse(f"The address is longer than {MAX_URL_LENGTH} characters.")
    if not download.SAFE_URL.fullmatch(url):
        raise _refuse("The address contains spaces, control or non-ASCII characters.")
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise _refuse(f"The address cannot be read: {e}.") from e
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        raise _refuse("Webhooks are sent to https:// addresses only." if not allow_http else
                      "Webhooks are sent to http:// or https:// addresses only.")
    if "@" in parts.netloc:
        raise _refuse("The address contains a user name or password; put credentials in "
                      "the path or check the signature instead.")
    if not parts.netloc:
        raise _refuse("The address has no host.")
    try:
        host, port = download._split_netloc(parts.netloc)
    except ValueError as e:
        raise _refuse(f"The address has an unusable host: {e}.") from e
    if not _explicit_port(parts.netloc):
        port = DEFAULT_PORTS[parts.scheme]
    ip = download._ip_literal(host)
    if ip is not None and not download.is_allowed_address(ip, networks):
        raise _refuse(f"Refused because {host} is not a public address; {PUBLIC_ONLY}.")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not path.startswith("/"):
        raise _refuse("The address has no path.")
    return parts.scheme, host, port, path, ip


def _explicit_port(netloc: str) -> bool:
    rest = netloc[netloc.find("]") + 1:] if netloc.startswith("[") else netloc
    return ":" in rest


def _request(client: httpx.Client, target: Target, body: bytes, headers: Mapping[str, str],
             watchdog: download.Watchdog, *, connect_timeout: float) -> httpx.Request:
    """POST to the checked address; the name goes into TLS SNI and the Host header."""
    address = target.address
    netloc = f"[{address}]" if address.version == 6 else str(address)
    url = httpx.URL(f"{target.scheme}://{netloc}:{target.port}").copy_with(
        raw_path=target.path.encode("ascii"))
    default_port = target.port == DEFAULT_PORTS[target.scheme]
    name = f"[{target.host}]" if isinstance(target.ip, ipaddress.IPv6Address) else target.host
    extensions: dict = {"trace": watchdog.trace}
    if target.ip is None and target.scheme == "https":
        extensions["sni_hostname"] = target.host
    left = max(0.001, watchdog.left())
    timeout = httpx.Timeout(left, connect=min(connect_timeout, left))
    return client.build_request(
        "POST", url, content=body, timeout=timeout, extensions=extensions,
        headers={**headers, "Host": name if default_port else f"{name}:{target.port}",
                 "Accept-Encoding": "identity"})


def _read(response: httpx.Response, watchdog: download.Watchdog) -> tuple[int, bytes]:
    """The status and the first MAX_RESPONSE_BYTES of the body; the rest is never read."""
    head = b""
    for chunk in response.iter_raw():
        head += chunk
        if len(head) >= MAX_RESPONSE_BYTES or watchdog.late:
            break
    return response.status_code, head[:MAX_RESPONSE_BYTES]


def _timeout_kind(error: httpx.TimeoutException) -> str:
    if isinstance(error, httpx.ConnectTimeout):
        return "could not connect in time"
    return "the receiver did not answer in time"
