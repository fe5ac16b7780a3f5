"""GPU vendors and cards: the one place that knows which vendor an accelerator is, how Kubernetes, the
kernel and the vendor's management library name it, and what a card can do at peak.

Why one table: a pool's accelerator (`Pool.accelerator`, e.g. "A100" or "MI300X") decides the worker
group's device-plugin resource (`nvidia.com/gpu` or `amd.com/gpu`, rendered by etrid_ray/kuberay), and
the GPU facts reader (etrid_ray/provider/gpu_info.py) reads each vendor through its own library (NVML,
AMD SMI). Both ask `vendor_of` here, so an MI300X pool cannot get an NVIDIA limit while its head reads AMD SMI.

This module is the bottom of the stack: it imports nothing of the project.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Vendor:
    """How one GPU vendor's devices are named and read."""

    name: str                  # "nvidia" | "amd"
    k8s_resource: str          # the device plugin's extended resource (a worker pod's limit)
    library: str               # the GpuFacts source when this vendor's management library answers
    library_title: str         # for people: "NVML", "AMD SMI"
    device_files: tuple[str, ...]  # present when the kernel driver is loaded (checked before importing torch)


NVIDIA = Vendor("nvidia", "nvidia.com/gpu", "nvml", "NVML", ("/dev/nvidiactl", "/dev/nvidia0"))
# AMD's Kubernetes device plugin (ROCm/k8s-device-plugin, also deployed by the AMD GPU Operator) advertises
# `amd.com/gpu`; ROCm's compute interface is /dev/kfd (HIP, and so PyTorch's ROCm build, opens it).
AMD = Vendor("amd", "amd.com/gpu", "amdsmi", "AMD SMI", ("/dev/kfd",))
VENDORS: tuple[Vendor, ...] = (NVIDIA, AMD)

# AMD's names: Instinct MI accelerators ("MI300X", "AMD Instinct MI300X", "MI250X") and Radeon cards.
_AMD_NAME = re.compile(r"^(amd\s+)?(instinct\s+)?mi\d{2,3}|radeon|^amd[\s-]", re.IGNORECASE)


def vendor_of(accelerator: str) -> Vendor:
    """The vendor of an accelerator name as pools, configs and the vendors' libraries spell it.

    AMD names are recognised by AMD's own naming (Instinct MI…, Radeon, an "AMD " prefix); every other name is
    NVIDIA's, which is what every accelerator of the shipped price catalog and the clouds' tables is (and
    what a pool rendered before AMD pools existed was given)."""
    return AMD if _AMD_NAME.search(accelerator.strip()) else NVIDIA


def vendor_named(name: str) -> Vendor:
    for vendor in VENDORS:
        if vendor.name == name or vendor.library == name:
            return vendor
    raise KeyError(f"unknown GPU vendor {name!r} (one of {', '.join(v.name for v in VENDORS)})")


def device_present(vendors: Iterable[Vendor] = VENDORS) -> Vendor | None:
    """The first vendor whose kernel driver's device files exist here: a cheap test, made before importing a
    GPU library or torch (whose import costs a cold worker seconds where no GPU can be available)."""
    for vendor in vendors:
        if any(os.path.exists(path) for path in vendor.device_files):
            return vendor
    return None


# ---------------------------------------------------------------------------------------------- peaks

TFLOPS = float


@dataclass(frozen=True)
class Card:
    """One card's dense peak throughput per matmul precision (TFLOP/s, no structured sparsity), from its
    vendor's datasheet. fp32 is the plain FP32 rate (NVIDIA: CUDA cores; AMD: matrix cores, which
    rocBLAS uses for FP32 GEMM); tf32 is NVIDIA's TF32 tensor-core rate and AMD's TF32 matrix rate."""

    name: str
    vendor: Vendor
    pattern: str                   # a regex that the vendor library's device name matches (case-insensitive)
    peak_tflops: dict[str, TFLOPS] = field(default_factory=dict)  # "fp32" | "tf32" | "bf16" → dense peak
    source: str = ""


# Sparse figures in the datasheets are twice these; where a datasheet gives only the sparse figure it is halved
# (noted). Order matters: the first pattern that matches wins (H100 NVL and PCIe before the SXM card).
CARDS: tuple[Card, ...] = (
    Card("H100 NVL", NVIDIA, r"H100 NVL", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5},
         "NVIDIA H100 Tensor Core GPU datasheet (H100 NVL column; TF32/BF16 halved from the sparse figures)"),
    Card("H100 PCIe", NVIDIA, r"H100 PCIe", {"fp32": 51.0, "tf32": 378.0, "bf16": 756.5},
         "NVIDIA H100 Tensor Core GPU datasheet (H100 PCIe column; TF32/BF16 halved from the sparse figures)"),
    Card("H100 SXM", NVIDIA, r"H100", {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5},
         "NVIDIA H100 Tensor Core GPU datasheet (H100 SXM column; TF32/BF16 halved from the sparse figures)"),
    Card("H200", NVIDIA, r"H200", {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5},
         "NVIDIA H200 Tensor Core GPU datasheet (H200 SXM column; TF32/BF16 halved from the sparse figures)"),
    Card("A100", NVIDIA, r"A100", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0},
         "NVIDIA A100 Tensor Core GPU datasheet (dense figures; same for PCIe and SXM, 40 and 80 GB)"),
    Card("L40S", NVIDIA, r"L40S", {"fp32": 91.6, "tf32": 183.0, "bf16": 362.05},
         "NVIDIA L40S datasheet (dense figures)"),
    Card("L4", NVIDIA, r"\bL4\b", {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0},
         "NVIDIA L4 Tensor Core GPU datasheet (TF32/BF16 halved from the sparse figures)"),
    Card("MI300X", AMD, r"MI300X", {"fp32": 163.4, "tf32": 653.7, "bf16": 1307.4},
         "AMD Instinct MI300X accelerator data sheet (matrix FP32, TF32 and BF16, dense)"),
    Card("MI325X", AMD, r"MI325X", {"fp32": 163.4, "tf32": 653.7, "bf16": 1307.4},
         "AMD Instinct MI325X accelerator data sheet (matrix FP32, TF32 and BF16, dense)"),
)


def card_of(device_name: str) -> Card | None:
    """The card a vendor library's device name is ("NVIDIA H100 80GB HBM3" → H100 SXM); None when no peak is on
    file, and callers then report achieved throughput without a fraction of peak."""
    for card in CARDS:
        if re.search(card.pattern, device_name, re.IGNORECASE):
            return card
    return None
