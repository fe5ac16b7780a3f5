"""Proof of GPU: `etrid-ray provider register` attests a benchmark score measured with `matmul` on a present GPU,
and the declared one — saying so — where there is none (this machine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from etrid_ray.chain import ChainClient
from etrid_ray.workloads import benchmark, matmul
from etrid_ray.workloads.registry import WorkloadContext

no_gpu = pytest.mark.skipif(matmul.cuda_present(), reason="a GPU is here: the score is measured (bench/gpu.py)")


def _register(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ETRID_")}
    args = ["provider", "register", "--url", url, "--model", "MI300X", "--vram-gb", "192", "--stake", "100", *extra]
    return subprocess.run([sys.executable, "-m", "etrid_ray", *args], capture_output=True, text=True, timeout=120,
                          env={**clean, "ETRID_SEED": "//Dave"})


def _attestation(url: str, gpu_id: int) -> Any:
    with ChainClient(url) as client:
        node = client.reader.gpu(gpu_id)
    assert node is not None
    return node.attestation


@no_gpu
def test_without_a_gpu_the_declared_score_is_attested_and_the_output_says_so(devnet) -> None:
    out = _register(devnet.url, "--benchmark-score", "4321", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    bench = data["benchmark"]
    assert bench["score"] == 4321 and bench["source"] == "declared" and bench["runs_gflops"] == []
    assert "no GPU here" in bench["detail"] and bench["unit"] == benchmark.SCORE_UNIT
    att = _attestation(devnet.url, data["gpu_ids"][0])
    assert att.benchmark_score == 4321
    assert json.loads(att.tpm_quote) == {"benchmark": "declared", "unit": benchmark.SCORE_UNIT,
                                         "detail": bench["detail"]}


@no_gpu
def test_the_human_output_names_the_score_its_unit_and_its_source(devnet) -> None:
    out = _register(devnet.url)
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith("benchmark score"))
    assert line.startswith(f"benchmark score 1000 {benchmark.SCORE_UNIT}: declared (no GPU here")
    out = _register(devnet.url, "--no-measure", "--benchmark-score", "77")
    assert out.returncode == 0, out.stderr
    assert "benchmark score 77 " in out.stdout and "declared (measuring was turned off (--no-measure))" in out.stdout


@pytest.mark.skipif(not matmul.cuda_present(), reason="no GPU here (runs on a GPU machine)")
def test_on_a_gpu_the_measured_score_is_attested(devnet) -> None:
    out = _register(devnet.url, "--benchmark-score", "4321", "--json")
    assert out.returncode == 0, out.stderr
    bench = json.loads(out.stdout)["benchmark"]
    assert bench["source"] == "measured" and bench["score"] != 4321 and len(bench["runs_gflops"]) == 5
    assert bench["score"] == int(sorted(bench["runs_gflops"])[2])
    att = _attestation(devnet.url, json.loads(out.stdout)["gpu_ids"][0])
    assert att.benchmark_score == bench["score"] and json.loads(att.tpm_quote)["benchmark"] == "measured"


@no_gpu
def test_measuring_where_no_gpu_is_says_why() -> None:
    with pytest.raises(benchmark.BenchmarkUnavailable, match="no GPU here"):
        benchmark.measure()
    assert benchmark.attested_score(1234).source == "declared"


def test_the_score_is_the_median_rate_of_real_matmul_runs_in_gflops() -> None:
    """Scored from the workload's own results (here on the CPU: the same `flops_per_s` a GPU run reports)."""
    runs = [matmul.run({"n": 256, "iterations": 3, "dtype": "float32"}, WorkloadContext()) for _ in range(3)]
    for run in runs:  # achieved FLOP/s: 2·n³ per product
        assert run["flops_per_s"] == pytest.approx(2 * 256**3 * 3 / run["seconds"])
    rates = sorted(r["flops_per_s"] for r in runs)
    assert benchmark.score_of(runs) == max(1, int(rates[1] / 1e9))


def test_scores_stay_within_what_the_chain_accepts() -> None:
    assert benchmark.score_of([{"flops_per_s": 1e5}]) == 1  # the chain refuses 0
    assert benchmark.score_of([{"flops_per_s": 1e30}]) == 2**32 - 1  # a u32
    assert benchmark.score_of([{"flops_per_s": 9e14}, {"flops_per_s": 1e15}, {"flops_per_s": 2e15}]) == 1_000_000
    with pytest.raises(ValueError):
        benchmark.score_of([{"flops_per_s": None}])


def test_the_quote_fits_the_chain_and_stays_json_with_a_long_reason() -> None:
    att = benchmark.Attested(5, "declared", "x" * 1000)
    raw = att.quote()
    assert len(raw) <= benchmark.QUOTE_LIMIT
    doc = json.loads(raw)
    assert doc["benchmark"] == "declared" and doc["detail"].endswith("...")
