"""The loop that applies scaling: observe Ray, ask the pure policy, steer and request capacity.

`observe()` turns the live cluster into a `scaling.Snapshot` (nodes and free GPUs per pool,
found through each node's `pool:<name>` resource); `plan()` runs the pure placement and
decision functions on it; `apply()` turns per-pool targets into node-shaped
`ray.autoscaler.sdk.request_resources` bundles, so the autoscaler (KubeRay in production, the
fake multi-node provider in tests) grows exactly those worker groups before any task exists,
and releases them when the queue drains. Every decision is logged with its reason and counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import ray
from ray._private.state import available_resources_per_node
from ray.autoscaler.sdk import request_resources

from etrid_ray.config import ProviderConfig
from etrid_ray.pools import Pool
from etrid_ray.prices.catalog import PriceQuote, PriceSource
from etrid_ray.scaling import POLICIES, Decision, PlacementPlan, Policy, PoolState, QueuedJob, Snapshot, apply
from etrid_ray.telemetry.metrics import CLOUD_COST_USD

log = logging.getLogger(__name__)


def draining_node_ids() -> set[str]:
    """Nodes Ray is draining (spot notice, preStop, idle removal): no new work may be steered there."""
    try:
        from ray._private.state import state

        return set(state.get_draining_nodes())
    except Exception:  # an older or newer Ray without the call: no node is known to drain
        return set()


def draining_gpus() -> float:
    draining = draining_node_ids()
    if not draining:
        return 0.0
    return sum(float(n.get("Resources", {}).get("GPU", 0.0)) for n in ray.nodes()
               if n.get("Alive") and n.get("NodeID") in draining)


def refresh_autoscaler_version() -> None:
    """Ray caches, per process, whether the cluster runs autoscaler v1 or v2, and `request_resources` writes
    where that cache says. A process that talked to another cluster before (a notebook, a test session)
    would ask an autoscaler that is not listening: read it again from the cluster we are connected to."""
    if not ray.is_initialized():
        return
    try:
        from ray.autoscaler.v2.utils import is_autoscaler_v2

        is_autoscaler_v2(fetch_from_server=True)
    except Exception:  # an older or newer Ray without the call: keep its own answer
        log.debug("could not re-read the autoscaler version", exc_info=True)


def alive_nodes_per_pool() -> dict[str, int]:
    """Alive Ray nodes per pool, found through each node's `pool:<name>` resource."""
    out: dict[str, int] = {}
    for node in ray.nodes():
        if node.get("Alive"):
            for key in node.get("Resources", {}):
                if key.startswith("pool:"):
                    out[key[5:]] = out.get(key[5:], 0) + 1
    return out


def accrued_usd(nodes: int, usd_per_node_hour: float, seconds: float) -> float:
    """Spend of `nodes` nodes over `seconds` at a per-node-hour price (per-second billing)."""
    return nodes * usd_per_node_hour * max(0.0, seconds) / 3600


@dataclass
class ScaleStep:
    snapshot: Snapshot
    plan: PlacementPlan
    decisions: list[Decision]
    targets: dict[str, int]


