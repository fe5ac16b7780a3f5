"""The hardware attestation's benchmark score: what the `matmul` workload achieves on this machine's GPU.

The score (`SCORE_UNIT`) is the median achieved throughput, in GFLOP/s (10^9 floating-point operations per
second, counting 2·n³ per n×n product), of `matmul` (etrid_ray/workloads/matmul.py) multiplying two seeded
8192×8192 bfloat16 matrices on GPU 0: one warm-up run (cuBLAS/rocBLAS handles, kernel selection), then
`REPEATS` timed runs of `ITERATIONS` products each. bfloat16 because it is the precision AI jobs run at and
both vendors' matrix units take it; 8192 because it is large enough to reach a card's sustained rate and small
enough (under 1 GiB) for any card. An H100 SXM (989 dense bf16 TFLOP/s peak) scores in the hundreds of
thousands, well inside the chain's u32.

Where no GPU can be measured the caller uses a declared score instead, and says so (`Attested.source`).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from typing import Any

from etrid_ray.workloads import matmul
from etrid_ray.workloads.registry import WorkloadContext

N = 8192
DTYPE = "bfloat16"
ITERATIONS = 10
REPEATS = 5
SEED = 0
SCORE_UNIT = f"GFLOP/s (matmul {DTYPE} n={N}, median of {REPEATS}×{ITERATIONS})"
MAX_SCORE = 2**32 - 1  # the chain's benchmark_score is a u32
QUOTE_LIMIT = 256  # the chain's bound on the attestation's quote bytes


class BenchmarkUnavailable(RuntimeError):
    """No GPU could be measured here; the message says why (for the CLI's "declared: …" line)."""


@dataclass(frozen=True)
class Attested:
    """The score that goes on chain and where it came from."""

    score: int
    source: str                  # "measured" | "declared"
    detail: str                  # the device measured, or why nothing was
    runs_gflops: list[float] = field(default_factory=list)

    def quote(self) -> bytes:
        """What the attestation's quote field records: the score's source and unit (this project produces no TPM
        quote; the chain stores up to 256 opaque bytes)."""
        doc = {"benchmark": self.source, "unit": SCORE_UNIT, "detail": self.detail}
        raw = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
        if len(raw) > QUOTE_LIMIT:  # a long device name or reason: trimmed, the JSON kept valid
            doc["detail"] = self.detail[: max(0, len(self.detail) - (len(raw) - QUOTE_LIMIT) - 3)] + "..."
            raw = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
        return raw


def score_of(results: list[dict[str, Any]]) -> int:
    """The score of timed `matmul` results: their median FLOP/s in whole GFLOP/s, within the chain's u32 and at
    least 1 (the chain refuses 0)."""
    rates = [r["flops_per_s"] for r in results if r.get("flops_per_s")]
    if not rates:
        raise ValueError("no timed run")
    return max(1, min(MAX_SCORE, int(statistics.median(rates) / 1e9)))


def _gpu_ready() -> None:
    if not matmul.cuda_present():
        raise BenchmarkUnavailable("no GPU here (no NVIDIA or AMD driver device: /dev/nvidiactl, /dev/kfd)")
    try:
        import torch
    except ImportError:
        raise BenchmarkUnavailable("a GPU driver is here but torch is not installed (the embedding extra)") from None
    if not torch.cuda.is_available():
        raise BenchmarkUnavailable("a GPU driver is here but torch sees no GPU (torch.cuda.is_available() is False)")


def measure(*, n: int = N, dtype: str = DTYPE, iterations: int = ITERATIONS, repeats: int = REPEATS) -> Attested:
    """Runs the benchmark on GPU 0; BenchmarkUnavailable when there is none torch can drive."""
    _gpu_ready()
    args = {"n": n, "dtype": dtype, "seed": SEED}
    ctx = WorkloadContext(device="cuda")
    warm = matmul.run({**args, "iterations": 1}, ctx)
    if not str(warm["device"]).startswith("cuda"):
        raise BenchmarkUnavailable(f"matmul ran on {warm['device']}, not a GPU")
    runs = [matmul.run({**args, "iterations": iterations}, ctx) for _ in range(repeats)]
    return Attested(score_of(runs), "measured", str(warm["device"]).removeprefix("cuda:"),
                    [r["flops_per_s"] / 1e9 for r in runs])


def attested_score(declared: int, *, measure_gpu: bool = True) -> Attested:
    """The measured score on a present GPU; the declared one otherwise, with the reason."""
    if not measure_gpu:
        return Attested(declared, "declared", "measuring was turned off (--no-measure)")
    try:
        return measure()
    except BenchmarkUnavailable as why:
        return Attested(declared, "declared", str(why))
