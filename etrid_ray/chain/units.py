"""ËDSC amounts: 18 decimals on chain (planck), decimal strings for people.

Why Decimal and not float: 1e20 planck (the minimum stake) is beyond float's
exact range, and a provider's earnings must add up to the planck.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from etrid_ray.chain.errors import ConfigError
from etrid_ray.units import DECIMALS, PLANCK_PER_EDSC, SYMBOL

__all__ = ["DECIMALS", "PLANCK_PER_EDSC", "SYMBOL", "format_edsc", "from_planck", "to_planck"]


def to_planck(amount: str | int | Decimal, *, decimals: int = DECIMALS, what: str = "amount") -> int:
    """``"100"`` / ``"0.5"`` / ``100`` ËDSC -> planck. Rejects negatives and sub-planck precision."""
    try:
        value = Decimal(str(amount).strip().replace("_", ""))
    except (InvalidOperation, ValueError):
        raise ConfigError(f"{what} {amount!r} is not a number of {SYMBOL} (e.g. 100 or 0.25)") from None
    if not value.is_finite() or value < 0:
        raise ConfigError(f"{what} {amount!r} must be a non-negative number of {SYMBOL}")
    planck = value * (Decimal(10) ** decimals)
    if planck != planck.to_integral_value():
        raise ConfigError(f"{what} {amount!r} has more than {decimals} decimal places")
    return int(planck)


def from_planck(planck: int, *, decimals: int = DECIMALS) -> Decimal:
    return Decimal(planck) / (Decimal(10) ** decimals)


def format_edsc(planck: int, *, decimals: int = DECIMALS, places: int = 4) -> str:
    """Human form with thousands separators, e.g. ``1,000,000.0000 ËDSC``."""
    value = from_planck(planck, decimals=decimals)
    return f"{value:,.{places}f} {SYMBOL}"
