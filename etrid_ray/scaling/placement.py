"""Profit-aware placement: which pool each queued job is steered to, and which new nodes that needs.

Local GPUs are already paid for (only electricity), so they come first. A cloud node costs
money from the moment it is requested until it is gone: its startup time, the work, and the
idle tail before the autoscaler removes it (`idle_timeout_s`). A new cloud node is therefore
bought only when the jobs it would serve over that whole life pay more than it costs — the
seed compared per-GPU revenue with per-instance cost; this compares like with like, per node
life and per GPU. Hard rules come before money: TEE type, residency (GDPR → EU regions, via
admission's `region_allowed`), accelerator, GPUs per node, the pool's max spot price and the
daily cloud budget. Among eligible cloud pools the cheapest per GPU-hour is tried first.

Two facts from the cloud market (etrid_ray/clouds) ride on the quote: `quota_headroom_nodes`
caps how many new nodes a pool may get (0 — no quota, no capacity, SKU restricted — means none:
`NO_CAPACITY`), and `interruption_rate` raises the pool's effective cost: a spot node is priced
at cost × (1 + interruption rate × `spot_rerun_share`), the work an interruption makes us re-run.
Unknown (None) leaves both rules out.

Pure: a function of the snapshot and the config; the head steers tasks with the answer and
the scaling policy turns `new_nodes` into scale-up decisions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property, partial, reduce
from itertools import compress
from operator import and_, attrgetter, ge, gt, le, lt, or_

from etrid_ray.config import ScalingSettings
from etrid_ray.pools import Pool
from etrid_ray.prices.catalog import PriceQuote
from etrid_ray.scaling.outlook import MEMORY_S, Outlook
from etrid_ray.scaling.state import PLATFORM_FEE_BPS, PoolState, QueuedJob, Snapshot
from etrid_ray.units import PLANCK_PER_EDSC


class PlaceReason(StrEnum):
    """Why a job went where it went (or nowhere): short codes for logs and metric labels."""

    LOCAL = "local"  # room on a local pool now
    CLOUD_CAPACITY = "cloud_capacity"  # room on a cloud node that is alive or already starting
    CLOUD_NEW_NODE = "cloud_new_node"  # a new cloud node that pays for its whole life
    NO_ELIGIBLE_POOL = "no_eligible_pool"  # TEE, residency, accelerator or size rule out every cloud pool
    NO_PRICE = "no_price"  # the eligible cloud pools cannot be priced (no spot offer)
    OVER_MAX_PRICE = "over_max_price"  # the eligible cloud pools cost more than their max spot price
    UNPROFITABLE = "unprofitable"  # a new node would cost more than the jobs it serves pay
    BUDGET = "budget"  # the daily cloud budget would be exceeded
    POOL_FULL = "pool_full"  # the eligible cloud pools are at max nodes
    NO_CAPACITY = "no_capacity"  # the cloud's quota or capacity allows no more nodes in the eligible pools
    UNAVAILABLE = "unavailable"  # the pool's last requests never came (backing off), or it is an on-demand
    # fallback while its spot pool can launch (scaling.capacity)
    CLOUD_DISABLED = "cloud_disabled"  # policy does not burst (never-burst baseline)
    LOCAL_SOON = "local_soon"  # local GPUs reach it before its consumer is expected to leave: cloud earns nothing
    TOO_LATE = "too_late"  # its consumer is expected to leave before a new node could start


# When a job cannot be placed, the reason from the cheapest pool that got furthest is reported:
# a later stage (budget) says more than an earlier one (eligibility).
_STAGE = {PlaceReason.NO_ELIGIBLE_POOL: 0, PlaceReason.CLOUD_DISABLED: 0, PlaceReason.NO_PRICE: 1,
          PlaceReason.OVER_MAX_PRICE: 2, PlaceReason.TOO_LATE: 3, PlaceReason.UNPROFITABLE: 3,
          PlaceReason.POOL_FULL: 4, PlaceReason.NO_CAPACITY: 4, PlaceReason.UNAVAILABLE: 4, PlaceReason.BUDGET: 5}


@dataclass(slots=True)
class Placement:
    """Where one job goes: a pool name, or None = wait for local capacity. A value: nothing changes one.

    `why` is the explanation, or a function that writes it: a thousand waiting jobs get a reason on
    every tick, and the text is only read when a decision is logged or shown. (Not a frozen dataclass
    only because making one costs three times as much, and a plan makes one per queued job per tick.)"""

    job_id: int
    pool: str | None
    reason: PlaceReason
    why: str | Callable[[], str] = field(default="", compare=False)

    @property
    def text(self) -> str:
        return self.why if isinstance(self.why, str) else self.why()


class LazyPlacements(Sequence[Placement]):
    """The placements of every queued job, written when first read.

    Why lazy: most of a long queue waits (for local GPUs, or because no cloud node pays for it), and
    its placements only say why — read when a plan is explained or logged, not on each tick of a
    simulation that runs hundreds of thousands of them. What acts on a plan reads `steered`."""

    def __init__(self, build: Callable[[], tuple[Placement, ...]]) -> None:
        self._build: Callable[[], tuple[Placement, ...]] | None = build
        self._items: tuple[Placement, ...] = ()

    def _all(self) -> tuple[Placement, ...]:
        if self._build is not None:
            self._items, self._build = self._build(), None
        return self._items

    def __len__(self) -> int:
        return len(self._all())

    def __getitem__(self, i):  # type: ignore[no-untyped-def]  # Sequence's overloads: int and slice
        return self._all()[i]

    def __iter__(self) -> Iterator[Placement]:
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and self._all() == tuple(other)

    def __hash__(self) -> int:
        return hash(self._all())

    def __repr__(self) -> str:
        return repr(self._all())


@dataclass(frozen=True)
class PlacementPlan:
    """Placements in the order jobs should be claimed (the policy's queue order), plus the new nodes
    they need per pool and what those cost."""

    placements: Sequence[Placement]
    new_nodes: Mapping[str, int] = field(default_factory=dict)
    projected_cost_usd: float = 0.0  # new nodes' cost over their expected lives
    # what the plan saw, for the outlook to learn from: jobs placed on local pools (→ GPUs), which sizes of
    # jobs were left waiting for local GPUs, and the jobs the local pools would not reach in time that are new
    local: Mapping[int, float] = field(default_factory=dict)
    waiting_sizes: int = 0  # the size classes (bits, scaling.state.size_class) of jobs waiting for local GPUs
    new_overflow: tuple[QueuedJob, ...] = ()  # overflow that arrived since the outlook's last tick
    overflows_at: float = math.inf  # when the first job left for local becomes overflow as it ages
    # when `placements` is lazy: the jobs in claim order and the placements with a pool, known already
    claim_order: tuple[int, ...] | None = field(default=None, compare=False, repr=False)
    with_pool: tuple[Placement, ...] | None = field(default=None, compare=False, repr=False)

    @cached_property
    def job_ids(self) -> tuple[int, ...]:
        """Every job the plan placed, in the order to claim them."""
        if self.claim_order is not None:
            return self.claim_order
        return tuple(p.job_id for p in self.placements)

    @cached_property
    def steered(self) -> tuple[Placement, ...]:
        """The placements with a pool (what dispatch acts on), in claim order."""
        if self.with_pool is not None:
            return self.with_pool
        return tuple(p for p in self.placements if p.pool is not None)

    @cached_property
    def order(self) -> dict[int, int]:
        """Each job's place in the plan (the order to claim in); the head looks jobs up here every pass."""
        return {job_id: i for i, job_id in enumerate(self.job_ids)}

    @cached_property
    def _pools(self) -> dict[int, str]:
        return {p.job_id: p.pool for p in self.steered if p.pool is not None}

    def pool_for(self, job_id: int) -> str | None:
        """The pool `job_id` is steered to (None: waits for local); KeyError when the plan does not know it."""
        pool = self._pools.get(job_id)
        if pool is None and job_id not in self.order:
            raise KeyError(job_id)
        return pool

    def by_pool(self) -> dict[str | None, list[int]]:
        out: dict[str | None, list[int]] = {}
        for p in self.placements:
            out.setdefault(p.pool, []).append(p.job_id)
        return out


# --- eligibility ------------------------------------------------------------------------------------


def within_max_price(pool: Pool, quote: PriceQuote) -> bool:
    return pool.max_spot_price is None or quote.usd_per_node_hour <= pool.max_spot_price


def new_node_room(ps: PoolState, quote: PriceQuote | None) -> int:
    """New nodes a pool may still get: up to max_nodes, and no more than the quota/capacity headroom; none while
    the pool is unavailable (`scaling.capacity`)."""
    if ps.unavailable is not None:
        return 0
    room = max(0, ps.pool.max_nodes - ps.nodes)
    if quote is not None and quote.quota_headroom_nodes is not None:
        room = min(room, max(0, quote.quota_headroom_nodes))
    return room


def interruption_factor(quote: PriceQuote, rerun_share: float) -> float:
    """1 + expected interruptions × share of the work re-run: the spot risk premium on a node's cost."""
    if not quote.spot or not quote.interruption_rate:
        return 1.0
    return 1.0 + quote.interruption_rate * rerun_share


def effective_usd_per_gpu_hour(quote: PriceQuote, rerun_share: float) -> float:
    """What a GPU-hour of the pool really costs, interruptions included (pools are ordered by it)."""
    return quote.usd_per_gpu_hour * interruption_factor(quote, rerun_share)


# Orders are stable sorts on one number each, least significant first: the order of sorting on the whole
# tuple, faster on a queue whose jobs mostly offer one price (tuples that tie on their first item are
# compared item by item).
_FIFO, _WORK, _PRICE = attrgetter("fifo_key"), attrgetter("work"), attrgetter("price_per_gpu_s")
_JOB_ID, _CLAIMED, _SIZE_CLASS = attrgetter("job_id"), attrgetter("claimed"), attrgetter("size_class")
_GPUS, _SINCE = attrgetter("gpus"), attrgetter("waiting_since")


def _where(jobs: Sequence[QueuedJob], key: Callable[[QueuedJob], float], test: Callable[[float], bool]
           ) -> list[QueuedJob]:
    """The jobs whose `key` passes `test`, in order: a filter without a Python step per job (placement filters
    the whole overflow by price and by age for every cloud pool on every tick)."""
    return list(compress(jobs, map(test, map(key, jobs))))


def queue_order(queue: Iterable[QueuedJob]) -> list[QueuedJob]:
    """First come, first served (ties by job id): the chain queue's own order (the baselines serve it so)."""
    return sorted(queue, key=_FIFO)


def price_order(jobs: list[QueuedJob]) -> list[QueuedJob]:
    """Best price per GPU-second first, then first come (in place): the order a new node is filled in."""
    jobs.sort(key=_FIFO)
    jobs.sort(key=_PRICE, reverse=True)
    return jobs


def profit_order(queue: Iterable[QueuedJob]) -> list[QueuedJob]:
    """Best-paying first: the highest price per GPU-second, then the most GPU-seconds, then first come.

    Order only matters when there is more work than room, and then a queued job not taken within
    the patience goes to another provider. Every GPU-second earns its price either way while
    demand lasts; the difference is after it passes: a long job taken now keeps GPUs earning
    through the lull that follows, a short one frees them into it. On Philly this takes 2 % more
    profit than first-come-first-served (and leaves more short jobs to other providers)."""
    jobs = sorted(queue, key=_FIFO)
    jobs.sort(key=_WORK, reverse=True)
    jobs.sort(key=_PRICE, reverse=True)
    return jobs


# --- node economics ---------------------------------------------------------------------------------


def node_life_s(pool: Pool, busy_span_s: float, config: ScalingSettings) -> float:
    """A new node is paid from request to removal: startup + work + the idle tail before removal."""
    return pool.startup_s + busy_span_s + config.idle_timeout_s


def node_cost_usd(pool: Pool, quote: PriceQuote, busy_span: float, config: ScalingSettings) -> float:
    """A new node's expected cost over its life, the spot interruption premium included."""
    return (quote.usd_per_node_hour * interruption_factor(quote, config.spot_rerun_share)
            * node_life_s(pool, busy_span, config) / 3600)


def break_even_usd_per_gpu_hour(pool: Pool, quote: PriceQuote, busy_span: float, config: ScalingSettings) -> float:
    """The price per busy GPU-hour at which a fully packed new node just pays for its life."""
    return (effective_usd_per_gpu_hour(quote, config.spot_rerun_share) * node_life_s(pool, busy_span, config)
            / max(busy_span, 1e-9))


@dataclass(frozen=True)
class _Node:
    jobs: tuple[QueuedJob, ...]
    span: float
    revenue: float  # expected: its jobs' pay and the overflow it can expect to serve
    cost: float
    filled: float = 0.0  # GPUs of the expected overflow it takes


@dataclass
class _Lane:
    """Jobs queued back to back on one node's `gpus`. The node is busy for the longest job, or the work
    spread over its GPUs (perfect packing: an estimate, not a schedule); jobs join while that span stays
    within max(horizon, the longest job), so a job waits behind the others for at most about the horizon."""

    gpus: float
    longest: float = 0.0
    work: float = 0.0

    @property
    def span(self) -> float:
        return max(self.longest, self.work / self.gpus)

    def take(self, job: QueuedJob, horizon_s: float) -> bool:
        longest = max(self.longest, job.expected_duration_s)
        work = self.work + job.gpus * job.expected_duration_s
        if max(longest, work / self.gpus) > max(horizon_s, longest):
            return False
        self.longest, self.work = longest, work
        return True


@dataclass
class Fill:
    """Work still to come that a new node can expect to serve beside the jobs it is bought for: the
    overflow the outlook measured (GPUs it keeps busy, beyond the cloud capacity already there) at the
    price it offered, over at most `horizon_s` of the node's span (what the last hour says about the
    next hours is all the outlook knows). Nodes bought in one tick share it, first come first served."""

    spare_gpus: float = 0.0
    usd_per_gpu_s: float = 0.0
    horizon_s: float = 0.0

    def gpus_for(self, lane: _Lane, gpus_per_node: float) -> float:
        """GPUs of the overflow a node with this lane would keep busy beside it."""
        span = lane.span
        idle = gpus_per_node - (lane.work / span if span > 0 else 0.0)
        return max(0.0, min(idle, self.spare_gpus))

    def usd(self, gpus: float, span: float) -> float:
        return gpus * min(span, self.horizon_s) * self.usd_per_gpu_s


NO_FILL = Fill()


def _best_node(candidates: Sequence[QueuedJob], start: int, pool: Pool, quote: PriceQuote, config: ScalingSettings,
               horizon_s: float, fill: Fill = NO_FILL) -> tuple[_Node | None, int]:
    """Fill one new node from the best-paying candidates (from `start` on), back to back (`_Lane`), and keep
    the most profitable prefix, counting the overflow still to come (`fill`) it can expect to serve too.
    Returns the node (None if no prefix pays) and how many candidates were considered (the caller moves
    past them). The first job always fits an empty node."""
    gpn = float(pool.gpus_per_node)
    lane = _Lane(gpn)
    revenue = 0.0
    best: _Node | None = None
    end = start
    for end in range(start, len(candidates)):
        job = candidates[end]
        if not lane.take(job, horizon_s):
            break
        revenue += job.revenue_usd(config.edsc_usd)
        cost = node_cost_usd(pool, quote, lane.span, config)
        filled = fill.gpus_for(lane, gpn)
        expected = revenue + fill.usd(filled, lane.span)
        if expected > cost and (best is None or expected - cost > best.revenue - best.cost):
            best = _Node(tuple(candidates[start:end + 1]), lane.span, expected, cost, filled)
    else:
        end = len(candidates)
    return best, max(1, end - start)


class PaidRoom:
    """A cloud pool's capacity already paid for, as steering may fill it this tick.

    A job runs on one node, so an alive node takes a job only in the GPUs it has free now (best
    fit; what it is running will finish at a time the snapshot does not know). A starting node is
    empty: jobs queue on it back to back, as on a new node (`_Lane`). When per-node room is
    unknown, the pool's free GPUs are one node's worth of room (the old, optimistic rule)."""

    def __init__(self, ps: PoolState, horizon_s: float) -> None:
        self.gpn = float(ps.pool.gpus_per_node)
        self.horizon = horizon_s
        known = bool(ps.node_free) or ps.alive == 0
        self.alive = [max(0.0, f) for f in ps.node_free] if known else []
        self.starting = [_Lane(self.gpn) for _ in range(ps.pending)]
        pooled = max(0.0, ps.gpus_free) + ps.pending * self.gpn
        self.pooled = None if known or pooled <= 0 else _Lane(pooled)

    def __bool__(self) -> bool:
        return self.pooled is not None or bool(self.starting) or any(f > 0 for f in self.alive)

    def take(self, job: QueuedJob) -> bool:
        """Steer `job` here if it fits; True when it does."""
        if self.pooled is not None:
            return job.gpus <= self.pooled.gpus and self.pooled.take(job, self.horizon)
        if take_slot(self.alive, job.gpus):
            return True
        if job.gpus > self.gpn:
            return False
        return any(lane.take(job, self.horizon) for lane in self.starting)


# --- placement --------------------------------------------------------------------------------------


def place(snapshot: Snapshot, config: ScalingSettings, *, horizon_s: float | None = None,
          outlook: Outlook | None = None) -> PlacementPlan:
    """The profit-aware placement. `horizon_s` (default: the idle timeout) bounds how much queued
    work one new node is expected to serve back to back. With an `outlook` (what the head has learned
    from its queue), only the overflow — jobs the local pools will not reach before their consumers are
    expected to leave — may go to the cloud, and a new node counts the overflow still to come; without
    one, every job local GPUs cannot take now may, and a node must be paid by the jobs in hand."""
    horizon = config.idle_timeout_s if horizon_s is None else horizon_s
    jobs = profit_order(snapshot.queue) if config.claim_order == "best-paying" else queue_order(snapshot.queue)
    fits = snapshot.fits
    placed: dict[int, Placement] = {}
    local: dict[int, float] = {}
    remaining = place_local(jobs, snapshot, placed, local)
    if outlook is not None:
        split = split_overflow(remaining, snapshot, outlook)
        remaining = split.overflow
    else:
        split = Split(remaining, [], 0, ())
    # a job whose consumer is expected to leave before a new node starts is not worth one; only consumers
    # seen leaving say when that is (a floor learned from nobody leaving says nothing of the kind)
    patience = outlook.patience_s if outlook is not None and outlook.patience_observed else math.inf
    new_nodes: dict[str, int] = {}
    # why jobs were not placed: (stage, reason, pool, quote, jobs — or a function that lists them); for each
    # job the furthest stage wins (the first at a stage stays), resolved only when the placements are read
    notes: list[tuple[int, PlaceReason, PoolState, PriceQuote | None,
                      Sequence[QueuedJob] | Callable[[], Sequence[QueuedJob]]]] = []
    budget_left = config.daily_cloud_budget_usd - snapshot.spend_today_usd
    projected = 0.0
    usd_per_planck_hour = 3600 * (1 - PLATFORM_FEE_BPS / 10_000) / PLANCK_PER_EDSC * config.edsc_usd
    fill = _fill(snapshot, outlook, usd_per_planck_hour / 3600) if outlook is not None else NO_FILL

    def note(batch: Sequence[QueuedJob] | Callable[[], Sequence[QueuedJob]], reason: PlaceReason, ps: PoolState,
             quote: PriceQuote | None) -> None:
        notes.append((_STAGE[reason], reason, ps, quote, batch))

    # every job a pool looks at comes from the overflow: when its lowest price clears a pool's floor, all pay
    lowest_price = min(map(_PRICE, remaining), default=math.inf)
    for ps, quote in cloud_pools_cheapest_first(snapshot, config.spot_rerun_share):
        if not remaining:
            break
        pool = ps.pool
        bit = fits.bit(pool.name)
        mine = remaining if split.fit_all & bit else [j for j, m in zip(remaining, fits.masks(remaining), strict=True)
                                                          if m & bit]
        if not mine:
            continue
        if quote is None:
            note(mine, PlaceReason.NO_PRICE, ps, quote)
            continue
        if not within_max_price(pool, quote):
            note(mine, PlaceReason.OVER_MAX_PRICE, ps, quote)
            continue
        if budget_left <= 0:
            note(mine, PlaceReason.BUDGET, ps, quote)
            continue
        # a job paying less than the GPU-hour itself can never pay for a node, new or running
        floor_planck = effective_usd_per_gpu_hour(quote, config.spot_rerun_share) / usd_per_planck_hour
        if floor_planck <= lowest_price:  # all of them pay (one price, as a market often has)
            paying = mine
        else:
            paying = _where(mine, _PRICE, partial(le, floor_planck))  # price ≥ floor
            if len(paying) < len(mine):
                note(_where(mine, _PRICE, partial(gt, floor_planck)), PlaceReason.UNPROFITABLE, ps, quote)
        taken_ids: set[int] = set()
        # 1) capacity already paid for: free GPUs on alive nodes now, and starting nodes filled back to back
        #    like a new node, so the nodes bought last tick are not bought again while they start
        room_now = PaidRoom(ps, horizon)
        if room_now:
            capacity_text = f"room on a running or starting {pool.name} node"
            for j in paying:
                if room_now.take(j):
                    taken_ids.add(j.job_id)
                    placed[j.job_id] = Placement(j.job_id, pool.name, PlaceReason.CLOUD_CAPACITY, capacity_text)
        # 2) new nodes, best-paying jobs first, each node only if it pays for its whole life — for jobs whose
        #    consumers are expected to still be waiting when it starts
        late = snapshot.now + pool.startup_s - patience
        if taken_ids:
            paying = [j for j in paying if j.job_id not in taken_ids]
        if any(map(_CLAIMED, paying)):  # re-queued jobs are ours: never too late
            candidates = [j for j in paying if j.claimed or j.waiting_since > late]
            if len(candidates) < len(paying):
                note([j for j in paying if not (j.claimed or j.waiting_since > late)], PlaceReason.TOO_LATE, ps,
                     quote)
        else:
            candidates = _where(paying, _SINCE, partial(lt, late))  # waiting since after `late`
            if len(candidates) < len(paying):
                note(partial(_where, paying, _SINCE, partial(ge, late)), PlaceReason.TOO_LATE, ps, quote)
        room = new_node_room(ps, quote)
        full = (PlaceReason.UNAVAILABLE if ps.unavailable is not None
                else PlaceReason.POOL_FULL if room >= max(0, pool.max_nodes - ps.nodes) else PlaceReason.NO_CAPACITY)
        if not candidates or room <= 0:
            if candidates:
                note(candidates, full, ps, quote)
            if taken_ids:
                remaining = [j for j in remaining if j.job_id not in taken_ids]
            continue
        price_order(candidates)
        added = 0
        i = 0
        while i < len(candidates):
            if added >= room:
                note(candidates[i:], full, ps, quote)
                break
            node, seen = _best_node(candidates, i, pool, quote, config, horizon, fill)
            if node is None:
                note(candidates[i:i + seen], PlaceReason.UNPROFITABLE, ps, quote)
                i += seen
                continue
            i += len(node.jobs)
            if projected + node.cost > budget_left:
                note(node.jobs, PlaceReason.BUDGET, ps, quote)
                continue
            projected += node.cost
            added += 1
            fill.spare_gpus = max(0.0, fill.spare_gpus - node.filled)
            text = (f"new {pool.name} node: its jobs and the overflow it can expect pay {node.revenue:.2f} USD > its "
                    f"cost {node.cost:.2f} USD")
            for j in node.jobs:
                taken_ids.add(j.job_id)
                placed[j.job_id] = Placement(j.job_id, pool.name, PlaceReason.CLOUD_NEW_NODE, text)
        if added:
            new_nodes[pool.name] = added
        if taken_ids:
            remaining = [j for j in remaining if j.job_id not in taken_ids]

    ids = tuple(map(_JOB_ID, jobs))
    soon, left = split.soon, remaining

    def every_placement() -> tuple[Placement, ...]:
        everything = dict(placed)
        for j, start_in in soon:
            everything[j.job_id] = Placement(
                j.job_id, None, PlaceReason.LOCAL_SOON,
                lambda start_in=start_in: f"local GPUs reach it in about {start_in:.0f} s, before its consumer is "
                f"expected to leave ({outlook.patience_s:.0f} s of waiting); waits for local")
        why_not: dict[int, tuple[int, PlaceReason, PoolState, PriceQuote | None]] = {}
        for stage, reason, ps, quote, batch in notes:
            for job in batch() if callable(batch) else batch:
                old = why_not.get(job.job_id)
                if old is None or stage > old[0]:
                    why_not[job.job_id] = (stage, reason, ps, quote)
        for j in left:
            why = why_not.get(j.job_id)
            if why is None:
                everything[j.job_id] = Placement(j.job_id, None, PlaceReason.NO_ELIGIBLE_POOL,
                                                 "no cloud pool may run it (TEE, residency, size); waits for local")
            else:
                everything[j.job_id] = Placement(
                    j.job_id, None, why[1], lambda j=j, why=why: _why_text(j, *why[1:], config) + "; waits for local")
        return tuple(everything[i] for i in ids)

    return PlacementPlan(LazyPlacements(every_placement), new_nodes, projected, local=local,
                         waiting_sizes=split.waiting_sizes, new_overflow=split.new_overflow,
                         overflows_at=split.overflows_at, claim_order=ids,
                         with_pool=tuple(placed[i] for i in ids if i in placed))


@dataclass(frozen=True)
class Split:
    """The jobs local pools have no room for now, split by whether those pools reach them in time."""

    overflow: list[QueuedJob]  # not reached before their consumers are expected to leave, or never
    soon: list[tuple[QueuedJob, float]]  # reached in time, with the seconds until then
    waiting_sizes: int  # the size classes (bits) of the jobs that wait for local GPUs; 0: none
    new_overflow: tuple[QueuedJob, ...]  # the overflow that arrived since the outlook's last tick
    overflows_at: float = math.inf  # when the first of `soon` ages into overflow
    fit_all: int = 0  # the pools every job of `overflow` may run on (Fits bits)


def split_overflow(waiting: Sequence[QueuedJob], snapshot: Snapshot, outlook: Outlook) -> Split:
    """Splits the jobs local pools have no room for now (in claim order) into the overflow and the jobs
    they will reach in time. A job's reach is the slower of the GPUs ahead of it at the local pools' rate
    and the GPUs of its size ahead of it at the rate jobs of its size start (a whole node frees more
    rarely than one GPU). One pass: this runs for every waiting job on every tick."""
    local = snapshot.fits.local
    patience = outlook.patience_s
    rate = outlook.local_rate
    # Reach per size, and a size (or a cluster) that started nothing while jobs waited reaching no one, only
    # once consumers have been seen leaving: before, waiting long loses nobody the head knows of, and bursting
    # for a job its own GPUs would serve later earns nothing (with consumers who wait forever, it never
    # should). The first departures teach it.
    observed = outlook.patience_observed
    size_rates = outlook.size_rates if observed else (None,) * len(outlook.size_rates)
    # a job is overflow once now - waiting_since + start_in > patience, i.e. waiting_since < cutoff + start_in
    cutoff = snapshot.now - patience
    since = outlook.at if outlook.at is not None else -math.inf
    ahead = 0.0
    ahead_size = [0.0] * len(size_rates)
    overflow: list[QueuedJob] = []
    soon: list[tuple[QueuedJob, float]] = []
    sizes = 0
    overflows_at = math.inf
    fit_all = -1
    # Past `reach` GPUs ahead, local GPUs reach no one before their consumer leaves (start_in > patience).
    # Until the head has seen its GPUs start jobs that waited, they reach no one it can count on: a spike on
    # a full cluster may burst on its first tick (target P3).
    reach = -math.inf if rate is None else patience * rate * (1 + 1e-12)
    masks = snapshot.fits.masks(waiting)
    claimed = list(map(_CLAIMED, waiting))
    last_claimed = len(claimed) - 1 - claimed[::-1].index(True) if True in claimed else -1
    for i, (j, m) in enumerate(zip(waiting, masks, strict=True)):
        if ahead > reach and i > last_claimed:
            # everyone from here on is overflow (local GPUs reach none of them in time, and none is ours yet):
            # the rest in bulk, as on a busy cluster most of the queue is
            rest, rest_masks = waiting[i:], masks[i:]
            every = reduce(and_, rest_masks, -1)
            if every & local:
                sizes |= reduce(or_, (1 << c for c in set(map(_SIZE_CLASS, rest))), 0)
            else:
                sizes |= reduce(or_, (1 << r.size_class for r, rm in zip(rest, rest_masks, strict=True)
                                      if rm & local), 0)
            overflow.extend(rest)
            fit_all &= every
            break
        if m & local:
            c = j.size_class
            sizes |= 1 << c
            g = j.gpus
            ahead += g
            ahead_size[c] += g
            if rate is not None and (ahead <= reach or j.claimed):
                start_in = ahead / rate
                size_rate = size_rates[c]
                if size_rate is not None:
                    size_in = ahead_size[c] / size_rate if size_rate > 0 else math.inf
                    if size_in > start_in:
                        start_in = size_in
                if j.claimed or j.waiting_since >= cutoff + start_in:
                    soon.append((j, start_in))
                    if not j.claimed and j.waiting_since + patience - start_in < overflows_at:
                        overflows_at = j.waiting_since + patience - start_in
                    continue
        overflow.append(j)
        fit_all &= m
    new = tuple(compress(overflow, map(partial(lt, since), map(_SINCE, overflow))))  # arrived since the last tick
    return Split(overflow, soon, sizes, new, overflows_at,
                 fit_all if overflow else 0)


def _fill(snapshot: Snapshot, outlook: Outlook, usd_per_planck_s: float) -> Fill:
    """The overflow still to come, beyond the GPUs the cloud pools already have or are starting."""
    cloud = sum(ps.nodes * ps.pool.gpus_per_node for ps in snapshot.pools if ps.pool.is_cloud)
    return Fill(spare_gpus=max(0.0, outlook.overflow_gpus - cloud),
                usd_per_gpu_s=outlook.overflow_price * usd_per_planck_s, horizon_s=MEMORY_S)


def _why_text(job: QueuedJob, reason: PlaceReason, ps: PoolState, quote: PriceQuote | None,
              config: ScalingSettings) -> str:
    pool = ps.pool
    if reason is PlaceReason.NO_PRICE or quote is None:
        return f"{pool.name}: no spot offer in {pool.region}"
    if reason is PlaceReason.OVER_MAX_PRICE:
        return f"{pool.name}: {quote.usd_per_node_hour:.4g} USD/node-h > max {pool.max_spot_price:g}"
    if reason is PlaceReason.BUDGET:
        return f"{pool.name}: a new node would pass the daily cloud budget of {config.daily_cloud_budget_usd:g} USD"
    if reason is PlaceReason.POOL_FULL:
        return f"{pool.name} at max {pool.max_nodes} nodes"
    if reason is PlaceReason.UNAVAILABLE:
        return f"{pool.name} unavailable: {ps.unavailable}"
    if reason is PlaceReason.NO_CAPACITY:
        return f"{pool.name}: the cloud allows {quote.quota_headroom_nodes} more nodes (quota or capacity)"
    even = break_even_usd_per_gpu_hour(pool, quote, job.expected_duration_s, config)
    return (f"{pool.name}: pays {job.revenue_usd_per_gpu_hour(config.edsc_usd):.4g} USD/GPU-h, "
            f"a new node breaks even at {even:.4g}")


def place_local(jobs: Sequence[QueuedJob], snapshot: Snapshot, placed: dict[int, Placement],
                local_gpus: dict[int, float] | None = None) -> list[QueuedJob]:
    """Local pools take every job they have room for, in queue order; returns the others (and, into
    `local_gpus` when given, each job placed locally → its GPUs)."""
    local = [(ps.name, snapshot.fits.bit(ps.name)) for ps in snapshot.pools if not ps.pool.is_cloud]
    mask = snapshot.fits.mask
    free = {ps.name: ps.free_capacity for ps in snapshot.pools if not ps.pool.is_cloud}
    states = {ps.name: ps for ps in snapshot.pools if not ps.pool.is_cloud}
    slots: dict[str, list[float] | None] = {}  # per-node room, read when a job first fits a pool's total
    most_free = max(free.values(), default=-1.0)  # a job needing more waits without a look at each pool
    if not jobs or most_free < min(map(_GPUS, jobs)):  # full (as a busy cluster mostly is): nobody fits
        return list(jobs)
    remaining: list[QueuedJob] = []
    for j in jobs:
        if j.gpus > most_free:
            remaining.append(j)
            continue
        for name, bit in local:
            if free[name] < j.gpus or not mask(j) & bit:
                continue
            if name not in slots:
                slots[name] = states[name].node_slots()
            if take_slot(slots[name], j.gpus):
                free[name] -= j.gpus
                most_free = max(free.values())
                placed[j.job_id] = Placement(j.job_id, name, PlaceReason.LOCAL, f"room on local pool {name}")
                if local_gpus is not None:
                    local_gpus[j.job_id] = j.gpus
                break
        else:
            remaining.append(j)
    return remaining


def take_slot(slots: list[float] | None, gpus: float) -> bool:
    """Takes `gpus` from the node that fits them most tightly (best fit, as the simulator and a packing
    scheduler place them); True when one fits. None = per-node room unknown: always True (the caller
    has checked the pool's total)."""
    if slots is None:
        return True
    best = -1
    for k, f in enumerate(slots):
        if f >= gpus - 1e-9 and (best < 0 or f < slots[best]):
            best = k
    if best < 0:
        return False
    slots[best] -= gpus
    return True


def cloud_pools_cheapest_first(snapshot: Snapshot,
                               rerun_share: float = 0.0) -> list[tuple[PoolState, PriceQuote | None]]:
    """Cloud pools by effective USD per GPU-hour (interruption premium at `rerun_share`; unpriced
    last, then by name for determinism)."""
    pools = [(ps, snapshot.prices.get(ps.name)) for ps in snapshot.pools if ps.pool.is_cloud]
    return sorted(pools, key=lambda t: (t[1] is None,
                                        effective_usd_per_gpu_hour(t[1], rerun_share) if t[1] else math.inf,
                                        t[0].name))
