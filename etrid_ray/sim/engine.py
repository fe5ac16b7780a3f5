"""The discrete-event model of a provider's pools, driven by the same policy code as the live head.

What is modelled, and why each rule:

- **Jobs** arrive from the trace into the queue the policy sees (`QueuedJob`, priced from the
  scenario). Each tick runs `scaling.tick` — the function `provider.scaler.Scaler.step` runs live:
  the policy's `place` steers queued jobs to pools and its `decide` sets each pool's node target
  on that plan. A job starts on an alive node of the pool it was steered to with room for it
  (best fit), as Ray would schedule its task there; jobs steered nowhere wait. A job not started
  within the patience is claimed by another provider (lost); the next snapshot lists it in
  `departed`, as the head lists the jobs it saw leave the chain's queue.
- **Nodes**: a launch is billed from the request, runs tasks after the pool's `startup_s`, and is
  billed by `scaling.billing`'s rule (per second, 60 s minimum) until removed, as the live
  scaler bills. A lower target removes starting nodes first, then idle nodes (longest idle
  first), never a busy one — Ray's autoscaler does not remove a node running tasks. Idle timeouts are the policy's to
  decide (ours and the baselines model Ray's; the seed's HPA removes replicas by its own rules).
- **Spot interruptions**: each cloud node gets an exponential lifetime drawn (from the seed) at
  the rate of its pool's interruption bucket (AWS Spot Advisor; unknown pools the middle bucket,
  10–15 % a month). At the notice the node is drained (no new work, out of the policy's view); at
  the deadline (its cloud's `Cloud.notice_s`: AWS 120 s, GCP and Azure 30 s) jobs still on it go
  back to the queue, already claimed (never lost to other providers), and run again from the start.
- **Capacity shortages** (`SimSettings.shortage`, off by default; `sim.shortage`): seeded windows
  per pool in which a launch does not join until the window ends (then `startup_s` later). The
  tick's capacity rule (`scaling.capacity`) withdraws such requests after the startup plus a
  margin and backs the pool off, as the live head does; a withdrawn request is billed like any
  withdrawn request (from the request, a minute at least — the rule the live scaler bills by,
  which cannot tell a booting node from one that never comes).
- **Money**: a job earns the offered price × its billable GPU-hours less the chain's 5 % fee when
  it completes (`QueuedJob.revenue_usd`); local GPUs cost their electricity per busy GPU-second;
  cloud nodes cost their quote per node-second.
- **Time**: the head re-plans every `scale_interval_s`; the simulator ticks only when something
  can change — events (arrival, completion, node ready, interruption, patience running out),
  coalesced onto that interval's grid, plus wake-ups at the instants a policy's time-based rule
  can fire (idle timeouts, sustained-load windows, stabilization, the HPA's sync). Between
  them the policy's answer cannot change, so skipping those ticks changes no decision and keeps
  the 109 days of Philly within P5's budget.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from etrid_ray.clouds.base import BUCKET_RATES, interruption_rate
from etrid_ray.clouds.registry import notice_period
from etrid_ray.durations import format_duration
from etrid_ray.percentiles import percentile
from etrid_ray.pools import Pool
from etrid_ray.prices.catalog import PriceQuote
from etrid_ray.profit import JobProfit, cost_share_usd
from etrid_ray.scaling import POLICIES, CapacityMemory, Policy, PolicyMemory, Reason
from etrid_ray.scaling.billing import MIN_BILLED_S, NodeLedger, billed_cost  # noqa: F401 (the rule, re-exported)
from etrid_ray.scaling.eligibility import eligible
from etrid_ray.scaling.hpa import HPA_SYNC_PERIOD_S, HpaMemory
from etrid_ray.scaling.placement import PlacementPlan, node_cost_usd, within_max_price
from etrid_ray.scaling.policy import steered_jobs
from etrid_ray.scaling.state import PLATFORM_FEE_BPS, Departure, PoolState, QueuedJob, Snapshot
from etrid_ray.scaling.tick import TickReply, TickRequest, tick
from etrid_ray.sim.scenario import Scenario, SimSettings, build_scenario
from etrid_ray.sim.shortage import Windows
from etrid_ray.sim.trace import SimJob, Trace

# pools with no Spot Advisor bucket (GCP, Azure) are interrupted at the middle bucket's rate
DEFAULT_BUCKET = "10-15%"
MONTH_S = 30 * 86400.0

_ARRIVE, _FINISH, _READY, _NOTICE, _KILL, _LOSE, _WAKE = range(7)


def interruption_rate_per_s(quote: PriceQuote | None) -> float:
    """The hazard of one spot node being reclaimed: the quote's monthly share (the market feed sets it from
    the AWS Spot Advisor bucket), else its bucket's, else the middle bucket's."""
    monthly = quote.interruption_rate if quote is not None else None
    if monthly is None:
        monthly = interruption_rate((quote.interruption_bucket if quote is not None else None) or DEFAULT_BUCKET)
    if monthly is None:
        monthly = BUCKET_RATES[DEFAULT_BUCKET]
    return -math.log(1 - min(monthly, 0.999)) / MONTH_S


class _Node:
    __slots__ = ("nid", "pool", "gpus", "free", "jobs", "requested_at", "ready", "idle_since", "draining",
                 "usd_h")

    def __init__(self, nid: int, pool: _PoolRt, requested_at: float, ready: bool) -> None:
        self.nid = nid
        self.pool = pool
        self.gpus = float(pool.pool.gpus_per_node)
        self.free = self.gpus
        self.jobs: set[int] = set()
        self.requested_at = requested_at
        self.ready = ready
        self.idle_since: float | None = requested_at if ready else None
        self.draining = False
        self.usd_h = pool.usd_h


class _PoolRt:
    """A pool while the simulation runs: its nodes (starting, alive, draining) and counters."""

    __slots__ = ("pool", "quote", "usd_h", "nodes", "launches", "interruptions", "cost", "node_s", "power_usd_s",
                 "rate", "name", "is_cloud", "seen", "notice_s", "shortage", "withdrawn")

    def __init__(self, pool: Pool, quote: PriceQuote | None, interruptions: bool,
                 shortage: Windows | None = None) -> None:
        self.pool = pool
        self.name = pool.name
        self.is_cloud = pool.is_cloud
        self.quote = quote
        self.usd_h = quote.usd_per_node_hour if (quote is not None and pool.is_cloud) else 0.0
        self.nodes: list[_Node] = []
        self.launches = 0
        self.interruptions = 0
        self.cost = 0.0
        self.node_s = 0.0
        self.power_usd_s = 0.0 if pool.is_cloud else pool.local_cost_per_gpu_hour() / 3600  # per busy GPU
        self.rate = interruption_rate_per_s(quote) if (interruptions and pool.is_cloud) else 0.0
        self.notice_s = notice_period(pool.kind)  # from a spot notice to the node's end
        self.seen: PoolState | None = None  # the last state(), until a node or a job on one changes (changed())
        self.shortage = shortage  # when it can launch nothing (None: always can)
        self.withdrawn = 0  # requests withdrawn because they never came (scaling.capacity)

    def changed(self) -> None:
        self.seen = None

    def state(self) -> PoolState:
        """The pool as a policy sees it; kept between ticks until something in it changes (most ticks change one
        pool or none, and a local pool of many nodes is costly to read)."""
        if self.seen is not None:
            return self.seen
        alive = 0
        idle: list[float | None] = []
        node_free: list[float] = []
        since: list[float] = []  # request times of starting nodes, oldest first (launch order)
        busy = free = 0.0
        for n in self.nodes:
            if n.draining:
                continue
            if n.ready:
                alive += 1
                idle.append(n.idle_since)
                node_free.append(n.free)
                busy += n.gpus - n.free
                free += n.free
            else:
                since.append(n.requested_at)
        self.seen = PoolState(self.pool, alive=alive, pending=len(since), idle_since=tuple(idle), gpus_busy=busy,
                              gpus_free=free, node_free=tuple(node_free), pending_since=tuple(since))
        return self.seen


@dataclass(frozen=True)
class Explained:
    """One moment of one job's life in a run (`Simulator(explain=job_id)`): `t` in seconds from the
    trace's start; `event` one of skipped, arrived, placed, notice, interrupted, started, finished,
    lost, unserved; `reason` the placement's `PlaceReason` code where one applies."""

    t: float
    event: str
    text: str
    reason: str | None = None
    pool: str | None = None


