from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def hue(value: int) -> int:
    """A stable colour per person, so avatars are recognisable across screens."""
    return (int(value) * 137) % 360


@register.filter
def money(micros: int | None) -> str:
    """Integer micro-dollars as dollars and cents (to the nearest cent; the maths stays exact)."""
    if micros is None:
        return "—"
    cents = (int(micros) + 5_000) // 10_000
    return f"${cents // 100:,}.{cents % 100:02d}"
