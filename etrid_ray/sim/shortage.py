"""Capacity shortages per cloud pool: the windows in which a pool can launch nothing.

A spot market without capacity, an exhausted quota or an image that cannot be pulled all look the
same to the head: a node is requested and does not join. The simulator models that as windows per
pool: a request made inside one is fulfilled only when the window ends (a pending spot request or
pod is served when capacity returns), `startup_s` later — unless the head withdraws it first
(`scaling.capacity`). Nodes already running are not touched (taking them away is the spot
interruption model's job).

The windows are an alternating renewal process per pool, seeded from the run's seed and the pool's
name (so turning shortages on leaves the interruption draws, and every other pool's windows, as
they were): the time between windows is exponential with mean 1 / `rate_per_day` days, a window's
length exponential with mean `mean_s`. The rates are assumptions, not measurements: no cloud
publishes how often a region runs out of a GPU type. AWS's Spot placement scores and the
"InsufficientInstanceCapacity" reports operators file suggest episodes of hours, a few times a
week for large GPU instances in busy regions; the suite's shortage scenarios use one a day of
four hours on average (a pessimistic market) so the rule is exercised often in three weeks.
Off by default (`SimSettings.shortage` None): the Philly whole-trace run has no shortages.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Shortage:
    """Which pools run short, how often and for how long."""

    rate_per_day: float = 1.0  # windows per day per pool, on average
    mean_s: float = 4 * 3600.0  # a window's mean length
    pools: tuple[str, ...] | None = None  # the pools that run short (None: every spot pool)

    def __post_init__(self) -> None:
        if self.rate_per_day < 0 or self.mean_s <= 0:
            raise ValueError("shortage rate_per_day must be ≥ 0 and mean_s > 0")

    def applies(self, pool_name: str, spot: bool) -> bool:
        return pool_name in self.pools if self.pools is not None else spot


class Windows:
    """One pool's shortage windows, drawn lazily in time order (queries come at increasing times)."""

    def __init__(self, shortage: Shortage, seed: int, pool: str) -> None:
        self.rng = random.Random(f"{seed}:shortage:{pool}")
        self.rate_s = shortage.rate_per_day / 86400.0
        self.mean_s = shortage.mean_s
        self.start = self.end = 0.0
        self._next()

    def _next(self) -> None:
        if self.rate_s <= 0:
            self.start = self.end = float("inf")
            return
        self.start = self.end + self.rng.expovariate(self.rate_s)
        self.end = self.start + self.rng.expovariate(1.0 / self.mean_s)

    def until(self, t: float) -> float | None:
        """The end of the window `t` falls in (None: the pool has capacity at `t`)."""
        while self.end <= t:
            self._next()
        return self.end if self.start <= t else None
