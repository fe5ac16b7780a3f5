"""The scaling policy: a pure function from a snapshot (and its own memory) to per-pool decisions.

Rules, in the order they are weighed for each pool (thresholds and windows from the config):

- bounds: a pool below `min_nodes` grows to it, above `max_nodes` shrinks to it — always;
- steered demand (immediate): placement bought new nodes for jobs that pay for them — request
  them now. This is the queue-aware pre-scaling that makes a spike reach the autoscaler in one
  tick instead of the seed's 60 s sustain + 15 s HPA sync; placement already checked price,
  budget, TEE and residency, so nothing unprofitable is requested this way;
- the seed's rules: queue depth > `scale_up_queue_per_gpu` jobs per GPU sustained for
  `scale_up_sustain_s` → +`scale_up_factor` (+50 %, at least one node); average wait of the
  pool's queued jobs > `scale_up_wait_s` while they exceed its capacity → +1 node (at most once
  per `scale_up_wait_s`); queue depth < `scale_down_queue_per_gpu` for `scale_down_sustain_s`
  → −`scale_down_factor` (−10 %, at least one node). Growth is capped at the nodes the pool's
  demand could use at once, and for cloud pools by the max spot price and the daily budget;
- idle timeout: alive nodes idle for `idle_timeout_s` go (what Ray/KubeRay do on their own —
  modelled here so the simulator and the head agree); starting nodes nobody is steered to
  any more are cancelled;
- never below the pool's busy nodes, nor below what the jobs steered to it need right now (a
  decision never asks to kill running work or a node that work was just sent to).

Stabilization: no decision in the opposite direction of the pool's last one within
`stabilization_s` (bounds excepted), and a sustained window restarts after its rule fires —
the up threshold (5/GPU) and the down threshold (1/GPU) are far apart, so it never thrashes.

Memory is a frozen value returned alongside the decisions; the caller passes it back next tick.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from operator import attrgetter
from typing import Any, Literal

from etrid_ray.config import ScalingSettings
from etrid_ray.scaling.outlook import Outlook
from etrid_ray.scaling.placement import PlacementPlan, place, within_max_price
from etrid_ray.scaling.state import PoolState, QueuedJob, Snapshot


class Reason(StrEnum):
    """Why a pool's target changed: short codes for logs and metric labels."""

    MIN_NODES = "min_nodes"
    MAX_NODES = "max_nodes"
    STEERED_DEMAND = "steered_demand"
    QUEUE_DEPTH = "queue_depth"
    AVG_WAIT = "avg_wait"
    QUEUE_LOW = "queue_low"
    IDLE_TIMEOUT = "idle_timeout"
    DRAINED = "drained"
    UNAVAILABLE = "unavailable"  # requested nodes never joined: requests withdrawn, the pool backs off
    # baselines
    PENDING_DEMAND = "pending_demand"
    NO_BURST = "no_burst"
    HPA_UP = "hpa_up"
    HPA_DOWN = "hpa_down"


@dataclass(frozen=True)
class Decision:
    """Set pool `pool` to `target` nodes (alive + starting); `delta` = target − nodes now."""

    pool: str
    target: int
    delta: int
    reason: Reason
    text: str

    @property
    def direction(self) -> Literal["up", "down"]:
        return "up" if self.delta > 0 else "down"


@dataclass(frozen=True)
class PoolMemory:
    """What the policy remembers about one pool between ticks."""

    over_since: float | None = None  # queue depth above the up threshold since
    under_since: float | None = None  # queue depth below the down threshold since
    last_up: float | None = None
    last_down: float | None = None


@dataclass(frozen=True)
class PolicyMemory:
    pools: Mapping[str, PoolMemory] = field(default_factory=dict)
    outlook: Outlook = field(default_factory=Outlook)  # what the queue has taught so far

    def get(self, name: str) -> PoolMemory:
        return self.pools.get(name, _EMPTY)


_EMPTY = PoolMemory()
_GPUS, _SINCE = attrgetter("gpus"), attrgetter("waiting_since")

# Every policy (ours, the baselines, the HPA model) has this shape, so the head and the simulator
# can swap them: decide(snapshot, config, memory or None) -> (decisions, memory for the next tick).
DecideFn = Callable[[Snapshot, ScalingSettings, Any], tuple[list[Decision], Any]]
PlaceFn = Callable[[Snapshot, ScalingSettings, Any], PlacementPlan]  # (snapshot, config, the policy's memory)


def held(ps: PoolState) -> bool:
    """A pool at its one allowed size (min = max nodes, e.g. the local GPUs): no rule can change it."""
    return ps.pool.min_nodes >= ps.pool.max_nodes == ps.nodes


