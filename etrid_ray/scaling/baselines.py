"""Baseline policies the profit-aware one is measured against (targets E1–E3).

Each is a pair of pure functions with the same shapes as ours — `place(snapshot, config)` and
`decide(snapshot, config, memory, plan=plan)` — so `scaling.tick` runs them, live and simulated, through
the same code paths (a `decide` handed no plan places the queue itself, as its `place` would):

- `ray_default`: what Ray's autoscaler does with no cost view: every pending job that does not
  fit becomes demand, served by the cheapest pool that can run it (KubeRay `priority` is
  cost-ordered), whatever the job pays and whatever the budget; launches paced like Ray's
  `upscaling_speed` (pending nodes ≤ max(5, speed × running)); nodes leave only by idle timeout.
- `always_burst_cheapest`: every job that does not fit locally bursts at once to the cheapest
  eligible pool, within the daily budget; nodes leave by idle timeout.
- `never_burst`: local GPUs only; cloud pools held at their minimum.

All respect the hard rules (TEE, residency, accelerator, node size, the cloud's max spot price):
a baseline that broke them would not be a provider anyone could run.
"""

from __future__ import annotations

from typing import Any

from etrid_ray.config import ScalingSettings
from etrid_ray.scaling.eligibility import eligible
from etrid_ray.scaling.placement import (
    Placement,
    PlacementPlan,
    PlaceReason,
    cloud_pools_cheapest_first,
    place_local,
    queue_order,
    within_max_price,
)
from etrid_ray.scaling.policy import Decision, Reason
from etrid_ray.scaling.state import PoolState, Snapshot

RAY_UPSCALING_SPEED = 1.0  # Ray's default `upscaling_speed`
RAY_UPSCALING_INITIAL_NUM_NODES = 5  # ray.autoscaler._private.constants.AUTOSCALER_UPSCALING_INITIAL_NUM_NODES


def place_cheapest(snapshot: Snapshot, config: ScalingSettings, memory: Any = None, *,
                   respect_budget: bool = False) -> PlacementPlan:
    """Local first, then each job to the cheapest eligible pool with room, opening nodes as needed,
    with no profit test. With `respect_budget`, a node that would pass the daily budget is not opened."""
    jobs = queue_order(snapshot.queue)
    placed: dict[int, Placement] = {}
    remaining = place_local(jobs, snapshot, placed)
    pools = [(ps, q) for ps, q in cloud_pools_cheapest_first(snapshot)
             if q is not None and within_max_price(ps.pool, q)]
    free = {ps.name: ps.free_capacity for ps, _ in pools}
    room = {ps.name: 0 if ps.unavailable is not None else max(0, ps.pool.max_nodes - ps.nodes) for ps, _ in pools}
    new_nodes: dict[str, int] = {}
    budget_left = config.daily_cloud_budget_usd - snapshot.spend_today_usd
    projected = 0.0
    for j in remaining:
        choice: Placement | None = None
        why = (PlaceReason.NO_ELIGIBLE_POOL, "no priced cloud pool may run it")
        for ps, quote in pools:
            pool = ps.pool
            if not eligible(j, pool):
                continue
            if free[pool.name] >= j.gpus:
                free[pool.name] -= j.gpus
                choice = Placement(j.job_id, pool.name, PlaceReason.CLOUD_CAPACITY, f"room on {pool.name}")
                break
            if room[pool.name] <= 0:
                why = ((PlaceReason.UNAVAILABLE, f"{pool.name} unavailable: {ps.unavailable}")
                       if ps.unavailable is not None else
                       (PlaceReason.POOL_FULL, f"{pool.name} at max {pool.max_nodes} nodes"))
                continue
            cost = quote.usd_per_node_hour * (pool.startup_s + j.expected_duration_s + config.idle_timeout_s) / 3600
            if respect_budget and projected + cost > budget_left:
                why = (PlaceReason.BUDGET, f"a {pool.name} node would pass the daily budget")
                continue
            projected += cost
            room[pool.name] -= 1
            new_nodes[pool.name] = new_nodes.get(pool.name, 0) + 1
            free[pool.name] += pool.gpus_per_node - j.gpus
            choice = Placement(j.job_id, pool.name, PlaceReason.CLOUD_NEW_NODE, f"new {pool.name} node (cheapest)")
            break
        placed[j.job_id] = choice or Placement(j.job_id, None, why[0], why[1] + "; waits for local")
    return PlacementPlan(tuple(placed[j.job_id] for j in jobs), new_nodes, projected)


