"""Running the provider: `etrid-ray provider run` and the Ray Jobs entrypoint `jobs/provider.py`."""

from __future__ import annotations

import json
import signal
import threading
import time
from typing import Any

import ray

from etrid_ray.config import ProviderConfig
from etrid_ray.provider.actor import launch_head, stop_head


def run_provider(config: ProviderConfig, *, address: str | None = None, run_for: float | None = None,
                 status_every: float = 10.0, leave_running: bool = False,
                 echo: Any = print) -> dict[str, Any]:
    """Connects to Ray (an existing cluster when `address`/`ray_address` is set, else a local one),
    launches the head actor and reports its status until stopped (SIGINT/SIGTERM) or `run_for` elapses."""
    addr = address or config.ray_address
    if not ray.is_initialized():
        ray.init(address=addr or "local", namespace=config.namespace, logging_level="WARNING",
                 **({} if addr else {"include_dashboard": False}))
    head = launch_head(config)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    deadline = time.monotonic() + run_for if run_for else None
    status: dict[str, Any] = {}
    while not stop.is_set():
        wait = status_every if deadline is None else max(0.0, min(status_every, deadline - time.monotonic()))
        stop.wait(wait)
        status = ray.get(head.status.remote())
        echo(json.dumps({k: status[k] for k in ("best_block", "queue_depth", "running", "claimed", "completed",
                                                 "failed", "reported", "earnings_edsc")}))
        if deadline is not None and time.monotonic() >= deadline:
            break
    if not leave_running:
        stop_head(head)
    return status
