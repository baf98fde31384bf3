from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def hue(value: int) -> int:
    """A stable colour per person, so avatars are recognisable across screens."""
    return (int(value) * 137) % 360
