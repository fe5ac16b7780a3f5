"""Every job's profit on the record: what it ran on, what its share of that hardware cost, what the chain paid.

An operator's first question is "what did I make, and on which hardware?". A job's row is written twice: when
its task ends (pool, node, GPUs, GPU-seconds and the node-time cost share, priced as the node was billed) and
when the chain releases its payment to us (`PaymentReleased`: paid, fee, block). Net = paid in USD − cost share.

The cost share of a cloud job is its node's price per node-hour (`scaling.billing.Bill`, the rate the node is
billed at) × the job's share of the node's GPUs × its run time; of a local job, the electricity its GPUs drew
(`Pool.local_cost_per_gpu_hour`). Cloud time no job used (nodes idle, starting, or kept warm) is not any job's
cost: `unattributed_cloud_usd` is the cloud-spend counter minus the jobs' cloud shares, so the two reconcile.

The rows live in their own SQLite file beside the journal (`<journal>.profit.sqlite`): the journal is the head's
recovery record, pruned and bound to one chain; this one is the operator's books.
"""

from __future__ import annotations

import csv
import io
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from etrid_ray.pools import Pool
from etrid_ray.units import PLANCK_PER_EDSC

GroupBy = Literal["pool", "day", "handler"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS job_profit (
    job_id INTEGER PRIMARY KEY,
    pool TEXT, node TEXT, handler TEXT, cloud INTEGER,
    gpus REAL, started_at REAL, ended_at REAL, gpu_seconds REAL, cost_usd REAL,
    payment_planck TEXT, paid_planck TEXT, fee_planck TEXT, paid_at REAL, block INTEGER
);
CREATE INDEX IF NOT EXISTS job_profit_paid_at ON job_profit (paid_at);
"""


def cost_share_usd(pool: Pool, gpus: float, seconds: float, usd_per_node_hour: float | None) -> float:
    """A job's share of what its hardware cost while it ran: a cloud node's hourly price (as billed) × its share of
    the node's GPUs, or a local GPU's electricity. Pure, so the simulator prices its jobs the same way."""
    hours = max(0.0, seconds) / 3600
    if pool.is_cloud:
        rate = usd_per_node_hour or 0.0
        return rate * min(1.0, gpus / pool.gpus_per_node) * hours
    return pool.local_cost_per_gpu_hour() * gpus * hours


@dataclass
class JobProfit:
    job_id: int
    pool: str = ""
    node: str = ""
    handler: str = ""
    cloud: bool = False
    gpus: float = 0.0
    started_at: float = 0.0
    ended_at: float = 0.0
    gpu_seconds: float = 0.0
    cost_usd: float = 0.0
    payment_planck: int = 0  # what the consumer escrowed
    paid_planck: int = 0  # what PaymentReleased gave us (payment − fee)
    fee_planck: int = 0
    paid_at: float | None = None
    block: int | None = None

    def net_usd(self, edsc_usd: float) -> float:
        return self.paid_planck / PLANCK_PER_EDSC * edsc_usd - self.cost_usd

    def net_edsc(self, edsc_usd: float) -> float:
        return self.net_usd(edsc_usd) / edsc_usd if edsc_usd else float("nan")


@dataclass
class ProfitGroup:
    key: str
    jobs: int = 0
    paid_jobs: int = 0
    gpu_seconds: float = 0.0
    cost_usd: float = 0.0
    cloud_cost_usd: float = 0.0
    paid_planck: int = 0
    fee_planck: int = 0
    net_usd: float = 0.0

    @property
    def paid_edsc(self) -> float:
        return self.paid_planck / PLANCK_PER_EDSC


def group(rows: Iterable[JobProfit], by: GroupBy, edsc_usd: float) -> list[ProfitGroup]:
    """Totals per pool, per UTC day (of the payment, else of the run's end) or per handler. Pure."""
    out: dict[str, ProfitGroup] = {}
    for r in rows:
        if by == "day":
            at = r.paid_at if r.paid_at is not None else r.ended_at
            key = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d") if at else "unknown"
        else:
            key = (r.pool if by == "pool" else r.handler) or "unknown"
        g = out.setdefault(key, ProfitGroup(key))
        g.jobs += 1
        g.paid_jobs += r.paid_at is not None
        g.gpu_seconds += r.gpu_seconds
        g.cost_usd += r.cost_usd
        g.cloud_cost_usd += r.cost_usd if r.cloud else 0.0
        g.paid_planck += r.paid_planck
        g.fee_planck += r.fee_planck
        g.net_usd += r.net_usd(edsc_usd)
    return [out[k] for k in sorted(out)]


def unattributed_cloud_usd(cloud_spend_usd: float, rows: Iterable[JobProfit]) -> float:
    """Cloud spend no job's share covers (nodes idle, starting, kept warm): the billed total minus the jobs' cloud
    shares, so jobs and idle time add up to the cloud-spend counter to the cent."""
    return cloud_spend_usd - sum(r.cost_usd for r in rows if r.cloud)


def to_csv(rows: Iterable[JobProfit], edsc_usd: float) -> str:
    buf = io.StringIO()
    names = [f.name for f in fields(JobProfit)]
    writer = csv.writer(buf)
    writer.writerow([*names, "net_usd"])
    for r in rows:
        d = asdict(r)
        writer.writerow([*(d[n] for n in names), f"{r.net_usd(edsc_usd):.6f}"])
    return buf.getvalue()


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

    def paid(self, job_id: int, paid_planck: int, payment_planck: int, at: float, block: int | None) -> None:
        """The chain released `paid_planck` to us for `job_id` (its consumer escrowed `payment_planck`; 0: as its
        row already says). The fee is the difference: the platform's share, whatever the runtime's rate."""
        self.paid_many([(job_id, paid_planck, payment_planck, at, block)])

    def paid_many(self, items: Iterable[tuple[int, int, int, float, int | None]]) -> None:
        """`paid` for many payments (job, paid, payment, at, block) in one transaction: a block's worth at once."""
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
