"""Prometheus metrics: the names, one `Snapshot` both sources fill, and the collector that reads it.

Why a custom collector: the head already counts everything (its `Stats`, the scaler's decision
counter, Ray's own resource view), and the chain is the source of truth for the rest. Keeping a
second set of prometheus-client counters in step with those would be duplicated bookkeeping that
drifts. Instead, at scrape time, `SnapshotCollector` asks its source for a `Snapshot` (the head:
built live from `ProviderHead`; the standalone exporter: the latest chain read, refreshed every
10 s as in the seed) and turns it into metric families. Both ways out emit the same names.

The one exception is the seed's `etrid_cloud_cost_usd_total`: a module-level Counter that the
cloud-spend accounting increments (issue 5). `families()` serves it with the snapshot's families (and
the pass-through of the default registry leaves it out), so that it too gets its zero rows.

Every family a source serves has samples from its first scrape: a labelled family emits a zero row for
every label value known before anything happened (the snapshot's pools and providers, and the fixed
enumerations: queue statuses, GPU statuses, scaling reasons, error kinds). A family with no series makes
`absent()` fire and panels say "No data" until the first event, and a counter whose series appears at its
first increment hides that increment from `rate()` and `increase()`. The only families without a zero
row are those whose label values are named by the events themselves (`MetricSpec.labels_from_events`:
failure reasons, exception types) and the per-GPU heartbeat before a GPU is known.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from etrid_ray.admission import SKIP_KINDS
from etrid_ray.chain.models import GpuStatus
from etrid_ray.clouds.registry import find as find_cloud
from etrid_ray.provider.spend import CLOUD_COST_NAME, CLOUD_COST_USD
from etrid_ray.scaling.policy import Reason
from etrid_ray.units import PLANCK_PER_EDSC

# The seed's cloud-spend metric: the scaler accrues spend into it per node-second, by pool and cloud
# (`Scaler._account`); it is defined beside its writer (`provider/spend.py`). `CLOUD_COST` is the same
# counter under its first name.
CLOUD_COST = CLOUD_COST_USD

PBC = "ai-compute"
QUEUE_STATUSES = ("pending", "assigned", "completed")
POOL_GPU_STATES = ("busy", "idle", "pending")
POOL_NODE_STATES = ("alive", "requested")
CLAIM_RESULTS = ("won", "lost")
RPC_ERROR_KINDS = ("rpc", "connection", "timeout", "extrinsic", "reconnect", "other")
SOURCES = ("head", "exporter")
GPU_STATUSES = tuple(str(s) for s in GpuStatus)


@dataclass(frozen=True)
class MetricSpec:
    name: str  # as exposed (counters include their `_total`)
    kind: str  # "gauge" | "counter" | "info"
    labels: tuple[str, ...]
    help: str
    sources: tuple[str, ...] = SOURCES  # which ways out emit it
    seed: bool = False  # one of the seed's metrics (names and labels fixed)
    # no series until the first event: its label values (failure reasons, exception types) are named by the
    # events, so no zero row can be emitted before one without inventing a value
    labels_from_events: bool = False


METRICS: tuple[MetricSpec, ...] = (
    # --- the seed's metrics, names and labels exactly as the seed has them
    MetricSpec("etrid_job_queue_depth", "gauge", ("pbc", "status"),
               "Jobs by status: pending = the chain's queue; assigned/completed = the head's own jobs (head) or "
               "every provider's (exporter)", seed=True),
    MetricSpec("etrid_avg_job_wait_seconds", "gauge", ("pbc",),
               "Average age of the jobs waiting in the chain's queue now (0 when empty)", seed=True),
    MetricSpec("etrid_avg_job_duration_seconds", "gauge", ("pbc",),
               "Average run time of the last 100 finished jobs (exporter: submission to result, the chain "
               "records no start time)", seed=True),
    MetricSpec("etrid_gpu_utilization_percent", "gauge", ("provider",),
               "GPU utilization per provider: Ray's allocated GPUs (head) or the provider's on-chain telemetry "
               "(exporter)", seed=True),
    MetricSpec("etrid_gpu_jobs_completed_total", "counter", ("provider",),
               "Jobs completed per provider", seed=True),
    MetricSpec("etrid_gpu_earnings_total_edsc", "gauge", ("provider",),
               "ËDSC paid to the provider (PaymentReleased events: the head's since it started, the exporter's "
               "since 1,000 blocks before it started); monotonic, a gauge because the seed's name does not end in "
               "_total", seed=True),
    MetricSpec(CLOUD_COST_NAME, "counter", ("pool", "cloud"),
               "Cloud spend on worker nodes, in USD (process-wide counter; every known cloud pool starts at 0: the "
               "head's, and the exporter's from the provider config in its environment, where it stays 0 as the "
               "exporter runs no nodes)", seed=True),
    # --- beyond the seed
    MetricSpec("etrid_info", "info", ("source", "version", "address"), "What this endpoint is"),
    MetricSpec("etrid_snapshot_ok", "gauge", (), "1 when the last read of the head or chain succeeded"),
    MetricSpec("etrid_snapshot_age_seconds", "gauge", (), "Seconds since the snapshot behind these values was taken"),
    MetricSpec("etrid_chain_best_block", "gauge", (), "Best block number seen"),
    MetricSpec("etrid_chain_rpc_errors_total", "counter", ("kind",),
               "Chain RPC failures by kind (reconnect = the connection was re-established)"),
    MetricSpec("etrid_gpu_last_heartbeat_timestamp_seconds", "gauge", ("provider", "gpu"),
               "Unix time of each GPU's last heartbeat (head: last one sent; exporter: GpuNodes.last_heartbeat)"),
    MetricSpec("etrid_job_claims_total", "counter", ("result",),
               "Claims: won, or lost to another provider (head); won = JobAssigned events (exporter)"),
    MetricSpec("etrid_job_failures_total", "counter", ("reason",), "Jobs reported failed, by reason",
               labels_from_events=True),
    MetricSpec("etrid_jobs_running", "gauge", ("provider",), "Jobs running as Ray tasks now", ("head",)),
    MetricSpec("etrid_job_preemptions_total", "counter", ("pool",),
               "Job runs lost to a preempted (drained) node and run again without spending a retry, by pool",
               ("head",)),
    MetricSpec("etrid_job_retries_total", "counter", (),
               "Job runs lost to a crash (no drain) and run again, each spending one of the job's retries",
               ("head",)),
    MetricSpec("etrid_job_skipped_total", "counter", ("reason",),
               "Queued jobs left unclaimed, by kind (a fixed set: admission.SKIP_KINDS; the particulars are logged)",
               ("head",)),
    MetricSpec("etrid_job_net_profit_usd_total", "gauge", ("pool",),
               "Net profit of this head's jobs since it started, by pool: what the chain paid (after its fee, at "
               "edsc_usd) minus each job's share of its hardware's cost. A gauge: a job can lose money",
               ("head",)),
    MetricSpec("etrid_job_queue_to_start_seconds", "gauge", ("quantile",),
               "Submission to task start, over the last 20,000 jobs", ("head",)),
    MetricSpec("etrid_job_result_to_chain_seconds", "gauge", ("quantile",),
               "Result ready to settled on chain, over the last 20,000 jobs", ("head",)),
    MetricSpec("etrid_pool_gpus", "gauge", ("pool", "state"),
               "GPUs per pool: busy and idle on alive nodes, pending on requested nodes not up yet", ("head",)),
    MetricSpec("etrid_pool_nodes", "gauge", ("pool", "state"), "Nodes per pool: alive, requested", ("head",)),
    MetricSpec("etrid_scaling_decisions_total", "counter", ("pool", "reason"),
               "Scaling decisions by pool and reason", ("head",)),
    MetricSpec("etrid_head_loop_seconds", "gauge", ("quantile",),
               "Duration of the head's loop passes that did work (last 1,000; `ProviderHead.loop_seconds`)",
               ("head",)),
    MetricSpec("etrid_head_errors_total", "counter", ("kind",), "Failed head passes by exception type",
               ("head",), labels_from_events=True),
    MetricSpec("etrid_price_age_seconds", "gauge", ("pool", "source"),
               "Age of each pool's price quote (catalog prices carry the catalog's date)", ("head",)),
    MetricSpec("etrid_price_usd_per_gpu_hour", "gauge", ("pool", "source"), "Each pool's quoted price",
               ("head",)),
    MetricSpec("etrid_cloud_spend_today_usd", "gauge", (), "Cloud spend accrued this UTC day", ("head",)),
    MetricSpec("etrid_cloud_budget_usd", "gauge", (), "The daily cloud budget (daily_cloud_budget_usd)",
               ("head",)),
    MetricSpec("etrid_chain_gpus", "gauge", ("provider", "status"), "Registered GPUs per provider and status",
               ("exporter",)),
    MetricSpec("etrid_exporter_scrape_seconds", "gauge", (), "How long the last chain read took", ("exporter",)),
)
SPECS = {m.name: m for m in METRICS}


# ---------------------------------------------------------------------------------------------- snapshot


@dataclass
class ProviderView:
    address: str
    gpus: int = 0
    utilization_pct: float = 0.0
    jobs_completed: int = 0
    earnings_planck: int = 0
    running: int = 0


@dataclass
class GpuView:
    gpu_id: int
    provider: str
    status: str = "Active"
    last_heartbeat: float = 0.0  # unix seconds; 0 = none yet


@dataclass
class PoolView:
    name: str
    kind: str = "local"
    gpus_busy: float = 0.0
    gpus_idle: float = 0.0
    gpus_pending: float = 0.0
    nodes_alive: int = 0
    nodes_requested: int = 0
    price_usd_per_gpu_hour: float | None = None
    price_source: str | None = None
    price_age_s: float | None = None

    @property
    def is_cloud(self) -> bool:
        """As `Pool.is_cloud`: every pool but the provider's own (the local one) bills by the node-hour."""
        cloud = find_cloud(self.kind)
        return cloud.is_cloud if cloud is not None else True


