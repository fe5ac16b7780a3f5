"""The seed's scaling rules as a Kubernetes HorizontalPodAutoscaler would apply them: the baseline.

Why model it: the targets (P3, E1, E3) compare our policy with "the seed's HPA rules" on the same
clock, in the same run. What the seed configured, and how an HPA acts on it:

- the HPA controller evaluates its metrics once per sync period (15 s, kube-controller-manager's
  `--horizontal-pod-autoscaler-sync-period` default), never in between;
- metrics: queue depth per GPU (target 5) and average wait (target 30 s); a scale-up happens only
  after the condition held for the whole 60 s scale-up stabilization window, +50 % of the
  replicas (at least one), then the window starts over; a scale-down after 300 s below 1 per
  GPU, −10 % (at least one). So a spike is answered after ≥ 60 s, typically 60–75 s;
- pod-level and cost-blind: replicas are worker pods (one pod per node here, as in KubeRay);
  the cluster autoscaler puts a new pod in any node pool that has room (its default expander is
  random — modelled as round-robin so runs are repeatable), not the cheapest, and the HPA knows
  nothing of job prices, budgets, TEE or residency (only the cloud's own max spot price holds);
- replicas stay until the HPA removes them (pods do not idle out); removal takes idle pods first
  and never running ones (the kindest reading: graceful termination lets jobs finish).

Same shape as every policy: `hpa_decide(snapshot, config, memory, plan=plan) -> (decisions, memory)`; the
plan is ignored — an HPA sizes replicas from its metrics, never from where jobs were steered.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from etrid_ray.config import ScalingSettings
from etrid_ray.scaling.eligibility import eligible
from etrid_ray.scaling.placement import Placement, PlacementPlan, PlaceReason, queue_order, take_slot, within_max_price
from etrid_ray.scaling.policy import DecideFn, Decision, Reason
from etrid_ray.scaling.state import PoolState, Snapshot

HPA_SYNC_PERIOD_S = 15.0


@dataclass(frozen=True)
class HpaMemory:
    last_sync: float | None = None
    over_since: float | None = None  # first sync that saw the up condition, held at every sync since
    under_since: float | None = None
    next_pool: int = 0  # round-robin position of the cost-blind expander


def hpa_decide(snapshot: Snapshot, config: ScalingSettings, memory: HpaMemory | None = None, *,
               plan: PlacementPlan | None = None,
               sync_period_s: float = HPA_SYNC_PERIOD_S) -> tuple[list[Decision], HpaMemory]:
    mem = memory if memory is not None else HpaMemory()
    now = snapshot.now
    if mem.last_sync is not None and now - mem.last_sync < sync_period_s:
        return [], mem
    mem = replace(mem, last_sync=now)
    gpus = sum(ps.nodes * ps.pool.gpus_per_node for ps in snapshot.pools)
    queued = len(snapshot.queue)
    depth = queued / gpus if gpus else (math.inf if queued else 0.0)
    avg_wait = sum(now - j.waiting_since for j in snapshot.queue) / queued if queued else 0.0
    up = depth > config.scale_up_queue_per_gpu or avg_wait > config.scale_up_wait_s
    down = depth < config.scale_down_queue_per_gpu
    mem = replace(mem, over_since=(mem.over_since if mem.over_since is not None else now) if up else None,
                  under_since=(mem.under_since if mem.under_since is not None else now) if down else None)
    targets = {ps.name: ps.nodes for ps in snapshot.pools}
    reasons: dict[str, tuple[Reason, str]] = {}
    cloud = [ps for ps in snapshot.pools if ps.pool.is_cloud]
    if mem.over_since is not None and now - mem.over_since >= config.scale_up_sustain_s:
        replicas = sum(ps.nodes for ps in snapshot.pools)
        add = max(1, math.ceil(replicas * config.scale_up_factor - 1e-9))
        growable = [ps for ps in cloud if _cloud_would_fill(ps, snapshot)]
        i = mem.next_pool
        while add > 0 and any(targets[ps.name] < ps.pool.max_nodes for ps in growable):
            ps = growable[i % len(growable)]
            i += 1
            if targets[ps.name] < ps.pool.max_nodes:
                targets[ps.name] += 1
                add -= 1
                reasons[ps.name] = (Reason.HPA_UP, f"queue {depth:.3g}/GPU, wait {avg_wait:.0f} s, held "
                                    f"{now - mem.over_since:.0f} s: +{config.scale_up_factor:.0%} replicas")
        mem = replace(mem, over_since=now, next_pool=i % max(1, len(growable)))
    elif mem.under_since is not None and now - mem.under_since >= config.scale_down_sustain_s:
        replicas = sum(ps.nodes for ps in cloud)
        remove = max(1, math.floor(replicas * config.scale_down_factor + 1e-9))
        for ps in sorted(cloud, key=lambda p: (-(p.nodes - _floor(p)), p.name)):
            take = min(remove, max(0, ps.nodes - _floor(ps)))
            if take:
                targets[ps.name] -= take
                remove -= take
                reasons[ps.name] = (Reason.HPA_DOWN, f"queue {depth:.3g}/GPU < {config.scale_down_queue_per_gpu:g} "
                                    f"for {now - mem.under_since:.0f} s: −{config.scale_down_factor:.0%} replicas")
        mem = replace(mem, under_since=now)
    decisions = []
    for ps in snapshot.pools:
        lo, hi = ps.pool.min_nodes, max(ps.pool.min_nodes, ps.pool.max_nodes)
        target = min(max(targets[ps.name], lo), hi)
        if target == ps.nodes:
            continue
        if ps.nodes < lo:
            reason, text = Reason.MIN_NODES, f"below min_nodes {lo}"
        elif ps.nodes > hi:
            reason, text = Reason.MAX_NODES, f"above max_nodes {hi}"
        else:
            reason, text = reasons[ps.name]
        decisions.append(Decision(ps.name, target, target - ps.nodes, reason, text))
    return decisions, mem


def _floor(ps: PoolState) -> int:
    return max(ps.pool.min_nodes, ps.busy_nodes)


def _cloud_would_fill(ps: PoolState, snapshot: Snapshot) -> bool:
    """A spot request above the pool's max price is never filled by the cloud, HPA or not; nor is one to a pool
    whose last requests never came (`scaling.capacity`)."""
    quote = snapshot.prices.get(ps.name)
    return quote is not None and within_max_price(ps.pool, quote) and ps.unavailable is None


def hpa_place(snapshot: Snapshot, config: ScalingSettings, memory: Any = None) -> PlacementPlan:
    """Where jobs run under the HPA: any node with room (first come, first served), cost-blind; no
    new nodes are bought for them — only the HPA's rules add replicas."""
    free = {ps.name: ps.free_capacity for ps in snapshot.pools}
    slots = {ps.name: ps.node_slots() for ps in snapshot.pools}
    out = []
    for j in queue_order(snapshot.queue):
        for ps in snapshot.pools:
            if free[ps.name] >= j.gpus and eligible(j, ps.pool) and take_slot(slots[ps.name], j.gpus):
                free[ps.name] -= j.gpus
                reason = PlaceReason.LOCAL if not ps.pool.is_cloud else PlaceReason.CLOUD_CAPACITY
                out.append(Placement(j.job_id, ps.name, reason, f"room on {ps.name}"))
                break
        else:
            out.append(Placement(j.job_id, None, PlaceReason.POOL_FULL, "no room on any node; waits for replicas"))
    return PlacementPlan(tuple(out))


def first_scale_up(decide_fn: DecideFn, snapshots: Iterable[Snapshot], config: ScalingSettings
                   ) -> tuple[float, Decision] | None:
    """Feeds snapshots (one clock, ascending `now`) to a policy, carrying its memory, and returns the
    time and decision of its first growth of a pool that is not a min_nodes correction — how a
    benchmark compares "spike → first scale-up request" between policies on the same clock."""
    memory = None
    for snap in snapshots:
        decisions, memory = decide_fn(snap, config, memory)
        for d in decisions:
            if d.delta > 0 and d.reason is not Reason.MIN_NODES:
                return snap.now, d
    return None
