"""The clairvoyant upper bound ("oracle"): the most net profit any policy could make on a trace.

It knows every arrival and every duration in advance, and it is a *bound*, not a schedule: it
solves a relaxation that every real run also satisfies, so no policy can beat it (tests check
that on small traces). What the relaxation gives away:

- cloud GPUs are bought per busy GPU-second at the pool's per-GPU spot price — no startup, no
  idle tail, no half-empty node, no interruption (a real node costs at least that much per
  GPU-second of work it runs);
- local and cloud capacity are fluids: a job's work may be split across pools, paused and
  resumed, within its window — from its arrival to its patience plus its duration (a job that
  starts within its patience finishes by then) — at no more than its own GPU count at any moment
  (a real job runs on exactly its GPUs), and never beyond a pool's GPUs (local: all nodes; cloud:
  `max_nodes` × GPUs per node, within the max spot price); a job earns for the part processed;
- revenue is earned per GPU-hour processed, at the scenario's price less the chain's fee.

With one price per GPU-hour (the scenario's), every GPU-hour earns the same, and pools differ
only by their cost: margin m = net price − cost per GPU-hour (local: electricity). With pools
ordered by margin m₁ ≥ m₂ ≥ … > 0 and W*(c) the most work a fluid machine of c GPUs can process
within the jobs' windows and rate caps, any schedule's profit Σ mₖ·xₖ = Σₖ (mₖ − mₖ₊₁)·(x₁ + … + xₖ)
is at most Σₖ (mₖ − mₖ₊₁)·W*(c₁ + … + cₖ). That sum is the bound.

W*(c) is the smaller of two relaxations, each solved exactly:

- **rate-capped max-flow** (`max_capped_work`): time cut into buckets; source → job (its work) →
  bucket (its GPUs × the part of its window inside the bucket) → sink (c × the bucket's length).
  Any real schedule is such a flow (sum its work per bucket), so the maximum flow bounds it; the
  buckets only let work move *within* a bucket, which is why their size hardly matters (the
  whole Philly trace: 573,421 GPU-hours at 1 h buckets, 573,372 at 5 min);
- **uncapped fluid, earliest-deadline-first** (`max_fluid_work`): exact timing, no rate cap.

The rate cap is what makes the bound tight: without it a week-long 1-GPU job could be done by
320 GPUs in half an hour in some idle gap, and the local-only bound on Philly was 12 % higher.

A caveat, said plainly: a job re-queued after a spot interruption may finish after its window;
the bound does not count such late work (interrupted work costs more than it earns back in
practice, so this does not bite; the tests' oracle checks run without interruptions).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_array
from scipy.sparse.csgraph import maximum_flow

from etrid_ray.scaling.eligibility import eligible
from etrid_ray.scaling.placement import within_max_price
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


BUCKET_S = 1800.0  # the max-flow's time buckets (the bound moves by < 0.01 % from 1 h down to 5 min on Philly)
_MAX_UNITS = 1.0e9  # capacities are int32 in SciPy's max-flow: work is counted in units that keep sums below


def max_capped_work(jobs: Sequence[tuple[float, float, float, float]], capacity: float,
                    bucket_s: float = BUCKET_S) -> float:
    """Most work (GPU-seconds) a fluid machine of `capacity` GPUs can process, each job
    (release, deadline, work, GPUs) only within [release, deadline] and at most its GPUs at a time.

    Solved as a maximum flow over time buckets (source → job → bucket → sink). Every capacity is
    rounded *up* to whole units, so the answer stays an upper bound. A job with no deadline can
    always be processed in full later: it is counted whole, outside the flow."""
    if capacity <= 0 or not jobs:
        return 0.0
    arr = np.asarray(jobs, dtype=float).reshape(-1, 4)
    release, deadline, work, rate = arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3]
    keep = (work > 0) & (deadline > release)
    endless = keep & ~np.isfinite(deadline)
    done = float(work[endless].sum())
    keep &= np.isfinite(deadline)
    release, deadline, work, rate = release[keep], deadline[keep], work[keep], rate[keep]
    n = len(work)
    if n == 0:
        return done
    unit = max(1.0, math.ceil(float(work.sum()) / _MAX_UNITS))
    first = np.floor(release / bucket_s).astype(np.int64)
    last = np.maximum(first, np.ceil(deadline / bucket_s).astype(np.int64) - 1)
    span = last - first + 1
    job = np.repeat(np.arange(n), span)
    bucket = np.repeat(first, span) + (np.arange(len(job)) - np.repeat(np.cumsum(span) - span, span))
    overlap = np.minimum(deadline[job], (bucket + 1) * bucket_s) - np.maximum(release[job], bucket * bucket_s)
    buckets = int(last.max()) + 1
    # node ids: 0 source, 1 sink, 2.. jobs, then buckets
    src_job = (np.zeros(n, np.int64), 2 + np.arange(n), np.ceil(work / unit))
    job_bucket = (2 + job, 2 + n + bucket, np.ceil(np.maximum(overlap, 0.0) * rate[job] / unit))
    bucket_sink = (2 + n + np.arange(buckets), np.ones(buckets, np.int64),
                   np.full(buckets, math.ceil(capacity * bucket_s / unit), dtype=float))
    rows, cols, caps = (np.concatenate(parts) for parts in zip(src_job, job_bucket, bucket_sink, strict=True))
    size = 2 + n + buckets
    graph = csr_array((caps.astype(np.int32), (rows, cols)), shape=(size, size))
    return done + float(maximum_flow(graph, 0, 1, method="dinic").flow_value) * unit


def max_work(jobs: Sequence[tuple[float, float, float, float]], capacity: float) -> float:
    """W*(capacity): the tighter of the two exact relaxations (both bound every real schedule)."""
    capped = max_capped_work(jobs, capacity)
    fluid = max_fluid_work([(r, d, w) for r, d, w, _ in jobs], capacity)
    return min(capped, fluid)


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
            rate = max(j.gpus, 0.01)
            windows.append((j.submit_s, j.submit_s + patience + j.duration_s, rate * j.duration_s, rate))
    # W*(c1 + … + ck) for each prefix of tiers
    prefix_work = []
    cap = 0.0
    for _, gpus, _ in tiers:
        cap += gpus
        prefix_work.append(max_work(windows, cap))
    local_tiers = [t for t in tiers if not next(p for p in sc.pools if p.name == t[0]).is_cloud]
    local_only = 0.0
    if len(local_tiers) == 1:  # the same bound with the local pool alone (the best tier: reuse its W*)
        _, gpus, margin = local_tiers[0]
        work = prefix_work[0] if tiers[0] == local_tiers[0] else max_work(windows, gpus)
        local_only = margin * work / 3600
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