@dataclass
class Snapshot:
    """What one read of the head or the chain saw. Plain data: JSON for `etrid-ray status --json`,
    pickled between the head actor and the CLI."""

    source: str  # "head" | "exporter"
    taken_at: float = field(default_factory=time.time)
    ok: bool = True
    error: str | None = None
    address: str = "all"  # the head's provider account ("all": the exporter, which watches every provider)
    draining: bool = False  # the head is going offline (`provider stop`): it claims nothing, finishes what it runs
    best_block: int = 0
    queue: dict[str, int] = field(default_factory=lambda: dict.fromkeys(QUEUE_STATUSES, 0))
    avg_wait_s: float = 0.0
    avg_duration_s: float = 0.0
    queue_to_start_s: dict[str, float] = field(default_factory=dict)  # quantile -> seconds
    result_to_chain_s: dict[str, float] = field(default_factory=dict)  # quantile -> seconds
    providers: list[ProviderView] = field(default_factory=list)
    gpus: list[GpuView] = field(default_factory=list)
    pools: list[PoolView] = field(default_factory=list)
    decisions: list[tuple[str, str, int]] = field(default_factory=list)  # (pool, reason, count)
    recent_decisions: list[dict[str, Any]] = field(default_factory=list)
    claims: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLAIM_RESULTS, 0))
    failures: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    rpc_errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RPC_ERROR_KINDS, 0))
    head_errors: dict[str, int] = field(default_factory=dict)
    preemptions: dict[str, int] = field(default_factory=dict)  # pool -> runs lost to a preempted node
    retries: int = 0  # runs lost to a crash and run again
    loop_s: dict[str, float] = field(default_factory=dict)  # quantile -> seconds
    running: int = 0
    running_jobs: list[dict[str, Any]] = field(default_factory=list)  # the oldest few: job_id, gpus, pool, age_s
    net_profit_usd: dict[str, float] = field(default_factory=dict)  # by pool: paid − cost share of each job
    spend_today_usd: float | None = None
    budget_usd: float | None = None
    scrape_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["decisions"] = [{"pool": p, "reason": r, "count": n} for p, r, n in self.decisions]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        d = dict(data)
        d["providers"] = [ProviderView(**p) for p in d.get("providers", [])]
        d["gpus"] = [GpuView(**g) for g in d.get("gpus", [])]
        d["pools"] = [PoolView(**p) for p in d.get("pools", [])]
        d["decisions"] = [(x["pool"], x["reason"], int(x["count"])) if isinstance(x, dict) else tuple(x)
                          for x in d.get("decisions", [])]
        return cls(**d)