def format_explanation(events: list[Explained]) -> list[str]:
    """Readable lines, times relative to the job's arrival (`format_duration`, hours at most)."""
    if not events:
        return []
    t0 = next((e.t for e in events if e.event == "arrived"), events[0].t)
    return [f"{('+' if e.t >= t0 else '-') + format_duration(abs(e.t - t0), days=False):>9}  {e.event:<11} {e.text}"
            for e in events]


@dataclass
class SimResult:
    """One policy's run: the figures the table and JSON show, and time series for the plots."""

    policy: str
    jobs: dict[str, int]
    revenue_usd: float
    cloud_cost_usd: float
    local_power_usd: float
    wait_s: dict[str, float]  # every servable job; a lost job counts the patience it waited
    served_wait_s: dict[str, float]  # jobs that started
    utilization: dict[str, float]
    node_launches: dict[str, int]
    interruptions: int
    lost_while_profitable: int
    cloud_cost_by_pool: dict[str, float]
    node_hours_by_pool: dict[str, float]
    end_s: float
    ticks: int
    wall_s: float
    series: dict[str, Any] = field(default_factory=dict, repr=False)
    withdrawn_requests: dict[str, int] = field(default_factory=dict)  # per cloud pool: never came (capacity rule)
    explanation: list[Explained] = field(default_factory=list, repr=False)  # the `explain` job's timeline
    job_profits: list[JobProfit] = field(default_factory=list, repr=False)  # with SimSettings.per_job

    @property
    def net_profit_usd(self) -> float:
        return self.revenue_usd - self.cloud_cost_usd - self.local_power_usd

    def to_json(self) -> dict[str, Any]:
        return {"policy": self.policy, "jobs": self.jobs, "revenue_usd": round(self.revenue_usd, 2),
                "cloud_cost_usd": round(self.cloud_cost_usd, 2), "local_power_usd": round(self.local_power_usd, 2),
                "net_profit_usd": round(self.net_profit_usd, 2),
                "wait_s": {k: round(v, 1) for k, v in self.wait_s.items()},
                "served_wait_s": {k: round(v, 1) for k, v in self.served_wait_s.items()},
                "utilization": {k: round(v, 4) for k, v in self.utilization.items()},
                "node_launches": self.node_launches, "interruptions": self.interruptions,
                "lost_while_profitable": self.lost_while_profitable,
                "cloud_cost_by_pool": {k: round(v, 2) for k, v in self.cloud_cost_by_pool.items()},
                "node_hours_by_pool": {k: round(v, 1) for k, v in self.node_hours_by_pool.items()},
                "withdrawn_requests": self.withdrawn_requests,
                "end_s": self.end_s, "ticks": self.ticks, "wall_s": round(self.wall_s, 2)}


