"""`etrid-ray demo`: the whole product on one machine, nothing else to start.

It launches the devnet, a local Ray cluster with simulated GPUs and the
provider head (a detached Ray actor), replays a time-compressed slice of the
Philly GPU trace as consumer jobs with a mix of handlers (and a few broken
manifests), shows live progress, confirms finished jobs as a consumer would,
and ends with a summary. Everything it starts, it stops by handle or pid.
"""

from __future__ import annotations

import os

# The demo's Ray cluster is this machine only: keep every Ray process on loopback (Ray reads this
# when first imported, and the demo imports Ray lazily, after this line).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# Ray reads the auth mode when first imported: token auth on for this driver (`run_demo` finds or makes the token).
os.environ.setdefault("RAY_AUTH_MODE", "token")
import random
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.live import Live
from rich.table import Table

from etrid_ray.blobs import open_blob_store
from etrid_ray.chain import ChainClient, dev_signer
from etrid_ray.chain.errors import ExtrinsicFailed
from etrid_ray.chain.events import events_in_range
from etrid_ray.chain.models import JobStatus
from etrid_ray.config import load_config, pools_from_config
from etrid_ray.demo.fake_cluster import FakeKubeRayCluster
from etrid_ray.devnet.process import DevnetProcess
from etrid_ray.kuberay.render import raycluster
from etrid_ray.percentiles import percentile
from etrid_ray.provider.scaler import alive_nodes_per_pool
from etrid_ray.ray_auth import dashboard_login, use_token
from etrid_ray.service.actor import launch_head, stop_head
from etrid_ray.sim.trace import philly_trace, trace_slice
from etrid_ray.units import PLANCK_PER_EDSC

PRICE_PER_SECOND = 5 * 10**14  # planck per GPU-second the demo provider asks (1.8 ËDSC per GPU-hour)
IDLE_TIMEOUT_S = 15.0  # the demo's idle timeout (production: 300 s, the seed's 5 minutes)
MAX_ARRIVAL_WINDOW_S = 40.0


@dataclass
class DemoJob:
    index: int
    at: float
    manifest: Any
    gpus: float
    max_compute_time: int
    payment: int
    kind: str
    job_id: int | None = None


@dataclass
class DemoResult:
    submitted: int = 0
    completed: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    unserved: int = 0
    waits: list[float] = field(default_factory=list)
    gpu_seconds: float = 0.0
    earnings_planck: int = 0
    elapsed_s: float = 0.0
    first_completed_s: float | None = None  # from the process's start (imports included) to the first job completed
    edsc_usd: float = 1.0
    timeline: list[tuple[float, dict[str, int]]] = field(default_factory=list)

    @property
    def earnings_edsc(self) -> float:
        return self.earnings_planck / PLANCK_PER_EDSC


