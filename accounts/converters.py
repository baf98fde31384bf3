"""URL converters shared by every app's URL conf."""

from __future__ import annotations

from django.urls import register_converter


class IdConverter:
    """A database id: digits that fit a BigAutoField. Django's `int` matches any length, and
    a number past 2**63 - 1 reached the query and failed there (a 500) instead of a 404."""

    regex = "[0-9]{1,19}"
    largest = 2**63 - 1

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > self.largest:
            raise ValueError("larger than any id")  # Django answers: no such URL, a 404
        return number

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")
