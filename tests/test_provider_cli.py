"""`etrid-ray provider run`: configuration and key mistakes are one clear line, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from etrid_ray.config import GpuConfig
from etrid_ray.provider.gpu_info import gpu_facts


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ETRID_")}
    return subprocess.run([sys.executable, "-m", "etrid_ray", *args], capture_output=True, text=True, timeout=60,
                          env={**clean, **env})


def test_provider_run_without_a_key_says_which_variable_to_set(tmp_path: Path) -> None:
    config = tmp_path / "p.json"
    config.write_text(json.dumps({"gpus": {"count": 1}}))
    out = _run(["provider", "run", "--config", str(config)], {})
    assert out.returncode == 2
    assert "ETRID_SEED" in out.stderr and "Traceback" not in out.stderr


def test_provider_run_with_an_unknown_setting_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "p.json"
    config.write_text(json.dumps({"price_per_second": 5}))
    out = _run(["provider", "run", "--config", str(config)], {"ETRID_SEED": "//Bob"})
    assert out.returncode == 2
    assert "price_per_second" in out.stderr and "Traceback" not in out.stderr
    assert "//Bob" not in out.stderr + out.stdout


def test_without_nvml_the_declared_gpus_are_used_and_the_source_says_so() -> None:
    facts = gpu_facts(GpuConfig(count=3, model="H100", vram_gb=94))
    assert facts.source == "declared"  # this machine has no NVIDIA driver
    assert (facts.count, facts.model, facts.vram_gb) == (3, "H100", 94)


def test_detach_without_a_cluster_says_it_needs_one(tmp_path: Path) -> None:
    config = tmp_path / "p.json"
    config.write_text(json.dumps({"gpus": {"count": 1}}))
    out = _run(["provider", "run", "--detach", "--config", str(config)], {"ETRID_SEED": "//Bob"})
    assert out.returncode == 2
    assert "--detach needs a running Ray cluster" in out.stderr and "ray_address" in out.stderr
    assert "Traceback" not in out.stderr


def test_stop_against_an_address_nothing_listens_on_names_the_address() -> None:
    out = _run(["provider", "stop", "--address", "127.0.0.1:9"], {})
    assert out.returncode == 2
    assert "cannot reach the Ray cluster at 127.0.0.1:9" in out.stderr and "Traceback" not in out.stderr