def plan_jobs(count: int, speedup: float, rng_seed: int, gpus: int, max_job_s: float, bad: int) -> list[DemoJob]:
    """Turns a Philly slice into consumer jobs: arrivals and durations compressed by `speedup`."""
    rng = random.Random(rng_seed)
    trace = trace_slice(count, rng.randrange(0, len(philly_trace()) - count))
    span = (trace[-1].submit_s / speedup) if trace else 0.0
    squeeze = MAX_ARRIVAL_WINDOW_S / span if span > MAX_ARRIVAL_WINDOW_S else 1.0
    jobs: list[DemoJob] = []
    for i, t in enumerate(trace):
        duration = max(0.05, min(t.duration_s / speedup, max_job_s))
        need = float(min(t.gpus, gpus))
        roll = rng.random()
        if roll < 0.70:
            manifest: Any = {"handler": "sleep", "args": {"seconds": round(duration, 2)}}
            kind = "sleep"
        elif roll < 0.85:
            manifest = {"handler": "matmul", "args": {"n": rng.choice([128, 256, 384]), "seed": i}}
            kind = "matmul"
        elif roll < 0.95:
            manifest = {"handler": "echo", "args": {"payload": f"job {i}"}}
            kind = "echo"
        else:
            manifest = {"handler": "embedding", "args": {"texts": [f"GPU job {i}", "Etrid AI compute"]}}
            kind = "embedding"
        manifest["resources"] = {"gpus": need}
        mct = int(max(10, duration * 4 + 10))
        payment = int(PRICE_PER_SECOND * need * mct * rng.uniform(1.2, 3.0))
        jobs.append(DemoJob(i, t.submit_s / speedup * squeeze, manifest, need, mct, payment, kind))
    # (manifest, kind, max_compute_time). The timeout case is work the head cannot foresee (matmul declares no
    # duration; a sleep of 60 s under a 2 s limit it would rightly leave unclaimed): ~minutes of CPU GEMM, 30 s.
    broken: list[tuple[Any, str, int]] = [
        ("{ this is not json", "malformed manifest", 20),
        ({"handler": "rm-rf", "args": {}}, "unknown handler", 20),
        ({"handler": "matmul", "args": {"n": 0}}, "handler exception", 20),
        ({"handler": "matmul", "args": {"n": 2048, "iterations": 1000}, "timeout_s": 30}, "timeout", 40),
    ]
    end = jobs[-1].at if jobs else 0.0
    for k in range(bad):
        manifest, kind, mct = broken[k % len(broken)]
        jobs.append(DemoJob(len(jobs), rng.uniform(0, end), manifest, 1.0, mct, PRICE_PER_SECOND * 3 * mct, kind))
    jobs.sort(key=lambda j: j.at)
    return jobs


def _progress_table(status: dict[str, Any], submitted: int, total: int, nodes: str, elapsed: float) -> Table:
    table = Table(title=f"etrid-ray demo — {elapsed:5.1f}s", show_header=True)
    for col in ("jobs", "queue", "in Ray", "done", "failed", "ËDSC", "block", "nodes per pool"):
        table.add_column(col, justify="right")
    failed = sum(status.get("failed", {}).values())
    table.add_row(f"{submitted}/{total}", str(status.get("queue_depth", 0)), str(status.get("running", 0)),
                  str(status.get("completed", 0)), str(failed), f"{status.get('earnings_edsc', 0.0):.3f}",
                  str(status.get("best_block", 0)), nodes)
    return table


