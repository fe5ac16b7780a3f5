"""The metrics, the dashboard and the alerts against a real Prometheus.

One end-to-end run on a fresh devnet: a real local Ray (4 simulated GPUs, advertising the
`local-gpu` pool so the scaler runs), the real head with its metrics server and Ray metrics
bridge, `etrid-ray exporter` as a subprocess, and Debian's `prometheus` on loopback scraping all
three (plus Ray's own metrics endpoint) every second, with the committed rule file loaded. Consumer
jobs run (some fail, one pays too little), results are confirmed and paid. Then every series is
checked for its labels and values, every dashboard query and every alert's signals must return
data, and promtool checks the rules and runs their unit tests.

The provider's key is a fresh mnemonic in ETRID_SEED (funded by //Alice): it must never appear in
any log line, metric, health answer or status output.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml
from substrateinterface import Keypair

from etrid_ray.admission import SKIP_KINDS
from etrid_ray.blobs import open_blob_store
from etrid_ray.chain import (
    Call,
    ChainClient,
    Connection,
    GpuSpecs,
    HardwareAttestation,
    ProviderClient,
    dev_signer,
    load_signer,
    to_planck,
)
from etrid_ray.chain.models import JobStatus
from etrid_ray.config import SEED_ENV_NAMES, ProviderConfig, pools_from_config
from etrid_ray.devnet.process import DevnetProcess
from etrid_ray.provider.head import ProviderHead
from etrid_ray.provider.journal import Journal
from etrid_ray.telemetry import monitoring
from etrid_ray.telemetry.head_source import HeadTelemetry
from etrid_ray.telemetry.logs import make_handler
from etrid_ray.telemetry.metrics import GPU_STATUSES, METRICS, SPECS
from etrid_ray.units import PLANCK_PER_EDSC
from tests.provider_support import CONSUMER, provider_config, wait_until

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "cluster" / "monitoring" / "etrid-rules.yml"
PROMTOOL_TESTS = sorted((ROOT / "tests" / "promtool").glob("*_test.yml"))
ETRID_RAY = str(Path(sys.executable).with_name("etrid-ray"))
PAY = 10**18
JOBS = {"ok": 7, "sleep": 2, "bad": 2, "crash": 1}
AWS_POOL = {"name": "aws-spot-a100", "kind": "aws", "instance_type": "p4d.24xlarge", "region": "us-east-1",
            "max_spot_price": 12.0, "min_nodes": 1, "max_nodes": 2, "startup_s": 180}


def require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"`{binary}` is not installed: `apt-get install -y prometheus` brings prometheus and promtool "
                    "(`make test` installs it when missing)", pytrace=False)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


class Prometheus:
    """A real Prometheus on a loopback port with its own config and storage, stopped by pid."""

    def __init__(self, workdir: Path, targets: dict[str, str]) -> None:
        self.binary = require("prometheus")
        self.port = free_port()
        self.dir = workdir
        rules = yaml.safe_load(RULES.read_text())
        for group in rules["groups"]:
            group["interval"] = "1s"  # the committed 30 s, sped up: every rule is evaluated within the run
        (workdir / "rules.yml").write_text(yaml.safe_dump(rules))
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(workdir / "rules.yml")],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}
                               for job, target in targets.items()],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Prometheus:
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={self.dir / 'prometheus.yml'}", f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited: {(self.dir / 'prometheus.log').read_text()[-2000:]}")
            try:
                if http_get(f"{self.url}/-/ready", 1)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("prometheus did not become ready in 30 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def api(self, path: str, **params: str) -> Any:
        status, body = http_get(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}")
        data = json.loads(body)
        assert status == 200 and data["status"] == "success", f"{path} {params}: {body[:500]}"
        return data["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.api("query", query=expr)["result"]


@dataclass
class Run:
    devnet: DevnetProcess
    head: ProviderHead
    telemetry: HeadTelemetry
    prometheus: Prometheus
    exporter_url: str
    exporter_log: Path
    logs: io.StringIO
    seed: str
    provider: str
    completed_ids: list[int]
    failed_ids: list[int]
    underpaid_id: int
    paid_planck: int
    ray_metrics_port: int


def _fund(url: str, address: str, edsc: int) -> None:
    conn = Connection(url)
    try:
        ProviderClient(conn, dev_signer("Alice")).submitter.submit(
            Call("Balances", "transfer_keep_alive", {"dest": address, "value": edsc * PLANCK_PER_EDSC}))
    finally:
        conn.close()


def _start_exporter(url: str, log_path: Path, env: dict[str, str], *args: str) -> tuple[subprocess.Popen[bytes], str]:
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child, closed below
    proc = subprocess.Popen([ETRID_RAY, "exporter", "--url", url, "--port", "0", "--interval", "1",
                             "--log-format", "json", *args], stdout=subprocess.PIPE, stderr=log, env=env)
    log.close()
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()  # the /metrics URL, once listening
    assert line.startswith("http://127.0.0.1:") and line.endswith("/metrics"), line
    return proc, line.removesuffix("/metrics")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    require("prometheus")
    require("promtool")
    # The spend counter is process-wide (one head per process in production); tests that ran a
    # scaler earlier in this pytest process must not leak their spend into this head's series.
    from etrid_ray.telemetry.metrics import CLOUD_COST_USD

    CLOUD_COST_USD.clear()
    tmp = tmp_path_factory.mktemp("prom")
    seed = Keypair.generate_mnemonic()
    saved_seed = os.environ.get("ETRID_SEED")
    os.environ["ETRID_SEED"] = seed
    logs = io.StringIO()
    handler = make_handler("json", logs)
    root = logging.getLogger()
    saved_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    ray_port = free_port()
    ray.init(address="local", num_cpus=2, num_gpus=4, include_dashboard=False, logging_level="ERROR",
             resources={"pool:local-gpu": 1000, "accelerator_type:A100": 1000, "region:local": 1000},
             _metrics_export_port=ray_port, namespace="etrid-prom-tests",
             _system_config={"metrics_report_interval_ms": 1000})  # Ray exports pushed values every second
    devnet = DevnetProcess(block_time=0).start()
    stack: list[Any] = []
    try:
        provider = load_signer()
        _fund(devnet.url, provider.address, 10_000)
        config = provider_config(devnet, tmp, gcp_enabled=False, azure_enabled=False, pools=[AWS_POOL],
                                 heartbeat_interval_s=1, telemetry_interval_s=1, scale_interval_s=0.5)
        head = ProviderHead(config, provider, journal=Journal(config.journal_file)).start()
        stack.append(head.stop)
        telemetry = HeadTelemetry(head, port=0, ray_interval_s=1).start()
        stack.append(telemetry.stop)
        exporter, exporter_url = _start_exporter(devnet.url, tmp / "exporter.log", {**os.environ, "ETRID_SEED": seed})

        def stop_exporter() -> None:
            exporter.terminate()
            exporter.wait(timeout=15)

        stack.append(stop_exporter)
        assert telemetry.url is not None
        prometheus = Prometheus(tmp, {"etrid-head": telemetry.url.removeprefix("http://"),
                                      "etrid-exporter": exporter_url.removeprefix("http://"),
                                      "ray": f"127.0.0.1:{ray_port}"}).start()
        stack.append(prometheus.stop)

        client = ChainClient(devnet.url)
        stack.append(client.close)
        consumer = client.consumer(dev_signer(CONSUMER), blobs=open_blob_store(devnet.http_url))
        manifests = [{"handler": "echo", "args": {"payload": i}} for i in range(JOBS["ok"] - 1)]
        manifests += [{"handler": "matmul", "args": {"n": 64, "seed": 1}}]
        manifests += [{"handler": "sleep", "args": {"seconds": 1.5}}] * JOBS["sleep"]
        ok_ids = [consumer.submit_job(m, payment=PAY, max_compute_time=60).job_id for m in manifests]
        bad_ids = [consumer.submit_job({"handler": f"no-such-handler-{i}"}, payment=PAY, max_compute_time=60).job_id
                   for i in range(JOBS["bad"])]
        bad_ids.append(consumer.submit_job({"handler": "matmul", "args": {"n": 0}}, payment=PAY,
                                           max_compute_time=60).job_id)  # runs, and fails
        underpaid = consumer.submit_job({"handler": "echo"}, payment=10**12, max_compute_time=60).job_id
        reader = client.consumer(dev_signer(CONSUMER)).reader

        def final() -> bool:
            jobs = reader.jobs(ok_ids + bad_ids)
            return all(j.status in (JobStatus.COMPLETED, JobStatus.FAILED) for j in jobs.values())

        wait_until(final, 60, "every job final")
        jobs = reader.jobs(ok_ids)
        assert {j.status for j in jobs.values()} == {JobStatus.COMPLETED}
        for job_id in ok_ids:
            consumer.confirm_job(job_id)
        wait_until(lambda: head.status().payments == len(ok_ids), 30, "the head sees every payment")
        paid = head.status().earnings_planck

        # let Prometheus see the final state from both ways out (and Ray's endpoint)
        edsc = paid / PLANCK_PER_EDSC

        def scraped() -> bool:
            got = {r["metric"]["job"]: float(r["value"][1]) for r in
                   prometheus.query("etrid_gpu_earnings_total_edsc")}
            # Ray exports what the bridge pushed every few seconds: wait for the final count there too
            ray_seen = [r for r in prometheus.query("ray_etrid_gpu_jobs_completed_total")
                        if float(r["value"][1]) == len(ok_ids)]
            decided = prometheus.query('etrid_scaling_decisions_total{pool="aws-spot-a100"} > 0')  # zeros from start
            return (all(math.isclose(got.get(j, 0.0), edsc, rel_tol=1e-9) for j in ("etrid-head", "etrid-exporter"))
                    and bool(ray_seen) and bool(decided))

        wait_until(scraped, 60, "Prometheus scraped the paid state from head, exporter and Ray", poll=0.5)
        time.sleep(3)  # a few more samples, so rate()/increase() over the run have two points everywhere
        yield Run(devnet, head, telemetry, prometheus, exporter_url, tmp / "exporter.log", logs, seed,
                  provider.address, ok_ids, bad_ids, underpaid, paid, ray_port)
    finally:
        for stop in reversed(stack):
            try:
                stop()
            except Exception:  # noqa: BLE001 - keep tearing down the rest
                logging.getLogger(__name__).exception("teardown")
        devnet.stop()
        ray.shutdown()
        root.removeHandler(handler)
        root.setLevel(saved_level)
        if saved_seed is None:
            os.environ.pop("ETRID_SEED", None)
        else:
            os.environ["ETRID_SEED"] = saved_seed


# ---------------------------------------------------------------------------------------------- first scrape


def test_a_fresh_exporter_has_every_family_from_its_first_scrapes(tmp_path: Path) -> None:
    """A fresh devnet where one provider has registered a GPU and nothing else happened, `etrid-ray exporter`
    with the default config (no ETRID_* in its environment) naming that provider and one with nothing on chain,
    and a real Prometheus scraping it: at its first scrape spend is not absent (a zero series for every cloud
    pool of the default config), and once the exporter has read the chain every family the dashboard and the
    alerts query has data, with zero rows for the provider that has nothing yet."""
    require("prometheus")
    devnet = DevnetProcess(block_time=0).start()
    stack: list[Any] = [devnet.stop]
    try:
        client = ChainClient(devnet.url)
        stack.append(client.close)
        bob, dave = dev_signer("Bob"), dev_signer("Dave")
        client.provider(bob).register_gpu(GpuSpecs("A100", 80, compute_units=108, clock_speed_mhz=1410,
                                                   tdp_watts=400), to_planck(100),
                                          HardwareAttestation(b"quote", 9000, int(time.time())))
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETRID_") and k not in SEED_ENV_NAMES}
        exporter, url = _start_exporter(devnet.url, tmp_path / "exporter.log", env,
                                        "--provider", bob.address, "--provider", dave.address)

        def stop_exporter() -> None:
            exporter.terminate()
            exporter.wait(timeout=15)

        stack.append(stop_exporter)
        prometheus = Prometheus(tmp_path, {"etrid-exporter": url.removeprefix("http://")}).start()
        stack.append(prometheus.stop)

        wait_until(lambda: bool(prometheus.query('up{job="etrid-exporter"} == 1')), 30, "the first scrape", poll=0.2)
        assert prometheus.query("absent(etrid_cloud_cost_usd_total)") == []
        cost = {(r["metric"]["pool"], r["metric"]["cloud"]): float(r["value"][1])
                for r in prometheus.query("etrid_cloud_cost_usd_total")}
        cloud = {(p.name, p.kind) for p in pools_from_config(ProviderConfig()) if p.is_cloud}
        assert cost == dict.fromkeys(cloud, 0.0) and len(cloud) == 3

        wait_until(lambda: bool(prometheus.query("etrid_snapshot_ok == 1")), 30, "a chain read scraped", poll=0.2)
        missing = [name for name in sorted(monitoring.queried_metrics())
                   if "exporter" in SPECS[name].sources and not SPECS[name].labels_from_events
                   and not prometheus.query(f'{name}{{job="etrid-exporter"}}')]
        assert not missing, f"no data from a fresh exporter: {missing}"
        assert prometheus.query(f'absent(etrid_gpu_last_heartbeat_timestamp_seconds{{provider="{bob.address}"}})') \
            == []
        p = f'provider="{dave.address}"'
        for name in ("etrid_gpu_utilization_percent", "etrid_gpu_jobs_completed_total",
                     "etrid_gpu_earnings_total_edsc"):
            assert _only_value(prometheus, f"{name}{{{p}}}") == 0, name
        statuses = {r["metric"]["status"]: float(r["value"][1]) for r in prometheus.query(f"etrid_chain_gpus{{{p}}}")}
        assert statuses == dict.fromkeys(GPU_STATUSES, 0.0)
    finally:
        for stop in reversed(stack):
            stop()


def _only_value(prometheus: Prometheus, expr: str) -> float:
    result = prometheus.query(expr)
    assert len(result) == 1, f"{expr}: {result}"
    return float(result[0]["value"][1])


# ---------------------------------------------------------------------------------------------- series


def _series(run: Run, name: str, job: str) -> list[dict[str, Any]]:
    return run.prometheus.query(f'{name}{{job="{job}"}}')


def _value(run: Run, expr: str) -> float:
    return _only_value(run.prometheus, expr)


SOURCE_JOBS = {"head": "etrid-head", "exporter": "etrid-exporter"}


def test_every_series_exists_with_exactly_its_labels_from_each_way_out(run: Run) -> None:
    missing, wrong = [], []
    for spec in METRICS:
        for source in spec.sources:
            job = SOURCE_JOBS[source]
            result = _series(run, spec.name, job)
            if not result and not spec.labels_from_events:
                missing.append(f"{spec.name} from {job}")
                continue
            for r in result:
                labels = set(r["metric"]) - {"__name__", "job", "instance"}
                if labels != set(spec.labels):
                    wrong.append(f"{spec.name} from {job}: labels {sorted(labels)} != {sorted(spec.labels)}")
    assert not missing, missing
    assert not wrong, wrong


def test_the_seed_metrics_have_the_seeds_label_values(run: Run) -> None:
    for job in SOURCE_JOBS.values():
        depth = _series(run, "etrid_job_queue_depth", job)
        assert {(r["metric"]["pbc"], r["metric"]["status"]) for r in depth} == {
            ("ai-compute", "pending"), ("ai-compute", "assigned"), ("ai-compute", "completed")}
        for name in ("etrid_avg_job_wait_seconds", "etrid_avg_job_duration_seconds"):
            assert [r["metric"]["pbc"] for r in _series(run, name, job)] == ["ai-compute"]
        for name in ("etrid_gpu_utilization_percent", "etrid_gpu_jobs_completed_total",
                     "etrid_gpu_earnings_total_edsc"):
            assert run.provider in {r["metric"]["provider"] for r in _series(run, name, job)}
    cost = _series(run, "etrid_cloud_cost_usd_total", "etrid-head")
    assert {(r["metric"]["pool"], r["metric"]["cloud"]) for r in cost} == {("aws-spot-a100", "aws")}


def test_values_are_sane_and_agree_between_head_exporter_and_chain(run: Run) -> None:
    n_ok, n_bad = len(run.completed_ids), len(run.failed_ids)
    edsc = run.paid_planck / PLANCK_PER_EDSC
    assert math.isclose(edsc, n_ok * 0.95, rel_tol=1e-12)  # 1 ËDSC a job, less the chain's 5 % fee
    for job in SOURCE_JOBS.values():
        sel = f'job="{job}"'
        assert _value(run, f'etrid_job_queue_depth{{{sel},status="pending"}}') == 1  # the underpaid job waits
        assert _value(run, f'etrid_job_queue_depth{{{sel},status="assigned"}}') == 0
        assert _value(run, f'etrid_job_queue_depth{{{sel},status="completed"}}') == n_ok
        wait = _value(run, f"etrid_avg_job_wait_seconds{{{sel}}}")
        assert 0 < wait < 600  # the underpaid job's age
        duration = _value(run, f"etrid_avg_job_duration_seconds{{{sel}}}")
        assert 0 <= duration < 60
        p = f'provider="{run.provider}"'
        assert _value(run, f"etrid_gpu_jobs_completed_total{{{sel},{p}}}") == n_ok
        assert math.isclose(_value(run, f"etrid_gpu_earnings_total_edsc{{{sel},{p}}}"), edsc, rel_tol=1e-9)
        assert 0 <= _value(run, f"etrid_gpu_utilization_percent{{{sel},{p}}}") <= 100
        assert _value(run, f"etrid_snapshot_ok{{{sel}}}") == 1
        assert 0 <= _value(run, f"etrid_snapshot_age_seconds{{{sel}}}") < 30
        assert _value(run, f'sum(etrid_chain_rpc_errors_total{{{sel},kind!="reconnect"}})') == 0
        reasons = {r["metric"]["reason"]: float(r["value"][1])
                   for r in _series(run, "etrid_job_failures_total", job)}
        # the exporter counts every JobFailed on chain, the head every job it failed (refused manifests and
        # failed executions alike); consumer-chosen names never become labels
        assert reasons == {"unknown handler '*'": JOBS["bad"], "matmul": JOBS["crash"]}, reasons
        beats = _series(run, "etrid_gpu_last_heartbeat_timestamp_seconds", job)
        mine = [float(r["value"][1]) for r in beats if r["metric"]["provider"] == run.provider]
        assert len(mine) == 4 and all(time.time() - 60 < t <= time.time() + 5 for t in mine)
    head_block = _value(run, 'etrid_chain_best_block{job="etrid-head"}')
    chain_block = ChainClient(run.devnet.url).conn.best_number()
    assert 0 < head_block <= chain_block and 0 < _value(run, 'etrid_chain_best_block{job="etrid-exporter"}')
    # exporter: claims are the chain's JobAssigned events; head: claims it won (every job but the underpaid one)
    assert _value(run, 'etrid_job_claims_total{job="etrid-head",result="won"}') == n_ok + n_bad
    assert _value(run, 'etrid_job_claims_total{job="etrid-head",result="lost"}') == 0
    assert _value(run, 'etrid_job_claims_total{job="etrid-exporter",result="won"}') == n_ok + n_bad
    gpus = {r["metric"]["status"]: float(r["value"][1]) for r in _series(run, "etrid_chain_gpus", "etrid-exporter")
            if r["metric"]["provider"] == run.provider}
    assert gpus == {**dict.fromkeys(GPU_STATUSES, 0.0), "Active": 4}  # every status has its row
    assert _value(run, "etrid_exporter_scrape_seconds") > 0


def test_head_only_series_show_pools_scaling_prices_and_spend(run: Run) -> None:
    def pool_gpus(pool: str) -> dict[str, float]:
        return {r["metric"]["state"]: float(r["value"][1])
                for r in run.prometheus.query(f'etrid_pool_gpus{{pool="{pool}"}}')}

    local = pool_gpus("local-gpu")
    assert local["busy"] + local["idle"] == 4 and local["pending"] == 0  # the 4 simulated GPUs of the one node
    assert pool_gpus("aws-spot-a100") == {"busy": 0, "idle": 0, "pending": 8}  # min_nodes 1, never comes up here
    assert _value(run, 'etrid_pool_nodes{pool="aws-spot-a100",state="requested"}') == 1
    assert _value(run, 'etrid_pool_nodes{pool="local-gpu",state="alive"}') == 1
    assert _value(run, 'etrid_scaling_decisions_total{pool="aws-spot-a100",reason="min_nodes"}') >= 1
    # never alive, yet billed from its request (a cloud bills a booting VM): one billing rule with the simulator
    assert _value(run, 'etrid_cloud_cost_usd_total{job="etrid-head",pool="aws-spot-a100"}') > 0
    assert _value(run, "etrid_cloud_spend_today_usd") > 0  # the same bill, in the daily budget's window
    assert _value(run, "etrid_cloud_budget_usd") == 2000
    ages = run.prometheus.query("etrid_price_age_seconds")
    assert {r["metric"]["pool"] for r in ages} == {"local-gpu", "aws-spot-a100"} or \
        {r["metric"]["pool"] for r in ages} == {"aws-spot-a100"}
    assert all(float(r["value"][1]) > 0 for r in ages)
    aws_price = _value(run, 'etrid_price_usd_per_gpu_hour{pool="aws-spot-a100"}')
    assert 0.1 < aws_price < 12.0 / 8 + 1e-9  # a spot A100 GPU-hour, under the pool's max price per GPU
    assert _value(run, 'etrid_jobs_running{job="etrid-head"}') == 0
    skipped = {r["metric"]["reason"]: float(r["value"][1]) for r in run.prometheus.query("etrid_job_skipped_total")}
    assert skipped == {**dict.fromkeys(SKIP_KINDS, 0.0), "price": 1.0}, skipped  # a fixed set of label values
    loop = {r["metric"]["quantile"]: float(r["value"][1]) for r in run.prometheus.query("etrid_head_loop_seconds")}
    assert set(loop) == {"0.5", "0.99"} and all(0 <= v < 5 for v in loop.values())
    start = {r["metric"]["quantile"]: float(r["value"][1])
             for r in run.prometheus.query("etrid_job_queue_to_start_seconds")}
    assert set(start) == {"0.5", "0.95"} and 0 <= start["0.5"] <= start["0.95"] < 60
    info = run.prometheus.query("etrid_info")
    assert {(r["metric"]["job"], r["metric"]["source"], r["metric"]["address"]) for r in info} == {
        ("etrid-head", "head", run.provider), ("etrid-exporter", "exporter", "all")}
    assert any(r["metric"].get("pool") == "aws-spot-a100" for r in
               run.prometheus.query('etrid_scaling_decisions_total{job="etrid-head"}'))
    recent = run.telemetry.snapshot().recent_decisions
    assert any(d["pool"] == "aws-spot-a100" and d["reason"] == "min_nodes" and d["target"] == 1 for d in recent)


def test_rays_metrics_endpoint_carries_the_same_names(run: Run) -> None:
    """`ray.util.metrics` from the head: the same names with Ray's `ray_` prefix on Ray's endpoint."""
    depth = run.prometheus.query('ray_etrid_job_queue_depth{job="ray"}')
    assert {r["metric"]["status"] for r in depth} == {"pending", "assigned", "completed"}
    assert all(r["metric"]["pbc"] == "ai-compute" for r in depth)
    p = f'provider="{run.provider}"'
    n_ok = len(run.completed_ids)
    assert _value(run, f'ray_etrid_gpu_jobs_completed_total{{job="ray",{p}}}') == n_ok
    assert math.isclose(_value(run, f'ray_etrid_gpu_earnings_total_edsc{{job="ray",{p}}}'),
                        run.paid_planck / PLANCK_PER_EDSC, rel_tol=1e-9)
    assert _value(run, 'ray_etrid_pool_gpus{job="ray",pool="aws-spot-a100",state="pending"}') == 8


# ---------------------------------------------------------------------------------------------- queries


def test_every_dashboard_query_returns_data(run: Run) -> None:
    empty = [f"{title}: {expr}" for title, expr in monitoring.dashboard_exprs()
             if title not in monitoring.DATA_ONLY_ON_FAILURE and not run.prometheus.query(expr)]
    assert not empty, empty
    committed = json.loads((ROOT / "cluster" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in committed["panels"] for t in p.get("targets", [])]
    assert sorted(exprs) == sorted(e for _, e in monitoring.dashboard_exprs())


def test_every_alert_signal_returns_data_and_every_rule_evaluates(run: Run) -> None:
    for alert in monitoring.ALERTS:
        for signal in alert.signals:
            assert signal in alert.expr, f"{alert.name}: signal {signal!r} is not part of its expr"
            assert run.prometheus.query(signal), f"{alert.name}: {signal} returns no data"
        run.prometheus.query(alert.expr)  # valid PromQL on live data (an alert that does not fire is empty)
    assert not run.prometheus.query('ALERTS{alertstate="firing",severity="critical"}')  # a healthy run

    def evaluated() -> list[dict[str, Any]]:
        groups = run.prometheus.api("rules")["groups"]
        return [r for g in groups for r in g["rules"]]

    wait_until(lambda: all(r.get("lastEvaluation", "").startswith("20") for r in evaluated()), 40,
               "every rule evaluated once", poll=1)
    rules = evaluated()
    assert {r["name"] for r in rules} == {a.name for a in monitoring.ALERTS}
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]


def test_promtool_checks_the_rules_and_runs_the_alert_unit_tests() -> None:
    promtool = require("promtool")
    check = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(monitoring.ALERTS)} rules found" in check.stdout
    test = subprocess.run([promtool, "test", "rules", *map(str, PROMTOOL_TESTS)], capture_output=True, text=True,
                          cwd=ROOT / "tests" / "promtool")
    assert test.returncode == 0, test.stdout + test.stderr
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in PROMTOOL_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for t in case.get("alert_rule_test", []):
                (fired if t["exp_alerts"] else quiet).add(t["alertname"])
    names = {a.name for a in monitoring.ALERTS}
    assert names - fired == set(), f"alerts never tested firing: {names - fired}"
    assert names - quiet == set(), f"alerts never tested quiet: {names - quiet}"


# ---------------------------------------------------------------------------------------------- health, secrets


def test_health_and_readiness_of_head_and_exporter(run: Run) -> None:
    assert run.telemetry.url is not None
    for base in (run.telemetry.url, run.exporter_url):
        for path in ("/healthz", "/readyz"):
            status, body = http_get(base + path)
            assert status == 200 and json.loads(body)["status"] == "ok", (base, path, body)
    status, body = http_get(run.telemetry.url + "/readyz")
    assert json.loads(body)["gpus"] == 4
    assert http_get(run.exporter_url + "/nope")[0] == 404
    up = {r["metric"]["job"]: float(r["value"][1]) for r in run.prometheus.query("up")}
    assert up == {"etrid-head": 1, "etrid-exporter": 1, "ray": 1}


def test_the_seed_never_appears_in_logs_metrics_health_or_status(run: Run) -> None:
    words = run.seed.split()
    private = Keypair.create_from_mnemonic(run.seed).private_key.hex()
    texts = {
        "head logs": run.logs.getvalue(),
        "exporter logs": run.exporter_log.read_text(),
        "head /metrics": http_get(f"{run.telemetry.url}/metrics")[1],
        "exporter /metrics": http_get(f"{run.exporter_url}/metrics")[1],
        "head /readyz": http_get(f"{run.telemetry.url}/readyz")[1],
        "ray metrics": http_get(f"http://127.0.0.1:{run.ray_metrics_port}/metrics")[1],
    }
    status = subprocess.run([ETRID_RAY, "status", "--url", run.devnet.url, "--once", "--json", "--log-format",
                             "json"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "ETRID_SEED": run.seed})
    assert status.returncode == 0, status.stderr
    texts["status --json"] = status.stdout + status.stderr
    table = subprocess.run([ETRID_RAY, "status", "--url", run.devnet.url, "--once"], capture_output=True, text=True,
                           timeout=60, env={**os.environ, "ETRID_SEED": run.seed, "COLUMNS": "200"})
    assert table.returncode == 0, table.stderr
    texts["status"] = table.stdout + table.stderr
    texts["head snapshot"] = json.dumps(run.telemetry.snapshot().to_dict())
    assert "scale aws-spot-a100" in texts["head logs"]  # the logs were captured (JSON lines) …
    assert all(json.loads(line) for line in texts["head logs"].splitlines())
    for what, text in texts.items():  # … and hold no secret
        assert run.seed not in text, what
        assert " ".join(words[:4]) not in text, what
        assert private not in text and private.removeprefix("0x") not in text, what
    assert run.provider in texts["status"] and "chain only" in texts["status"]