def rpc_error_kind(exc_type_name: str) -> str:
    """The `kind` label of a chain error class name (the client's typed errors, plus transport errors)."""
    name = exc_type_name
    if name in ("RpcError", "PalletError", "SubstrateRequestException"):
        return "rpc"
    if name in ("ChainConnectionError", "ConnectionError", "ConnectionRefusedError", "WebSocketException",
                "WebSocketConnectionClosedException", "BrokenPipeError", "OSError"):
        return "connection"
    if name in ("InclusionTimeout", "TimeoutError", "WebSocketTimeoutException", "Timeout"):
        return "timeout"
    if name == "ExtrinsicFailed":
        return "extrinsic"
    return "other"


def failure_kind(reason: str) -> str:
    """The head's grouping of failure reasons (`timeout after 3s` → `timeout after 3s`, `matmul failed:
    ValueError` → `matmul failed`): the text before the first colon or parenthesis, at most 40 chars."""
    return reason.split(":")[0].split(" (")[0][:40]


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:e[+-]?\d+)?")


def reason_label(reason: str) -> str:
    """A failure/skip reason as a label value of bounded cardinality: quoted names (consumer-chosen handler
    names) become `'*'`, numbers become `N` (`unknown handler '*'`, `timeout after Ns`)."""
    return _NUMBER.sub("N", _QUOTED.sub("'*'", failure_kind(reason)))


