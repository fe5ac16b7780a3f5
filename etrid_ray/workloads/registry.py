"""The allow-list of workloads and the chain ModelTypes each one serves."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ALL_MODEL_TYPES = ("LLM", "ImageGen", "ImageRecognition", "AudioProcessing", "VideoProcessing", "Custom")


class UnknownHandler(KeyError):
    pass


@dataclass
class WorkloadContext:
    """What a handler sees besides its args: verified input blobs and the device it may use."""

    inputs: dict[str, bytes] = field(default_factory=dict)
    device: str = "cpu"
    gpu_ids: list[str] = field(default_factory=list)
    timeout_s: float | None = None


@dataclass(frozen=True)
class Workload:
    name: str
    fn: Callable[[dict[str, Any], WorkloadContext], Any]
    model_types: tuple[str, ...]
    description: str


def _load() -> dict[str, Workload]:
    from etrid_ray.workloads import basic, embedding, matmul

    items = [
        Workload("echo", basic.echo, ALL_MODEL_TYPES, "returns its payload or input (scheduling tests)"),
        Workload("sleep", basic.sleep, ALL_MODEL_TYPES, "sleeps for args.seconds (scheduling tests)"),
        Workload("matmul", matmul.run, ALL_MODEL_TYPES, "GEMM benchmark: FLOP/s and a checksum"),
        Workload("embedding", embedding.run, ("LLM", "Custom"), "sentence embeddings (all-MiniLM-L6-v2)"),
    ]
    return {w.name: w for w in items}


REGISTRY: dict[str, Workload] = _load()


def get_workload(name: str) -> Workload:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownHandler(name) from None
