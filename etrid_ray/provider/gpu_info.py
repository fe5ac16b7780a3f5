"""GPU facts from the vendor's management library when one answers, the declared config otherwise — and which
one it was.

NVIDIA GPUs are read through NVML (`pynvml`, from nvidia-ml-py), AMD GPUs through AMD SMI (`amdsmi`, the `amd`
extra, over ROCm's libamd_smi.so). Each library is tried in `accelerators.VENDORS` order and the first that
initialises and sees at least one device wins; a library that is missing, cannot load its shared object
(`amdsmi` raises at import without ROCm) or finds no driver counts as absent, and with none present the
declared `gpus` section of the config is used (the declared-fallback rule: `source` says which, and the head,
`provider run` and the chain telemetry act on it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from etrid_ray.accelerators import AMD, NVIDIA, VENDORS, Vendor, vendor_named, vendor_of
from etrid_ray.config import GpuConfig

log = logging.getLogger(__name__)

DECLARED = "declared"
GIB = 1024**3


@dataclass(frozen=True)
class DeviceReading:
    """One device as its vendor's library reports it (memory in GiB, utilization in percent)."""

    name: str
    vram_total_gb: float
    vram_used_gb: float
    utilization_pct: float


@dataclass(frozen=True)
class GpuFacts:
    source: str                     # "nvml" | "amdsmi" (the library that read them) | "declared" (the config)
    count: int
    model: str
    vram_gb: int
    utilization_pct: list[float] = field(default_factory=list)
    memory_used_gb: list[float] = field(default_factory=list)

    @property
    def measured(self) -> bool:
        """Read from a present GPU's library (not the declared config)."""
        return self.source != DECLARED

    @property
    def vendor(self) -> Vendor:
        """The library's vendor when measured; else the declared model's (`accelerators.vendor_of`)."""
        return vendor_named(self.source) if self.measured else vendor_of(self.model)

    @property
    def source_title(self) -> str:
        return self.vendor.library_title if self.measured else DECLARED


# ---------------------------------------------------------------------------------------------- the libraries


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _nvml_devices() -> list[DeviceReading] | None:
    """Every NVIDIA device through NVML; None when pynvml or the driver is missing."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound / DriverNotLoaded on machines without a GPU
        return None
    try:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            out.append(DeviceReading(_text(pynvml.nvmlDeviceGetName(handle)), mem.total / GIB, mem.used / GIB,
                                     float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)))
        return out
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def _amd_activity(value: object) -> float:
    # AMD SMI reports a counter it cannot read as "N/A" (0xFFFF underneath): no reading, counted as idle
    return float(value) if isinstance(value, int | float) else 0.0


def _amdsmi_devices() -> list[DeviceReading] | None:
    """Every AMD GPU through AMD SMI; None when amdsmi, ROCm's libamd_smi.so or the amdgpu driver is missing."""
    try:
        import amdsmi
    except Exception as err:  # ImportError without the extra; the bindings raise (KeyError) without libamd_smi.so
        log.debug("AMD SMI unavailable: %s: %s", type(err).__name__, err)
        return None
    try:
        amdsmi.amdsmi_init(amdsmi.AmdSmiInitFlags.INIT_AMD_GPUS)
    except Exception:  # AmdSmiLibraryException: no amdgpu driver
        return None
    try:
        out = []
        for handle in amdsmi.amdsmi_get_processor_handles():
            name = _text(amdsmi.amdsmi_get_gpu_asic_info(handle).get("market_name", "AMD GPU"))
            vram = amdsmi.AmdSmiMemoryType.VRAM
            total = amdsmi.amdsmi_get_gpu_memory_total(handle, vram)
            used = amdsmi.amdsmi_get_gpu_memory_usage(handle, vram)
            busy = _amd_activity(amdsmi.amdsmi_get_gpu_activity(handle).get("gfx_activity"))
            out.append(DeviceReading(name, total / GIB, used / GIB, busy))
        return out
    finally:
        try:
            amdsmi.amdsmi_shut_down()
        except Exception:
            pass


LIBRARIES: dict[str, Callable[[], list[DeviceReading] | None]] = {
    NVIDIA.library: _nvml_devices,
    AMD.library: _amdsmi_devices,
}


# ---------------------------------------------------------------------------------------------- facts


def model_name(vendor: Vendor, device_name: str) -> str:
    """The model as registered on chain and matched by pools: the library's name less the vendor's brand
    ("NVIDIA H100 80GB HBM3" → "H100 80GB HBM3", "AMD Instinct MI300X" → "MI300X")."""
    name = device_name.strip()
    prefixes = ("NVIDIA ",) if vendor is NVIDIA else ("AMD ", "Instinct ")
    for prefix in prefixes:
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name or device_name


def facts_from(source: str, devices: list[DeviceReading]) -> GpuFacts:
    """GpuFacts of the devices one library read: the first device's model, the smallest memory (a job that fits
    it fits every GPU of the node)."""
    model = model_name(vendor_named(source), devices[0].name)
    return GpuFacts(source, len(devices), model, int(round(min(d.vram_total_gb for d in devices))),
                    [d.utilization_pct for d in devices], [d.vram_used_gb for d in devices])


def measured_facts() -> GpuFacts | None:
    """The facts of the first vendor library that sees a device here; None when none does."""
    for vendor in VENDORS:
        devices = LIBRARIES[vendor.library]()
        if devices:
            return facts_from(vendor.library, devices)
    return None


def gpu_facts(declared: GpuConfig) -> GpuFacts:
    facts = measured_facts()
    if facts is not None:
        log.info("GPU facts from %s: %d × %s, %d GB", facts.source_title, facts.count, facts.model, facts.vram_gb)
        return facts
    log.info("no GPU library answered (NVML, AMD SMI): using declared GPUs (%d × %s, %d GB)", declared.count,
             declared.model, declared.vram_gb)
    return GpuFacts(DECLARED, declared.count, declared.model, declared.vram_gb)


def refresh(facts: GpuFacts) -> GpuFacts:
    """Current readings (utilization, memory used) from the library that produced `facts`; the same facts when
    they were declared or the library stopped answering. The chain telemetry reports these, not the readings
    of the head's start."""
    if not facts.measured:
        return facts
    devices = LIBRARIES[facts.source]()
    return facts_from(facts.source, devices) if devices else facts
