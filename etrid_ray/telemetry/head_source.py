"""A `Snapshot` of a running `ProviderHead`, and the head's telemetry: HTTP server, Ray metrics, decisions.

Everything is read from the head at the moment of the scrape: its typed `HeadStatus` (a copy the head
takes under its own lock), the scaler's decision counter and spend, its prices, and the head's cluster view
(Ray's nodes and free GPUs per pool). Nothing is counted twice, and nothing reaches into the head's fields.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from statistics import fmean
from typing import Any

from etrid_ray.config import section_from_env
from etrid_ray.prices.catalog import quotes_for
from etrid_ray.provider.cluster_view import PoolLoad
from etrid_ray.provider.stats import HeadStatus
from etrid_ray.telemetry.metrics import (
    PBC,
    RPC_ERROR_KINDS,
    GpuView,
    PoolView,
    ProviderView,
    Snapshot,
    build_registry,
    rpc_error_kind,
)
from etrid_ray.telemetry.ray_metrics import RayMetricsBridge
from etrid_ray.telemetry.server import MetricsServer

log = logging.getLogger(__name__)

DURATION_SAMPLES = 100
RECENT_DECISIONS = 50
RUNNING_SHOWN = 20
SCALER_LOGGER = "etrid_ray.provider.scaler"


def _copy(fn: Callable[[], Any]) -> Any:
    """Copies a collection another thread may be changing; retries the rare 'changed during iteration'."""
    for _ in range(5):
        try:
            return fn()
        except RuntimeError:
            time.sleep(0)
    return fn()


def _quantile(samples: list[float], q: float) -> float:
    if not samples:
        return 0.0
    data = sorted(samples)
    return float(data[min(len(data) - 1, int(round(q * (len(data) - 1))))])


class DecisionLog(logging.Handler):
    """The scaler logs every decision (`scale <pool> <direction> → <target> nodes (<delta>): <text>
    [<reason>]`) with its values as the record's args; this keeps the most recent ones, with their time,
    for `etrid-ray status`. (The scaler keeps only counts.)"""

    def __init__(self, maxlen: int = RECENT_DECISIONS) -> None:
        super().__init__(level=logging.INFO)
        self.recent: deque[dict[str, Any]] = deque(maxlen=maxlen)

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if not (isinstance(record.msg, str) and record.msg.startswith("scale ") and isinstance(args, tuple)
                and len(args) == 6):
            return
        pool, direction, target, delta, text, reason = args
        self.recent.append({"at": record.created, "pool": str(pool), "direction": str(direction),
                            "target": int(target), "delta": int(delta), "text": str(text), "reason": str(reason)})

    def attach(self) -> DecisionLog:
        logger = logging.getLogger(SCALER_LOGGER)
        logger.addHandler(self)
        if not logger.isEnabledFor(logging.INFO):
            logger.setLevel(logging.INFO)
        return self

    def detach(self) -> None:
        logging.getLogger(SCALER_LOGGER).removeHandler(self)


def head_snapshot(head: Any, decisions: DecisionLog | None = None, *, with_ray: bool = True) -> Snapshot:
    """Reads a `ProviderHead` now: its typed status (copied under its lock), its pools and scaler, and the
    cluster view it scales on. `with_ray=False` leaves out Ray's node view (pools then show only what the
    scaler requested)."""
    st: HeadStatus = head.status()
    now = st.taken_at
    waits = [max(0.0, now - t) for t in st.waiting_since if t]
    rpc = dict.fromkeys(RPC_ERROR_KINDS, 0)
    for name, n in st.errors.items():
        kind = rpc_error_kind(name)
        if kind != "other":
            rpc[kind] += n
    rpc["reconnect"] = st.reconnects

    ray_pools = head.cluster.view().pools(head.config.provider.pool) if with_ray else {}
    total_gpus = sum(p.total for p in ray_pools.values())
    free_gpus = sum(p.free for p in ray_pools.values())
    if total_gpus > 0:
        utilization = min(100.0, max(0.0, (total_gpus - free_gpus) / total_gpus * 100))
    else:  # no Ray view: the GPUs our running tasks hold, of the GPUs this provider declared
        utilization = min(100.0, sum(r.gpus for r in st.running_jobs) / max(1, st.gpus_declared) * 100)

    scaler = head.scaler
    requested = dict(scaler.requested) if scaler is not None else {}
    prices = dict(scaler.prices) if scaler is not None else _catalog_quotes(head)
    pools: list[PoolView] = []
    names = [p.name for p in head.pools] + [n for n in ray_pools if n not in {p.name for p in head.pools}]
    by_name = {p.name: p for p in head.pools}
    for name in names:
        pool = by_name.get(name)
        live = ray_pools.get(name, PoolLoad())
        want = int(requested.get(name, 0))
        gpn = pool.gpus_per_node if pool is not None else 0
        quote = prices.get(name)
        pools.append(PoolView(
            name=name, kind=pool.kind if pool is not None else "local",
            gpus_busy=live.total - live.free, gpus_idle=live.free,
            gpus_pending=float(max(0, want - live.nodes) * gpn), nodes_alive=live.nodes, nodes_requested=want,
            price_usd_per_gpu_hour=quote.usd_per_gpu_hour if quote is not None else None,
            price_source=quote.source if quote is not None else None,
            price_age_s=max(0.0, now - quote.as_of.timestamp()) if quote is not None else None))

    address = st.address
    running = sorted(st.running_jobs, key=lambda r: r.dispatched_at)
    return Snapshot(
        source="head", taken_at=now, ok=True, address=address, draining=st.draining, best_block=st.best_block,
        queue={"pending": st.queue_depth, "assigned": st.running + st.to_settle, "completed": st.completed},
        avg_wait_s=fmean(waits) if waits else 0.0,
        avg_duration_s=fmean(st.durations) if st.durations else 0.0,
        queue_to_start_s={"0.5": st.queue_to_start_p50, "0.95": st.queue_to_start_p95},
        result_to_chain_s={"0.5": st.result_to_chain_p50, "0.99": st.result_to_chain_p99},
        providers=[ProviderView(address, gpus=len(st.gpus), utilization_pct=utilization,
                                jobs_completed=st.completed, earnings_planck=st.earnings_planck,
                                running=st.running)],
        gpus=[GpuView(g, address, "Active", st.last_heartbeat) for g in st.gpus],
        pools=pools,
        decisions=[(p, r, int(n)) for (p, r), n in
                   (_copy(lambda: dict(scaler.decisions_total)) if scaler is not None else {}).items()],
        recent_decisions=list(decisions.recent) if decisions is not None else [],
        claims={"won": st.claimed, "lost": st.lost_claims},
        failures=dict(st.failed), skipped=dict(st.skipped), rpc_errors=rpc, head_errors=dict(st.errors),
        preemptions=dict(st.preempted), retries=st.retried,
        loop_s={"0.5": _quantile(list(st.loop_seconds), 0.5), "0.99": _quantile(list(st.loop_seconds), 0.99)},
        running=st.running,
        running_jobs=[{"job_id": r.job_id, "gpus": r.gpus, "pool": r.pool, "gpu_id": r.gpu_id,
                       "age_s": max(0.0, now - r.dispatched_at), "preemptions": r.preemptions}
                      for r in running[:RUNNING_SHOWN]],
        net_profit_usd=dict(st.net_profit_usd),
        spend_today_usd=float(scaler.spend_usd) if scaler is not None else 0.0,
        budget_usd=float(head.config.scaling.daily_cloud_budget_usd),
    )


_QUOTES: dict[int, dict[str, Any]] = {}


def _catalog_quotes(head: Any) -> dict[str, Any]:
    """The shipped catalog's quotes for the head's pools (what the scaler would use), read once per head."""
    key = id(head)
    if key not in _QUOTES:
        _QUOTES.clear()
        _QUOTES[key] = quotes_for(head.pools)
    return _QUOTES[key]


class HeadTelemetry:
    """The head's ways out: `/metrics`, `/healthz`, `/readyz` on `host:port` (the config's `telemetry.metrics_host`
    and `metrics_port`, with this process's `ETRID_METRICS_HOST` / `ETRID_METRICS_PORT` on top: the head pod sets
    them; 127.0.0.1:9091 by default, 0 picks a free port), and the same values as `ray.util.metrics`
    gauges/counters on Ray's metrics endpoint."""

    def __init__(self, head: Any, *, host: str | None = None, port: int | None = None, ray_metrics: bool = True,
                 ray_interval_s: float = 5.0) -> None:
        self.head = head
        where = section_from_env("telemetry", base=getattr(getattr(head, "config", None), "telemetry", None))
        self.host = host or where.metrics_host
        self.port = int(port if port is not None else where.metrics_port)
        self.decisions = DecisionLog()
        self.server: MetricsServer | None = None
        self.bridge: Any = None
        self._ray_metrics = ray_metrics
        self._ray_interval_s = ray_interval_s

    def snapshot(self) -> Snapshot:
        return head_snapshot(self.head, self.decisions)

    def start(self) -> HeadTelemetry:
        self.decisions.attach()
        self.server = MetricsServer(build_registry(self._safe_snapshot), health=self.health, ready=self.ready,
                                    host=self.host, port=self.port)
        try:
            self.server.start()
        except OSError as err:  # a taken port must not stop the provider: it runs on, unobserved, and says so
            log.error("metrics server could not listen on %s:%d (%s); /metrics is off", self.host, self.port, err)
            self.server = None
        else:
            log.info("metrics, /healthz and /readyz on %s", self.server.url)
        if self._ray_metrics:
            import ray

            if ray.is_initialized():
                self.bridge = RayMetricsBridge(self._safe_snapshot, interval_s=self._ray_interval_s).start()
        return self

    def _safe_snapshot(self) -> Snapshot | None:
        try:
            return self.snapshot()
        except Exception as err:  # a scrape must never take the head down; the failure is visible instead
            log.warning("head snapshot failed: %s: %s", type(err).__name__, err)
            return Snapshot(source="head", ok=False, error=f"{type(err).__name__}: {err}",
                            address=self.head.chain.address)

    @property
    def url(self) -> str | None:
        return self.server.url if self.server is not None else None

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Alive: the head's loop thread runs (or has not been started by a caller that steps it itself)."""
        st = self.head.status()
        return st.alive, {"loop_thread": "alive" if st.alive else "dead", "stopping": st.stopping}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """Ready: alive, its GPUs are registered on chain, and it is watching the queue."""
        st = self.head.status()
        alive, detail = st.alive, {"loop_thread": "alive" if st.alive else "dead", "stopping": st.stopping}
        detail.update({"gpus": len(st.gpus), "watching": st.watching, "best_block": st.best_block, "pbc": PBC})
        return alive and len(st.gpus) > 0 and st.watching, detail

    def stop(self) -> None:
        if self.bridge is not None:
            self.bridge.stop()
            self.bridge = None
        if self.server is not None:
            self.server.stop()
            self.server = None
        self.decisions.detach()
