"""AMD Instinct pools: the vendor known in one place, `amd.com/gpu` in the worker group, and a price from the
config where the shipped catalog has none (with its source)."""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
from datetime import date
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from etrid_ray.accelerators import AMD, NVIDIA, card_of, device_present, vendor_of
from etrid_ray.cli import main as cli_main
from etrid_ray.config import ProviderConfig, pools_from_config
from etrid_ray.kuberay import render as r
from etrid_ray.pools import DeclaredPrice, Pool
from etrid_ray.prices import default_catalog
from tests.test_kuberay_manifests import K8S_VERSION, _crd_validator, _derive, _errors
from tests.test_prices_cli import offline  # noqa: F401  (the fixture: no ETRID_ env, no cloud reachable)

ROOT = Path(__file__).resolve().parent.parent
PRICE = DeclaredPrice(usd_per_node_hour=24.0, ondemand_usd_per_node_hour=48.0, as_of=date(2026, 11, 20),
                      source="a figure of this test")
MI300X_POOL = Pool(name="azure-mi300x", kind="azure", accelerator="MI300X", gpus_per_node=8, vram_gb=192,
                   cpus_per_node=96, memory_gib=1850, instance_type="Standard_ND96isr_MI300X_v5", region="eastus",
                   max_nodes=2, price=PRICE)
CONFIG = ProviderConfig(gcp_enabled=False, pools=[MI300X_POOL])


@pytest.mark.parametrize("name", ["MI300X", "MI325X", "AMD Instinct MI300X", "Instinct MI250X",
                                  "AMD-Instinct-MI300X-OAM", "AMD Radeon PRO W7900"])
def test_amd_names_are_amd(name: str) -> None:
    assert vendor_of(name) is AMD and AMD.k8s_resource == "amd.com/gpu" and AMD.library == "amdsmi"


@pytest.mark.parametrize("name", ["A100", "H100 80GB HBM3", "L4", "A10G", "NVIDIA H200", "Tesla T4", "MIG 1g.10gb"])
def test_every_other_name_is_nvidia(name: str) -> None:
    assert vendor_of(name) is NVIDIA and NVIDIA.k8s_resource == "nvidia.com/gpu"


@pytest.mark.parametrize(("device", "card"), [
    ("NVIDIA H100 80GB HBM3", "H100 SXM"), ("NVIDIA H100 PCIe", "H100 PCIe"), ("NVIDIA H100 NVL", "H100 NVL"),
    ("NVIDIA H200", "H200"), ("NVIDIA A100-SXM4-80GB", "A100"), ("NVIDIA L4", "L4"), ("NVIDIA L40S", "L40S"),
    ("AMD Instinct MI300X", "MI300X"), ("Tesla T4", None)])
def test_device_names_find_their_card_and_its_sourced_peaks(device: str, card: str | None) -> None:
    found = card_of(device)
    assert (found.name if found else None) == card
    if found:
        assert set(found.peak_tflops) == {"fp32", "tf32", "bf16"} and found.source
        assert found.peak_tflops["fp32"] < found.peak_tflops["tf32"] < found.peak_tflops["bf16"]
        assert found.vendor is vendor_of(device)


# ------------------------------------------------------------------------------------------- prices


def test_the_shipped_catalog_has_no_amd_gpu() -> None:
    shipped = ROOT / "etrid_ray" / "data" / "gpu_prices.csv"
    accelerators = {row["accelerator"] for row in csv.DictReader(shipped.open())}
    assert accelerators and not {a for a in accelerators if vendor_of(a) is AMD}


def test_a_pool_the_catalog_lacks_is_priced_from_the_config_and_says_so() -> None:
    quote = default_catalog().quote(MI300X_POOL)
    assert quote is not None
    assert quote.source == "config: a figure of this test"
    assert quote.usd_per_node_hour == 24.0 and quote.usd_per_gpu_hour == 3.0 and quote.spot_discount == 0.5
    assert quote.as_of.date() == date(2026, 11, 20)
    assert default_catalog().quote(MI300X_POOL.model_copy(update={"price": None})) is None


