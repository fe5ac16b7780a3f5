"""The GPU facts reader picks NVML or AMD SMI by what is present, and falls back to the declared GPUs.

The vendors' libraries are faked at the import boundary (tests/gpu_support.py); this machine's real pynvml (no
driver) and real amdsmi (no ROCm) are what the declared-fallback tests run against.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from etrid_ray.accelerators import AMD, NVIDIA
from etrid_ray.config import GpuConfig
from etrid_ray.provider.gpu_info import GpuFacts, gpu_facts, measured_facts, refresh
from etrid_ray.provider.job import JobBook
from etrid_ray.provider.stages.keepalive import Keepalive
from etrid_ray.provider.stats import Stats
from tests.gpu_support import FakeDevice, fake_amdsmi, fake_pynvml

DECLARED = GpuConfig(count=3, model="A100", vram_gb=80)


def _libraries(monkeypatch: pytest.MonkeyPatch, nvml=None, amd=None) -> None:
    """Install fake vendor libraries; a vendor given None gets one that finds no driver."""
    monkeypatch.setitem(sys.modules, "pynvml", (nvml or fake_pynvml([], driver=False))[0])
    monkeypatch.setitem(sys.modules, "amdsmi", (amd or fake_amdsmi([], driver=False))[0])


def test_nvidia_gpus_are_read_through_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = fake_pynvml([FakeDevice("NVIDIA H100 80GB HBM3", 79.6, 1.5, 37),
                        FakeDevice("NVIDIA H100 80GB HBM3", 79.6, 0.5, 0)])
    _libraries(monkeypatch, nvml=nvml)
    facts = gpu_facts(DECLARED)
    assert (facts.source, facts.count, facts.model, facts.vram_gb) == ("nvml", 2, "H100 80GB HBM3", 80)
    assert facts.utilization_pct == [37.0, 0.0] and facts.memory_used_gb == pytest.approx([1.5, 0.5])
    assert facts.measured and facts.vendor is NVIDIA and facts.source_title == "NVML"
    assert nvml[1].init == nvml[1].shutdown == 1  # the library is left as it was found


def test_amd_gpus_are_read_through_amd_smi(monkeypatch: pytest.MonkeyPatch) -> None:
    amd = fake_amdsmi([FakeDevice("AMD Instinct MI300X", 191.98, 12.0, 64)] * 8)
    _libraries(monkeypatch, amd=amd)
    facts = gpu_facts(DECLARED)
    assert (facts.source, facts.count, facts.model, facts.vram_gb) == ("amdsmi", 8, "MI300X", 192)
    assert facts.utilization_pct == [64.0] * 8 and facts.memory_used_gb == pytest.approx([12.0] * 8)
    assert facts.vendor is AMD and facts.source_title == "AMD SMI"
    assert amd[1].log == ["INIT_AMD_GPUS"] and amd[1].shutdown == 1


def test_an_activity_amd_smi_cannot_read_counts_as_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    _libraries(monkeypatch, amd=fake_amdsmi([FakeDevice("AMD Instinct MI300X", 192, 0, "N/A")]))
    assert gpu_facts(DECLARED).utilization_pct == [0.0]


def test_nvml_without_devices_leaves_the_amd_gpus_to_amd_smi(monkeypatch: pytest.MonkeyPatch) -> None:
    _libraries(monkeypatch, nvml=fake_pynvml([]), amd=fake_amdsmi([FakeDevice("AMD Instinct MI325X", 256)]))
    facts = gpu_facts(DECLARED)
    assert (facts.source, facts.model, facts.vram_gb) == ("amdsmi", "MI325X", 256)


def test_with_neither_driver_the_declared_gpus_are_used_and_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    _libraries(monkeypatch)
    facts = gpu_facts(GpuConfig(count=2, model="MI300X", vram_gb=192))
    assert (facts.source, facts.count, facts.model, facts.vram_gb) == ("declared", 2, "MI300X", 192)
    assert not facts.measured and facts.vendor is AMD and facts.source_title == "declared"


def test_bindings_that_fail_to_load_their_library_fall_back_to_declared(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    """This machine's real pynvml (nvidia-ml-py, no driver), and an `amdsmi` that fails at import as amdsmi 7.0.2
    does without ROCm's libamd_smi.so (KeyError, not ImportError): neither may escape the reader."""
    pytest.importorskip("pynvml")
    if measured_facts() is not None:
        pytest.skip("a GPU library answers on this machine")
    (tmp_path / "amdsmi").mkdir()
    (tmp_path / "amdsmi" / "__init__.py").write_text("raise KeyError('libamd_smi.so')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "amdsmi", raising=False)
    facts = gpu_facts(DECLARED)
    assert (facts.source, facts.count, facts.model) == ("declared", 3, "A100")


def test_refresh_reports_current_readings_from_the_same_library(monkeypatch: pytest.MonkeyPatch) -> None:
    device = FakeDevice("AMD Instinct MI300X", 192, 1.0, 5)
    _libraries(monkeypatch, amd=fake_amdsmi([device]))
    facts = gpu_facts(DECLARED)
    device.util_pct, device.used_gib = 93, 150.0
    now = refresh(facts)
    assert now.source == "amdsmi" and now.utilization_pct == [93.0] and now.memory_used_gb == pytest.approx([150.0])
    declared = GpuFacts("declared", 1, "A100", 80)
    assert refresh(declared) is declared


def test_chain_telemetry_reports_the_gpus_current_utilization(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keepalive reads the library each time it reports (NVIDIA or AMD alike), not the readings of the head's start."""
    device = FakeDevice("AMD Instinct MI300X", 192, 1.0, 5)
    _libraries(monkeypatch, amd=fake_amdsmi([device]))
    keepalive = Keepalive(object(), JobBook(lambda: 0.0), Stats(), gpu_facts(DECLARED), lambda: [7], 30, 60, 8,
                          lambda: 0.0)
    assert keepalive._readings([7])[0][1] == 500  # 5 % in basis points
    device.util_pct = 93
    assert keepalive._readings([7])[0][1] == 9300
