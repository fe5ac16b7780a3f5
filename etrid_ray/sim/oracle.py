"""The clairvoyant upper bound ("oracle"): the most net profit any policy could make on a trace.

It knows every arrival and every duration in advance, and it is a *bound*, not a schedule: it
solves a relaxation that every real run also satisfies, so no policy can beat it (tests check
that on small traces). What the relaxation gives away:

- cloud GPUs are bought per busy GPU-second at the pool's per-GPU spot price — no startup, no
  idle tail, no half-empty node, no interruption (a real node costs at least that much per
  GPU-second of work it runs);
- local and cloud capacity are fluids: a job's work may be split across pools and over time, at
  any rate, within its window — from its arrival to its patience plus its duration (a job that
  starts within its patience finishes by then) — but never beyond a pool's GPUs (local: all
  nodes; cloud: `max_nodes` × GPUs per node, within the max spot price);
- revenue is earned per GPU-hour processed, at the scenario's price less the chain's fee.

With one price per GPU-hour (the scenario's), every GPU-hour earns the same, and pools differ
only by their cost: margin m = net price − cost per GPU-hour (local: electricity). With pools
ordered by margin m₁ ≥ m₂ ≥ … > 0 and W*(c) the most work a fluid machine of c GPUs can process
within the jobs' windows (earliest-deadline-first is optimal for that: one machine, preemption,
partial credit), any schedule's profit Σ mₖ·xₖ = Σₖ (mₖ − mₖ₊₁)·(x₁ + … + xₖ) is at most
Σₖ (mₖ − mₖ₊₁)·W*(c₁ + … + cₖ). That sum is the bound.

A caveat, said plainly: a job re-queued after a spot interruption may finish after its window;
the bound does not count such late work (interrupted work costs more than it earns back in
practice, so this does not bite; the tests' oracle checks run without interruptions).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

from etrid_ray.scaling.placement import eligible, within_max_price
from etrid_ray.scaling.state import QueuedJob
from etrid_ray.sim.scenario import Scenario, SimSettings, build_scenario
from etrid_ray.sim.trace import SimJob, Trace


@dataclass(frozen=True)
class OracleBound:
    net_profit_usd: float
    revenue_usd: float  # of the work the bound's best split processes
    cloud_cost_usd: float
    local_power_usd: float
    gpu_hours: float  # processed
    local_gpu_hours: float
    tiers: tuple[tuple[str, float, float], ...]  # (pool, GPUs, margin USD per GPU-hour), best first
    local_only_usd: float = 0.0  # the same bound with the local pools alone: the relaxation's own slack

    def to_json(self) -> dict[str, object]:
        return {"policy": "oracle", "net_profit_usd": round(self.net_profit_usd, 2),
                "revenue_usd": round(self.revenue_usd, 2), "cloud_cost_usd": round(self.cloud_cost_usd, 2),
                "local_power_usd": round(self.local_power_usd, 2), "gpu_hours": round(self.gpu_hours, 1),
                "local_gpu_hours": round(self.local_gpu_hours, 1), "local_only_usd": round(self.local_only_usd, 2),
                "tiers": [{"pool": p, "gpus": g, "margin_usd_per_gpu_hour": round(m, 4)} for p, g, m in self.tiers]}


def max_fluid_work(windows: Sequence[tuple[float, float, float]], capacity: float) -> float:
    """Most work (GPU-seconds) one fluid machine of `capacity` GPUs can process, each job
    (release, deadline, work) only within [release, deadline]: earliest deadline first."""
    if capacity <= 0:
        return 0.0
    jobs = sorted(windows)
    heap: list[list[float]] = []  # [deadline, remaining work]
    t = 0.0
    done = 0.0
    i, n = 0, len(jobs)
    while i < n or heap:
        if not heap and i < n:
            t = max(t, jobs[i][0])
        while i < n and jobs[i][0] <= t:
            r, d, w = jobs[i]
            if d > t and w > 0:
                heapq.heappush(heap, [d, w])
            i += 1
        horizon = jobs[i][0] if i < n else math.inf
        while heap and t < horizon:
            top = heap[0]
            deadline, work = top
            if deadline <= t:
                heapq.heappop(heap)
                continue
            end = min(deadline, horizon, t + work / capacity)
            amount = (end - t) * capacity
            if amount >= work - 1e-9 or end <= t:  # finished (or too little left to move the clock)
                done += work
                heapq.heappop(heap)
            else:
                done += amount
                top[1] = work - amount
                if end >= deadline:
                    heapq.heappop(heap)
            t = end
        t = max(t, horizon) if i < n else t
    return done


def oracle_bound(trace: Trace | Sequence[SimJob], scenario: Scenario | SimSettings | None = None) -> OracleBound:
    sc = scenario if isinstance(scenario, Scenario) else build_scenario(scenario or SimSettings())
    jobs = trace.jobs if isinstance(trace, Trace) else tuple(trace)
    net = sc.net_usd_per_gpu_hour
    # tiers: (pool, GPUs, margin per GPU-hour); cloud pools only when priced within their max price
    tiers: list[tuple[str, float, float]] = []
    usable = []
    for p in sc.pools:
        if p.is_cloud:
            q = sc.prices.get(p.name)
            if q is None or not within_max_price(p, q):
                continue
            usable.append(p)
            tiers.append((p.name, float(p.max_nodes * p.gpus_per_node), net - q.usd_per_gpu_hour))
        else:
            usable.append(p)
            tiers.append((p.name, float(p.min_nodes * p.gpus_per_node), net - p.local_cost_per_gpu_hour()))
    tiers = [t for t in sorted(tiers, key=lambda t: -t[2]) if t[2] > 0 and t[1] > 0]
    patience = sc.settings.patience_s if sc.settings.patience_s is not None else math.inf
    windows = []
    for j in jobs:
        probe = QueuedJob(job_id=j.job_id, gpus=j.gpus, price_per_gpu_s=0.0, expected_duration_s=j.duration_s,
                          waiting_since=j.submit_s)
        if any(eligible(probe, p) for p in usable):  # the same jobs the simulator serves
            windows.append((j.submit_s, j.submit_s + patience + j.duration_s, max(j.gpus, 0.01) * j.duration_s))
    # W*(c1 + … + ck) for each prefix of tiers
    prefix_work = []
    cap = 0.0
    for _, gpus, _ in tiers:
        cap += gpus
        prefix_work.append(max_fluid_work(windows, cap))
    local_tiers = [t for t in tiers if not next(p for p in sc.pools if p.name == t[0]).is_cloud]
    local_only = sum(m for _, _, m in local_tiers[:1]) * max_fluid_work(windows, sum(g for _, g, _ in local_tiers)) \
        / 3600 if len(local_tiers) == 1 else 0.0
    profit = 0.0
    for k, (_, _, margin) in enumerate(tiers):
        nxt = tiers[k + 1][2] if k + 1 < len(tiers) else 0.0
        profit += (margin - nxt) * prefix_work[k] / 3600
    # a split that attains the bound's terms: each tier processes W*(prefix) − W*(previous prefix)
    gpu_h = prefix_work[-1] / 3600 if prefix_work else 0.0
    local_h = cloud_cost = power = 0.0
    prev = 0.0
    for k, (name, _, margin) in enumerate(tiers):
        share = (prefix_work[k] - prev) / 3600
        prev = prefix_work[k]
        cost = (net - margin) * share
        pool = next(p for p in sc.pools if p.name == name)
        if pool.is_cloud:
            cloud_cost += cost
        else:
            power += cost
            local_h += share
    return OracleBound(net_profit_usd=profit, revenue_usd=net * gpu_h, cloud_cost_usd=cloud_cost,
                       local_power_usd=power, gpu_hours=gpu_h, local_gpu_hours=local_h, tiers=tuple(tiers),
                       local_only_usd=local_only)
