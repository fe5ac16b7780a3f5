"""A local nonce counter, so many extrinsics of one account can be in flight at once.

Why: asking the node for the nonce before each extrinsic serializes everything
on a round trip and, worse, hands the same nonce to two extrinsics that are both
still in the pool. The counter is seeded from ``system_accountNextIndex`` (which
counts the pool too) and each :meth:`NonceManager.take` hands out the next one.
When the node answers 1010 *stale*/*future* or 1014 *priority too low*, the
submitter calls :meth:`resync` and signs again.
"""

from __future__ import annotations

import threading

from etrid_ray.chain.connection import Connection


class NonceManager:
    def __init__(self, conn: Connection, address: str) -> None:
        self.conn = conn
        self.address = address
        self._lock = threading.Lock()
        self._next: int | None = None
        self.resyncs = 0
        conn.on_reconnect(self.invalidate)

    def _chain_next(self) -> int:
        return int(self.conn.rpc("system_accountNextIndex", [self.address]))

    def take(self) -> int:
        """The nonce for the next extrinsic; never the same twice until a resync."""
        with self._lock:
            if self._next is None:
                self._next = self._chain_next()
            nonce = self._next
            self._next += 1
            return nonce

    def peek(self) -> int | None:
        return self._next

    def resync(self) -> int:
        """Re-reads the next index from the node (after a stale/future rejection or a reconnect)."""
        with self._lock:
            self._next = self._chain_next()
            self.resyncs += 1
            return self._next

    def invalidate(self) -> None:
        """Forgets the counter; the next :meth:`take` re-seeds it from the node."""
        with self._lock:
            self._next = None
