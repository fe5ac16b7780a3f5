"""A Ray head on this machine: `ray start --head --block` on loopback, in a session of its own.

`provider run` without a cluster starts one of these rather than `ray.init()`: the raylet and GCS that
`ray.init()` spawns join the caller's process group, so the Ctrl-C a terminal sends to its foreground
group reaches them too and Ray dies under the head while it drains. In its own session Ray hears only
what its owner tells it, and still dies with its owner (`PR_SET_PDEATHSIG`): a `provider run` killed
outright leaves no cluster behind. Tests start their clusters the same way (`tests/helpers/ray_head_process.py`).
Stopping is by pid (SIGTERM to `ray start --block`, which stops what it started), never `ray stop`.
Token auth stays on: the project's token (`ray_auth`) is in the environment of every process it starts.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from etrid_ray.processes import terminate
from etrid_ray.ray_auth import ensure_token, token_env

PR_SET_PDEATHSIG = 1
READY_MARKER = b"--block"  # `ray start` prints its `--block` notice once every process it starts is up


# Ray's head gives its raylet 30 s to register with the GCS and then exits; on a loaded 2-core machine or a
# first run (a fresh machine compiling and importing everything) that has been seen to take longer
SLOW_MACHINE_ENV = {"RAY_raylet_start_wait_time_s": "120"}

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux/glibc: the owner's stop() still ends it


@dataclass
class LocalRay:
    """One `ray start --head --block`; `start()` returns once it answers, `stop()` ends it by pid."""

    num_gpus: int = 0
    num_cpus: int | None = None  # None: Ray counts this machine's cores
    resources: str = "{}"  # JSON of custom resources
    labels: dict[str, str] = field(default_factory=dict)  # Ray node labels (`ray start --labels`), e.g. a pool's
    dashboard: bool = True  # on 127.0.0.1, behind the token
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    gcs_port: int = 0
    dashboard_port: int = 0
    log: Path | None = None

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def args(self) -> list[str]:
        ray_bin = str(Path(sys.executable).with_name("ray"))
        args = [ray_bin, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(self.gcs_port),
                "--ray-client-server-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port()),
                "--metrics-export-port", str(free_port()), "--runtime-env-agent-port", str(free_port()),
                "--num-gpus", str(self.num_gpus), "--resources", self.resources, "--disable-usage-stats"]
        if self.labels:
            args += ["--labels", ",".join(f"{k}={v}" for k, v in self.labels.items())]
        if self.num_cpus is not None:
            args += ["--num-cpus", str(self.num_cpus)]
        if self.dashboard:
            args += ["--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
                     "--dashboard-port", str(self.dashboard_port)]
        else:
            args += ["--include-dashboard", "false"]
        return args

    def start(self, log: Path, timeout: float = 90.0) -> LocalRay:
        self.gcs_port, self.dashboard_port = free_port(), free_port() if self.dashboard else 0
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
        env = {**os.environ, **token_env(ensure_token()), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
               **SLOW_MACHINE_ENV, **self.env, "PATH": path}
        self.proc = subprocess.Popen(self.args(), stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.proc.returncode}: {log.read_text()[-2000:]}")
            if READY_MARKER in log.read_bytes() and (not self.dashboard or self._dashboard_answers()):
                return self
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"ray start did not come up in {timeout:.0f}s (log: {log})")

    def _dashboard_answers(self) -> bool:
        try:
            urllib.request.urlopen(f"{self.dashboard_url}/api/version", timeout=2)
        except urllib.error.HTTPError:
            return True  # 401 without a token: it is up
        except OSError:
            return False
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM to `ray start --block` (it stops the processes it started), then its process group."""
        if self.proc is not None:
            terminate(self.proc, timeout, group=True)