def test_a_catalogued_pool_keeps_the_catalog_price_over_a_declared_one() -> None:
    aws = next(p for p in pools_from_config(ProviderConfig()) if p.kind == "aws")
    catalogued = default_catalog().quote(aws)
    assert catalogued is not None
    declared = default_catalog().quote(aws.model_copy(update={"price": PRICE}))
    assert declared == catalogued and declared.source == "catalog"


@pytest.mark.usefixtures("offline")
def test_etrid_ray_prices_shows_the_config_price_and_its_source(tmp_path: Path) -> None:
    config = tmp_path / "provider.yaml"
    config.write_text(yaml.safe_dump({"clouds": {"pools": [MI300X_POOL.model_dump(mode="json",
                                                                                    exclude_defaults=True)]}}))
    result = CliRunner().invoke(cli_main, ["prices", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    row = next(r for r in json.loads(result.output) if r["pool"] == "azure-mi300x")
    assert row["source"] == "config: a figure of this test"
    assert row["usd_per_gpu_hour"] == 3.0


def test_a_price_without_its_source_is_refused() -> None:
    with pytest.raises(ValueError, match="source"):
        DeclaredPrice.model_validate({"usd_per_node_hour": 24.0, "as_of": "2026-11-20"})


# ------------------------------------------------------------------------------------------- manifests


def _group(config: ProviderConfig, name: str) -> dict[str, Any]:
    return next(g for g in r.raycluster(config)["spec"]["workerGroupSpecs"] if g["groupName"] == name)


def test_an_amd_pool_asks_amds_device_plugin_for_its_gpus() -> None:
    group = _group(CONFIG, "azure-mi300x")
    spec = group["template"]["spec"]
    (container,) = spec["containers"]
    for side in ("limits", "requests"):
        assert container["resources"][side]["amd.com/gpu"] == "8"
        assert "nvidia.com/gpu" not in container["resources"][side]
    assert {"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert group["template"]["metadata"]["annotations"]["etrid.ai/cost-usd-per-gpu-hour"] == "3.0000"
    nvidia = _group(CONFIG, "azure-spot-a100")["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert nvidia["nvidia.com/gpu"] == "8" and "amd.com/gpu" not in nvidia


def test_the_amd_pool_is_valid_kuberay_and_kubernetes_and_ray_sees_its_gpus() -> None:
    cluster = r.raycluster(CONFIG)
    assert _errors(_crd_validator("ray.io_rayclusters.yaml"), cluster) == []
    group = _group(CONFIG, "azure-mi300x")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", **group["template"]["metadata"]},
           "spec": group["template"]["spec"]}
    kubernetes_validate.validate(copy.deepcopy(pod), K8S_VERSION, strict=True)
    node = _derive(cluster)["available_node_types"]["azure-mi300x"]
    assert node["resources"]["GPU"] == 8 and node["resources"]["accelerator_type:MI300X"] == 1000


def test_a_vendor_is_present_when_its_driver_device_exists(tmp_path: Path) -> None:
    """The check made before importing torch: AMD's ROCm shows as /dev/kfd, NVIDIA's driver as /dev/nvidiactl."""
    fake_amd = dataclasses.replace(AMD, device_files=(str(tmp_path / "kfd"),))
    fake_nvidia = dataclasses.replace(NVIDIA, device_files=(str(tmp_path / "nvidiactl"),))
    assert device_present((fake_nvidia, fake_amd)) is None
    (tmp_path / "kfd").touch()
    assert device_present((fake_nvidia, fake_amd)) is fake_amd
    (tmp_path / "nvidiactl").touch()
    assert device_present((fake_nvidia, fake_amd)) is fake_nvidia
    assert AMD.device_files == ("/dev/kfd",)