def summary_table(result: DemoResult) -> Table:
    table = Table(title="etrid-ray demo — summary", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("jobs submitted", str(result.submitted))
    table.add_row("completed", str(result.completed))
    for reason, n in sorted(result.failed.items()):
        table.add_row(f"failed: {reason}", str(n))
    if result.unserved:
        table.add_row("not served (left for other providers)", str(result.unserved))
    if result.waits:
        p50, p95 = percentile(result.waits, 50), percentile(result.waits, 95)
        table.add_row("wait p50 / p95 (s)", f"{p50:.2f} / {p95:.2f}")
    table.add_row("GPU-seconds", f"{result.gpu_seconds:.1f}")
    table.add_row("earnings", f"{result.earnings_edsc:.4f} ËDSC  (${result.earnings_edsc * result.edsc_usd:.4f})")
    if result.first_completed_s is not None:
        table.add_row("first job completed after", f"{result.first_completed_s:.1f}s")
    table.add_row("elapsed", f"{result.elapsed_s:.1f}s")
    return table


def run_demo(jobs: int = 60, speedup: float = 600.0, rng_seed: int = 7, gpus: int = 4, bad: int = 4,
             max_job_s: float = 6.0, timeout_s: float = 150.0, console: Console | None = None,
             dashboard: bool = True, keep_open: bool = False, idle_timeout_s: float = IDLE_TIMEOUT_S) -> DemoResult:
    # Token auth on for the demo's cluster and this driver; a fresh home gets the project's own token.
    use_token()
    import ray

    console = console or Console()
    plan = plan_jobs(jobs, speedup, rng_seed, gpus, max_job_s, bad)
    workdir = Path(tempfile.mkdtemp(prefix="etrid-demo-"))
    result = DemoResult(submitted=len(plan))
    started = time.monotonic()
    # The provider's key as a file only the head reads (as the manifests mount it), not an environment
    # variable every Ray process of the cluster, consumer tasks included, would inherit.
    key_file = workdir / "provider-key"
    key_file.touch(mode=0o600)
    key_file.write_text("//Bob")
    with DevnetProcess(block_time=0, extra_args=["--confirm-window", "20"]) as devnet:
        console.print(f"[bold]devnet[/] {devnet.url} (pid {devnet.pid})")
        config = load_config(env={}, overrides={"seed_file": str(key_file),
            "websocket_url": devnet.url, "rpc_url": devnet.http_url, "PRICE_PER_SECOND": PRICE_PER_SECOND,
            "gpus": {"count": gpus}, "local_nodes": 1, "journal_path": str(workdir / "journal.sqlite"),
            "heartbeat_interval_s": 5, "telemetry_interval_s": 5, "poll_interval_s": 0.2,
            "idle_timeout_s": idle_timeout_s, "aws_max_nodes": 1, "gcp_max_nodes": 1, "azure_max_nodes": 1,
            "scale_interval_s": 0.5})
        # The RayCluster users deploy, translated by Ray's KubeRay code, run on Ray's fake multi-node
        # autoscaler: each pool a node type, each node a real raylet.
        cluster = FakeKubeRayCluster(raycluster(config), workdir / "cluster", idle_timeout_s=idle_timeout_s,
                                     max_workers_per_type=1, cpus_per_node=8,
                                     dashboard=dashboard)
        cluster.start()
        console.print(f"[bold]Ray[/] fake multi-node cluster from the rendered RayCluster at {cluster.address}: "
                      f"pools {', '.join(p.name for p in pools_from_config(config))}")
        if cluster.dashboard_url:
            console.print(dashboard_login(cluster.dashboard_url))
            console.print("  (Actors: the provider head; Jobs: this demo's driver; Cluster: one node per pool; "
                          "Jobs › Tasks: the consumer jobs)")
        timeline: list[tuple[float, dict[str, int]]] = []
        try:
            ray.init(address=cluster.address, namespace="etrid", logging_level="ERROR", log_to_driver=False)
            wait_for(lambda: alive_nodes_per_pool().get("local-gpu", 0) >= 1, 60)
            head = launch_head(config, detached=False)
            client = ChainClient(devnet.url)
            consumer = client.consumer(dev_signer("Charlie"), blobs=open_blob_store(devnet.http_url))
            submitted = 0
            lock = threading.Lock()

            def submit_all() -> None:
                nonlocal submitted
                t0 = time.monotonic()
                for job in plan:
                    delay = job.at - (time.monotonic() - t0)
                    if delay > 0:
                        time.sleep(delay)
                    sj = consumer.submit_job(job.manifest, payment=job.payment, max_compute_time=job.max_compute_time)
                    job.job_id = sj.job_id
                    with lock:
                        submitted += 1

            submitter = threading.Thread(target=submit_all, name="demo-consumer", daemon=True)
            submitter.start()
            confirmed: set[int] = set()
            final: dict[int, str] = {}
            status: dict[str, Any] = {}
            with Live(console=console, refresh_per_second=4) as live:
                while time.monotonic() - started < timeout_s:
                    time.sleep(0.5)
                    status = ray.get(head.status.remote())
                    ids = [j.job_id for j in plan if j.job_id is not None and j.job_id not in final]
                    for job_id, job in consumer_jobs(consumer, ids).items():
                        if job.status == JobStatus.COMPLETED and result.first_completed_s is None:
                            result.first_completed_s = time.time() - psutil.Process().create_time()
                        if job.status == JobStatus.COMPLETED and job_id not in confirmed:
                            try:
                                consumer.confirm_job(job_id)
                            except ExtrinsicFailed:
                                pass  # the chain's auto-confirm window paid it first
                            confirmed.add(job_id)
                        if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
                            final[job_id] = "failed"
                        elif job_id in confirmed:
                            final[job_id] = "completed"
                    pools_now = alive_nodes_per_pool()
                    timeline.append((time.monotonic() - started, pools_now))
                    live.update(_progress_table(status, submitted, len(plan), _pools_text(pools_now),
                                                time.monotonic() - started))
                    if submitted == len(plan) and len(final) == len(plan) and \
                            status.get("earnings_planck", 0) and status.get("payments", 0) >= len(confirmed):
                        break
                # the queue is drained: watch the cloud groups go back to zero after the idle timeout
                drain_deadline = time.monotonic() + idle_timeout_s + 20
                while time.monotonic() < drain_deadline:
                    pools_now = alive_nodes_per_pool()
                    timeline.append((time.monotonic() - started, pools_now))
                    live.update(_progress_table(status, submitted, len(plan), _pools_text(pools_now),
                                                time.monotonic() - started))
                    if all(n == 0 for name, n in pools_now.items() if name != "local-gpu"):
                        break
                    time.sleep(0.5)
            submitter.join(timeout=5)
            status = ray.get(head.status.remote(True))
            if keep_open and cluster.dashboard_url:
                console.print(f"the cluster stays up for the dashboard at {cluster.dashboard_url}: Ctrl-C to end")
                try:
                    while True:
                        time.sleep(1)
                except KeyboardInterrupt:
                    pass
            result.completed = sum(1 for s in final.values() if s == "completed")
            result.failed = failure_reasons(client, devnet_best(client))
            result.unserved = len(plan) - len(final)
            result.waits = list(status.get("waits", []))
            result.gpu_seconds = float(status.get("gpu_seconds", 0.0))
            result.earnings_planck = int(status.get("earnings_planck", 0))
            result.timeline = timeline
            stop_head(head)
            client.close()
        finally:
            ray.shutdown()
            cluster.stop()
    result.elapsed_s = time.monotonic() - started
    console.print(summary_table(result))
    console.print(timeline_table(result.timeline))
    return result


def _pools_text(pools: dict[str, int]) -> str:
    return " ".join(f"{name.split('-')[0]}:{n}" for name, n in sorted(pools.items())) or "-"


def wait_for(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.3)


def timeline_table(timeline: list[tuple[float, dict[str, int]]], every_s: float = 5.0) -> Table:
    """Nodes per pool over time, one row per `every_s` (and every change)."""
    names = sorted({name for _, pools in timeline for name in pools})
    table = Table(title="nodes per pool over time", show_header=True)
    table.add_column("t (s)", justify="right")
    for name in names:
        table.add_column(name, justify="right")
    last_t, last_row = -1e9, None
    for t, pools in timeline:
        row = tuple(pools.get(name, 0) for name in names)
        if row != last_row or t - last_t >= every_s:
            table.add_row(f"{t:.0f}", *[str(n) for n in row])
            last_t, last_row = t, row
    return table


def consumer_jobs(consumer: Any, ids: list[int]) -> dict[int, Any]:
    return consumer.reader.jobs(ids) if ids else {}


def devnet_best(client: ChainClient) -> int:
    return client.conn.best_number()


def failure_reasons(client: ChainClient, best: int) -> dict[str, int]:
    """Counts `JobFailed` reasons as the chain recorded them."""
    reasons: dict[str, int] = {}
    for event in events_in_range(client.conn, 1, best):
        if event.is_("JobMarketplace", "JobFailed"):
            raw = event.get("reason")
            text = raw.decode(errors="replace") if isinstance(raw, bytes | bytearray) else str(raw)
            key = text[:64]  # the whole reason (up to a table cell): "matmul" alone would tell the reader nothing
            reasons[key] = reasons.get(key, 0) + 1
    return reasons
