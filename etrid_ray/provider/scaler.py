"""The loop that applies scaling: observe Ray, run the shared scaling tick, steer and request capacity.

`observe()` turns the live cluster into a `scaling.Snapshot` (nodes and free GPUs per pool,
found through each node's pool label); `step()` runs the pure `scaling.tick` on it —
the same function the simulator runs — and turns per-pool targets into node-shaped
`ray.autoscaler.sdk.request_resources` bundles, each with its pool's label selector
(`pools.capacity_request`), so the autoscaler (KubeRay in production, the
fake multi-node provider in tests) grows exactly those worker groups before any task exists,
and releases them when the queue drains. Every decision is logged with its reason and counted.

Requests that never come (no spot capacity, quota, an image that cannot be pulled) are judged in the
pure tick (`scaling.capacity`): each pool's pending requests carry their request times
(`PoolState.pending_since`, from their open bills) and the startup the head has learnt for the pool
(`startup_of`); the tick answers targets without the overdue ones, and sending those targets is the
withdrawal — Ray's `request_resources` replaces the whole request, so the pool's bundles are gone
from it, and the pool is marked unavailable (`unavailable()`) for the backoff.

Cloud spend follows the one billing rule (`scaling.billing`, as in the simulator): a node is
billed from its request — per pool, the oldest pending request becomes the next node of that
pool Ray shows alive — until it is gone (the last instant this loop saw it alive) or its pending
request is withdrawn, per second with a one-minute minimum. Ray is reached only through a
`ClusterPort`, so a test can drive the real loop on a simulated cluster.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import count
from typing import Any

from etrid_ray.clouds import price_source
from etrid_ray.config import ProviderConfig
from etrid_ray.pools import CapacityRequest, Pool, capacity_request
from etrid_ray.prices.catalog import PriceQuote, PriceSource
from etrid_ray.provider.cluster_port import ClusterPort, RayCluster, draining_node_ids, refresh_autoscaler_version
from etrid_ray.provider.cluster_view import ClusterView
from etrid_ray.provider.spend import CLOUD_COST_USD
from etrid_ray.scaling import (
    POLICIES,
    CapacityMemory,
    Decision,
    PlacementPlan,
    Policy,
    PoolState,
    QueuedJob,
    Snapshot,
)
from etrid_ray.scaling.billing import NodeLedger
from etrid_ray.scaling.state import Departure
from etrid_ray.scaling.tick import TickRequest, tick

log = logging.getLogger(__name__)

__all__ = ["ClusterPort", "RayCluster", "ScaleStep", "Scaler", "alive_nodes_per_pool",
           "draining_node_ids", "refresh_autoscaler_version"]


def alive_nodes_per_pool() -> dict[str, int]:
    """Alive Ray nodes per pool of the connected cluster (nodes of no pool left out)."""
    return ClusterView.read(RayCluster()).nodes_per_pool()


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
    capacity: CapacityMemory = field(default_factory=CapacityMemory)  # the capacity rule's memory (scaling.capacity)
    # the startup the head has learnt for a pool (None: not learnt yet; the pool's declared startup_s is used)
    startup_of: Callable[[Pool], float | None] | None = None
    requested: dict[str, int] = field(default_factory=dict)   # nodes asked for per pool (cloud pools)
    decisions_total: Counter[tuple[str, str]] = field(default_factory=Counter)  # (pool, reason) → count
    history: list[tuple[float, dict[str, int]]] = field(default_factory=list)  # alive nodes per pool over time
    # Ray, observed and asked through one seam (default: the connected cluster)
    cluster: ClusterPort = field(default_factory=RayCluster)
    ledger: NodeLedger = field(default_factory=NodeLedger)  # cloud bills (scaling.billing's rule)
    spend_usd: float = 0.0  # cloud spend this UTC day, as of the last observation (the daily budget's view)
    _idle_since: dict[str, float] = field(default_factory=dict)
    _seen_at: dict[str, float] = field(default_factory=dict)  # Ray node id → last time seen alive (cloud pools)
    _pending_bills: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # pool → keys, oldest first
    _reported_usd: dict[str, float] = field(default_factory=dict)  # pool → spend already added to the counter
    _request_ids: Iterator[int] = field(default_factory=count)  # keys of pending requests' bills
    first_request_at: float | None = None
    _refreshing: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.by_name = {p.name: p for p in self.pools}
        self._fixed_prices = bool(self.prices)  # prices given explicitly are never re-read
        if self.price_source is None and not self._fixed_prices:
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

    def observe(self, queue: Sequence[QueuedJob], now: float | None = None,
                departed: Sequence[Departure] = ()) -> Snapshot:
        now = time.time() if now is None else now
        view = ClusterView.read(self.cluster, now)
        alive: Counter[str] = Counter()
        free: Counter[str] = Counter()
        busy: Counter[str] = Counter()
        idle: dict[str, list[float | None]] = {}
        node_free: dict[str, list[float]] = {}
        seen_nodes = set()
        cloud_nodes: dict[str, Pool] = {}  # alive cloud nodes, draining ones too: they are billed until gone
        for node in view.alive:
            pool = self.by_name.get(node.pool) if node.pool is not None else None
            if pool is None:
                continue
            node_id = node.node_id
            if pool.is_cloud:
                cloud_nodes[node_id] = pool
            if node.draining:
                continue  # a draining node is leaving: it offers no room and needs no replacement request
            seen_nodes.add(node_id)
            total_gpus, free_gpus = node.gpus, node.free_gpus
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
        self._bill_nodes(cloud_nodes, now)  # at the prices the nodes were requested at, then re-price
        self.maybe_refresh_prices(now)
        prices = self.prices  # one set of quotes for this whole snapshot, whatever a refresh does meanwhile
        states = []
        for pool in self.pools:
            pending = max(0, self.requested.get(pool.name, 0) - alive[pool.name]) if pool.is_cloud else 0
            since: tuple[float, ...] = ()
            if pool.is_cloud:
                self._sync_pending_bills(pool, pending, now)  # e.g. Ray relaunching a node that went away
                since = tuple(self.ledger.bill(k).opened_at for k in self._pending_bills.get(pool.name, ()))
            startup = self.startup_of(pool) if self.startup_of is not None and pool.is_cloud else None
            states.append(PoolState(pool, alive=alive[pool.name], pending=pending,
                                    idle_since=tuple(idle.get(pool.name, [])), gpus_busy=busy[pool.name],
                                    gpus_free=free[pool.name], node_free=tuple(node_free.get(pool.name, [])),
                                    pending_since=since, startup_s=startup))
        self.history.append((now, dict(alive)))
        self._account(now)
        return Snapshot(now=now, pools=tuple(states), queue=tuple(queue), spend_today_usd=self.spend_usd,
                        prices=prices, departed=tuple(departed))

    # billing ---------------------------------------------------------------------------------------

    def _bill_nodes(self, alive: dict[str, Pool], now: float) -> None:
        """Nodes gone since the last look close their bills when last seen alive; a node seen for the first time
        takes over its pool's oldest pending request's bill (billed from that request), or opens one now when
        nobody asked for it (a minimum set by the cluster, a restarted head)."""
        for node_id in [n for n in self._seen_at if n not in alive]:
            last = self._seen_at.pop(node_id)
            if node_id in self.ledger:
                self.ledger.close(node_id, last)
        for node_id, pool in alive.items():
            if node_id not in self._seen_at and node_id not in self.ledger:
                waiting = self._pending_bills.get(pool.name)
                if waiting:
                    self.ledger.rekey(waiting.pop(0), node_id)
                else:
                    self.ledger.open(node_id, now, self._usd_per_node_hour(pool), pool.name)
            self._seen_at[node_id] = now

    def _sync_pending_bills(self, pool: Pool, pending: int, now: float) -> None:
        """One open bill per pending request: new requests open theirs now; withdrawn ones (newest first, as
        the simulator cancels starting nodes) close now — a minute's charge at least."""
        waiting = self._pending_bills.setdefault(pool.name, [])
        while len(waiting) < pending:
            key = ("request", next(self._request_ids))
            self.ledger.open(key, now, self._usd_per_node_hour(pool), pool.name)
            waiting.append(key)
        while len(waiting) > pending:
            self.ledger.close(waiting.pop(), now)

    def _usd_per_node_hour(self, pool: Pool) -> float:
        quote = self.prices.get(pool.name)
        return quote.usd_per_node_hour if quote is not None else 0.0

    def _account(self, now: float) -> None:
        """Today's spend (the daily budget's window) and the `etrid_cloud_cost_usd_total` counter, which
        grows by each pool's billed spend since it was last fed."""
        self.spend_usd = self.ledger.spend_today(now)
        for name, usd in self.ledger.total_by_pool(now).items():
            pool = self.by_name.get(name)
            grown = usd - self._reported_usd.get(name, 0.0)
            if pool is not None and grown > 0:
                CLOUD_COST_USD.labels(pool=name, cloud=pool.kind).inc(grown)
                self._reported_usd[name] = usd

    # deciding and applying -----------------------------------------------------------------------

    def step(self, queue: Sequence[QueuedJob], now: float | None = None,
             departed: Sequence[Departure] = ()) -> ScaleStep:
        snapshot = self.observe(queue, now, departed)
        reply = tick(self.policy, TickRequest(snapshot, self.config, self.memory, self.capacity))
        self.memory, self.capacity = reply.memory, reply.capacity
        for d in reply.decisions:
            self.decisions_total[(d.pool, str(d.reason))] += 1
            log.info("scale %s %s → %d nodes (%+d): %s [%s]", d.pool, d.direction, d.target, d.delta, d.text,
                     d.reason)
        self._request(reply.targets, snapshot)
        return ScaleStep(snapshot, reply.plan, reply.decisions, reply.targets)

    def _request(self, targets: dict[str, int], snapshot: Snapshot) -> None:
        """Node-shaped bundles per cloud pool: the autoscaler launches exactly those node types and
        keeps them while asked; an empty request releases them to the idle timeout."""
        wanted = {name: n for name, n in targets.items() if self.by_name[name].is_cloud and n > 0}
        if wanted == {k: v for k, v in self.requested.items() if v > 0}:
            return
        request = capacity_request(self.by_name, wanted)
        self.cluster.request(request)
        if request.bundles and self.first_request_at is None:
            self.first_request_at = snapshot.now
        self.requested = dict(wanted)
        for ps in snapshot.pools:
            if ps.pool.is_cloud:
                self._sync_pending_bills(ps.pool, max(0, self.requested.get(ps.name, 0) - ps.alive), snapshot.now)
        log.info("requested capacity: %s", wanted or "none (released)")

    def unavailable(self, now: float | None = None) -> dict[str, str]:
        """Pools the capacity rule holds back now (their requests never came), with why: what status shows."""
        now = time.time() if now is None else now
        return {name: f"{self.capacity.get(name).why}; asked again in {until - now:.0f} s"
                for name, until in self.capacity.backing_off(now).items()}

    def release(self) -> None:
        if self.requested:
            self.cluster.request(CapacityRequest())
            self.requested = {}
