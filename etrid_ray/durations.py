"""One way to print a span of seconds in tables (prices' age, the status view, the simulator's waits).

Two significant units at most, chosen so the number stays short: seconds up to 2 minutes, minutes up
to 2 hours, hours up to 2 days, then days. `compact` drops the space and shortens "min" to "m" for
the narrow live status columns.
"""

from __future__ import annotations


def format_duration(seconds: float | None, *, compact: bool = False, none: str = "-", days: bool = True) -> str:
    """`seconds` as "5 s", "10 min", "2.0 h", "28 d" (compact: "5s", "10m", "2.0h", "28d"); `none` for None;
    `days=False` keeps hours however long (the simulator's waits)."""
    if seconds is None:
        return none
    s = max(0.0, seconds)
    sep, minutes = ("", "m") if compact else (" ", "min")
    if s < 120:
        return f"{s:.0f}{sep}s"
    if s < 7200:
        return f"{s / 60:.0f}{sep}{minutes}"
    if s < 172_800 or not days:
        return f"{s / 3600:.1f}{sep}h"
    return f"{s / 86_400:.0f}{sep}d"
