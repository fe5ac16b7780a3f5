"""Profit: each finished task priced on the hardware it ran on, each payment to us matched to its job
(`provider/profit.py` holds the rows and the pricing rule)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

from etrid_ray.pools import Pool
from etrid_ray.profit import JobProfit, cost_share_usd
from etrid_ray.provider.job import TrackedJob
from etrid_ray.provider.profit import ProfitBook
from etrid_ray.provider.task import Outcome
from etrid_ray.units import PLANCK_PER_EDSC

UNPAID_REMEMBERED = 100_000  # ran, payment not seen yet: the cost kept in memory for the net-profit metric


class ProfitRecorder:
    def __init__(self, book: ProfitBook, pools: dict[str, Pool], own_pool: Pool | None,
                 node_rate: Callable[[str], float | None], edsc_usd: float) -> None:
        self.book = book
        self.pools = pools
        self.own_pool = own_pool  # where a job no pool was chosen for runs: the provider's own GPUs
        self.node_rate = node_rate  # a cloud node's billed USD per node-hour (the scaler's bill), None if unknown
        self.edsc_usd = edsc_usd
        self.net_usd: Counter[str] = Counter()  # by pool, since start: the metric
        self._lock = threading.Lock()
        self._pending: list[JobProfit] = []
        self._unpaid: dict[int, tuple[str, float]] = {}  # job → (pool, cost)

    def ran(self, tracked: TrackedJob, outcome: Outcome) -> None:
        """A task ended (the harvester's callback): its row, written at the next `flush`."""
        run = tracked.run
        if run is None:
            return
        pool = self.pools.get(run.pool) if run.pool is not None else self.own_pool
        seconds = max(0.0, outcome.finished_at - outcome.started_at)
        rate = self.node_rate(outcome.node_id) if pool is not None and pool.is_cloud else None
        cost = cost_share_usd(pool, run.gpus, seconds, rate) if pool is not None else 0.0
        row = JobProfit(tracked.job_id, pool.name if pool is not None else "", outcome.node_id, run.handler,
                        bool(pool is not None and pool.is_cloud), run.gpus, outcome.started_at, outcome.finished_at,
                        seconds * run.gpus, cost, payment_planck=tracked.job.payment)
        with self._lock:
            self._pending.append(row)
            self._unpaid[tracked.job_id] = (row.pool, cost)
            while len(self._unpaid) > UNPAID_REMEMBERED:
                del self._unpaid[next(iter(self._unpaid))]

    def flush(self) -> None:
        """Writes the rows of the tasks ended since the last flush, in one transaction."""
        with self._lock:
            rows, self._pending = self._pending, []
        if rows:
            self.book.ran(rows)

    def paid_many(self, items: list[tuple[int, int, int, float, int | None]]) -> None:
        """Payments to us (job, amount, escrow, at, block): the intake's callback, once per pass."""
        if not items:
            return
        self.flush()  # their rows first, so the payments land on them
        self.book.paid_many(items)
        with self._lock:
            for job_id, amount, _payment, _at, _block in items:
                pool, cost = self._unpaid.pop(job_id, ("", 0.0))
                self.net_usd[pool or "unknown"] += amount / PLANCK_PER_EDSC * self.edsc_usd - cost
