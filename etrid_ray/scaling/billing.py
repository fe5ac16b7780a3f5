"""The one billing rule for cloud nodes, shared by the live scaler and the simulator.

Why one rule: the daily budget the policies read (`Snapshot.spend_today_usd`) and the cost the
simulator reports must be what the cloud charges, and the same in both places, or the simulator
proves things about a provider that does not exist. AWS, GCP and Azure bill a Linux VM per second
from its request until it is gone, with a one-minute minimum; so a node asked for and withdrawn
after 10 s costs a minute, and a node that lived 100.2 s costs 101 s.

`NodeLedger` holds one bill per node: `open` when the node is requested, `close` when it is gone
(or its request withdrawn). While a bill is open it accrues per second; closing charges the
whole life by the rule above. Nothing here reads a clock: every call carries its time, on the
caller's clock (wall time live, simulated time in the simulator).
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass

MIN_BILLED_S = 60.0
DAY_S = 86_400.0


def billed_cost(usd_per_node_hour: float, seconds: float) -> float:
    """What a node that lived `seconds` is charged: per started second, at least a minute."""
    return usd_per_node_hour * max(MIN_BILLED_S, math.ceil(seconds - 1e-9)) / 3600


@dataclass(frozen=True)
class Bill:
    """One node's open bill: its pool, when it was requested, its price per node-hour."""

    pool: str
    opened_at: float
    usd_per_node_hour: float

    def accrued_usd(self, now: float, since: float = -math.inf) -> float:
        """Per-second accrual from `max(opened_at, since)` to `now` (no minimum: the bill is still open)."""
        return self.usd_per_node_hour * max(0.0, now - max(self.opened_at, since)) / 3600


class NodeLedger:
    """Cloud bills by node key: open, close, and the spend they add up to (today, and in all).

    Keys are the caller's (the simulator's node ids; live, a pending request's key until Ray shows
    the node, then its Ray node id — `rekey`). The day window is the daily budget's: the UTC day
    of the latest time the ledger was told about; a closed bill's minimum-minute top-up counts on
    the day it closed.
    """

    def __init__(self) -> None:
        self._bills: dict[int, Bill] = {}  # by serial, in the order opened (sums run in a fixed order)
        self._serial: dict[Hashable, int] = {}
        self._next = 0
        self.closed_usd = 0.0
        self.closed_by_pool: dict[str, float] = {}
        self._day = -1
        self._day_closed_usd = 0.0

    def __contains__(self, key: Hashable) -> bool:
        return key in self._serial

    def __len__(self) -> int:
        return len(self._serial)

    def keys(self, pool: str | None = None) -> list[Hashable]:
        """Open bills' keys, oldest first (of one pool, when given)."""
        return [k for k, s in sorted(self._serial.items(), key=lambda kv: kv[1])
                if pool is None or self._bills[s].pool == pool]

    def bill(self, key: Hashable) -> Bill:
        return self._bills[self._serial[key]]

    def open(self, key: Hashable, t: float, usd_per_node_hour: float, pool: str = "") -> Bill:
        """Starts billing node `key` at `t` (its request)."""
        if key in self._serial:
            raise KeyError(f"bill {key!r} is already open")
        self._roll(t)
        self._next += 1
        self._serial[key] = self._next
        bill = Bill(pool, t, usd_per_node_hour)
        self._bills[self._next] = bill
        return bill

    def rekey(self, old: Hashable, new: Hashable) -> None:
        """The same bill under a new key (a pending request became a Ray node); its place in sums stays."""
        if new in self._serial:
            raise KeyError(f"bill {new!r} is already open")
        self._serial[new] = self._serial.pop(old)

    def close(self, key: Hashable, t: float) -> float:
        """Ends node `key`'s bill at `t` and returns its charge (per second, a minute at least)."""
        bill = self._bills.pop(self._serial.pop(key))
        self._roll(t)
        life = max(0.0, t - bill.opened_at)
        charge = billed_cost(bill.usd_per_node_hour, life)
        self.closed_usd += charge
        self.closed_by_pool[bill.pool] = self.closed_by_pool.get(bill.pool, 0.0) + charge
        day_start = self._day * DAY_S
        if t >= day_start:  # a bill closed before today (seen late) adds nothing to today
            top_up = max(0.0, charge - bill.usd_per_node_hour * life / 3600)
            self._day_closed_usd += bill.accrued_usd(t, day_start) + top_up
        return charge

    def close_all(self, t: float) -> float:
        """Closes every open bill at `t` (the end of a run); returns what they charged."""
        return sum(self.close(k, t) for k in self.keys())

    def spend_today(self, now: float) -> float:
        """Cloud spend in `now`'s UTC day: closed bills' charges in the day, open bills' accrual so far."""
        self._roll(now)
        day_start = self._day * DAY_S
        return self._day_closed_usd + sum(b.accrued_usd(now, day_start) for b in self._bills.values())

    def total(self, now: float) -> float:
        """All cloud spend: closed bills' charges and open bills' accrual up to `now`."""
        return self.closed_usd + sum(b.accrued_usd(now) for b in self._bills.values())

    def total_by_pool(self, now: float) -> dict[str, float]:
        """`total` per pool. It never falls as time goes on: a bill's charge at close is at least what it
        had accrued — so a counter fed from it only grows."""
        out = dict(self.closed_by_pool)
        for b in self._bills.values():
            out[b.pool] = out.get(b.pool, 0.0) + b.accrued_usd(now)
        return out

    def _roll(self, t: float) -> None:
        """Moves the day window forward to `t`'s UTC day (never back: a late close is not a new day)."""
        day = int(t // DAY_S)
        if day > self._day:
            self._day, self._day_closed_usd = day, 0.0
