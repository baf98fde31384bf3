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


class VideoProvider:
    """Base class. Subclasses set `inline` and implement either `render` or the remote calls."""

    inline = False
    # Takes from this provider are previews priced as the endpoint they stand in for.
    simulated = False
    label = "Provider"

    def __init__(self, *, name: str, **options) -> None:
        self.name = name
        self.options = options

    def render(self, job: Job, out: Path, *, progress: Callable[[float], None]) -> Rendered:
        raise NotImplementedError
