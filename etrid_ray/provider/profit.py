"""Every job's profit on the record: what it ran on, what its share of that hardware cost, what the chain paid
(the rule and the figures: `etrid_ray/profit.py`).

An operator's first question is "what did I make, and on which hardware?". A job's row is written twice: when
its task ends (pool, node, GPUs, GPU-seconds and the node-time cost share, priced as the node was billed) and
when the chain releases its payment to us (`PaymentReleased`: paid, fee, block). Net = paid in USD − cost share.

A cloud node's rate is the one it is billed at (`scaling.billing.Bill`).

The rows live in their own SQLite file beside the journal (`<journal>.profit.sqlite`): the journal is the head's
recovery record, pruned and bound to one chain; this one is the operator's books.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

from etrid_ray.profit import JobProfit

SCHEMA = """
CREATE TABLE IF NOT EXISTS job_profit (
    job_id INTEGER PRIMARY KEY,
    pool TEXT, node TEXT, handler TEXT, cloud INTEGER,
    gpus REAL, started_at REAL, ended_at REAL, gpu_seconds REAL, cost_usd REAL,
    payment_planck TEXT, paid_planck TEXT, fee_planck TEXT, paid_at REAL, block INTEGER
);
CREATE INDEX IF NOT EXISTS job_profit_paid_at ON job_profit (paid_at);
"""


class ProfitBook:
    """The rows, in SQLite (planck amounts as text: they exceed SQLite's 64-bit integers)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        self.db = sqlite3.connect(self.path, check_same_thread=False)
        if self.path != ":memory:":
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    @staticmethod
    def beside(journal: str | Path | None) -> str:
        """Where the rows of a head whose journal is `journal` live (in memory beside an in-memory journal)."""
        if journal is None or str(journal) == ":memory:":
            return ":memory:"
        p = Path(journal)
        return str(p.with_name(p.stem + ".profit.sqlite"))

    def ran(self, items: Iterable[JobProfit]) -> None:
        """Jobs whose task ended: what they ran on and cost. A payment already recorded is kept."""
        with self._lock, self.db:
            self.db.executemany(
                "INSERT INTO job_profit (job_id, pool, node, handler, cloud, gpus, started_at, ended_at, gpu_seconds,"
                " cost_usd, payment_planck) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(job_id) DO UPDATE SET"
                " pool=excluded.pool,"
                " node=excluded.node, handler=excluded.handler, cloud=excluded.cloud, gpus=excluded.gpus,"
                " started_at=excluded.started_at, ended_at=excluded.ended_at, gpu_seconds=excluded.gpu_seconds,"
                " cost_usd=excluded.cost_usd",
                [(r.job_id, r.pool, r.node, r.handler, int(r.cloud), r.gpus, r.started_at, r.ended_at, r.gpu_seconds,
                  r.cost_usd, str(r.payment_planck)) for r in items])

    def paid_many(self, items: Iterable[tuple[int, int, int, float, int | None]]) -> None:
        """The chain released `paid` to us for each `job` (its consumer escrowed `payment`; 0: as its row already
        says), in one transaction: a pass's worth at once. The fee is the difference: the platform's share,
        whatever the runtime's rate. Items: (job, paid, payment, at, block)."""
        rows = []
        with self._lock, self.db:
            for job_id, paid_planck, payment_planck, at, block in items:
                if not payment_planck:
                    found = self.db.execute("SELECT payment_planck FROM job_profit WHERE job_id = ?",
                                            (job_id,)).fetchone()
                    payment_planck = int(found[0] or 0) if found else 0
                fee = max(0, payment_planck - paid_planck) if payment_planck else 0
                rows.append((job_id, str(payment_planck), str(paid_planck), str(fee), at, block))
            self.db.executemany(
                "INSERT INTO job_profit (job_id, payment_planck, paid_planck, fee_planck, paid_at, block) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(job_id) DO UPDATE SET payment_planck=excluded.payment_planck,"
                " paid_planck=excluded.paid_planck, fee_planck=excluded.fee_planck, paid_at=excluded.paid_at,"
                " block=excluded.block", rows)

    def rows(self, since: float | None = None) -> list[JobProfit]:
        """Every job, or those paid (else ended) at or after `since`, in job order."""
        sql = ("SELECT job_id, pool, node, handler, cloud, gpus, started_at, ended_at, gpu_seconds, cost_usd, "
               "payment_planck, paid_planck, fee_planck, paid_at, block FROM job_profit")
        args: tuple[float, ...] = ()
        if since is not None:
            sql += " WHERE COALESCE(paid_at, ended_at) >= ?"
            args = (since,)
        with self._lock:
            found = self.db.execute(sql + " ORDER BY job_id", args).fetchall()
        return [JobProfit(j, pool or "", node or "", handler or "", bool(cloud), gpus or 0.0, s or 0.0, e or 0.0,
                          gs or 0.0, cost or 0.0, int(pay or 0), int(paid or 0), int(fee or 0), at, block)
                for j, pool, node, handler, cloud, gpus, s, e, gs, cost, pay, paid, fee, at, block in found]

    def close(self) -> None:
        with self._lock:
            self.db.close()
