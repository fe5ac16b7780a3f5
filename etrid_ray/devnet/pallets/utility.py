"""pallet_utility: batch / batch_all / force_batch, so a provider claims or settles many jobs in one extrinsic."""

from __future__ import annotations

from typing import Any

from etrid_ray.devnet.pallet import DispatchError, Origin, Pallet

BATCHED_CALLS_LIMIT = 10_922
# The etrid-ray runtime only (upstream has no Utility): after upstream's last pallet (TokenMessenger, 26), so every
# index upstream uses means the same pallet here.
UTILITY_INDEX = 27


class Utility(Pallet):
    def declare(self) -> None:
        self.name, self.index, self.module = "Utility", UTILITY_INDEX, "pallet_utility"
        c, rt = self.runtime.types, self.runtime
        calls = ("calls", self.reg.sequence(rt.runtime_call_ty), "Vec<<T as Config>::RuntimeCall>")
        self.call(0, "batch", [calls], self.batch, "Send a batch of dispatch calls; stops at the first error.")
        self.call(2, "batch_all", [calls], self.batch_all,
                  "Send a batch of dispatch calls and atomically execute them.")
        self.call(4, "force_batch", [calls], self.force_batch,
                  "Send a batch of dispatch calls; errors do not stop the batch.")
        self.event("BatchInterrupted", [("index", c.u32, "u32"), ("error", c.dispatch_error, "DispatchError")])
        self.event("BatchCompleted", [])
        self.event("BatchCompletedWithErrors", [])
        self.event("ItemCompleted", [])
        self.event("ItemFailed", [("error", c.dispatch_error, "DispatchError")])
        self.event("DispatchedAs", [("result", c.dispatch_result, "DispatchResult")])
        self.error("TooManyCalls", "Too many calls batched.")
        self.constant("batched_calls_limit", c.u32, BATCHED_CALLS_LIMIT)

    def _check_len(self, calls: list[Any]) -> None:
        if len(calls) > BATCHED_CALLS_LIMIT:
            raise self.fail("TooManyCalls")

    def batch(self, origin: Origin, calls: list[Any]) -> None:
        self._check_len(calls)
        for index, call in enumerate(calls):
            sp = self.runtime.savepoint()
            try:
                self.runtime.dispatch(origin, call)
            except DispatchError as err:
                self.runtime.rollback(sp)
                self.emit("BatchInterrupted", index=index, error=err.value)
                return
            self.emit("ItemCompleted")
        self.emit("BatchCompleted")

    def batch_all(self, origin: Origin, calls: list[Any]) -> None:
        """Any failure fails the whole extrinsic; the runtime rolls every item back."""
        self._check_len(calls)
        for call in calls:
            self.runtime.dispatch(origin, call)
            self.emit("ItemCompleted")
        self.emit("BatchCompleted")

    def force_batch(self, origin: Origin, calls: list[Any]) -> None:
        self._check_len(calls)
        failed = False
        for call in calls:
            sp = self.runtime.savepoint()
            try:
                self.runtime.dispatch(origin, call)
                self.emit("ItemCompleted")
            except DispatchError as err:
                self.runtime.rollback(sp)
                failed = True
                self.emit("ItemFailed", error=err.value)
        self.emit("BatchCompletedWithErrors" if failed else "BatchCompleted")