def _by_reason(counts: dict[str, int]) -> list[tuple[str, int]]:
    out: dict[str, int] = {}
    for reason, n in counts.items():
        label = reason_label(reason)
        out[label] = out.get(label, 0) + n
    return sorted(out.items())


def _by_kind(counts: Mapping[str, int]) -> dict[tuple[str], int]:
    """Skips by admission's fixed kinds; anything else (a snapshot from another version) counts as `other`, so
    the label's values stay that small set whatever the snapshot holds."""
    out: dict[tuple[str], int] = {}
    for kind, n in counts.items():
        key = (kind if kind in SKIP_KINDS else "other",)
        out[key] = out.get(key, 0) + n
    return out


def project_version() -> str:
    try:
        return version("etrid-ray")
    except PackageNotFoundError:  # pragma: no cover - a bare checkout
        return "0.0.0"


# ---------------------------------------------------------------------------------------------- families


Rows = Iterable[tuple[Sequence[str], float]]  # (label values, value) per series
Key = tuple[str, ...]  # one series' label values


def with_zeros(observed: Mapping[Key, float], known: Iterable[Key]) -> list[tuple[Key, float]]:
    """The observed series plus a zero row for every known label combination not observed yet, in label
    order: why, see the module's docstring (absent() and rate() need the series before the first event)."""
    rows = dict.fromkeys(known, 0.0)
    rows.update(observed)
    return sorted(rows.items())


