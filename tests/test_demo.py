"""`etrid-ray demo` (what `make demo` runs): one command from an empty home, everything started and stopped by
itself, and Ray's dashboard there to watch it with."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil


def _ray_and_devnet_processes() -> set[int]:
    mine = set()
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if ("etrid_ray.devnet" in cmd or "raylet" in cmd or "gcs_server" in cmd) and p.info["pid"] != os.getpid():
            mine.add(p.info["pid"])
    return mine


def _get(url: str, token: str | None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, None


def _watch_dashboard(url: str, token: str, seen: dict[str, Any], stop: threading.Event) -> None:
    """What an operator sees in the dashboard while the demo runs: the head actor, the demo's job, a node per
    pool, the consumer jobs' tasks — and nothing for a visitor without the token."""
    seen["anonymous"] = _get(f"{url}/api/v0/actors", None)[0]
    while not stop.is_set():
        try:
            _, actors = _get(f"{url}/api/v0/actors?detail=1&limit=100", token)
            for a in ((actors or {}).get("data", {}).get("result", {}).get("result", [])):
                if a.get("class_name") == "ProviderHeadActor" and a.get("state") == "ALIVE":
                    seen["head"] = a.get("name")
            _, jobs = _get(f"{url}/api/jobs/", token)
            seen["jobs"] = max(seen.get("jobs", 0), len(jobs or []))
            _, nodes = _get(f"{url}/nodes?view=summary", token)
            alive = [n for n in ((nodes or {}).get("data", {}).get("summary", [])) if n.get("raylet", {}).get("state")
                     == "ALIVE"]
            seen["nodes"] = max(seen.get("nodes", 0), len(alive))
            _, tasks = _get(f"{url}/api/v0/tasks?limit=1000", token)
            names = {t.get("name") for t in ((tasks or {}).get("data", {}).get("result", {}).get("result", []))}
            seen.setdefault("task_names", set()).update(n for n in names if n)
        except (OSError, ValueError):
            pass  # the dashboard is starting or going away
        stop.wait(2)


def test_the_demo_runs_from_an_empty_home_shows_itself_in_the_dashboard_and_leaves_no_process_behind(
        tmp_path: Path) -> None:
    before = _ray_and_devnet_processes()
    home = tmp_path / "home"
    home.mkdir()
    # A new user's machine: an empty home (no ~/.ray/auth_token, no ~/.etrid-ray) and no Ray token in the env.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH_TOKEN")}
    proc = subprocess.Popen([sys.executable, "-m", "etrid_ray", "demo", "--jobs", "8", "--bad", "4", "--seed", "3",
                             "--timeout", "120", "--idle-timeout", "5"], stdout=subprocess.PIPE,
                            stderr=(tmp_path / "stderr").open("w"),
                            text=True,
                            env={**env, "HOME": str(home), "COLUMNS": "120", "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    seen: dict[str, Any] = {}
    stop = threading.Event()
    watcher: threading.Thread | None = None
    token_file = home / ".etrid-ray" / "ray" / "auth_token"
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            found = re.search(r"Ray dashboard (http://127\.0\.0\.1:\d+)", line)
            if found and watcher is None:
                watcher = threading.Thread(target=_watch_dashboard, daemon=True,
                                           args=(found.group(1), token_file.read_text().strip(), seen, stop))
                watcher.start()
        assert proc.wait(timeout=240) == 0, (tmp_path / "stderr").read_text()[-3000:]
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
    summary = "".join(lines)
    assert watcher is not None, summary[:2000]
    watcher.join(timeout=15)
    # every valid job completed; each broken one failed with a reason that says what failed
    for reason in ("malformed manifest", "unknown handler 'rm-rf'", "matmul: ValueError: n must be within 1..16384",
                   "timeout after 30s"):
        assert reason in summary, summary[-2000:]
    counts = dict(re.findall(r"│ (completed|failed: [^│]*?|not served[^│]*?)\s*│\s*(\d+) │", summary))
    assert counts.get("completed") == "8", summary[-3000:]
    assert sum(int(n) for k, n in counts.items() if k.startswith("failed")) == 4, counts
    assert not any(k.startswith("not served") for k in counts), counts
    assert "jobs submitted" in summary and "12" in summary and "earnings" in summary and "ËDSC" in summary
    assert "first job completed after" in summary
    # the token the demo made lives in the project's own place, owner-only, and is never printed
    assert str(token_file) in summary.replace("\n", "")
    assert token_file.stat().st_mode & 0o077 == 0 and token_file.read_text().strip() not in summary
    # and the dashboard showed the provider at work, to the token holder only
    assert seen["anonymous"] == 401, seen
    assert seen.get("head") == "etrid-provider", seen
    assert seen.get("jobs", 0) >= 1 and seen.get("nodes", 0) >= 2, seen
    assert "run_job" in {n.split(".")[-1] for n in seen.get("task_names", set())}, seen
    # What the demo leaves behind would be orphans (its own process has exited); processes of other
    # work running on the machine at the same time still have their parents.
    time.sleep(1)
    leftover = _ray_and_devnet_processes() - before
    orphans = []
    for pid in leftover:
        try:
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE and p.ppid() in (0, 1):
                orphans.append(pid)
        except psutil.NoSuchProcess:
            continue
    assert not orphans, f"processes left behind: {orphans}"
