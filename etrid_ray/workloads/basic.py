"""`echo` and `sleep`: cheap handlers for scheduling tests and throughput benchmarks."""

from __future__ import annotations

import time
from typing import Any

from etrid_ray.workloads.registry import Preempted, WorkloadContext, number_arg

MAX_SLEEP_S = 3600.0
CHECK_S = 0.25  # how often a sleep looks for a preemption notice (a sleep shorter than this never asks)


def echo(args: dict[str, Any], ctx: WorkloadContext) -> Any:
    """Returns `args.payload`, or the inputs (as text where they are UTF-8) when there is no payload."""
    if "payload" in args:
        return {"payload": args["payload"]}
    out: dict[str, str] = {}
    for name, data in ctx.inputs.items():
        try:
            out[name] = data.decode()
        except UnicodeDecodeError:
            out[name] = "0x" + data.hex()
    return {"inputs": out}


def sleep(args: dict[str, Any], ctx: WorkloadContext) -> Any:
    seconds = number_arg(args, "seconds", 1.0)
    if not 0 <= seconds <= MAX_SLEEP_S:
        raise ValueError(f"seconds must be within 0..{MAX_SLEEP_S}")
    done = float((ctx.resumed or {}).get("slept_s", 0.0))  # what a preempted run already slept
    began = time.monotonic()
    left = seconds - done
    while left > 0:
        time.sleep(min(left, CHECK_S))
        left = seconds - done - (time.monotonic() - began)
        if left > 0 and ctx.preempting(left):
            raise Preempted({"slept_s": seconds - left}, remaining_s=left)
    return {"slept_s": seconds}  # the same result however many runs it took
