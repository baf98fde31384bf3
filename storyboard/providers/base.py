"""The interface every video provider implements, and the one error type they raise.

A provider turns a Job (Seedance arguments plus local input files) into a video. Remote
providers (fal, eachlabs) are asynchronous: submit, then status/result, or a webhook. The local
renderer works inline: `render` produces the file while reporting progress.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


class ProviderError(Exception):
    """A provider call failed.

    `permanent`: retrying the same request cannot help (bad input, refused by policy).
    `outcome_unknown`: the request may have reached the provider (the answer was lost), so it
    must not be sent again; the take is reconciled by polling instead.
    """

    def __init__(self, message: str, *, permanent: bool = False,
                 outcome_unknown: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.outcome_unknown = outcome_unknown


class Canceled(Exception):
    """Raised from a progress callback to stop an inline render."""


@dataclass(frozen=True)
class Job:
    uid: str
    endpoint: str
    # Seedance arguments as the provider documents name them (prompt, resolution, duration…).
    arguments: dict
    # Input files by argument name: "image_url", "end_image_url", "image_urls", ….
    files: dict[str, list[Path]] = field(default_factory=dict)
    # The same files as public, signed, expiring HTTPS URLs (same keys and order), for
    # providers that fetch inputs themselves.
    urls: dict[str, list[str]] = field(default_factory=dict)
    # Pixel size and frame count the endpoint will deliver (known from the catalogue).
    width: int = 0
    height: int = 0
    frames: int = 0
    title: str = ""
    webhook_url: str | None = None


@dataclass(frozen=True)
class Rendered:
    path: Path
    width: int
    height: int
    frames: int
    duration: float
    seed: int | None = None


class WebhookRejected(Exception):
    """A webhook delivery failed verification; it must change nothing (answer 401)."""


@dataclass(frozen=True)
class Submitted:
    request_id: str


@dataclass(frozen=True)
class Status:
    """Where a remote request stands. `state` is one of the STATES below."""

    state: str
    queue_position: int | None = None
    logs: tuple[str, ...] = ()
    # For failures: a message for people, and whether retrying could ever help.
    error: str = ""
    permanent: bool = True

    # "unknown": the provider named a status its documents do not list; the take keeps
    # waiting (nothing moves) and the line in `logs` says what was seen.
    STATES = ("queued", "running", "completed", "failed", "canceled", "unknown")


@dataclass(frozen=True)
class Result:
    video_url: str
    seed: int | None = None


@dataclass(frozen=True)
class WebhookEvent:
    request_id: str
    status: Status
    # Present when the delivery carries the finished output (fal puts it in `payload`).
    result: Result | None = None
    # Only a hint (eachlabs: unsigned bodies): ask the provider about `request_id` before
    # anything moves, and believe its answer, not the delivery.
    confirm: bool = False


class CannotCancel(ProviderError):
    """The provider will not (or cannot) stop a request it is running: it finishes and is
    charged all the same."""


class VideoProvider:
    """Base class. Subclasses set `inline` and implement either `render` or the remote calls.

    Remote calls raise ProviderError; they never return half-answers. Every network call is
    bounded by a timeout. Providers hold no per-take state: everything needed to resume is in
    the Generation row (request id, endpoint), so any worker can continue any take.
    """

    inline = False
    # Takes from this provider are previews priced as the endpoint they stand in for.
    simulated = False
    label = "Provider"
    # Hosts the finished videos may be downloaded from (https only); see providers.download.
    download_hosts: tuple[str, ...] = ()
    # Input files must reach it as public HTTPS URLs (it fetches them itself).
    needs_public_inputs = False

    def __init__(self, *, name: str, **options) -> None:
        self.name = name
        self.options = options

    def render(self, job: Job, out: Path, *, progress: Callable[[float], None]) -> Rendered:
        raise NotImplementedError

    def submit(self, job: Job) -> Submitted:
        raise NotImplementedError

    def status(self, *, endpoint: str, request_id: str) -> Status:
        raise NotImplementedError

    def result(self, *, endpoint: str, request_id: str) -> Result:
        raise NotImplementedError

    def cancel(self, *, endpoint: str, request_id: str) -> bool:
        """Ask the provider to stop; True if it will (or did), False if already finished."""
        raise NotImplementedError

    def parse_webhook(self, *, headers: dict[str, str], body: bytes) -> WebhookEvent:
        """Verify a delivery and read it; raises WebhookRejected when it is not genuine."""
        raise NotImplementedError

    def preflight(self, *, endpoint: str, arguments: dict, files: set[str]) -> list[str]:
        """Why this provider would refuse these arguments (and input files, by argument
        name), in plain words; checked before any money is held or anything is sent."""
        return []

    def per_second_rates(self, endpoint: str) -> dict[str, int] | None:
        """Micro-dollars per second of output by resolution, when this provider bills that
        way for the endpoint; None means the catalogue's per-token price."""
        return None
