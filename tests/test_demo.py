"""`etrid-ray demo` (what `make demo` runs): one command, everything started and stopped by itself."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil


def _ray_and_devnet_processes() -> set[int]:
    mine = set()
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if ("etrid_ray.devnet" in cmd or "raylet" in cmd or "gcs_server" in cmd) and p.info["pid"] != os.getpid():
            mine.add(p.info["pid"])
    return mine


def test_the_demo_serves_trace_jobs_fails_broken_ones_and_leaves_no_process_behind() -> None:
    before = _ray_and_devnet_processes()
    out = subprocess.run([sys.executable, "-m", "etrid_ray", "demo", "--jobs", "8", "--bad", "4", "--seed", "3",
                          "--timeout", "120"], capture_output=True, text=True, timeout=240,
                         env={**os.environ, "COLUMNS": "120"})
    assert out.returncode == 0, out.stderr[-3000:]
    summary = out.stdout
    assert "jobs submitted" in summary and "12" in summary
    for reason in ("malformed manifest", "unknown handler", "matmul failed", "timeout after 2s"):
        assert reason in summary, summary[-2000:]
    assert "earnings" in summary and "ËDSC" in summary
    assert "completed" in summary
    # What the demo leaves behind would be orphans (its own process has exited); processes of other
    # work running on the machine at the same time still have their parents.
    leftover = _ray_and_devnet_processes() - before
    orphans = []
    for pid in leftover:
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE and proc.ppid() in (0, 1):
                orphans.append(pid)
        except psutil.NoSuchProcess:
            continue
    assert not orphans, f"processes left behind: {orphans}"
