"""`echo` and `sleep`: cheap handlers for scheduling tests and throughput benchmarks."""

from __future__ import annotations

import time
from typing import Any

from etrid_ray.workloads.registry import WorkloadContext, number_arg

MAX_SLEEP_S = 3600.0


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
    time.sleep(seconds)
    return {"slept_s": seconds}