@dataclass
class Scaler:
    config: ProviderConfig
    pools: list[Pool]
    policy: Policy = field(default_factory=lambda: POLICIES["profit"])
    prices: dict[str, PriceQuote] = field(default_factory=dict)
    price_source: PriceSource | None = None  # default: clouds.price_source(config) (catalog unless live_prices)
    prices_at: float = 0.0  # when `prices` were last read from the source (policy clock)
    # re-price on a thread of its own: live cloud APIs take seconds (and time out slowly) and the scaling loop
    # must keep its 1 s pace meanwhile, deciding on the last quotes (the head sets this)
    refresh_in_background: bool = False
    memory: Any = None
    requested: dict[str, int] = field(default_factory=dict)   # nodes asked for per pool (cloud pools)
    decisions_total: Counter[tuple[str, str]] = field(default_factory=Counter)  # (pool, reason) → count
    history: list[tuple[float, dict[str, int]]] = field(default_factory=list)  # alive nodes per pool over time
    spend_usd: float = 0.0
    _spend_day: int = -1
    _idle_since: dict[str, float] = field(default_factory=dict)
    _last_observed: float = 0.0
    first_request_at: float | None = None
    _refreshing: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.by_name = {p.name: p for p in self.pools}
        refresh_autoscaler_version()
        self._fixed_prices = bool(self.prices)  # prices given explicitly are never re-read
        if self.price_source is None and not self._fixed_prices:
            from etrid_ray.clouds import price_source

            self.price_source = price_source(self.config)
        if not self.prices:
            self.refresh_prices(time.time())

    def refresh_prices(self, now: float) -> None:
        """Re-quote every pool (the feed itself limits how often it calls the cloud APIs). The new quotes
        replace the old ones in one assignment, so a reader on another thread sees either set whole."""
        if self.price_source is None:
            return
        prices: dict[str, PriceQuote] = {}
        for pool in self.pools:
            try:
                q = self.price_source.quote(pool)
            except Exception:  # a price source must never stop scaling: keep the last quote
                log.warning("pricing pool %s failed; keeping its last quote", pool.name, exc_info=True)
                q = self.prices.get(pool.name)
            if q is not None:
                prices[pool.name] = q
        self.prices = prices
        self.prices_at = now

    def maybe_refresh_prices(self, now: float) -> bool:
        """Re-price every `price_refresh_s` (never when prices were given explicitly); True when a refresh
        ran (or, in the background, started). At most one background refresh is in flight."""
        if self._fixed_prices or now - self.prices_at < self.config.price_refresh_s:
            return False
        if not self.refresh_in_background:
            self.refresh_prices(now)
            return True
        if self._refreshing is not None and self._refreshing.is_alive():
            return False
        self.prices_at = now  # the interval restarts now, however long the cloud takes to answer
        self._refreshing = threading.Thread(target=self.refresh_prices, args=(now,), name="etrid-price-refresh",
                                            daemon=True)
        self._refreshing.start()
        return True

    # observing -----------------------------------------------------------------------------------

    def pool_of_node(self, resources: dict[str, float]) -> Pool | None:
        for key in resources:
            if key.startswith("pool:"):
                return self.by_name.get(key[5:])
        return None

    def observe(self, queue: list[QueuedJob], now: float | None = None) -> Snapshot:
        now = time.time() if now is None else now
        free_by_node = available_resources_per_node()
        alive: Counter[str] = Counter()
        free: Counter[str] = Counter()
        busy: Counter[str] = Counter()
        idle: dict[str, list[float | None]] = {}
        node_free: dict[str, list[float]] = {}
        seen_nodes = set()
        draining = draining_node_ids()
        for node in ray.nodes():
            if not node.get("Alive") or node.get("NodeID") in draining:
                continue  # a draining node is leaving: it offers no room and needs no replacement request
            pool = self.pool_of_node(node.get("Resources", {}))
            if pool is None:
                continue
            node_id = node["NodeID"]
            seen_nodes.add(node_id)
            total_gpus = float(node["Resources"].get("GPU", 0.0))
            free_gpus = float(free_by_node.get(node_id, {}).get("GPU", 0.0))
            alive[pool.name] += 1
            free[pool.name] += free_gpus
            busy[pool.name] += total_gpus - free_gpus
            if free_gpus >= total_gpus - 1e-9:
                since = self._idle_since.setdefault(node_id, now)
            else:
                self._idle_since.pop(node_id, None)
                since = None
            idle.setdefault(pool.name, []).append(since)
            node_free.setdefault(pool.name, []).append(free_gpus)
        for node_id in [n for n in self._idle_since if n not in seen_nodes]:
            del self._idle_since[node_id]
        self._accrue_spend(alive, now)  # at the prices that held over the interval, then re-price
        self.maybe_refresh_prices(now)
        prices = self.prices  # one set of quotes for this whole snapshot, whatever a refresh does meanwhile
        states = []
        for pool in self.pools:
            pending = max(0, self.requested.get(pool.name, 0) - alive[pool.name]) if pool.is_cloud else 0
            states.append(PoolState(pool, alive=alive[pool.name], pending=pending,
                                    idle_since=tuple(idle.get(pool.name, [])), gpus_busy=busy[pool.name],
                                    gpus_free=free[pool.name], node_free=tuple(node_free.get(pool.name, []))))
        self.history.append((now, dict(alive)))
        return Snapshot(now=now, pools=tuple(states), queue=tuple(queue), spend_today_usd=self.spend_usd,
                        prices=prices)

    def _accrue_spend(self, alive: Counter[str], now: float) -> None:
        """Cloud spend accrues per node-second at the pool's quoted price: into today's total (the
        daily budget's window, reset each UTC day) and the `etrid_cloud_cost_usd_total` counter."""
        day = int(now // 86_400)
        if day != self._spend_day:
            self._spend_day, self.spend_usd = day, 0.0
        if self._last_observed:
            dt = max(0.0, now - self._last_observed)
            for name, count in alive.items():
                quote = self.prices.get(name)
                pool = self.by_name.get(name)
                if quote is not None and pool is not None and pool.is_cloud:
                    usd = accrued_usd(count, quote.usd_per_node_hour, dt)
                    self.spend_usd += usd
                    CLOUD_COST_USD.labels(pool=name, cloud=pool.kind).inc(usd)
        self._last_observed = now

    # deciding and applying -----------------------------------------------------------------------

    def step(self, queue: list[QueuedJob], now: float | None = None) -> ScaleStep:
        snapshot = self.observe(queue, now)
        plan = self.policy.place(snapshot, self.config)
        if self.policy.name == "profit":  # the same plan the head steers with
            decisions, self.memory = self.policy.decide(snapshot, self.config, self.memory, plan=plan)
        else:
            decisions, self.memory = self.policy.decide(snapshot, self.config, self.memory)
        targets = apply(decisions, snapshot)
        for d in decisions:
            self.decisions_total[(d.pool, str(d.reason))] += 1
            log.info("scale %s %s → %d nodes (%+d): %s [%s]", d.pool, d.direction, d.target, d.delta, d.text,
                     d.reason)
        self._request(targets)
        return ScaleStep(snapshot, plan, decisions, targets)

    def _request(self, targets: dict[str, int]) -> None:
        """Node-shaped bundles per cloud pool: the autoscaler launches exactly those node types and
        keeps them while asked; an empty request releases them to the idle timeout."""
        wanted = {name: n for name, n in targets.items() if self.by_name[name].is_cloud and n > 0}
        if wanted == {k: v for k, v in self.requested.items() if v > 0}:
            return
        bundles: list[dict[str, float]] = []
        for name, count in wanted.items():
            pool = self.by_name[name]
            bundles += [{"GPU": float(pool.gpus_per_node), pool.resource: 1.0}] * count
        request_resources(bundles=bundles)
        if bundles and self.first_request_at is None:
            self.first_request_at = time.time()
        self.requested = dict(wanted)
        log.info("requested capacity: %s", wanted or "none (released)")

    def release(self) -> None:
        if self.requested:
            request_resources(bundles=[])
            self.requested = {}