def place_local_only(snapshot: Snapshot, config: ScalingSettings, memory: Any = None) -> PlacementPlan:
    placed: dict[int, Placement] = {}
    jobs = queue_order(snapshot.queue)
    for j in place_local(jobs, snapshot, placed):
        placed[j.job_id] = Placement(j.job_id, None, PlaceReason.CLOUD_DISABLED, "never bursts; waits for local")
    return PlacementPlan(tuple(placed[j.job_id] for j in jobs))


def _demand_decisions(snapshot: Snapshot, config: ScalingSettings, plan: PlacementPlan, *,
                      pace: bool) -> list[Decision]:
    """Grow by the plan's new nodes (paced like Ray when asked); shrink only nodes idle past the timeout."""
    out: list[Decision] = []
    for ps in snapshot.pools:
        lo, hi = ps.pool.min_nodes, max(ps.pool.min_nodes, ps.pool.max_nodes)
        cur = ps.nodes
        new = plan.new_nodes.get(ps.name, 0)
        if pace:
            cap = max(RAY_UPSCALING_INITIAL_NUM_NODES, int(RAY_UPSCALING_SPEED * max(ps.alive, 1)))
            new = max(0, min(new, cap - ps.pending))
        target, reason, text = min(cur + new, hi), Reason.PENDING_DEMAND, f"{new} node(s) for pending demand"
        if target == cur:
            target, reason, text = _idle_down(ps, snapshot.now, config)
        if cur < lo:
            target, reason, text = max(lo, min(target, hi)), Reason.MIN_NODES, f"below min_nodes {lo}"
        elif cur > hi:
            target, reason, text = hi, Reason.MAX_NODES, f"above max_nodes {hi}"
        if target != cur:
            out.append(Decision(ps.name, target, target - cur, reason, text))
    return out


def _idle_down(ps: PoolState, now: float, config: ScalingSettings) -> tuple[int, Reason, str]:
    expired = sum(1 for t in ps.idle_since if t is not None and now - t >= config.idle_timeout_s)
    floor = max(ps.pool.min_nodes, ps.busy_nodes)
    return (max(floor, ps.nodes - expired), Reason.IDLE_TIMEOUT,
            f"{expired} node(s) idle ≥ {config.idle_timeout_s:g} s")


def ray_default(snapshot: Snapshot, config: ScalingSettings, memory: Any = None, *,
                plan: PlacementPlan | None = None) -> tuple[list[Decision], Any]:
    plan = plan if plan is not None else place_cheapest(snapshot, config)
    return _demand_decisions(snapshot, config, plan, pace=True), memory


def always_burst_cheapest(snapshot: Snapshot, config: ScalingSettings, memory: Any = None, *,
                          plan: PlacementPlan | None = None) -> tuple[list[Decision], Any]:
    plan = plan if plan is not None else place_always_burst_cheapest(snapshot, config)
    return _demand_decisions(snapshot, config, plan, pace=False), memory


def place_always_burst_cheapest(snapshot: Snapshot, config: ScalingSettings, memory: Any = None) -> PlacementPlan:
    return place_cheapest(snapshot, config, respect_budget=True)


def never_burst(snapshot: Snapshot, config: ScalingSettings, memory: Any = None, *,
                plan: PlacementPlan | None = None) -> tuple[list[Decision], Any]:
    """Sizes pools by their bounds alone: the plan (local placements only) changes nothing."""
    out: list[Decision] = []
    for ps in snapshot.pools:
        lo, hi = ps.pool.min_nodes, max(ps.pool.min_nodes, ps.pool.max_nodes)
        cur = ps.nodes
        if cur < lo:
            target, reason, text = lo, Reason.MIN_NODES, f"below min_nodes {lo}"
        elif cur > hi:
            target, reason, text = hi, Reason.MAX_NODES, f"above max_nodes {hi}"
        elif ps.pool.is_cloud:
            target = max(lo, ps.busy_nodes)
            reason, text = Reason.NO_BURST, "never bursts: cloud pool held at its minimum"
        else:
            continue
        if target != cur:
            out.append(Decision(ps.name, target, target - cur, reason, text))
    return out, memory

