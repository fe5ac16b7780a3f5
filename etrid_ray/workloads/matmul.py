"""GEMM benchmark: multiplies seeded random matrices, returns achieved FLOP/s and a checksum.

The checksum (sum of the product, rounded) lets a verifier with the same seed
recompute the result: a cheap proof that the work was done. Torch on a visible
GPU when present, NumPy on the CPU otherwise.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from etrid_ray.accelerators import device_present
from etrid_ray.workloads.registry import Preempted, WorkloadContext, number_arg

MAX_N = 16384
DTYPES = {"float32", "float64", "float16", "bfloat16"}


def cuda_present() -> bool:
    """Whether this machine has a GPU torch drives as "cuda" at all (NVIDIA's driver, or AMD's ROCm through HIP):
    checked before importing torch, whose import costs a cold worker seconds of CPU (and the job its time limit)
    on a machine where CUDA cannot be available."""
    return device_present() is not None


def _torch_cuda() -> Any:
    if not cuda_present():
        return None
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _resumed(ctx: WorkloadContext, iterations: int) -> tuple[int, float]:
    """(iterations done, seconds they took) by an earlier, preempted run: every iteration computes the same
    product, so the count and the time are the whole state; a resumed run computes at least one (its checksum)."""
    saved = ctx.resumed or {}
    return min(int(saved.get("iterations_done", 0)), iterations - 1), float(saved.get("seconds", 0.0))


def _rest(ran: int, start: float, left: int) -> float:
    """The seconds `left` iterations take at the pace of the `ran` this run did since `start` (GPU: launched)."""
    return (time.perf_counter() - start) / ran * left


def _preempted(done: int, seconds: float, iterations: int) -> Preempted:
    per = seconds / done if done else None
    return Preempted({"iterations_done": done, "seconds": seconds},
                     remaining_s=per * (iterations - done) if per is not None else None)


def run(args: dict[str, Any], ctx: WorkloadContext) -> dict[str, Any]:
    n = int(number_arg(args, "n", 512, integer=True))
    iterations = int(number_arg(args, "iterations", 1, integer=True))
    dtype = str(args.get("dtype", "float32"))
    seed = int(number_arg(args, "seed", 0, integer=True))
    if not 1 <= n <= MAX_N:
        raise ValueError(f"n must be within 1..{MAX_N}")
    if not 1 <= iterations <= 1000:
        raise ValueError("iterations must be within 1..1000")
    if not 0 <= seed < 2**63:
        raise ValueError("seed must be within 0..2**63-1")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}")
    torch = _torch_cuda()
    if torch is not None:
        gen = torch.Generator(device="cuda").manual_seed(seed)
        tdtype = getattr(torch, dtype)
        a = torch.rand((n, n), generator=gen, device="cuda", dtype=torch.float32).to(tdtype)
        b = torch.rand((n, n), generator=gen, device="cuda", dtype=torch.float32).to(tdtype)
        torch.cuda.synchronize()
        done, spent = _resumed(ctx, iterations)
        start = time.perf_counter()
        for i in range(done, iterations):
            c = a @ b
            if i + 1 < iterations and ctx.preempting(_rest(i + 1 - done, start, iterations - i - 1)):
                torch.cuda.synchronize()
                raise _preempted(i + 1, spent + time.perf_counter() - start, iterations)
        torch.cuda.synchronize()
        elapsed = spent + time.perf_counter() - start
        checksum = float(c.float().sum().item())
        device = f"cuda:{torch.cuda.get_device_name(0)}"
    else:
        if dtype == "bfloat16":
            raise ValueError("bfloat16 needs a GPU")
        rng = np.random.default_rng(seed)
        a = rng.random((n, n), dtype=np.float64).astype(dtype)
        b = rng.random((n, n), dtype=np.float64).astype(dtype)
        done, spent = _resumed(ctx, iterations)
        start = time.perf_counter()
        for i in range(done, iterations):
            c = a @ b
            if i + 1 < iterations and ctx.preempting(_rest(i + 1 - done, start, iterations - i - 1)):
                raise _preempted(i + 1, spent + time.perf_counter() - start, iterations)
        elapsed = spent + time.perf_counter() - start
        checksum = float(c.astype(np.float64).sum())
        device = "cpu"
    flops = 2.0 * n**3 * iterations
    return {"n": n, "dtype": dtype, "iterations": iterations, "seconds": elapsed,
            "flops_per_s": flops / elapsed if elapsed > 0 else None, "checksum": round(checksum, 1),
            "device": device}
