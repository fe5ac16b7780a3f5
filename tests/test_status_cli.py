"""`etrid-ray status` and `etrid-ray exporter` on the command line: chain state only, the head actor through
a Ray address, and the mistakes an operator makes (wrong URL, nothing listening, a taken port)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from click.testing import CliRunner

from etrid_ray.blobs import open_blob_store
from etrid_ray.chain import ChainClient, GpuSpecs, HardwareAttestation, dev_signer
from etrid_ray.cli import main as cli_main
from etrid_ray.service.actor import launch_head, stop_head
from tests.provider_support import CONSUMER, PROVIDER, all_final, provider_config, wait_until

ETRID_RAY = str(Path(sys.executable).with_name("etrid-ray"))
PAY = 10**18


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


# ---------------------------------------------------------------------------------------------- chain only


def test_status_from_chain_state_only(fresh_devnet: Any) -> None:
    """No Ray, no head: the queue, the registered GPUs and the providers come from the chain alone."""
    with ChainClient(fresh_devnet.url) as client:
        provider = client.provider(dev_signer("Dave"))
        provider.register_gpus([(GpuSpecs("A100", 80), 100 * 10**18)] * 2, HardwareAttestation(b"", 1000, 0))
        consumer = client.consumer(dev_signer(CONSUMER), blobs=open_blob_store(fresh_devnet.http_url))
        for i in range(3):
            consumer.submit_job({"handler": "echo", "args": {"i": i}}, payment=PAY, max_compute_time=60)
    result = CliRunner().invoke(cli_main, ["status", "--url", fresh_devnet.url, "--once", "--json"])
    assert result.exit_code == 0, result.output
    snap = json.loads(result.output)
    assert snap["source"] == "exporter" and snap["ok"] is True
    assert snap["queue"] == {"pending": 3, "assigned": 0, "completed": 0}
    assert snap["best_block"] > 0 and snap["avg_wait_s"] >= 0
    dave = dev_signer("Dave").address
    gpus = [(g["gpu_id"], g["provider"], g["status"]) for g in snap["gpus"]]
    assert gpus == [(0, dave, "Active"), (1, dave, "Active")]
    assert [(p["address"], p["gpus"], p["jobs_completed"]) for p in snap["providers"]] == [(dave, 2, 0)]

    table = CliRunner().invoke(cli_main, ["status", "--url", fresh_devnet.url, "--once"], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    for text in ("chain only", "queue", "providers", dave, "claims won / lost"):
        assert text in table.output, text
    assert "GPUs per pool" not in table.output and "scaling decisions" not in table.output  # head-only views


def test_status_and_exporter_report_operator_mistakes_clearly() -> None:
    dead = f"ws://127.0.0.1:{_free_port()}"
    result = CliRunner().invoke(cli_main, ["status", "--url", dead, "--once", "--json"])
    assert result.exit_code == 1
    assert f"cannot read {dead}" in result.output and "Traceback" not in result.output

    bad = CliRunner().invoke(cli_main, ["status", "--url", "localhost:9944", "--once"])
    assert bad.exit_code == 2 and "is not a node URL" in bad.output

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = CliRunner().invoke(cli_main, ["exporter", "--url", dead, "--port", str(port)])
    assert busy.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}" in busy.output

    no_ray = CliRunner().invoke(cli_main, ["status", "--address", f"127.0.0.1:{_free_port()}", "--once"])
    assert no_ray.exit_code == 1 and "cannot reach the Ray cluster at 127.0.0.1:" in no_ray.output


def test_exporter_command_serves_metrics_and_stops_on_sigterm(devnet: Any) -> None:
    proc = subprocess.Popen([ETRID_RAY, "exporter", "--url", devnet.url, "--port", "0", "--interval", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        base = url.removesuffix("/metrics")
        wait_until(lambda: _get(base + "/readyz")[0] == 200, 20, "the exporter's first chain read")
        status, text = _get(url)
        assert status == 200
        assert 'etrid_job_queue_depth{pbc="ai-compute",status="pending"}' in text
        assert 'etrid_info{address="all",source="exporter"' in text
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "exporter stopped" in err and " INFO " in err  # human-readable lines by default


# ---------------------------------------------------------------------------------------------- head actor


@pytest.fixture(scope="module")
def actor_ray() -> Iterator[str]:
    saved = {k: os.environ.get(k) for k in ("ETRID_SEED", "ETRID_METRICS_PORT")}
    os.environ["ETRID_SEED"] = "//" + PROVIDER  # the head actor reads its key from its own environment
    os.environ["ETRID_METRICS_PORT"] = "0"  # its metrics server on a free loopback port
    ray.init(address="local", num_cpus=2, num_gpus=4, include_dashboard=False, logging_level="ERROR",
             namespace="etrid-status-tests")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_status_reads_the_head_actor_through_a_ray_address(actor_ray: str, fresh_devnet: Any,
                                                           tmp_path: Path) -> None:
    config = provider_config(fresh_devnet, tmp_path, namespace="etrid-status-head")
    handle = launch_head(config)
    client = ChainClient(fresh_devnet.url)
    try:
        consumer = client.consumer(dev_signer(CONSUMER), blobs=open_blob_store(fresh_devnet.http_url))
        ids = [consumer.submit_job({"handler": "echo", "args": {"i": i}}, payment=PAY, max_compute_time=60).job_id
               for i in range(3)]
        wait_until(lambda: all_final(client, ids), 60, "the head ran every job")

        metrics_url = ray.get(handle.metrics_url.remote())
        assert metrics_url.startswith("http://127.0.0.1:")
        for path in ("/healthz", "/readyz"):
            status, body = _get(metrics_url + path)
            assert status == 200 and json.loads(body)["status"] == "ok", (path, body)
        wait_until(lambda: 'status="completed"} 3.0' in _get(metrics_url + "/metrics")[1], 20,
                   "the head's /metrics shows the completed jobs")

        out = subprocess.run([ETRID_RAY, "status", "--address", actor_ray, "--namespace", "etrid-status-head",
                              "--once", "--json"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        snap = json.loads(out.stdout)
        assert snap["source"] == "head" and snap["address"] == dev_signer(PROVIDER).address
        assert snap["queue"]["completed"] == 3 and snap["claims"]["won"] == 3
        assert [p["gpus"] for p in snap["providers"]] == [4]
        assert snap["budget_usd"] == config.daily_cloud_budget_usd

        # in-process, with this test's Ray already connected: the command must leave it running
        table = CliRunner().invoke(cli_main, ["status", "--address", actor_ray, "--namespace", "etrid-status-head",
                                              "--once"], env={"COLUMNS": "200"})
        assert table.exit_code == 0, table.output
        for text in ("head", "GPUs per pool", "recent scaling decisions", "cloud spend today", "of $2,000.00 budget"):
            assert text in table.output, text
        assert ray.is_initialized()

        missing = CliRunner().invoke(cli_main, ["status", "--address", actor_ray, "--namespace", "nobody",
                                                "--once"])
        assert missing.exit_code == 1 and "no provider head actor" in missing.output

        # a head being taken offline says so, in JSON and in the table
        assert ray.get(handle.drain.remote(False))["draining"] is True
        out = subprocess.run([ETRID_RAY, "status", "--address", actor_ray, "--namespace", "etrid-status-head",
                              "--once", "--json"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["draining"] is True
        table = CliRunner().invoke(cli_main, ["status", "--address", actor_ray, "--namespace", "etrid-status-head",
                                              "--once"], env={"COLUMNS": "200"})
        assert "DRAINING" in table.output, table.output
    finally:
        stop_head(handle)
        client.close()
