"""`etrid-ray demo` (what `make demo` runs): one command, everything started and stopped by itself."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psutil


def _ray_and_devnet_processes() -> set[int]:
    mine = set()
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if ("etrid_ray.devnet" in cmd or "raylet" in cmd or "gcs_server" in cmd) and p.info["pid"] != os.getpid():
            mine.add(p.info["pid"])
    return mine


def test_the_demo_runs_from_an_empty_home_serves_trace_jobs_fails_broken_ones_and_leaves_no_process_behind(
        tmp_path: Path) -> None:
    before = _ray_and_devnet_processes()
    home = tmp_path / "home"
    home.mkdir()
    # A new user's machine: an empty home (no ~/.ray/auth_token, no ~/.etrid-ray) and no Ray token in the env.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH_TOKEN")}
    out = subprocess.run([sys.executable, "-m", "etrid_ray", "demo", "--jobs", "8", "--bad", "4", "--seed", "3",
                          "--timeout", "120"], capture_output=True, text=True, timeout=240,
                         env={**env, "HOME": str(home), "COLUMNS": "120"})
    assert out.returncode == 0, out.stderr[-3000:]
    summary = out.stdout
    # the dashboard was on loopback, behind the token the demo made in the project's own place
    token_file = home / ".etrid-ray" / "ray" / "auth_token"
    assert re.search(r"Ray dashboard http://127\.0\.0\.1:\d+", summary), summary[:2000]
    assert str(token_file) in summary.replace("\n", "")
    assert token_file.stat().st_mode & 0o077 == 0 and token_file.read_text().strip() not in summary
    assert "first job completed after" in summary
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
