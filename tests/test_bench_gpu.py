"""bench/gpu.py, the real-GPU check: on a machine without a GPU (this one, CI) it says so and succeeds, quickly
and without starting anything."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from etrid_ray.provider.gpu_info import measured_facts
from etrid_ray.workloads.matmul import cuda_present
from tests.gpu_support import FakeDevice, fake_pynvml

BENCH = Path(__file__).resolve().parent.parent / "bench" / "gpu.py"


def test_without_a_gpu_the_check_says_no_gpu_and_exits_0() -> None:
    if measured_facts() is not None or cuda_present():
        pytest.skip("a GPU is here: run bench/gpu.py itself")
    start = time.monotonic()
    out = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("no GPU") and "Traceback" not in out.stderr
    assert "ray" not in out.stderr.lower() and time.monotonic() - start < 60  # no cluster, no devnet started


def test_the_check_documents_its_flags() -> None:
    out = subprocess.run([sys.executable, str(BENCH), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--quick" in out.stdout and "no GPU" in out.stdout


def _bench_module(monkeypatch: pytest.MonkeyPatch) -> Any:
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_gpu", module)  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _nvidia_smi(bin_dir: Path, rows: list[str]) -> None:
    """A stand-in for the driver's `nvidia-smi` (the one GPU tool this machine lacks), printing the CSV that
    `--query-gpu=name,memory.total,memory.used,utilization.gpu --format=csv,noheader,nounits` prints."""
    exe = bin_dir / "nvidia-smi"
    exe.write_text("#!/bin/sh\ncat <<'CSV'\n" + "\n".join(rows) + "\nCSV\n")
    exe.chmod(0o755)


@pytest.mark.parametrize(("smi_rows", "failed"), [
    (["NVIDIA H100 80GB HBM3, 81559, 1024, 3"], []),
    (["NVIDIA H100 80GB HBM3, 81559, 1024, 3"] * 2, ["GPU count"]),
    (["NVIDIA H100 80GB HBM3, 81559, 9000, 3"], ["GPU 0 memory used"]),
    (["NVIDIA A100-SXM4-40GB, 40960, 1024, 3"], ["model", "memory per GPU"]),
])
def test_the_readings_check_compares_nvml_with_nvidia_smi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                           smi_rows: list[str], failed: list[str]) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([FakeDevice("NVIDIA H100 80GB HBM3", 79.65, 1.0, 3)])[0])
    _nvidia_smi(tmp_path, smi_rows)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    bench = _bench_module(monkeypatch)
    facts = measured_facts()
    assert facts is not None and facts.source == "nvml"
    report = bench.Report()
    bench.check_readings(facts, report)
    assert [f.split(":")[0] for f in report.failures] == failed