def _unknown_as_nan(value: float | None) -> float:
    """A scalar gauge not known yet (no chain read so far) is NaN: the family exists, and no false 0 is shown."""
    return math.nan if value is None else value


def cloud_spend() -> dict[Key, float]:
    """The process-wide spend counter by (pool, cloud): what the scaler in this process accrued."""
    return {(s.labels["pool"], s.labels["cloud"]): s.value
            for family in CLOUD_COST_USD.collect() for s in family.samples if s.name.endswith("_total")}


def scaling_reasons() -> tuple[str, ...]:
    """Every reason a scaling decision can give (`scaling.policy.Reason`)."""
    return tuple(str(r) for r in Reason)


def families(snap: Snapshot, *, now: float | None = None,
             spent: Mapping[Key, float] | None = None) -> Iterator[Metric]:
    """The metric families of one snapshot, in METRICS order; metrics a source does not know are left out.

    Each labelled family has a zero row for every known label value (see `with_zeros`). `spent` is the
    cloud spend by (pool, cloud); by default this process's `CLOUD_COST_USD`."""
    now = time.time() if now is None else now
    src = snap.source
    providers = [p.address for p in snap.providers]

    def filled(m: GaugeMetricFamily | CounterMetricFamily, rows: Rows) -> Metric:
        for labels, value in rows:
            m.add_metric(list(labels), float(value))
        return m

    def gauge(name: str, rows: Rows = ()) -> Metric:
        spec = SPECS[name]
        return filled(GaugeMetricFamily(name, spec.help, labels=list(spec.labels)), rows)

    def counter(name: str, rows: Rows = ()) -> Metric:
        spec = SPECS[name]
        return filled(CounterMetricFamily(name.removesuffix("_total"), spec.help, labels=list(spec.labels)), rows)

    def quantiles(name: str, values: dict[str, float]) -> Metric:
        return gauge(name, (([q], v) for q, v in sorted(values.items())))

    yield gauge("etrid_job_queue_depth", (([PBC, status], snap.queue.get(status, 0)) for status in QUEUE_STATUSES))
    yield gauge("etrid_avg_job_wait_seconds", [([PBC], snap.avg_wait_s)])
    yield gauge("etrid_avg_job_duration_seconds", [([PBC], snap.avg_duration_s)])
    yield gauge("etrid_gpu_utilization_percent", (([p.address], p.utilization_pct) for p in snap.providers))
    yield counter("etrid_gpu_jobs_completed_total", (([p.address], p.jobs_completed) for p in snap.providers))
    yield gauge("etrid_gpu_earnings_total_edsc",
                (([p.address], p.earnings_planck / PLANCK_PER_EDSC) for p in snap.providers))
    yield counter(CLOUD_COST_NAME,
                  with_zeros(cloud_spend() if spent is None else spent,
                             ((pool.name, pool.kind) for pool in snap.pools if pool.is_cloud)))

    info = InfoMetricFamily("etrid", SPECS["etrid_info"].help, labels=["source", "version", "address"])
    info.add_metric([src, project_version(), snap.address], {})
    yield info
    yield gauge("etrid_snapshot_ok", [([], 1.0 if snap.ok else 0.0)])
    yield gauge("etrid_snapshot_age_seconds", [([], max(0.0, now - snap.taken_at))])
    yield gauge("etrid_chain_best_block", [([], snap.best_block)])
    yield counter("etrid_chain_rpc_errors_total", (([kind], snap.rpc_errors.get(kind, 0)) for kind in RPC_ERROR_KINDS))
    yield gauge("etrid_gpu_last_heartbeat_timestamp_seconds",
                (([g.provider, str(g.gpu_id)], g.last_heartbeat) for g in snap.gpus))
    yield counter("etrid_job_claims_total", (([result], snap.claims.get(result, 0)) for result in CLAIM_RESULTS))
    yield counter("etrid_job_failures_total", (([reason], n) for reason, n in _by_reason(snap.failures)))

    if src == "head":
        yield gauge("etrid_jobs_running", [([snap.address], snap.running)])
        yield counter("etrid_job_preemptions_total",
                      with_zeros({(pool,): n for pool, n in snap.preemptions.items()},
                                 ((pool.name,) for pool in snap.pools)))
        yield counter("etrid_job_retries_total", [([], snap.retries)])
        yield counter("etrid_job_skipped_total", (([kind], n) for (kind,), n in with_zeros(
            _by_kind(snap.skipped), ((kind,) for kind in SKIP_KINDS))))
        yield gauge("etrid_job_net_profit_usd_total", with_zeros(
            {(pool,): usd for pool, usd in snap.net_profit_usd.items()}, ((pool.name,) for pool in snap.pools)))
        yield quantiles("etrid_job_queue_to_start_seconds", snap.queue_to_start_s)
        yield quantiles("etrid_job_result_to_chain_seconds", snap.result_to_chain_s)
        yield gauge("etrid_pool_gpus", (([pool.name, state], v) for pool in snap.pools
                                        for state, v in zip(POOL_GPU_STATES, (pool.gpus_busy, pool.gpus_idle,
                                                                              pool.gpus_pending), strict=True)))
        yield gauge("etrid_pool_nodes", (([pool.name, kind], n) for pool in snap.pools
                                         for kind, n in (("alive", pool.nodes_alive),
                                                         ("requested", pool.nodes_requested))))
        yield counter("etrid_scaling_decisions_total",
                      with_zeros({(pool_name, reason): n for pool_name, reason, n in snap.decisions},
                                 ((pool.name, reason) for pool in snap.pools for reason in scaling_reasons())))
        yield quantiles("etrid_head_loop_seconds", snap.loop_s)
        yield counter("etrid_head_errors_total", (([kind], n) for kind, n in sorted(snap.head_errors.items())))
        yield gauge("etrid_price_age_seconds",
                    (([pool.name, pool.price_source], pool.price_age_s) for pool in snap.pools
                     if pool.price_age_s is not None and pool.price_source is not None))
        yield gauge("etrid_price_usd_per_gpu_hour",
                    (([pool.name, pool.price_source], pool.price_usd_per_gpu_hour) for pool in snap.pools
                     if pool.price_usd_per_gpu_hour is not None and pool.price_source is not None))
        yield gauge("etrid_cloud_spend_today_usd", [([], _unknown_as_nan(snap.spend_today_usd))])
        yield gauge("etrid_cloud_budget_usd", [([], _unknown_as_nan(snap.budget_usd))])
    else:
        counts: dict[Key, float] = {}
        for g in snap.gpus:
            counts[(g.provider, g.status)] = counts.get((g.provider, g.status), 0) + 1
        yield gauge("etrid_chain_gpus",
                    with_zeros(counts, ((provider, status) for provider in providers for status in GPU_STATUSES)))
        yield gauge("etrid_exporter_scrape_seconds", [([], _unknown_as_nan(snap.scrape_seconds))])


class SnapshotCollector:
    """A prometheus-client collector that reads a fresh snapshot on every scrape."""

    def __init__(self, snapshot: Callable[[], Snapshot | None]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        if snap is not None:
            yield from families(snap)


class _DefaultRegistry:
    """Passes the process-wide registry through (process and GC metrics), less the cloud-cost counter:
    `families()` serves that one, with a zero row for every known cloud pool (one family, never two)."""

    def collect(self) -> Iterator[Metric]:
        for family in REGISTRY.collect():
            if family.name != CLOUD_COST_NAME.removesuffix("_total"):
                yield family


def build_registry(snapshot: Callable[[], Snapshot | None]) -> CollectorRegistry:
    """One registry per server: the snapshot's families plus everything in the default registry."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))  # type: ignore[arg-type]
    registry.register(_DefaultRegistry())  # type: ignore[arg-type]
    return registry
