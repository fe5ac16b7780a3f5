"""GPU facts from NVML when the driver is there, the declared config otherwise — and which one it was."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from etrid_ray.config import GpuConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuFacts:
    source: str                     # "nvml" | "declared"
    count: int
    model: str
    vram_gb: int
    utilization_pct: list[float] = field(default_factory=list)
    memory_used_gb: list[float] = field(default_factory=list)


def _nvml_facts() -> GpuFacts | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound / DriverNotLoaded on machines without a GPU
        return None
    try:
        count = pynvml.nvmlDeviceGetCount()
        if count == 0:
            return None
        utils, used, names, totals = [], [], [], []
        for i in range(count):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            names.append(name.decode() if isinstance(name, bytes) else str(name))
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            totals.append(mem.total / 1024**3)
            used.append(mem.used / 1024**3)
            utils.append(float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu))
        model = names[0].replace("NVIDIA ", "")
        return GpuFacts("nvml", count, model, int(round(min(totals))), utils, used)
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def gpu_facts(declared: GpuConfig) -> GpuFacts:
    facts = _nvml_facts()
    if facts is not None:
        log.info("GPU facts from NVML: %d × %s, %d GB", facts.count, facts.model, facts.vram_gb)
        return facts
    log.info("NVML not available: using declared GPUs (%d × %s, %d GB)", declared.count, declared.model,
             declared.vram_gb)
    return GpuFacts("declared", declared.count, declared.model, declared.vram_gb)
