"""CSV that a spreadsheet opens without running anything a user typed.

Excel, LibreOffice and Google Sheets treat a cell that starts with = + - @ (and, after their own
trimming, a tab or carriage return) as a formula, so a shot titled `=HYPERLINK(...)` would turn
a downloaded report into a phishing link or worse. Following OWASP's advice, every *text* cell
that starts with one of those characters gets a leading single quote, which spreadsheets show as
text. Numbers we write ourselves stay numbers, so a negative amount is still a negative amount.
No Django imports: every CSV the app writes goes through `writer()`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any

# Line feed is not in OWASP's list, but quoting it costs nothing and some importers trim it.
DANGEROUS_LEADS = ("=", "+", "-", "@", "\t", "\r", "\n")


def safe_cell(value: Any) -> Any:
    """Return `value` with a leading quote if it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(DANGEROUS_LEADS):
        return "'" + value
    return value


def is_formula(value: str) -> bool:
    """Whether a cell read from a spreadsheet's CSV would have run there as a formula."""
    return value.startswith(DANGEROUS_LEADS)


def unquote(value: str) -> str:
    """The inverse of `safe_cell` for a cell read back: "'=x" (what we wrote for "=x") is "=x"
    again; any other text is returned as it is."""
    if value.startswith("'") and is_formula(value[1:]):
        return value[1:]
    return value


class SafeWriter:
    """A `csv.writer` whose rows have every text cell passed through `safe_cell`."""

    def __init__(self, stream: Any, **kwargs: Any) -> None:
        self._writer = csv.writer(stream, **kwargs)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([safe_cell(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(stream: Any, **kwargs: Any) -> SafeWriter:
    return SafeWriter(stream, **kwargs)