def steered_jobs(snapshot: Snapshot, plan: PlacementPlan, *, waiting: bool = True) -> dict[str, list[QueuedJob]]:
    """Each pool's queue: the jobs steered to it, plus (with `waiting`) jobs left waiting, counted against
    the first local pool that may run them (they wait for local capacity)."""
    by_id = {j.job_id: j for j in snapshot.queue}
    if not waiting:
        out_steered: dict[str, list[QueuedJob]] = {}
        for p in plan.steered:
            out_steered.setdefault(p.pool, []).append(by_id[p.job_id])  # type: ignore[arg-type]  # steered: a pool
        return out_steered
    pools = {p.job_id: p.pool for p in plan.steered}
    first_local = snapshot.fits.first_local_name
    out: dict[str, list[QueuedJob]] = {}
    for job_id in plan.job_ids:
        job = by_id[job_id]
        name = pools.get(job_id) or first_local(job)
        if name is None:
            continue
        jobs = out.get(name)
        if jobs is None:
            out[name] = [job]
        else:
            jobs.append(job)
    return out


def place_profit(snapshot: Snapshot, config: ScalingSettings, memory: PolicyMemory | None = None) -> PlacementPlan:
    """The profit-aware placement with what the queue has taught so far (the policy's memory)."""
    outlook = (memory if memory is not None else PolicyMemory()).outlook
    return place(snapshot, config, outlook=outlook.current(snapshot.now))


def decide(snapshot: Snapshot, config: ScalingSettings, memory: PolicyMemory | None = None, *,
           plan: PlacementPlan | None = None) -> tuple[list[Decision], PolicyMemory]:
    """The profit-aware policy with the seed's rules. Pass `plan` when the caller already placed
    the queue (the head steers with the same plan), else it is computed here. The plan's view of the
    queue (what it started locally, what overflowed) is what the outlook learns from."""
    mem = memory if memory is not None else PolicyMemory()
    plan = plan if plan is not None else place_profit(snapshot, config, mem)
    outlook = mem.outlook.observe(snapshot, plan.local, plan.waiting_sizes, plan.new_overflow)
    # the jobs waiting for local GPUs count only against a local pool some rule could resize
    queues = steered_jobs(snapshot, plan, waiting=any(not ps.pool.is_cloud and not held(ps) for ps in snapshot.pools))
    budget_left = config.daily_cloud_budget_usd - snapshot.spend_today_usd - plan.projected_cost_usd
    decisions: list[Decision] = []
    new_mem: dict[str, PoolMemory] = {}
    for ps in snapshot.pools:
        if held(ps):  # nothing to decide, nothing to remember
            new_mem[ps.name] = mem.get(ps.name)
            continue
        decision, pm, spent = _decide_pool(ps, queues.get(ps.name, []), plan.new_nodes.get(ps.name, 0), snapshot,
                                           config, mem.get(ps.name), budget_left)
        budget_left -= spent
        new_mem[ps.name] = pm
        if decision is not None:
            decisions.append(decision)
    return decisions, PolicyMemory(new_mem, outlook)


