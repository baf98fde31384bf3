"""Money as people read and type it, and as the budget checks it: integer micro-dollars.

Every amount shown and every amount typed goes through here. An amount is shown with as many
decimals as it needs (at least cents, at most the six a micro-dollar has), so what the page shows
is exactly the number the budget compares: typing a displayed amount back in can never be
"below" itself. Framework-free: models, forms, views and templates all use it.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

MICROS_PER_DOLLAR = 1_000_000
# The largest amount a form accepts: far above any team's month, far below BigInteger.
MAX_MICROS = 10_000_000 * MICROS_PER_DOLLAR


class MoneyError(ValueError):
    """Text that is not an amount of dollars; the message says what to type instead."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def decimal_text(micros: int) -> str:
    """Exact dollars without a sign or symbol: 4_230_000 → "4.23", 302_400 → "0.3024"."""
    whole, fraction = divmod(abs(int(micros)), MICROS_PER_DOLLAR)
    digits = f"{fraction:06d}".rstrip("0")
    return f"{whole}.{digits:0<2}"


def usd(micros: int | None) -> str:
    """The amount for people: "$1,234.50", "$0.3024", "−$1.20"; "—" for no amount."""
    if micros is None:
        return "—"
    whole, _, fraction = decimal_text(micros).partition(".")
    sign = "−" if int(micros) < 0 else ""
    return f"{sign}${int(whole):,}.{fraction}"


def parse_usd(text: str, *, allow_negative: bool = False) -> int:
    """Micro-dollars from what someone typed ("12", "$1,250.50", "0.3024"); MoneyError if not.

    Exact: never rounds. More than six decimals is refused rather than silently cut.
    """
    cleaned = str(text).strip().replace(",", "").replace("$", "").replace("−", "-")
    if not cleaned:
        raise MoneyError("Enter an amount in dollars, for example 250 or 12.50.")
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        raise MoneyError(f"“{text}” is not an amount in dollars; type it like 12.50.") from None
    if not amount.is_finite():
        raise MoneyError("Enter an amount in dollars, for example 250 or 12.50.")
    micros = amount * MICROS_PER_DOLLAR
    if micros != micros.to_integral_value():
        raise MoneyError("Amounts go down to a millionth of a dollar (six decimals), no further.")
    if micros < 0 and not allow_negative:
        raise MoneyError("The amount cannot be negative.")
    if abs(micros) > MAX_MICROS:
        raise MoneyError(f"The amount cannot be more than {usd(MAX_MICROS)}.")
    return int(micros)
