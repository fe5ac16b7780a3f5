"""A job's profit: the pricing rule and the figures, shared by the head's records (`provider/profit.py`) and the
simulator, so both price a job the same way.

The cost share of a cloud job is its node's price per node-hour (as the node is billed) × the job's share of the
node's GPUs × its run time; of a local job, the electricity its GPUs drew (`Pool.local_cost_per_gpu_hour`). Cloud
time no job used (nodes idle, starting, or kept warm) is not any job's cost: `unattributed_cloud_usd` is the
cloud spend minus the jobs' cloud shares, so the two reconcile. Net = paid in USD − cost share.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Literal

from etrid_ray.pools import Pool
from etrid_ray.units import PLANCK_PER_EDSC

GroupBy = Literal["pool", "day", "handler"]


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
