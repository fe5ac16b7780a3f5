"""The telemetry pieces on their own: the collector's families, the head snapshot's arithmetic, the HTTP
server's endpoints, the exporter when the chain is down, redacted logs, and the monitoring manifests
(drift, Kubernetes validity, ports and selectors that match the RayCluster, a panel for every metric)."""

from __future__ import annotations

import io
import json
import logging
import math
import socket
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from rich.console import Console

from etrid_ray.admission import SKIP_KINDS
from etrid_ray.config import ProviderConfig, pools_from_config
from etrid_ray.kuberay import render as r
from etrid_ray.provider.cluster_view import ClusterView
from etrid_ray.provider.stats import HeadStatus, RunningView
from etrid_ray.telemetry import monitoring
from etrid_ray.telemetry.chain_source import ChainScraper, run_exporter
from etrid_ray.telemetry.head_source import DecisionLog, head_snapshot
from etrid_ray.telemetry.logs import REDACTED, configure_logging, make_handler
from etrid_ray.telemetry.metrics import (
    CLOUD_COST_USD,
    GPU_STATUSES,
    METRICS,
    PBC,
    SOURCES,
    SPECS,
    GpuView,
    PoolView,
    ProviderView,
    Snapshot,
    build_registry,
    families,
    reason_label,
    scaling_reasons,
)
from etrid_ray.telemetry.server import MetricsServer
from etrid_ray.telemetry.status_view import render

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = ROOT / "cluster"


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read().decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def full_snapshot(source: str) -> Snapshot:
    return Snapshot(
        source=source, address="5Grw" if source == "head" else "all", best_block=42,
        queue={"pending": 5, "assigned": 2, "completed": 9}, avg_wait_s=3.5, avg_duration_s=1.25,
        queue_to_start_s={"0.5": 0.1, "0.95": 0.4}, result_to_chain_s={"0.5": 0.01, "0.99": 0.05},
        providers=[ProviderView("5Grw", 4, 62.5, 9, 3 * 10**18 // 2, running=2)],
        gpus=[GpuView(0, "5Grw", "Active", 1_800_000_000.0), GpuView(1, "5Grw", "Offline", 1_700_000_000.0)],
        pools=[PoolView("local-gpu", "local", 2, 2, 0, 1, 0, 0.048, "catalog", 10.0),
               PoolView("aws-spot-a100", "aws", 0, 0, 8, 0, 1, 0.41, "aws", 30.0)],
        decisions=[("aws-spot-a100", "min_nodes", 1)], claims={"won": 11, "lost": 3},
        failures={"timeout after 60s": 1, "timeout after 5s": 2, "unknown handler 'x'": 1},
        skipped={"price": 4, "pays 1e+16 planck/GPU-s < 3e13": 1}, head_errors={"RpcError": 1},
        loop_s={"0.5": 0.002, "0.99": 0.02},
        running=2, spend_today_usd=12.5, budget_usd=2000.0, scrape_seconds=0.05)


# ---------------------------------------------------------------------------------------------- families


@pytest.mark.parametrize("source", ["head", "exporter"])
def test_a_snapshot_becomes_exactly_the_specified_families(source: str) -> None:
    emitted = {m.name: m for m in families(full_snapshot(source))}
    # prometheus-client names a counter family without `_total`, an info family without `_info`
    family_name = {"counter": lambda n: n.removesuffix("_total"), "info": lambda n: n.removesuffix("_info"),
                   "gauge": lambda n: n}
    for spec in METRICS:
        family = emitted.get(family_name[spec.kind](spec.name))
        if source not in spec.sources:
            assert family is None, f"{spec.name} is not for the {source}"
            continue
        assert family is not None, f"{spec.name} missing from the {source}"
        assert family.type == spec.kind, spec.name
        for sample in family.samples:
            assert set(sample.labels) == set(spec.labels), (spec.name, sample.labels)


def test_values_of_the_seed_metrics_and_bounded_reason_labels() -> None:
    registry = build_registry(lambda: full_snapshot("head"))
    parsed = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    depth = {s.labels["status"]: s.value for s in parsed["etrid_job_queue_depth"].samples}
    assert depth == {"pending": 5, "assigned": 2, "completed": 9}
    assert all(s.labels["pbc"] == PBC for s in parsed["etrid_job_queue_depth"].samples)
    assert parsed["etrid_gpu_earnings_total_edsc"].samples[0].value == 1.5
    assert parsed["etrid_gpu_jobs_completed"].samples[0].name == "etrid_gpu_jobs_completed_total"
    failures = {s.labels["reason"]: s.value for s in parsed["etrid_job_failures"].samples if s.name.endswith("_total")}
    assert failures == {"timeout after Ns": 3, "unknown handler '*'": 1}
    skipped = {s.labels["reason"]: s.value for s in parsed["etrid_job_skipped"].samples if s.name.endswith("_total")}
    assert set(skipped) == {*SKIP_KINDS, "other"}  # a fixed set, every kind from the first scrape
    assert skipped["price"] == 4 and skipped["other"] == 1 and skipped["vram"] == 0
    assert reason_label('matmul failed: ValueError("n must be positive")') == "matmul failed"
    assert "etrid_cloud_cost_usd" in parsed  # the process-wide counter is served too
    assert "process_cpu_seconds" in parsed or "python_info" in parsed  # and the default collectors


def test_snapshot_round_trips_through_json() -> None:
    snap = full_snapshot("head")
    assert Snapshot.from_dict(json.loads(json.dumps(snap.to_dict()))) == snap


# ---------------------------------------------------------------------------------------------- head snapshot


def _status(**over: Any) -> HeadStatus:
    """A head's status as `ProviderHead.status()` gives it: 4 GPUs, job 7 running for 2 s, one to settle, two
    waiting 30 s, three finished in 2, 1 and 3 s."""
    now = time.time()
    fields: dict[str, Any] = dict(
        taken_at=now, address="5Grw", draining=False, drained=False, alive=True, stopping=False, watching=True,
        gpus=(0, 1, 2, 3), gpu_source="declared", gpus_declared=4, best_block=17, queue_depth=2, candidates=2,
        waiting_since=(now - 30, now - 30), running=1,
        running_jobs=(RunningView(7, 1.0, "local-gpu", 0, now - 2),), to_settle=1, states={},
        claimed=5, lost_claims=1, completed=3, failed={"timeout after 1s": 2}, skipped={}, reported=3,
        report_errors=0, earnings_planck=2 * 10**18, earnings_edsc=2.0, payments=3, gpu_seconds=6.0,
        errors={"ChainConnectionError": 2, "KeyError": 1}, reconnects=3, uptime_s=60.0, last_heartbeat=now - 5,
        queue_to_start_p50=0.2, queue_to_start_p95=0.9, result_to_chain_p50=0.01, result_to_chain_p99=0.03,
        loop_p50_ms=1.0, loop_seconds=tuple([0.001] * 98 + [0.5, 1.0]), durations=(2.0, 1.0, 3.0), estimates={})
    fields.update(over)
    return HeadStatus(**fields)


def _fake_head(status: HeadStatus | None = None, **over: Any) -> Any:
    """What telemetry reads of a head: its status, pools, config, scaler and cluster view."""
    status = status or _status()
    head = SimpleNamespace(status=lambda: status, config=ProviderConfig(gcp_enabled=False, azure_enabled=False),
                           scaler=None, cluster=SimpleNamespace(view=lambda: ClusterView(0.0, connected=False)))
    for k, v in over.items():
        setattr(head, k, v)
    head.pools = pools_from_config(head.config)
    return head


def _fresh_head() -> Any:
    """A head just started with the default config: its GPUs registered, nothing claimed, failed, run or spent."""
    status = _status(best_block=1, queue_depth=0, candidates=0, waiting_since=(), running=0, running_jobs=(),
                     to_settle=0, claimed=0, lost_claims=0, completed=0, failed={}, reported=0, earnings_planck=0,
                     earnings_edsc=0.0, payments=0, gpu_seconds=0.0, errors={}, reconnects=0, last_heartbeat=0.0,
                     queue_to_start_p50=0.0, queue_to_start_p95=0.0, result_to_chain_p50=0.0,
                     result_to_chain_p99=0.0, loop_seconds=(), durations=())
    return _fake_head(status, config=ProviderConfig())


def test_head_snapshot_arithmetic() -> None:
    snap = head_snapshot(_fake_head(), with_ray=False)
    assert snap.queue == {"pending": 2, "assigned": 2, "completed": 3}  # running + waiting to settle
    assert 29 < snap.avg_wait_s < 32  # both candidates queued 30 s ago
    assert snap.avg_duration_s == pytest.approx((2 + 1 + 3) / 3, abs=0.01)
    assert snap.providers[0].utilization_pct == 25.0  # 1 of 4 GPUs held by a running task (no Ray view)
    assert snap.providers[0].earnings_planck == 2 * 10**18
    assert snap.rpc_errors["connection"] == 2 and snap.rpc_errors["reconnect"] == 3 and snap.rpc_errors["other"] == 0
    assert snap.head_errors == {"ChainConnectionError": 2, "KeyError": 1}
    assert snap.loop_s["0.5"] == 0.001 and snap.loop_s["0.99"] == 0.5
    assert snap.claims == {"won": 5, "lost": 1}
    assert [(g.gpu_id, g.provider) for g in snap.gpus] == [(i, "5Grw") for i in range(4)]
    assert {p.name for p in snap.pools} == {"local-gpu", "aws-spot-a100"}
    aws = next(p for p in snap.pools if p.name == "aws-spot-a100")
    assert aws.price_source == "catalog" and aws.price_age_s and aws.price_age_s > 0
    assert snap.spend_today_usd == 0.0 and snap.budget_usd == 2000.0
    assert snap.running_jobs[0]["job_id"] == 7 and 1.5 < snap.running_jobs[0]["age_s"] < 10


def test_head_snapshot_with_a_scaler_shows_requested_nodes_and_decisions() -> None:
    scaler = SimpleNamespace(requested={"aws-spot-a100": 2}, prices={}, spend_usd=3.25,
                             decisions_total=Counter({("aws-spot-a100", "steered_demand"): 4}))
    snap = head_snapshot(_fake_head(scaler=scaler), with_ray=False)
    aws = next(p for p in snap.pools if p.name == "aws-spot-a100")
    assert (aws.nodes_requested, aws.nodes_alive, aws.gpus_pending) == (2, 0, 16.0)
    assert snap.decisions == [("aws-spot-a100", "steered_demand", 4)]
    assert snap.spend_today_usd == 3.25


def test_decision_log_keeps_the_scalers_decisions() -> None:
    decisions = DecisionLog(maxlen=2).attach()
    try:
        log = logging.getLogger("etrid_ray.provider.scaler")
        for target in (1, 2, 3):
            log.info("scale %s %s → %d nodes (%+d): %s [%s]", "aws-spot-a100", "up", target, 1, "queue", "queue_depth")
        log.info("requested capacity: %s", {"aws-spot-a100": 3})  # not a decision
    finally:
        decisions.detach()
    assert [d["target"] for d in decisions.recent] == [2, 3]
    assert decisions.recent[-1] | {"at": 0} == {"at": 0, "pool": "aws-spot-a100", "direction": "up", "target": 3,
                                                "delta": 1, "text": "queue", "reason": "queue_depth"}


# ---------------------------------------------------------------------------------------------- first scrape

DEFAULT_CLOUD_POOLS = {(p.name, p.kind) for p in pools_from_config(ProviderConfig()) if p.is_cloud}
NAMED_PROVIDER = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"  # an --provider account with nothing on chain
# A GPU's heartbeat series is named by the GPU: the exporter learns its GPUs from its first chain read (the
# devnet test in test_prometheus.py requires the series then); the head knows its own from the start.
NEEDS_A_CHAIN_READ = {"etrid_gpu_last_heartbeat_timestamp_seconds"}


@pytest.fixture
def no_spend_yet() -> None:
    """The spend counter is process-wide: spend other tests accrued in this process must not show here."""
    CLOUD_COST_USD.clear()


def _first_snapshot(source: str) -> Snapshot:
    """What each way out serves on its first scrape: the head just started with the default config; the
    exporter before its first chain read, with one --provider and the default config's pools."""
    if source == "head":
        return head_snapshot(_fresh_head(), with_ray=False)
    scraper = ChainScraper(f"ws://127.0.0.1:{_free_port()}", providers=[NAMED_PROVIDER],
                           pools=pools_from_config(ProviderConfig()))
    return scraper.snapshot()


def _scrape(snap: Snapshot) -> dict[str, list[Sample]]:
    """The samples of a whole /metrics page (snapshot families and the default registry), by sample name."""
    text = generate_latest(build_registry(lambda: snap)).decode()
    assert text.count("# TYPE etrid_cloud_cost_usd_total counter") == 1, "one cost family, never two"
    out: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def test_the_dashboard_and_alerts_query_only_specified_families_of_both_ways_out() -> None:
    queried = monitoring.queried_metrics()
    assert "etrid_cloud_cost_usd_total" in queried and "etrid_snapshot_ok" in queried  # the parse finds names
    assert queried <= set(SPECS), f"queried but never emitted: {queried - set(SPECS)}"


def test_only_families_named_by_their_events_may_start_without_series() -> None:
    """A failure reason or an exception type is not known before it happens: no zero row can name it."""
    assert {m.name for m in METRICS if m.labels_from_events} == {
        "etrid_job_failures_total", "etrid_head_errors_total"}


@pytest.mark.parametrize("source", SOURCES)
def test_every_family_the_dashboard_and_alerts_query_has_samples_from_the_first_scrape(
        source: str, no_spend_yet: None) -> None:
    samples = _scrape(_first_snapshot(source))
    missing = [name for name in sorted(monitoring.queried_metrics())
               if source in SPECS[name].sources and not SPECS[name].labels_from_events
               and not (source == "exporter" and name in NEEDS_A_CHAIN_READ) and not samples.get(name)]
    assert not missing, f"no sample on the {source}'s first scrape: {missing}"


@pytest.mark.parametrize("source", SOURCES)
def test_first_scrape_has_zero_cloud_cost_for_every_cloud_pool_of_the_default_config(
        source: str, no_spend_yet: None) -> None:
    cost = {(s.labels["pool"], s.labels["cloud"]): s.value for s in _scrape(_first_snapshot(source))[
        "etrid_cloud_cost_usd_total"]}
    assert len(DEFAULT_CLOUD_POOLS) == 3  # aws, gcp and azure spot pools
    assert cost == dict.fromkeys(DEFAULT_CLOUD_POOLS, 0.0)


def test_spend_shows_beside_the_zero_rows_of_the_pools_that_spent_nothing(no_spend_yet: None) -> None:
    CLOUD_COST_USD.labels(pool="aws-spot-a100", cloud="aws").inc(2.5)
    CLOUD_COST_USD.labels(pool="an-old-pool", cloud="gcp").inc(1.0)  # no longer configured, still counted
    cost = {(s.labels["pool"], s.labels["cloud"]): s.value
            for s in _scrape(_first_snapshot("head"))["etrid_cloud_cost_usd_total"]}
    assert cost == {**dict.fromkeys(DEFAULT_CLOUD_POOLS, 0.0), ("aws-spot-a100", "aws"): 2.5,
                    ("an-old-pool", "gcp"): 1.0}


def test_known_providers_and_pools_get_zero_rows_in_every_labelled_family(no_spend_yet: None) -> None:
    head = _scrape(_first_snapshot("head"))
    pools = {p.name for p in pools_from_config(ProviderConfig())}
    decisions = {(s.labels["pool"], s.labels["reason"]): s.value for s in head["etrid_scaling_decisions_total"]}
    assert decisions == dict.fromkeys(((p, r) for p in pools for r in scaling_reasons()), 0.0)
    assert {s.labels["pool"] for s in head["etrid_pool_gpus"]} == pools
    exporter = _scrape(_first_snapshot("exporter"))
    for name in ("etrid_gpu_utilization_percent", "etrid_gpu_jobs_completed_total", "etrid_gpu_earnings_total_edsc"):
        assert [(s.labels["provider"], s.value) for s in exporter[name]] == [(NAMED_PROVIDER, 0.0)], name
    chain_gpus = {(s.labels["provider"], s.labels["status"]): s.value for s in exporter["etrid_chain_gpus"]}
    assert chain_gpus == dict.fromkeys(((NAMED_PROVIDER, status) for status in GPU_STATUSES), 0.0)
    assert math.isnan(exporter["etrid_exporter_scrape_seconds"][0].value)  # no read yet: unknown, not 0 s


def test_before_its_first_read_the_exporter_says_it_has_not_read_the_chain() -> None:
    scraper = ChainScraper(f"ws://127.0.0.1:{_free_port()}", providers=[NAMED_PROVIDER])
    snap = scraper.snapshot()
    assert not snap.ok and snap.error == "no chain read yet" and snap.taken_at == scraper.started_at
    assert scraper.latest is None and not scraper.ready()[0]
    after = scraper.read()  # the chain is down: the same known rows, with the error
    assert not after.ok and "ChainConnectionError" in (after.error or "")
    assert [p.address for p in after.providers] == [NAMED_PROVIDER]


# ---------------------------------------------------------------------------------------------- server


def test_server_endpoints() -> None:
    state = {"healthy": True, "ready": False}

    def ready() -> tuple[bool, dict[str, Any]]:
        if state["ready"] is None:
            raise RuntimeError("check broke")
        return bool(state["ready"]), {"why": "no chain read yet"}

    server = MetricsServer(build_registry(lambda: full_snapshot("exporter")),
                           health=lambda: (state["healthy"], {}), ready=ready).start()
    try:
        status, ctype, body = _get(server.url + "/metrics")
        assert status == 200 and ctype.startswith("text/plain") and "etrid_chain_gpus" in body
        status, ctype, body = _get(server.url + "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"})
        assert status == 200 and ctype.startswith("application/openmetrics-text") and body.endswith("# EOF\n")
        assert _get(server.url + "/healthz")[0] == 200
        status, _, body = _get(server.url + "/readyz")
        assert status == 503 and json.loads(body) == {"status": "unavailable", "why": "no chain read yet"}
        state["ready"] = True
        assert _get(server.url + "/readyz")[0] == 200
        state["ready"] = None
        assert _get(server.url + "/readyz")[0] == 500
        state["healthy"] = False
        assert _get(server.url + "/healthz")[0] == 503
        assert _get(server.url + "/other")[0] == 404
    finally:
        server.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(server.url + "/metrics", timeout=2)


def test_exporter_with_the_chain_down_is_alive_but_not_ready() -> None:
    dead = f"ws://127.0.0.1:{_free_port()}"
    snap = ChainScraper(dead).read()
    assert not snap.ok and "ChainConnectionError" in (snap.error or "")
    assert snap.rpc_errors["connection"] == 1 and snap.rpc_errors["reconnect"] == 0

    stop, urls = threading.Event(), []
    thread = threading.Thread(target=run_exporter, args=(dead,), kwargs={
        "port": 0, "interval_s": 0.5, "stop": stop, "on_ready": urls.append}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not urls and time.monotonic() < deadline:
            time.sleep(0.05)
        base = urls[0]
        deadline = time.monotonic() + 20
        failed_read = 'etrid_chain_rpc_errors_total{kind="connection"} 1.0'
        while time.monotonic() < deadline and failed_read not in _get(base + "/metrics")[2]:
            time.sleep(0.1)
        assert _get(base + "/healthz")[0] == 200  # the loop runs: no restart needed
        status, _, body = _get(base + "/readyz")
        assert status == 503 and "ChainConnectionError" in body
        metrics = _get(base + "/metrics")[2]
        assert "etrid_snapshot_ok 0.0" in metrics
        assert 'etrid_chain_rpc_errors_total{kind="connection"}' in metrics
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()


# ---------------------------------------------------------------------------------------------- logs


def test_logs_redact_secrets_in_text_and_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seed = "bottom drive obey lake curtain smoke basket hold race lonely fit walk"
    seed_file = tmp_path / "seed"
    seed_file.write_text("0x" + "ab" * 32 + "\n")
    monkeypatch.setenv("ETRID_SEED", seed + "//etrid//0")
    monkeypatch.setenv("ETRID_SEED_FILE", str(seed_file))
    log = logging.getLogger("etrid_ray.test_logs")
    for fmt in ("text", "json"):
        buf = io.StringIO()
        handler = make_handler(fmt, buf)
        log.addHandler(handler)
        log.propagate = False
        try:
            log.warning("loaded %s and %s", seed, "0x" + "ab" * 32)
            try:
                raise ValueError(f"bad seed {seed}")
            except ValueError:
                log.exception("failed")
        finally:
            log.removeHandler(handler)
            log.propagate = True
        out = buf.getvalue()
        assert seed not in out and "ab" * 32 not in out and REDACTED in out, out
        if fmt == "json":
            lines = [json.loads(line) for line in out.splitlines()]
            assert lines[0]["level"] == "warning" and lines[0]["logger"] == "etrid_ray.test_logs"
            assert lines[0]["message"] == f"loaded {REDACTED} and {REDACTED}"
            assert "ValueError" in lines[1]["exc"] and REDACTED in lines[1]["exc"]
        else:
            assert " WARNING etrid_ray.test_logs: loaded " in out


def test_configure_logging_replaces_only_its_own_handler() -> None:
    root = logging.getLogger()
    before = [h for h in root.handlers if not getattr(h, "_etrid", False)]  # others' handlers (an earlier
    level = root.level  # test's CLI run may have left one of ours, which is ours to replace)
    try:
        configure_logging("json", stream=io.StringIO())
        configure_logging("text", stream=io.StringIO())
        ours = [h for h in root.handlers if getattr(h, "_etrid", False)]
        assert len(ours) == 1 and not isinstance(ours[0].formatter, type(make_handler("json").formatter))
        assert all(h in root.handlers for h in before)
        with pytest.raises(ValueError, match="log format 'xml'"):
            make_handler("xml")
    finally:
        for h in list(root.handlers):
            if getattr(h, "_etrid", False):
                root.removeHandler(h)
        root.setLevel(level)


# ---------------------------------------------------------------------------------------------- manifests


def test_committed_monitoring_files_are_the_rendering() -> None:
    fix = "python -m etrid_ray.telemetry.monitoring --out cluster"
    for name, text in monitoring.render_monitoring().items():
        path = CLUSTER / name
        assert path.exists(), f"cluster/{name} missing: {fix}"
        assert path.read_text() == text, f"cluster/{name} drifted: {fix}"


def test_monitoring_cli_writes_the_files(tmp_path: Path) -> None:
    monitoring.main(["--out", str(tmp_path)])
    for name in monitoring.render_monitoring():
        assert (tmp_path / name).read_text() == (CLUSTER / name).read_text()


def test_exporter_objects_are_valid_kubernetes_with_probes_on_health_endpoints() -> None:
    docs = [d for d in yaml.safe_load_all((CLUSTER / "monitoring" / "exporter.yaml").read_text()) if d]
    assert [d["kind"] for d in docs] == ["Deployment", "Service"]
    for doc in docs:
        kubernetes_validate.validate(doc, "1.33", strict=True)
        assert doc["metadata"]["namespace"] == r.NAMESPACE
    (container,) = docs[0]["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["command"][:4] == ["python", "-m", "etrid_ray", "exporter"]
    command = container["command"]
    assert command[command.index("--host") + 1] == "0.0.0.0"  # reachable by Prometheus in the pod network
    assert container["envFrom"] == [{"configMapRef": {"name": r.CONFIGMAP_NAME}}]  # WEBSOCKET_URL; no Secret
    assert "env" not in container
    labels = docs[0]["spec"]["template"]["metadata"]["labels"]
    assert docs[1]["spec"]["selector"].items() <= labels.items()


def test_monitors_select_pods_and_ports_that_exist() -> None:
    pod_monitors = [d for d in yaml.safe_load_all((CLUSTER / "monitoring" / "monitors.yaml").read_text()) if d]
    (cluster,) = [d for d in yaml.safe_load_all((CLUSTER / "raycluster.yaml").read_text()) if d]
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    head_ports = {p["name"] for p in head["ports"]}
    worker_ports = [{p["name"] for p in g["template"]["spec"]["containers"][0]["ports"]}
                    for g in cluster["spec"]["workerGroupSpecs"]]
    by_name = {d["metadata"]["name"]: d for d in pod_monitors}
    assert {d["kind"] for d in pod_monitors} == {"PodMonitor", "ServiceMonitor"}
    nodes = by_name["etrid-ray-nodes"]["spec"]
    assert nodes["podMetricsEndpoints"][0]["port"] == "metrics"
    assert "metrics" in head_ports and all("metrics" in ports for ports in worker_ports)
    provider = by_name["etrid-provider-head"]["spec"]
    assert provider["podMetricsEndpoints"][0]["port"] == r.PROVIDER_METRICS_PORT_NAME in head_ports
    assert provider["selector"]["matchLabels"]["ray.io/node-type"] == "head"
    assert all(d["metadata"]["namespace"] == r.NAMESPACE for d in pod_monitors)
    exporter_svc = [d for d in yaml.safe_load_all((CLUSTER / "monitoring" / "exporter.yaml").read_text()) if d][1]
    svc_monitor = by_name[monitoring.EXPORTER_NAME]["spec"]
    assert svc_monitor["selector"]["matchLabels"].items() <= exporter_svc["metadata"]["labels"].items()
    assert svc_monitor["endpoints"][0]["port"] in {p["name"] for p in exporter_svc["spec"]["ports"]}


def test_prometheus_rule_and_plain_rule_file_hold_the_same_groups() -> None:
    (rule,) = [d for d in yaml.safe_load_all((CLUSTER / "monitoring" / "prometheusrule.yaml").read_text()) if d]
    plain = yaml.safe_load((CLUSTER / "monitoring" / "etrid-rules.yml").read_text())
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == plain["groups"]
    alerts = {a["alert"] for g in plain["groups"] for a in g["rules"]}
    for needed in ("EtridQueueBacklogGrowing", "EtridGpuNoHeartbeat", "EtridClaimsFailing",
                   "EtridCloudSpendNearBudget", "EtridPricesStale", "EtridEarningsFlatWhileBusy"):
        assert needed in alerts
    for a in (a for g in plain["groups"] for a in g["rules"]):
        assert a["labels"]["severity"] in ("info", "warning", "critical") and a["annotations"]["summary"]


def test_dashboard_has_a_panel_for_every_metric() -> None:
    board = json.loads((CLUSTER / "grafana-dashboard.json").read_text())
    panels = [p for p in board["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for p in panels:
        assert p["targets"] and p["datasource"]["uid"] == "${datasource}"
        assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    shown = {m.name for m in METRICS if m.name in exprs or m.name.removesuffix("_total") in exprs}
    assert {m.name for m in METRICS} - shown == {"etrid_info"}  # what the endpoint is: a label source, no panel
    for seed_metric in (m.name for m in METRICS if m.seed):
        assert seed_metric in exprs


def test_preemptions_are_counted_per_pool_apart_from_failures_and_shown_in_the_status_view() -> None:
    head = _fake_head(_status(preempted={"aws-spot-a100": 2}, retried=1))
    snap = head_snapshot(head, with_ray=False)
    assert snap.preemptions == {"aws-spot-a100": 2} and snap.retries == 1
    parsed = {f.name: f for f in text_string_to_metric_families(
        generate_latest(build_registry(lambda: snap)).decode())}
    preempted = {s.labels["pool"]: s.value for s in parsed["etrid_job_preemptions"].samples
                 if s.name.endswith("_total")}
    assert preempted == {"aws-spot-a100": 2.0, "local-gpu": 0.0}  # every pool has its series from the start
    assert [s.value for s in parsed["etrid_job_retries"].samples if s.name.endswith("_total")] == [1.0]
    assert "preempted" not in " ".join(s.labels.get("reason", "") for s in parsed["etrid_job_failures"].samples)
    console = Console(width=140, record=True)
    console.print(render(snap))
    text = console.export_text()
    assert "preempted, run again: aws-spot-a100" in text and "crashed, retried" in text
