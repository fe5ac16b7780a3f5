"""`etrid-ray status`: the operator's view of one snapshot, as rich tables or JSON.

With a Ray address the snapshot comes from the head actor (everything: pools, scaling decisions,
spend: `service.actor.head_snapshot_source`, which lives with the actor it asks); without one, from the
chain alone (queue, GPUs, providers' telemetry and earnings).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from etrid_ray.durations import format_duration
from etrid_ray.telemetry.chain_source import ChainScraper
from etrid_ray.telemetry.metrics import Snapshot
from etrid_ray.units import PLANCK_PER_EDSC


def chain_snapshot_source(url: str) -> Callable[[], Snapshot]:
    scraper = ChainScraper(url, interval_s=0)
    return scraper.read


def _age(seconds: float | None) -> str:
    return format_duration(seconds, compact=True, none="—")


def _short(address: str) -> str:
    return address if len(address) <= 14 else f"{address[:6]}…{address[-6:]}"


def render(snap: Snapshot, *, where: str = "", now: float | None = None) -> Group:
    now = time.time() if now is None else now
    head = snap.source == "head"
    state = Text("ok", style="green") if snap.ok else Text(f"STALE: {snap.error}", style="bold red")
    if head and snap.draining:
        state = Text.assemble(state, ("  DRAINING: no new claims, finishing in-flight jobs", "bold yellow"))
    title = Text.assemble(("etrid-ray status ", "bold"), (f"{where}  ", "dim"),
                          f"{'head ' + _short(snap.address) if head else 'chain only'}  block #{snap.best_block}  "
                          f"read {_age(now - snap.taken_at)} ago  ", state)
    parts: list[Any] = [title]

    q = Table(title="queue", show_header=True, expand=False)
    for col in ("pending", "assigned", "completed", "running", "avg wait", "avg duration", "start p50/p95"):
        q.add_column(col, justify="right")
    qs = snap.queue_to_start_s
    q.add_row(str(snap.queue.get("pending", 0)), str(snap.queue.get("assigned", 0)),
              str(snap.queue.get("completed", 0)), str(snap.running) if head else "—",
              f"{snap.avg_wait_s:.1f}s", f"{snap.avg_duration_s:.1f}s",
              f"{qs.get('0.5', 0):.2f}s / {qs.get('0.95', 0):.2f}s" if qs else "—")
    parts.append(q)

    if snap.running_jobs:
        r = Table(title=f"running jobs (oldest {len(snap.running_jobs)} of {snap.running})")
        for col in ("job", "pool", "GPUs", "chain GPU", "running for"):
            r.add_column(col, justify="right" if col != "pool" else "left")
        for job in snap.running_jobs:
            r.add_row(str(job["job_id"]), str(job.get("pool") or "—"), f"{job['gpus']:g}", str(job.get("gpu_id")),
                      _age(job["age_s"]))
        parts.append(r)

    if snap.pools:
        p = Table(title="GPUs per pool")
        for col in ("pool", "kind", "nodes alive/req", "busy", "idle", "pending", "$/GPU-h", "price"):
            p.add_column(col, justify="left" if col in ("pool", "kind", "price") else "right")
        for pool in snap.pools:
            price = "—" if pool.price_usd_per_gpu_hour is None else f"{pool.price_usd_per_gpu_hour:.3f}"
            src = "—" if pool.price_source is None else f"{pool.price_source}, {_age(pool.price_age_s)} old"
            p.add_row(pool.name, pool.kind, f"{pool.nodes_alive}/{pool.nodes_requested}", f"{pool.gpus_busy:g}",
                      f"{pool.gpus_idle:g}", f"{pool.gpus_pending:g}", price, src)
        parts.append(p)

    if head:
        d = Table(title="recent scaling decisions")
        if snap.recent_decisions:
            for col in ("at", "pool", "change", "reason", "why"):
                d.add_column(col)
            for dec in list(snap.recent_decisions)[-10:][::-1]:
                d.add_row(datetime.fromtimestamp(dec["at"]).strftime("%H:%M:%S"), dec["pool"],
                          f"{dec['direction']} → {dec['target']} ({dec['delta']:+d})", dec["reason"], dec["text"])
        else:
            for col in ("pool", "reason", "decisions"):
                d.add_column(col)
            for pool_name, reason, n in sorted(snap.decisions):
                d.add_row(pool_name, reason, str(n))
            if not snap.decisions:
                d.add_row("—", "no decision yet", "0")
        parts.append(d)
        if snap.budget_usd is not None:
            spend = snap.spend_today_usd or 0.0
            share = spend / snap.budget_usd * 100 if snap.budget_usd else 0.0
            style = "red" if share >= 90 else ("yellow" if share >= 75 else "green")
            parts.append(Text.assemble("cloud spend today ", (f"${spend:,.2f}", style),
                                       f" of ${snap.budget_usd:,.2f} budget ({share:.1f} %)"))

    pr = Table(title="providers")
    for col in ("provider", "GPUs", "utilization", "jobs completed", "earnings ËDSC"):
        pr.add_column(col, justify="left" if col == "provider" else "right", no_wrap=col == "provider")
    for prov in snap.providers:
        pr.add_row(prov.address, str(prov.gpus), f"{prov.utilization_pct:.0f} %", str(prov.jobs_completed),
                   f"{prov.earnings_planck / PLANCK_PER_EDSC:,.6f}")
    parts.append(pr)

    f = Table(title="claims, failures, errors", show_header=False)
    f.add_column("what")
    f.add_column("count", justify="right")
    f.add_row("claims won / lost", f"{snap.claims.get('won', 0)} / {snap.claims.get('lost', 0)}")
    for reason, n in sorted(snap.failures.items(), key=lambda kv: -kv[1]):
        f.add_row(f"failed: {reason}", str(n))
    for reason, n in sorted(snap.skipped.items(), key=lambda kv: -kv[1]):
        f.add_row(f"skipped: {reason}", str(n))
    # not failures: runs lost to a preempted node (run again free) and to crashes (each spends a retry)
    for pool, n in sorted(snap.preemptions.items(), key=lambda kv: -kv[1]):
        f.add_row(f"preempted, run again: {pool}", str(n))
    if snap.retries:
        f.add_row("crashed, retried", str(snap.retries))
    errors = {k: v for k, v in snap.rpc_errors.items() if v}
    f.add_row("chain RPC errors", ", ".join(f"{k} {v}" for k, v in errors.items()) or "none")
    parts.append(f)
    return Group(*parts)
