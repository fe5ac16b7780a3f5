"""Stopping a child process by its pid: SIGTERM, a grace period, then SIGKILL.

Why one function: every service the project starts (a devnet, a local Ray head, the exporter in a test)
is stopped the same way — by the pid it was started with, never by a name — and the escalation is
where copies drift (which signal, to the process or its group, how long to wait after the kill).
"""

from __future__ import annotations

import os
import signal
import subprocess


def terminate(proc: subprocess.Popen[bytes] | subprocess.Popen[str], grace_s: float, *, sig: int = signal.SIGTERM,
              group: bool = False, kill_wait_s: float | None = None) -> int | None:
    """`sig` (SIGTERM: a clean shutdown) to `proc`; if it has not exited after `grace_s`, SIGKILL — to its
    process group when `group` (it was started in a session of its own and may have children) — and wait
    `kill_wait_s` (default: `grace_s`) more. Nothing when it has already exited. Returns its exit status."""
    if proc.poll() is not None:
        return proc.returncode
    os.kill(proc.pid, sig)
    try:
        return proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            os.kill(proc.pid, signal.SIGKILL)
        return proc.wait(timeout=grace_s if kill_wait_s is None else kill_wait_s)
