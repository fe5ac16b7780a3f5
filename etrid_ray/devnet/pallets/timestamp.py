"""pallet_timestamp: the block's wall-clock time, set by an inherent as on a real chain."""

from __future__ import annotations

from typing import Any

from etrid_ray.devnet.pallet import BadOrigin, Origin, Pallet

MINIMUM_PERIOD_MS = 1


class Timestamp(Pallet):
    def declare(self) -> None:
        self.name, self.index, self.module = "Timestamp", 1, "pallet_timestamp"
        c = self.runtime.types
        self.Now = self.storage("Now", c.u64, 0, docs="The current time for the current block (ms).")
        self.call(0, "set", [("now", c.compact_u64, "T::Moment")], self.set, "Set the current time (inherent).")
        self.constant("MinimumPeriod", c.u64, MINIMUM_PERIOD_MS)

    def set(self, origin: Origin, now: Any) -> None:
        if origin.kind != "None":
            raise BadOrigin()
        self.runtime.state.put(self.Now, None, int(now))

    def now_ms(self) -> int:
        return int(self.runtime.state.get(self.Now))

    def now_secs(self) -> int:
        return self.now_ms() // 1000