def _wait_stats(waits: list[float]) -> dict[str, float]:
    return {"p50": percentile(waits, 50), "p95": percentile(waits, 95), "p99": percentile(waits, 99),
            "mean": sum(waits) / len(waits) if waits else 0.0}


class Simulator:
    def __init__(self, trace: Trace | list[SimJob], policy: str | Policy, scenario: Scenario | SimSettings,
                 *, explain: int | None = None) -> None:
        self.scenario = scenario if isinstance(scenario, Scenario) else build_scenario(scenario)
        self.settings = self.scenario.settings
        self.config = self.scenario.scaling  # all the policies read (the config's scaling section)
        self.policy = policy if isinstance(policy, Policy) else POLICIES[policy]
        jobs = trace.jobs if isinstance(trace, Trace) else tuple(trace)
        self.all_jobs = jobs
        prices: Mapping[str, PriceQuote] = self.scenario.prices
        self.prices = dict(prices)
        shortage = self.settings.shortage
        self.pools = [_PoolRt(p, self.prices.get(p.name), self.settings.interruptions,
                              Windows(shortage, self.settings.seed, p.name)
                              if shortage is not None and p.is_cloud and shortage.applies(p.name, p.spot) else None)
                      for p in self.scenario.pools]
        self.by_name = {p.name: p for p in self.pools}
        self.grid = self.config.scale_interval_s
        self.rng = random.Random(self.settings.seed)
        self.price_planck = self.scenario.price_planck_per_gpu_s
        self.edsc_usd = self.settings.edsc_usd
        # which jobs any pool can ever run (others are skipped, as admission would)
        usable = [p.pool for p in self.pools
                  if not p.is_cloud or (p.quote is not None and within_max_price(p.pool, p.quote))]
        self.jobs = [j for j in jobs if any(eligible(self._probe(j), pool) for pool in usable)]
        self.unservable = len(jobs) - len(self.jobs)
        self.run_s = {j.job_id: j.duration_s for j in self.jobs}  # how long each really runs
        # state
        self.heap: list[tuple[float, int, int, int, int]] = []
        self.seq = 0
        self.events = 0  # events in the heap other than wake-ups
        self.queue: dict[int, QueuedJob] = {}
        self.running: dict[int, tuple[_Node, int]] = {}  # job → (node, run id)
        self.run_id = 0
        self.started_at: dict[int, float] = {}
        self.waits: list[float] = []  # every job: time to start, or the patience it waited when lost
        self.served_waits: list[float] = []  # jobs that started
        self.memory: Any = None
        self.capacity = CapacityMemory()  # the tick's capacity rule's memory (scaling.capacity)
        self.unavailable: frozenset[str] = frozenset()  # pools the capacity rule held back at the last tick
        self.nid = 0
        self.wakes: set[float] = set()
        self.revenue = 0.0
        self.ledger = NodeLedger()  # cloud bills by node id: the rule the live scaler bills by
        self.local_busy = 0.0
        self.local_gpu_s = 0.0
        self.power_rate = 0.0  # USD per second the busy local GPUs draw now
        self.power = 0.0
        self.cloud_busy = 0.0
        self.cloud_gpu_s = 0.0
        self.busy_t = 0.0
        self.completed = self.lost = self.requeued = self.lost_profitable = 0
        self.arrived = 0
        self.departed: list[Departure] = []  # lost to patience since the previous tick
        self.last_tick: TickReply | None = None
        self.ticks = 0
        self.last_work = 0.0
        self.series: dict[str, Any] = {"t": [], "queue": [], "profit": [], "nodes": {p.name: [] for p in self.pools}}
        self._last_rec: tuple[Any, ...] | None = None
        self._node_by_id: dict[int, _Node] = {}
        self._jobs_meta: dict[int, QueuedJob] = {}
        self.job_profits: list[JobProfit] = []
        # one job's timeline: the hooks replace the event handlers on this instance only, so a run
        # without `explain` pays nothing for it
        self.explain = explain
        self.explanation: list[Explained] = []
        if explain is not None:
            self._explain_init()

    # --- explain one job -----------------------------------------------------------------------------

    def _explain_init(self) -> None:
        x = self.explain
        self._x_placed: tuple[str | None, str] | None = None
        self._x_requeued_at: float | None = None
        self._handle = self._x_handle  # type: ignore[method-assign]
        self._tick = self._x_tick  # type: ignore[method-assign]
        self._start = self._x_start  # type: ignore[method-assign]
        original = next((j for j in self.all_jobs if j.job_id == x), None)
        if original is not None and all(j.job_id != x for j in self.jobs):
            self._x_note(original.submit_s, "skipped",
                         f"{original.gpus:g} GPUs for {format_duration(original.duration_s, days=False)}: "
                         "no pool can ever run it (size, eligibility or max price), so it is never queued")

    def _x_note(self, t: float, event: str, text: str, reason: str | None = None, pool: str | None = None) -> None:
        self.explanation.append(Explained(t, event, text, reason, pool))

    def _x_outlook(self) -> str:
        outlook = getattr(self.memory, "outlook", None)
        if outlook is None:
            return ""
        rate = getattr(outlook, "local_rate", None)
        return (f" [outlook: patience {format_duration(getattr(outlook, 'patience_s', None), days=False)}, "
                f"local GPUs start {'unmeasured' if rate is None else f'{rate * 3600:.1f}/h'}, "
                f"overflow {getattr(outlook, 'overflow_gpus', 0.0):.1f} GPUs]")

    def _x_placement(self, now: float) -> None:
        reply = self.last_tick
        if reply is None:
            return
        p = next((p for p in reply.plan.placements if p.job_id == self.explain), None)
        if p is None:
            return
        key = (p.pool, str(p.reason))
        if key == self._x_placed:
            return
        self._x_placed = key
        where = f"→ {p.pool}" if p.pool is not None else "→ waits"
        self._x_note(now, "placed", f"{where} ({p.reason}): {p.text}{self._x_outlook()}", str(p.reason), p.pool)

    def _x_tick(self, now: float) -> None:
        Simulator._tick(self, now)
        if self.explain in self.queue:
            self._x_placement(now)

    def _x_start(self, job_id: int, node: _Node, now: float) -> None:
        first = job_id not in self.started_at
        Simulator._start(self, job_id, node, now)
        if job_id != self.explain:
            return
        self._x_placement(now)
        job = self._jobs_meta[job_id]
        rt = node.pool
        if rt.is_cloud:
            where = (f"on {rt.name} node #{node.nid} (requested {format_duration(now - node.requested_at, days=False)} "
                     f"before, startup {format_duration(rt.pool.startup_s, days=False)})")
        else:
            where = f"on local node #{node.nid}"
        if first:
            self._x_note(now, "started", f"{where}; waited {format_duration(now - job.waiting_since, days=False)}",
                         pool=rt.name)
        else:
            since = self._x_requeued_at if self._x_requeued_at is not None else now
            self._x_note(now, "started", f"again from the start {where}, "
                         f"{format_duration(now - since, days=False)} after the interruption", pool=rt.name)
        self._x_placed = None  # a re-queue is placed afresh

    def _x_handle(self, t: float, kind: int, a: int, b: int) -> bool:
        x = self.explain
        changed = False
        if kind == _ARRIVE:
            changed = Simulator._handle(self, t, kind, a, b)
            if self.jobs[a].job_id == x:
                job = self.queue[x]
                self._x_note(t, "arrived", f"{job.gpus:g} GPUs for {format_duration(self.run_s[x], days=False)} "
                             f"(declares {format_duration(job.expected_duration_s, days=False)}), pays "
                             f"{job.revenue_usd(self.edsc_usd):.2f} USD after the fee")
        elif kind == _FINISH and a == x:
            run = self.running.get(a)
            changed = Simulator._handle(self, t, kind, a, b)
            if run is not None and run[1] == b:
                self._x_note(t, "finished", f"on {run[0].pool.name}; earned "
                             f"{self._jobs_meta[x].revenue_usd(self.edsc_usd):.2f} USD", pool=run[0].pool.name)
        elif kind == _LOSE and a == x:
            losing = a in self.queue and a not in self.started_at
            paid = self._could_have_paid(self.queue[a], t) if losing else False
            since = self.queue[a].waiting_since if losing else t
            changed = Simulator._handle(self, t, kind, a, b)
            if losing:
                last = self._x_placed
                why = f" while placed → {last[0] or 'waits'} ({last[1]})" if last else ""
                self._x_note(t, "lost", f"claimed by another provider after waiting "
                             f"{format_duration(t - since, days=False)}{why}; a new cloud node "
                             f"{'would' if paid else 'would not'} have paid for it alone",
                             last[1] if last else None)
        elif kind in (_NOTICE, _KILL):
            node = self._node_by_id.get(a)
            ours = node is not None and x in node.jobs
            was_draining = node is not None and node.draining
            changed = Simulator._handle(self, t, kind, a, b)
            if ours and node is not None:
                if kind == _NOTICE and not was_draining:
                    self._x_note(t, "notice", f"spot interruption notice on {node.pool.name} node #{node.nid}",
                                 pool=node.pool.name)
                elif kind == _KILL:
                    self._x_requeued_at = t
                    self._x_note(t, "interrupted", f"{node.pool.name} node #{node.nid} reclaimed; back in the queue, "
                                 "already ours (never lost)", pool=node.pool.name)
        else:
            changed = Simulator._handle(self, t, kind, a, b)
        return changed

    # --- helpers -------------------------------------------------------------------------------------

    def _probe(self, j: SimJob) -> QueuedJob:
        slack = self.settings.declared_slack  # the head sees max_compute_time; the payment is what the run is worth
        return QueuedJob(job_id=j.job_id, gpus=j.gpus, price_per_gpu_s=self.price_planck / slack,
                         expected_duration_s=j.duration_s * slack, waiting_since=j.submit_s)

    def _push(self, t: float, kind: int, a: int = 0, b: int = 0) -> None:
        self.seq += 1
        if kind != _WAKE:
            self.events += 1
        heapq.heappush(self.heap, (t, self.seq, kind, a, b))

    def _wake(self, t: float, now: float) -> None:
        t = math.ceil(t / self.grid - 1e-9) * self.grid
        if t > now and t not in self.wakes:
            self.wakes.add(t)
            self._push(t, _WAKE)

    def _account_busy(self, t: float) -> None:
        dt = t - self.busy_t
        if dt > 0:
            self.local_gpu_s += self.local_busy * dt
            self.cloud_gpu_s += self.cloud_busy * dt
            self.power += self.power_rate * dt
            self.busy_t = t

    def _close_node(self, node: _Node, t: float) -> None:
        rt = node.pool
        rt.nodes.remove(node)
        rt.changed()
        if rt.is_cloud:
            rt.cost += self.ledger.close(node.nid, t)
            rt.node_s += t - node.requested_at

    @property
    def closed_cost(self) -> float:
        return self.ledger.closed_usd

    def _spend_today(self, now: float) -> float:
        return self.ledger.spend_today(now)

    def cloud_cost_so_far(self, now: float) -> float:
        return self.ledger.total(now)

    # --- events --------------------------------------------------------------------------------------

    def _start(self, job_id: int, node: _Node, now: float) -> None:
        job = self.queue.pop(job_id)
        self._account_busy(now)
        g = job.gpus
        node.free -= g
        node.jobs.add(job_id)
        node.idle_since = None
        node.pool.changed()
        if node.pool.is_cloud:
            self.cloud_busy += g
        else:
            self.local_busy += g
            self.power_rate += g * node.pool.power_usd_s
        self.run_id += 1
        self.running[job_id] = (node, self.run_id)
        if job_id not in self.started_at:
            self.started_at[job_id] = now
            self.waits.append(now - job.waiting_since)
            self.served_waits.append(now - job.waiting_since)
        self._push(now + self.run_s[job_id], _FINISH, job_id, self.run_id)
        self._jobs_meta[job_id] = job

    def _profit_row(self, job: QueuedJob, node: _Node, start: float, end: float) -> JobProfit:
        """A finished job's row, priced as the head prices its own (`etrid_ray.profit.cost_share_usd`): its share of
        its node's hourly price, or its GPUs' electricity; paid = what it offered less the chain's fee."""
        seconds = max(0.0, end - start)
        payment = int(job.price_per_gpu_s * job.billable_gpus * job.expected_duration_s)
        paid = payment - payment * PLATFORM_FEE_BPS // 10_000
        pool = node.pool.pool
        return JobProfit(job.job_id, pool.name, str(node.nid), "", pool.is_cloud, job.gpus, start, end,
                         seconds * job.gpus, cost_share_usd(pool, job.gpus, seconds, node.usd_h if pool.is_cloud
                                                            else None),
                         payment, paid, payment - paid, end, None)

    def _stop(self, job_id: int, t: float) -> QueuedJob:
        node, _ = self.running.pop(job_id)
        job = self._jobs_meta[job_id]
        self._account_busy(t)
        g = job.gpus
        node.free += g
        node.jobs.discard(job_id)
        node.pool.changed()
        if node.pool.is_cloud:
            self.cloud_busy -= g
        else:
            self.local_busy -= g
            self.power_rate -= g * node.pool.power_usd_s
        if not node.jobs:
            node.free = node.gpus
            node.idle_since = t
        return job

    def _handle(self, t: float, kind: int, a: int, b: int) -> bool:
        """Applies one event; False when it changed nothing (a job that started before its consumer's patience
        ran out, a node already gone): such events do not tick the policy."""
        if kind == _ARRIVE:
            j = self.jobs[a]
            qj = self._probe(j)
            self.queue[j.job_id] = qj
            self.arrived += 1
            if self.settings.patience_s is not None:
                self._push(t + self.settings.patience_s, _LOSE, j.job_id)
            self.last_work = t
            return True
        elif kind == _FINISH:
            run = self.running.get(a)
            if run is None or run[1] != b:
                return False
            node = run[0]
            job = self._stop(a, t)
            self.revenue += job.revenue_usd(self.edsc_usd)
            if self.settings.per_job:
                self.job_profits.append(self._profit_row(job, node, self.started_at.get(a, t), t))
            self.completed += 1
            self.last_work = t
            return True
        elif kind == _LOSE:
            if a in self.queue and a not in self.started_at:  # a re-queued job started once: ours, never lost
                job = self.queue.pop(a)
                self.lost += 1
                self.departed.append(Departure.of(job, t))
                self.waits.append(t - job.waiting_since)
                if self._could_have_paid(job, t):
                    self.lost_profitable += 1
                self.last_work = t
                return True
        elif kind == _READY:
            node = self._node_by_id.get(a)
            if node is not None and not node.ready:
                node.ready = True
                node.idle_since = t
                node.pool.changed()
                return True
        elif kind == _NOTICE:
            node = self._node_by_id.get(a)
            if node is not None and not node.draining:
                node.draining = True
                node.pool.changed()
                node.pool.interruptions += 1
                self._push(t + node.pool.notice_s, _KILL, a)
                return True
        elif kind == _KILL:
            node = self._node_by_id.pop(a, None)
            if node is not None:
                for job_id in sorted(node.jobs):
                    job = self._stop(job_id, t)
                    self.queue[job_id] = job.claimed_again()
                    self.requeued += 1
                self._close_node(node, t)
                return True
        return False

    def _could_have_paid(self, job: QueuedJob, now: float) -> bool:
        """E3: a new node of the cheapest eligible cloud pool with room, within the max price and the
        daily budget, would have paid for this job alone."""
        budget_left = self.config.daily_cloud_budget_usd - self._spend_today(now)
        seen = self.last_tick.snapshot if self.last_tick is not None else None
        unavailable = {ps.name for ps in seen.pools if ps.unavailable is not None} if seen is not None else set()
        for rt in sorted((p for p in self.pools if p.is_cloud and p.quote is not None),
                         key=lambda p: p.quote.usd_per_gpu_hour):  # type: ignore[union-attr]
            q = rt.quote
            assert q is not None
            if not eligible(job, rt.pool) or not within_max_price(rt.pool, q) or rt.name in unavailable:
                continue
            if sum(1 for n in rt.nodes if not n.draining) >= rt.pool.max_nodes:
                continue
            cost = node_cost_usd(rt.pool, q, job.expected_duration_s, self.config)
            return cost <= budget_left and job.revenue_usd(self.edsc_usd) > cost
        return False

    # --- the policy tick -----------------------------------------------------------------------------

    def _snapshot(self, now: float) -> Snapshot:
        return Snapshot(now=now, pools=tuple(rt.state() for rt in self.pools), queue=tuple(self.queue.values()),
                        spend_today_usd=self._spend_today(now), prices=self.prices, departed=tuple(self.departed))

    def _tick(self, now: float) -> None:
        self.ticks += 1
        snap = self._snapshot(now)
        self.departed = []
        reply = self.last_tick = tick(self.policy, TickRequest(snap, self.config, self.memory, self.capacity))
        self.memory, self.capacity, plan, targets = reply.memory, reply.capacity, reply.plan, reply.targets
        for d in reply.decisions:
            if d.reason is Reason.UNAVAILABLE:
                self.by_name[d.pool].withdrawn -= d.delta
        seen = reply.snapshot if reply.snapshot is not None else snap
        unavailable = frozenset(ps.name for ps in seen.pools if ps.unavailable is not None)
        if unavailable != self.unavailable:
            # a pool became (un)available: jobs move between pools on this tick, and the nodes this tick buys or
            # cancels are capacity the next tick places on again — the live head, re-planning every interval,
            # sees them one interval later, so the simulator looks again then too
            self.unavailable = unavailable
            self._wake(now + self.grid, now)
        elif self.capacity.pools and any(d.direction == "up" for d in reply.decisions):
            # after a shortage, pools ramp up tick by tick as the live head re-plans every interval
            self._wake(now + self.grid, now)
        # dispatch: steered jobs start where their pool has room now (what Ray does with the task)
        for p in plan.steered:
            if p.job_id not in self.queue:
                continue
            rt = self.by_name[p.pool]  # type: ignore[index]  # steered: a pool
            g = self.queue[p.job_id].gpus
            best: _Node | None = None
            for n in rt.nodes:
                if n.ready and not n.draining and n.free >= g - 1e-9 and (best is None or n.free < best.free):
                    best = n
            if best is not None:
                self._start(p.job_id, best, now)
        # scale each pool to its target
        for ps in snap.pools:
            rt = self.by_name[ps.name]
            have = ps.nodes
            want = targets.get(ps.name, have)
            if want > have:
                for _ in range(want - have):
                    self._launch(rt, now)
            elif want < have:
                self._remove(rt, have - want, now)
        self._hints(now, snap, plan)
        if self.settings.record:
            self._record(now)

    def _launch(self, rt: _PoolRt, now: float, *, ready: bool = False) -> None:
        self.nid += 1
        startup = 0.0 if ready or not rt.is_cloud else rt.pool.startup_s
        node = _Node(self.nid, rt, now, ready=startup <= 0)
        if node.ready:
            node.idle_since = now
        rt.nodes.append(node)
        rt.changed()
        self._node_by_id[node.nid] = node
        if rt.is_cloud:
            rt.launches += 1
            self.ledger.open(node.nid, now, node.usd_h, rt.name)
        if startup > 0:
            short_until = rt.shortage.until(now) if rt.shortage is not None else None
            if short_until is None:
                self._push(now + startup, _READY, node.nid)
            else:  # no capacity now: served when the shortage ends, unless withdrawn before (the head's wake-up)
                self._push(short_until + startup, _READY, node.nid)
                self._wake(now + startup + self.config.capacity_margin_s, now)
        if rt.rate > 0:
            self._push(now + self.rng.expovariate(rt.rate), _NOTICE, node.nid)

    def _remove(self, rt: _PoolRt, count: int, now: float) -> None:
        starting = [n for n in rt.nodes if not n.ready and not n.draining]
        idle = sorted((n for n in rt.nodes if n.ready and not n.draining and not n.jobs),
                      key=lambda n: (n.idle_since if n.idle_since is not None else now, n.nid))
        for n in (starting[::-1] + idle)[:count]:
            self._node_by_id.pop(n.nid, None)
            self._close_node(n, now)

    def _hints(self, now: float, snap: Snapshot, plan: PlacementPlan) -> None:
        """Wake-ups at the instants a time-based rule can change the policy's answer. Pools held at a
        fixed size (min_nodes = max_nodes, e.g. local GPUs) cannot change, so their windows wake nothing."""
        cfg = self.config
        fixed = {rt.name for rt in self.pools if rt.pool.min_nodes >= rt.pool.max_nodes}
        for rt in self.pools:
            if rt.name in fixed:
                continue
            for n in rt.nodes:
                if n.ready and not n.draining and not n.jobs and n.idle_since is not None:
                    self._wake(n.idle_since + cfg.idle_timeout_s, now)
        for until in self.capacity.backing_off(now).values():  # a pool backing off may be asked again then
            self._wake(until, now)
        mem = self.memory
        if isinstance(mem, PolicyMemory):
            # what the queue teaches moves at fixed instants, and a job left for local GPUs becomes overflow
            # as it ages: both change the answer with no event
            # (while anything can still happen: a queue nothing will ever serve must not tick forever)
            if self.events and (self.queue or mem.outlook.local_waiting or mem.outlook.has_pending):
                self._wake(mem.outlook.next_learning(now), now)
            if plan.overflows_at < math.inf:
                self._wake(plan.overflows_at, now)
            for name, pm in mem.pools.items():
                if name in fixed:
                    continue
                if pm.over_since is not None:
                    self._wake(pm.over_since + cfg.scale_up_sustain_s, now)
                if pm.under_since is not None:
                    self._wake(pm.under_since + cfg.scale_down_sustain_s, now)
                for t, window in ((pm.last_up, cfg.scale_up_wait_s), (pm.last_up, cfg.stabilization_s),
                                  (pm.last_down, cfg.stabilization_s)):
                    if t is not None:
                        self._wake(t + window, now)
            if self.queue:  # a growable pool's steered jobs cross the average-wait threshold
                # waiting jobs count against a local pool only where one can grow
                growable_local = any(not rt.is_cloud and rt.name not in fixed for rt in self.pools)
                for name, jobs in steered_jobs(snap, plan, waiting=growable_local).items():
                    waiting = [j.waiting_since for j in jobs if j.job_id in self.queue]
                    if name not in fixed and waiting:
                        self._wake(sum(waiting) / len(waiting) + cfg.scale_up_wait_s, now)
        elif isinstance(mem, HpaMemory):
            sync = (mem.last_sync if mem.last_sync is not None else now) + HPA_SYNC_PERIOD_S
            if mem.over_since is not None:
                self._wake(max(sync, mem.over_since + cfg.scale_up_sustain_s), now)
            if mem.under_since is not None:
                self._wake(max(sync, mem.under_since + cfg.scale_down_sustain_s), now)
            if self.queue:  # the HPA's average wait (the whole queue's) crosses its threshold
                waiting = [j.waiting_since for j in self.queue.values()]
                crossing = sum(waiting) / len(waiting) + cfg.scale_up_wait_s
                if crossing > now:
                    self._wake(max(sync, crossing), now)
        elif mem is not None:  # a policy this simulator does not know: tick at the head's pace
            self._wake(now + self.grid, now)

    def _record(self, now: float) -> None:
        nodes = tuple(sum(1 for n in rt.nodes if not n.draining) for rt in self.pools)
        key = (len(self.queue), nodes)
        if key == self._last_rec:
            return
        self._last_rec = key
        s = self.series
        s["t"].append(now)
        s["queue"].append(len(self.queue))
        self._account_busy(now)
        s["profit"].append(self.revenue - self.cloud_cost_so_far(now) - self.power)
        for rt, count in zip(self.pools, nodes, strict=True):
            s["nodes"][rt.name].append(count)

    # --- the run -------------------------------------------------------------------------------------

    def run(self) -> SimResult:
        wall0 = time.perf_counter()
        for rt in self.pools:  # min_nodes (local pools: all their nodes) exist, ready, from the start
            for _ in range(rt.pool.min_nodes):
                self._launch(rt, 0.0, ready=True)
        for i, j in enumerate(self.jobs):
            self._push(j.submit_s, _ARRIVE, i)
        heap = self.heap
        now = 0.0
        total = len(self.jobs)
        while heap:
            t_first = heap[0][0]
            now = max(now, math.ceil(t_first / self.grid - 1e-9) * self.grid)
            if (self.arrived == total and not self.queue and not self.running
                    and now - self.last_work > self.settings.drain_s):
                now = self.last_work + self.settings.drain_s
                break
            changed = False
            while heap and heap[0][0] <= now:
                t, _, kind, a, b = heapq.heappop(heap)
                if kind == _WAKE:
                    self.wakes.discard(t)
                    changed = True
                else:
                    self.events -= 1
                    changed |= self._handle(t, kind, a, b)
            if changed:
                self._tick(now)
            if self.arrived == total and not self.queue and not self.running and not any(
                    n for rt in self.pools if rt.is_cloud for n in rt.nodes):
                break
        if self.settings.record:  # the last point, so every curve runs to the end of the run
            self._last_rec = None
            self._record(now)
        return self._finish(now, time.perf_counter() - wall0)

    def _finish(self, end: float, wall: float) -> SimResult:
        x = self.explain
        if x is not None and (x in self.queue or x in self.running):
            self._x_note(end, "unserved", "still waiting when the run ended" if x in self.queue
                         else f"still running on {self.running[x][0].pool.name} when the run ended")
        self._account_busy(end)
        for rt in self.pools:
            for n in list(rt.nodes):
                self._close_node(n, end)
        local_gpus = sum(rt.pool.gpus_per_node * rt.pool.min_nodes for rt in self.pools if not rt.is_cloud)
        cloud_node_gpu_s = sum(rt.node_s * rt.pool.gpus_per_node for rt in self.pools if rt.is_cloud)
        power = self.power
        unserved = len(self.queue) + len(self.running)
        jobs = {"trace": len(self.all_jobs), "servable": len(self.jobs), "unservable": self.unservable,
                "completed": self.completed, "lost": self.lost, "unserved_at_end": unserved,
                "requeued": self.requeued}
        waits = self.waits
        return SimResult(
            policy=self.policy.name, jobs=jobs, revenue_usd=self.revenue, cloud_cost_usd=self.closed_cost,
            local_power_usd=power,
            wait_s=_wait_stats(waits), served_wait_s=_wait_stats(self.served_waits),
            utilization={"local": self.local_gpu_s / (local_gpus * end) if local_gpus and end > 0 else 0.0,
                         "cloud": self.cloud_gpu_s / cloud_node_gpu_s if cloud_node_gpu_s else 0.0},
            node_launches={rt.name: rt.launches for rt in self.pools if rt.is_cloud},
            interruptions=sum(rt.interruptions for rt in self.pools),
            lost_while_profitable=self.lost_profitable,
            cloud_cost_by_pool={rt.name: rt.cost for rt in self.pools if rt.is_cloud},
            node_hours_by_pool={rt.name: rt.node_s / 3600 for rt in self.pools if rt.is_cloud},
            end_s=end, ticks=self.ticks, wall_s=wall, series=self.series,
            withdrawn_requests={rt.name: rt.withdrawn for rt in self.pools if rt.is_cloud},
            explanation=self.explanation, job_profits=self.job_profits)


def simulate(trace: Trace | list[SimJob], policy: str | Policy,
             scenario: Scenario | SimSettings | None = None, *, explain: int | None = None) -> SimResult:
    """Replay `trace` through `policy` (a name in `scaling.POLICIES` or a `Policy`); with `explain`, the
    result's `explanation` is that job id's timeline (`format_explanation` prints it)."""
    return Simulator(trace, policy, scenario if scenario is not None else SimSettings(), explain=explain).run()