def _decide_pool(ps: PoolState, jobs: Sequence[QueuedJob], new_nodes: int, snapshot: Snapshot,
                 config: ScalingSettings, pm: PoolMemory, budget_left: float
                 ) -> tuple[Decision | None, PoolMemory, float]:
    pool, now, cur = ps.pool, snapshot.now, ps.nodes
    lo, hi = pool.min_nodes, max(pool.min_nodes, pool.max_nodes)
    gpn = pool.gpus_per_node
    depth = len(jobs) / (cur * gpn) if cur else (math.inf if jobs else 0.0)
    over = depth > config.scale_up_queue_per_gpu
    under = depth < config.scale_down_queue_per_gpu
    over_since = (pm.over_since if pm.over_since is not None else now) if over else None
    under_since = (pm.under_since if pm.under_since is not None else now) if under else None
    if over_since != pm.over_since or under_since != pm.under_since:  # (most ticks change neither)
        pm = replace(pm, over_since=over_since, under_since=under_since)
    demand_gpus = sum(map(_GPUS, jobs))
    needed = math.ceil((max(ps.gpus_busy, 0.0) + demand_gpus) / gpn - 1e-9)  # nodes running all of it at once
    usable = max(cur, needed)
    unmet = demand_gpus - ps.free_capacity

    target, reason, text = cur, None, ""
    floor_cost = 0.0  # the least a rule-driven extra cloud node costs: its startup and idle tail
    # --- growth ---
    if new_nodes > 0:
        target, reason = cur + new_nodes, Reason.STEERED_DEMAND
        text = f"{new_nodes} new node(s) pay for the jobs steered here"
    if pm.over_since is not None and now - pm.over_since >= config.scale_up_sustain_s:
        t = min(max(cur + 1, math.ceil(cur * (1 + config.scale_up_factor) - 1e-9)), usable)
        if t > target:
            target, reason = t, Reason.QUEUE_DEPTH
            text = (f"queue {len(jobs)} jobs = {depth:.3g}/GPU > {config.scale_up_queue_per_gpu:g} for "
                    f"{now - pm.over_since:.0f} s: +{config.scale_up_factor:.0%}")
    if jobs and unmet > 0 and (pm.last_up is None or now - pm.last_up >= config.scale_up_wait_s):
        avg_wait = sum(now - t for t in map(_SINCE, jobs)) / len(jobs)
        if avg_wait > config.scale_up_wait_s and min(cur + 1, usable) > target:
            target, reason = min(cur + 1, usable), Reason.AVG_WAIT
            text = f"average wait {avg_wait:.0f} s > {config.scale_up_wait_s:g} s"
    if pool.is_cloud and target > cur + new_nodes:
        # rule-driven growth beyond what placement bought: within the max price and the daily budget
        quote = snapshot.prices.get(pool.name)
        allowed = 0
        if quote is not None and within_max_price(pool, quote):
            floor_cost = quote.usd_per_node_hour * (pool.startup_s + config.idle_timeout_s) / 3600
            allowed = target - cur - new_nodes
            if floor_cost > 0:
                allowed = max(0, min(allowed, math.floor(budget_left / floor_cost + 1e-9)))
        if cur + new_nodes + allowed < target:
            target = cur + new_nodes + allowed
            if new_nodes > 0 and target == cur + new_nodes:
                reason, text = Reason.STEERED_DEMAND, f"{new_nodes} new node(s) pay for the jobs steered here"
    if cur > hi:
        target, reason, text = hi, Reason.MAX_NODES, f"above max_nodes {hi}"
    elif cur < lo:
        target, reason, text = max(min(target, hi), lo), Reason.MIN_NODES, f"below min_nodes {lo}"
    else:
        target = min(target, hi)
    # --- shrinking (only when nothing asks for growth) ---
    if target == cur:
        floor = max(lo, ps.busy_nodes, min(cur, needed))  # never below busy nodes or what steered jobs need now
        expired = sum(1 for t in ps.idle_since if t is not None and now - t >= config.idle_timeout_s)
        downs: list[tuple[int, Reason, str]] = []
        if expired:
            downs.append((max(floor, cur - expired), Reason.IDLE_TIMEOUT,
                          f"{expired} node(s) idle ≥ {config.idle_timeout_s:g} s"))
        if not jobs and ps.pending > 0:
            downs.append((max(floor, ps.alive), Reason.DRAINED, f"{ps.pending} starting node(s) no longer needed"))
        if pm.under_since is not None and now - pm.under_since >= config.scale_down_sustain_s and cur > floor:
            step = max(1, math.floor(cur * config.scale_down_factor + 1e-9))
            downs.append((max(floor, cur - step), Reason.QUEUE_LOW,
                          f"queue {depth:.3g}/GPU < {config.scale_down_queue_per_gpu:g} for "
                          f"{now - pm.under_since:.0f} s: −{config.scale_down_factor:.0%}"))
        downs = [d for d in downs if d[0] < cur]
        if downs:
            target, reason, text = min(downs, key=lambda d: d[0])
    if target == cur or reason is None:
        return None, pm, 0.0
    # --- stabilization: never reverse within the window (bounds always apply; so does the idle timeout:
    # a node idle for the whole timeout already shows there is no demand, and keeping it only costs —
    # the seed removes idle nodes after 5 minutes, target P4 wants them gone within idle timeout + 10 s) ---
    stab = config.stabilization_s
    if reason not in (Reason.MIN_NODES, Reason.MAX_NODES, Reason.IDLE_TIMEOUT):
        last_opposite = pm.last_down if target > cur else pm.last_up
        if last_opposite is not None and now - last_opposite < stab:
            return None, pm, 0.0
    spent = 0.0
    if target > cur:
        pm = replace(pm, last_up=now, over_since=now if reason is Reason.QUEUE_DEPTH else pm.over_since)
        spent = max(0, target - cur - new_nodes) * floor_cost
    else:
        pm = replace(pm, last_down=now, under_since=now if reason is Reason.QUEUE_LOW else pm.under_since)
    return Decision(pool.name, target, target - cur, reason, text), pm, spent


def apply(decisions: Sequence[Decision], snapshot: Snapshot) -> dict[str, int]:
    """Targets per pool after the decisions (pools without one keep their node count): what a loop
    turns into `request_resources` bundles and a simulator into node launches and removals."""
    targets = {ps.name: ps.nodes for ps in snapshot.pools}
    for d in decisions:
        targets[d.pool] = d.target
    return targets
