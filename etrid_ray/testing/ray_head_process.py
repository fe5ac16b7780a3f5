"""A real `ray start --head --block` on loopback with free ports, stopped by its pid (never `ray stop`,
which would kill every Ray process on the machine)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from etrid_ray.ray_auth import ensure_token, token_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RayHeadProcess:
    num_cpus: int = 2
    num_gpus: int = 2
    resources: str = '{"pool:local": 1000}'
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    gcs_port: int = 0
    dashboard_port: int = 0
    log: Path | None = None

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    def start(self, log: Path, timeout: float = 90.0) -> RayHeadProcess:
        self.gcs_port, self.dashboard_port = free_port(), free_port()
        ray_bin = str(Path(sys.executable).with_name("ray"))
        args = [ray_bin, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(self.gcs_port),
                "--dashboard-host", "127.0.0.1", "--dashboard-port", str(self.dashboard_port),
                "--ray-client-server-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port()),
                "--metrics-export-port", str(free_port()), "--runtime-env-agent-port", str(free_port()),
                "--num-cpus", str(self.num_cpus), "--num-gpus", str(self.num_gpus), "--resources", self.resources,
                "--include-dashboard", "true", "--disable-usage-stats"]
        self.log = log
        path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
        env = {**os.environ, **token_env(ensure_token()), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", **self.env,
               "PATH": path}
        self.proc = subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.proc.returncode}: {log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"{self.dashboard_url}/api/version", timeout=2)
                return self
            except urllib.error.HTTPError:
                return self  # the dashboard answers (401 without a token): it is up
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise TimeoutError("ray head did not come up")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM to `ray start --block` (it stops the processes it started), then its process group."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=timeout)
