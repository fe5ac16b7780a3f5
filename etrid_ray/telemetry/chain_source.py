"""A `Snapshot` of chain state alone: what `etrid-ray exporter` serves where no head runs.

Every `interval_s` (10 s, as in the seed) one read at one block takes the queue (`PendingJobs`),
every job's status (`Jobs`, in bulk; failed and cancelled jobs are final and are not read again),
every GPU (`GpuNodes`) and its telemetry (`GpuTelemetry`, a devnet extension, when the runtime has
it), and the events of the blocks since the last read (`PaymentReleased` → earnings per provider,
`JobFailed` → failures by reason, `JobAssigned` → claims). The collector serves the latest snapshot;
when a read fails it serves the previous one marked not ok, and counts the error by kind.

Before the first read succeeds it serves what is known without one, marked not ok: zero rows for the
`--provider` accounts and, for `etrid_cloud_cost_usd_total`, for every cloud pool of the provider config in
the environment. So every family is there from the first scrape (see `metrics` on why that matters).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable
from statistics import fmean
from typing import Any

from etrid_ray.chain.connection import Connection, RetryPolicy
from etrid_ray.chain.errors import ConfigError
from etrid_ray.chain.events import events_in_range
from etrid_ray.chain.models import GpuNode, Job, JobStatus, Telemetry
from etrid_ray.chain.reader import ChainReader
from etrid_ray.config import load_config, pools_from_config
from etrid_ray.pools import Pool
from etrid_ray.telemetry.metrics import (
    PBC,
    RPC_ERROR_KINDS,
    GpuView,
    PoolView,
    ProviderView,
    Snapshot,
    build_registry,
    failure_kind,
    rpc_error_kind,
)
from etrid_ray.telemetry.server import MetricsServer

log = logging.getLogger(__name__)

JOBS, GPUS = "JobMarketplace", "GpuRegistry"
FINAL = (JobStatus.FAILED, JobStatus.CANCELLED)
DURATION_SAMPLES = 100
MAX_EVENT_BLOCKS = 1_000  # the first read looks back this many blocks for events (earnings count from there)


class ChainScraper:
    """Reads chain state into a `Snapshot` now (`read()`), or every `interval_s` in a thread (`start()`).

    `providers` limits the per-provider series to those accounts (a public chain has many), and gives each
    of them its series even before it has a GPU or a payment. `pools` are the provider's pools: the cloud
    ones get a zero `etrid_cloud_cost_usd_total` row (the exporter spends nothing; the series exists)."""

    def __init__(self, url: str, *, interval_s: float = 10.0, providers: Iterable[str] | None = None,
                 pools: Iterable[Pool] = (), from_block: int | None = None, timeout: float = 30.0) -> None:
        self.url = url
        self.interval_s = interval_s
        self.providers = set(providers) if providers else None
        self.pools = [PoolView(p.name, p.kind) for p in pools]
        self.started_at = time.time()
        self.timeout = timeout
        self._conn: Connection | None = None
        self._final: dict[int, Job] = {}
        self._scanned = (from_block - 1) if from_block is not None else None
        self._earnings: Counter[str] = Counter()
        self._failures: Counter[str] = Counter()
        self._claims = 0
        self.rpc_errors: Counter[str] = Counter(dict.fromkeys(RPC_ERROR_KINDS, 0))
        self.latest: Snapshot | None = None
        self.last_ok_at: float | None = None
        self.last_attempt_at: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # reading ------------------------------------------------------------------------------------

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = Connection(self.url, timeout=self.timeout,
                                    retry=RetryPolicy(max_attempts=2), connect_retry=RetryPolicy(max_attempts=1))
        return self._conn

    def read(self) -> Snapshot:
        """One read; on failure the previous snapshot, marked not ok (and the error counted)."""
        t0 = time.perf_counter()
        self.last_attempt_at = time.time()
        try:
            snap = self._read()
        except Exception as err:  # the exporter outlives a node restart: count it, serve the last view
            kind = rpc_error_kind(type(err).__name__)
            self.rpc_errors[kind] += 1
            log.warning("reading %s failed (%s): %s", self.url, kind, err)
            if self._conn is not None and kind in ("connection", "timeout"):
                self._conn.close()
                self._conn = None
                self.rpc_errors["reconnect"] += 1
            prev = self.latest
            error = f"{type(err).__name__}: {err}"
            snap = (self._unread(error) if prev is None
                    else Snapshot.from_dict({**prev.to_dict(), "ok": False, "error": error}))
            snap.rpc_errors = dict(self.rpc_errors)
            snap.scrape_seconds = time.perf_counter() - t0
        else:
            snap.scrape_seconds = time.perf_counter() - t0
            self.last_ok_at = snap.taken_at
        with self._lock:
            self.latest = snap
        return snap

    def _unread(self, error: str) -> Snapshot:
        """What is known without a chain read: not ok, taken when the exporter started, zero rows for the
        named providers and the configured pools (their GPUs come with the first read)."""
        return Snapshot(source="exporter", taken_at=self.started_at, ok=False, error=error,
                        providers=[ProviderView(a) for a in sorted(self.providers or ())],
                        pools=[PoolView(p.name, p.kind) for p in self.pools], rpc_errors=dict(self.rpc_errors))

    def _read(self) -> Snapshot:
        conn = self._connection()
        reader = ChainReader(conn)
        meta = conn.metadata
        at = conn.block_hash()
        best = int(conn.rpc("chain_getHeader", [at])["number"], 16)
        now = time.time()

        pending = reader.pending_job_ids(at)
        n_jobs = int(reader.value(JOBS, "NextJobId", at=at) or 0)
        todo = [i for i in range(n_jobs) if i not in self._final]
        jobs = dict(self._final)
        jobs.update(reader.jobs(todo, at))
        for job_id, job in jobs.items():
            if job.status in FINAL:
                self._final[job_id] = job

        n_gpus = int(reader.value(GPUS, "NextGpuId", at=at) or 0)
        gpus = self._gpu_nodes(conn, list(range(n_gpus)), at)
        telemetry = self._telemetry(conn, list(gpus), at) if meta.has_storage(GPUS, "GpuTelemetry") else {}
        self._scan_events(conn, best)

        by_status = Counter(str(j.status) for j in jobs.values())
        waits = [max(0.0, now - jobs[i].submitted_at) for i in pending if i in jobs]
        completed = sorted((j for j in jobs.values() if j.status == JobStatus.COMPLETED and j.completed_at),
                           key=lambda j: (j.completed_at or 0, j.job_id))[-DURATION_SAMPLES:]
        durations = [max(0.0, float((j.completed_at or 0) - j.submitted_at)) for j in completed]

        owner = {g: node.provider for g, node in gpus.items()}
        done: Counter[str] = Counter(owner[j.assigned_gpu] for j in jobs.values()
                                     if j.status == JobStatus.COMPLETED and j.assigned_gpu in owner)
        per_provider: dict[str, list[int]] = {}
        for g, node in gpus.items():
            per_provider.setdefault(node.provider, []).append(g)
        providers = []
        for address in sorted(set(per_provider) | set(self._earnings) | set(done) | (self.providers or set())):
            if self.providers is not None and address not in self.providers:
                continue
            mine = per_provider.get(address, [])
            utils = [telemetry[g].utilization_bps / 100 for g in mine if g in telemetry]
            providers.append(ProviderView(address, gpus=len(mine), utilization_pct=fmean(utils) if utils else 0.0,
                                          jobs_completed=done[address], earnings_planck=self._earnings[address]))
        return Snapshot(
            source="exporter", taken_at=now, ok=True, best_block=best,
            queue={"pending": len(pending), "assigned": by_status.get(JobStatus.PROCESSING, 0),
                   "completed": by_status.get(JobStatus.COMPLETED, 0)},
            avg_wait_s=fmean(waits) if waits else 0.0, avg_duration_s=fmean(durations) if durations else 0.0,
            providers=providers,
            gpus=[GpuView(g, node.provider, node.status, float(node.last_heartbeat)) for g, node in sorted(gpus.items())
                  if self.providers is None or node.provider in self.providers],
            pools=[PoolView(p.name, p.kind) for p in self.pools],
            claims={"won": self._claims, "lost": 0}, failures=dict(self._failures),
            rpc_errors=dict(self.rpc_errors))

    def _gpu_nodes(self, conn: Connection, ids: list[int], at: str) -> dict[int, GpuNode]:
        entry = conn.metadata.storage(GPUS, "GpuNodes")
        return {g: GpuNode.from_chain(g, v) for g, v in self._bulk(conn, entry, ids, at).items()}

    def _telemetry(self, conn: Connection, ids: list[int], at: str) -> dict[int, Telemetry]:
        entry = conn.metadata.storage(GPUS, "GpuTelemetry")
        return {g: Telemetry.from_chain(v) for g, v in self._bulk(conn, entry, ids, at).items()}

    @staticmethod
    def _bulk(conn: Connection, entry: Any, ids: list[int], at: str) -> dict[int, Any]:
        if not ids:
            return {}
        keys = entry.u64_keys_hex(ids)
        raw = conn.storage_many(keys, at)
        return {i: entry.decode(raw[k]) for i, k in zip(ids, keys, strict=True) if raw.get(k) is not None}

    def _scan_events(self, conn: Connection, best: int) -> None:
        first = (self._scanned + 1) if self._scanned is not None else max(1, best - MAX_EVENT_BLOCKS + 1)
        if best < first:
            return
        for event in events_in_range(conn, first, best):
            if event.is_(JOBS, "PaymentReleased"):
                self._earnings[str(event.get("provider"))] += int(event.get("amount") or 0)
            elif event.is_(JOBS, "JobFailed"):
                raw = event.get("reason")
                text = bytes(raw).decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else str(raw)
                self._failures[failure_kind(text)] += 1
            elif event.is_(JOBS, "JobAssigned"):
                self._claims += 1
        self._scanned = best

    # serving ------------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The latest read, or before the first one what is known without it (so the first scrape has every
        family)."""
        with self._lock:
            latest = self.latest
        return latest if latest is not None else self._unread("no chain read yet")

    def registry(self) -> Any:
        return build_registry(self.snapshot)

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Alive: the read loop is running and has tried within three intervals."""
        alive = self._thread is not None and self._thread.is_alive()
        recent = self.last_attempt_at is not None and time.time() - self.last_attempt_at < 3 * self.interval_s + 30
        return alive and recent, {"loop_thread": "alive" if alive else "dead", "last_attempt_at": self.last_attempt_at}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """Ready: the last successful chain read is at most three intervals old."""
        fresh = self.last_ok_at is not None and time.time() - self.last_ok_at < 3 * self.interval_s + 30
        snap = self.latest
        return fresh, {"last_ok_at": self.last_ok_at, "best_block": snap.best_block if snap else None,
                       "error": snap.error if snap and not snap.ok else None, "pbc": PBC}

    def start(self) -> ChainScraper:
        self._thread = threading.Thread(target=self._run, name="etrid-exporter-scrape", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            self.read()
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - t0)))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 5)
            self._thread = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def configured_pools(env: dict[str, str] | None = None) -> list[Pool]:
    """The pools of the provider config in the environment (`ETRID_*` and the seed's names; in the cluster the
    provider's ConfigMap, which exporter.yaml passes with envFrom): the exporter's known pools. A config that
    does not validate costs the exporter only these zero rows, so it says so and serves without them."""
    try:
        return pools_from_config(load_config(env=env))
    except ConfigError as err:
        log.warning("no pools for etrid_cloud_cost_usd_total: %s", err)
        return []


def run_exporter(url: str, *, host: str = "127.0.0.1", port: int = 9090, interval_s: float = 10.0,
                 providers: Iterable[str] | None = None, pools: Iterable[Pool] | None = None,
                 stop: threading.Event | None = None, on_ready: Any = None) -> None:
    """The exporter's main loop: read the chain every interval, serve until `stop` is set. `pools`: the
    provider's pools (default: `configured_pools()`)."""
    scraper = ChainScraper(url, interval_s=interval_s, providers=providers,
                           pools=configured_pools() if pools is None else pools)
    server = MetricsServer(scraper.registry(), health=scraper.health, ready=scraper.ready, host=host, port=port)
    stop = stop or threading.Event()
    server.start()
    try:
        scraper.start()
        log.info("exporter for %s serving %s/metrics (chain read every %gs)", url, server.url, interval_s)
        if on_ready is not None:
            on_ready(server.url)
        while not stop.wait(0.5):
            pass
    finally:
        scraper.stop()
        server.stop()
        log.info("exporter stopped")
