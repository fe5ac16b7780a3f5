"""Runs `etrid-ray devnet` as a child process on a free loopback port and stops it by its pid."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from etrid_ray.processes import terminate


@dataclass
class DevnetProcess:
    block_time: float = 0
    data_dir: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 0
    proc: subprocess.Popen[str] | None = None
    url: str = ""

    @property
    def http_url(self) -> str:
        return self.url.replace("ws://", "http://", 1)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> DevnetProcess:
        args = [sys.executable, "-m", "etrid_ray.devnet", "--host", self.host, "--port", str(self.port),
                "--block-time", str(self.block_time), *self.extra_args]
        if self.data_dir is not None:
            args += ["--data-dir", str(self.data_dir)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=None, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert self.proc.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"devnet exited with {self.proc.returncode} before listening")
            if selector.select(timeout=0.2):
                line = self.proc.stdout.readline().strip()
                if line.startswith("ws://"):
                    self.url = line
                    self.port = int(line.rsplit(":", 1)[1])
                    return self
        self.stop()
        raise TimeoutError("devnet did not print its URL in time")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Stops the devnet by its pid (SIGTERM: clean shutdown; SIGKILL: a crash)."""
        return terminate(self.proc, timeout, sig=sig) if self.proc is not None else None

    def restart(self) -> DevnetProcess:
        """Stops and starts again on the same port (needs the same data dir to keep state)."""
        self.stop()
        return self.start()

    def __enter__(self) -> DevnetProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
