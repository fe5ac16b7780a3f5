"""Fake GPU management libraries, injected at the library boundary (`sys.modules["pynvml"]`, `["amdsmi"]`).

This machine has no GPU, no NVIDIA driver and no ROCm: the vendors' libraries are the one part the tests cannot
run, so these modules stand in for them with the same names, signatures and units as the real bindings
(nvidia-ml-py 13.x `pynvml`; amdsmi 7.0.2's `amdsmi_interface`): NVML reports memory in bytes and utilization
in percent, AMD SMI memory in bytes (`amdsmi_get_gpu_memory_total/usage` with `AmdSmiMemoryType.VRAM`) and
activity in percent or "N/A". Everything above them is the project's real code.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from enum import IntEnum

GIB = 1024**3


@dataclass
class FakeDevice:
    name: str
    total_gib: float
    used_gib: float = 0.0
    util_pct: float | str = 0.0


@dataclass
class Calls:
    init: int = 0
    shutdown: int = 0
    log: list[str] = field(default_factory=list)


def fake_pynvml(devices: list[FakeDevice], *, driver: bool = True) -> tuple[types.ModuleType, Calls]:
    """A `pynvml` over `devices`; without `driver`, nvmlInit raises as the real one does on a machine without it."""
    calls = Calls()
    mod = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    def nvmlInit() -> None:
        if not driver:
            raise NVMLError("Driver Not Loaded")
        calls.init += 1

    def nvmlShutdown() -> None:
        calls.shutdown += 1

    def handle(i: int) -> FakeDevice:
        if calls.init <= calls.shutdown:
            raise NVMLError("Uninitialized")
        return devices[i]

    mod.NVMLError = NVMLError  # type: ignore[attr-defined]
    mod.nvmlInit = nvmlInit  # type: ignore[attr-defined]
    mod.nvmlShutdown = nvmlShutdown  # type: ignore[attr-defined]
    mod.nvmlDeviceGetCount = lambda: len(devices)  # type: ignore[attr-defined]
    mod.nvmlDeviceGetHandleByIndex = handle  # type: ignore[attr-defined]
    mod.nvmlDeviceGetName = lambda h: h.name  # type: ignore[attr-defined]  (str in nvidia-ml-py ≥ 11.5)
    mod.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(  # type: ignore[attr-defined]
        total=int(h.total_gib * GIB), used=int(h.used_gib * GIB), free=int((h.total_gib - h.used_gib) * GIB))
    mod.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=int(h.util_pct), memory=0)  # type: ignore[attr-defined]
    return mod, calls


def fake_amdsmi(devices: list[FakeDevice], *, driver: bool = True) -> tuple[types.ModuleType, Calls]:
    """An `amdsmi` over `devices`; without `driver`, amdsmi_init raises AmdSmiLibraryException as the real one
    does where the amdgpu driver is not loaded."""
    calls = Calls()
    mod = types.ModuleType("amdsmi")

    class AmdSmiLibraryException(Exception):
        pass

    class AmdSmiParameterException(Exception):
        pass

    class AmdSmiInitFlags(IntEnum):
        INIT_ALL_PROCESSORS = 0xFFFFFFFF
        INIT_AMD_CPUS = 1 << 0
        INIT_AMD_GPUS = 1 << 1

    class AmdSmiMemoryType(IntEnum):
        VRAM = 0
        VIS_VRAM = 1
        GTT = 2

    @dataclass(frozen=True)
    class Handle:
        index: int

    def init(flag: AmdSmiInitFlags = AmdSmiInitFlags.INIT_AMD_GPUS) -> None:
        if not driver:
            raise AmdSmiLibraryException("AMDSMI_STATUS_DRIVER_NOT_LOADED")
        if not isinstance(flag, AmdSmiInitFlags):
            raise AmdSmiParameterException(flag)
        calls.init += 1
        calls.log.append(flag.name)

    def live(h: Handle) -> FakeDevice:
        if calls.init <= calls.shutdown:
            raise AmdSmiLibraryException("AMDSMI_STATUS_NOT_INIT")
        if not isinstance(h, Handle):
            raise AmdSmiParameterException(h)
        return devices[h.index]

    def memory(h: Handle, mem_type: AmdSmiMemoryType, used: bool) -> int:
        if not isinstance(mem_type, AmdSmiMemoryType):
            raise AmdSmiParameterException(mem_type)
        dev = live(h)
        if mem_type is not AmdSmiMemoryType.VRAM:
            return 0
        return int((dev.used_gib if used else dev.total_gib) * GIB)

    def shut_down() -> None:
        calls.shutdown += 1

    mod.AmdSmiLibraryException = AmdSmiLibraryException  # type: ignore[attr-defined]
    mod.AmdSmiParameterException = AmdSmiParameterException  # type: ignore[attr-defined]
    mod.AmdSmiInitFlags = AmdSmiInitFlags  # type: ignore[attr-defined]
    mod.AmdSmiMemoryType = AmdSmiMemoryType  # type: ignore[attr-defined]
    mod.amdsmi_init = init  # type: ignore[attr-defined]
    mod.amdsmi_shut_down = shut_down  # type: ignore[attr-defined]
    mod.amdsmi_get_processor_handles = lambda: [Handle(i) for i in range(len(devices))]  # type: ignore[attr-defined]
    mod.amdsmi_get_gpu_asic_info = lambda h: {  # type: ignore[attr-defined]
        "market_name": live(h).name, "vendor_id": "0x1002", "vendor_name": "Advanced Micro Devices Inc. [AMD/ATI]",
        "device_id": "0x74a1", "num_compute_units": 304, "target_graphics_version": "gfx942"}
    mod.amdsmi_get_gpu_memory_total = lambda h, t: memory(h, t, used=False)  # type: ignore[attr-defined]
    mod.amdsmi_get_gpu_memory_usage = lambda h, t: memory(h, t, used=True)  # type: ignore[attr-defined]
    mod.amdsmi_get_gpu_activity = lambda h: {  # type: ignore[attr-defined]
        "gfx_activity": live(h).util_pct, "umc_activity": 0, "mm_activity": "N/A"}
    return mod, calls
