"""bench/gpu.py, the real-GPU check: on a machine without a GPU (this one, CI) it says so and succeeds, quickly
and without starting anything."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from etrid_ray.provider.gpu_info import measured_facts
from etrid_ray.workloads.matmul import cuda_present

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
