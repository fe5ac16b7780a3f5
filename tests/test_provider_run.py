"""`etrid-ray provider run` / `provider stop` as an operator uses them: real devnet, real Ray (one the
command starts itself, or a `ray start --head` cluster with token auth on), the real CLI in a subprocess.

What these pin down: a local Ray advertises the GPUs the head claims for; the key never reaches a Ray
worker's environment, and a key left in the wrong shell is refused up front; a missing Ray token is named;
stopping drains (nothing new claimed, in-flight jobs settled) and stays stopped, even across a head
restart; and under `--detach` the head's task workers are still reused after the CLI exits.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from etrid_ray.blobs import open_blob_store
from etrid_ray.chain import ChainClient, dev_signer
from etrid_ray.chain.models import JobStatus
from tests.helpers.ray_head_process import RayHeadProcess
from tests.provider_support import CONSUMER, PROVIDER, all_final, chain_events, failure_reasons, read_jobs, wait_until

SEED = "//" + PROVIDER
PAY = 10**18
ETRID_RAY = [sys.executable, "-m", "etrid_ray"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The test's environment without provider settings or a Ray address; a private ETRID_RAY_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETRID_") and k != "RAY_ADDRESS"}
    return {**env, "ETRID_RAY_HOME": str(tmp_path / "etrid-home"), "PYTHONUNBUFFERED": "1", **extra}


def _config(tmp_path: Path, devnet: Any, **overrides: Any) -> Path:
    data = {"websocket_url": devnet.url, "rpc_url": devnet.http_url, "PRICE_PER_SECOND": 10**12,
            "gpus": {"count": 2}, "journal_path": str(tmp_path / "journal.sqlite"), "poll_interval_s": 0.1,
            "heartbeat_interval_s": 5, "telemetry_interval_s": 5, **overrides}
    path = tmp_path / "provider.json"
    path.write_text(json.dumps(data))
    return path


class Output:
    """A child's merged stdout, collected line by line in the background."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert proc.stdout is not None
        stream = proc.stdout
        self.thread = threading.Thread(target=lambda: self.lines.extend(iter(stream.readline, "")), daemon=True)
        self.thread.start()

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, needle: str, timeout: float) -> str:
        wait_until(lambda: needle in self.text, timeout, f"{needle!r} in the output")
        return next(line for line in list(self.lines) if needle in line)


def _submit(client: ChainClient, devnet: Any, manifests: list[dict[str, Any]], max_compute_time: int = 60) -> list[int]:
    consumer = client.consumer(dev_signer(CONSUMER), blobs=open_blob_store(devnet.http_url))
    return [j.job_id for j in consumer.submit_jobs(manifests, payment=PAY, max_compute_time=max_compute_time)]


def test_copies_of_one_stop_signal_count_once_and_a_later_one_escalates() -> None:
    from etrid_ray.service.runner import Signals

    now = [100.0]
    signals = Signals(clock=lambda: now[0])
    signals.received()  # `timeout` signals the process, then its group: one request
    now[0] += 0.01
    signals.received()
    assert signals.count == 1 and signals.event.is_set()
    now[0] += 3  # a person's second Ctrl-C: fail what is still in flight
    signals.received()
    assert signals.count == 2


def _alive(gcs_address: str) -> bool:
    """Whether anything still listens on the Ray cluster's GCS port."""
    host, port = gcs_address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        return False
    return True


def _status(client: ChainClient, job_id: int) -> JobStatus:
    return read_jobs(client, [job_id])[job_id].status


def test_local_run_advertises_the_declared_gpus_keeps_the_key_out_of_ray_and_drains_on_ctrl_c(
        fresh_devnet: Any, tmp_path: Path) -> None:
    config = _config(tmp_path, fresh_devnet)
    # its own process group, as a terminal's foreground job: Ctrl-C reaches every process in that group
    proc = subprocess.Popen([*ETRID_RAY, "provider", "run", "--config", str(config), "--status-every", "1"],
                            env=_env(tmp_path, ETRID_SEED=SEED), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    out = Output(proc)
    client = ChainClient(fresh_devnet.url)
    try:
        line = out.wait_for("local Ray at", 120)
        assert "2 GPUs SIMULATED" in line  # this machine has no NVIDIA driver: the config's count, said so
        address = line.split("local Ray at ", 1)[1].split(":", 2)
        gcs = f"{address[0]}:{address[1]}"
        assert address[0] == "127.0.0.1"
        seed_file = tmp_path / "etrid-home" / "run" / f"seed-{proc.pid}"
        assert stat.S_IMODE(seed_file.stat().st_mode) == 0o600
        out.wait_for("provider head running", 60)
        wait_until(lambda: len(client.provider(dev_signer(PROVIDER)).my_gpus()) == 2, 60, "GPUs registered")

        # claimed jobs run: Ray has the GPUs the head claims for (no "timeout after 60s")
        echo = _submit(client, fresh_devnet, [{"handler": "echo", "args": {"payload": i}} for i in range(4)])
        too_big = _submit(client, fresh_devnet, [{"handler": "echo", "resources": {"gpus": 3}}])
        wait_until(lambda: all_final(client, echo), 90, "echo jobs served")
        assert {j.status for j in read_jobs(client, echo).values()} == {JobStatus.COMPLETED}
        assert _status(client, too_big[0]) == JobStatus.PENDING  # more GPUs than this cluster has: left to others

        # no Ray worker on this cluster sees the key: ETRID_SEED was moved out of the environment Ray inherits
        probe = subprocess.run(
            [sys.executable, "-c", "import os, ray; ray.init(address=os.environ['PROBE'], logging_level='ERROR'); "
             "print('SEEN' if ray.get(ray.remote(num_cpus=0)(lambda: os.environ.get('ETRID_SEED')).remote()) "
             "else 'UNSET')"],
            env={**_env(tmp_path), "PROBE": gcs}, capture_output=True, text=True, timeout=120)
        assert probe.stdout.strip().endswith("UNSET"), probe.stdout + probe.stderr

        # Ctrl-C (SIGINT to the whole foreground group) drains: Ray, in a session of its own, keeps running
        # the job in flight, which finishes and is settled; nothing new is claimed; exit 0
        (slow,) = _submit(client, fresh_devnet, [{"handler": "sleep", "args": {"seconds": 4}}])
        wait_until(lambda: _status(client, slow) == JobStatus.PROCESSING, 30, "the slow job claimed")
        os.killpg(proc.pid, signal.SIGINT)
        out.wait_for("draining", 30)
        (late,) = _submit(client, fresh_devnet, [{"handler": "echo"}])
        assert proc.wait(timeout=90) == 0, out.text[-3000:]
        assert _status(client, slow) == JobStatus.COMPLETED, out.text[-3000:]
        assert _status(client, late) == JobStatus.PENDING
        assert not seed_file.exists()
        assert SEED not in out.text and "Traceback" not in out.text
        assert not _alive(gcs)  # the Ray it started is gone with it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        client.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayHeadProcess]:
    """`ray start --head` with token auth on and no ETRID_SEED in its environment."""
    env = {k: "" for k in os.environ if k.startswith("ETRID_")}
    head = RayHeadProcess(num_cpus=4, num_gpus=2, labels={}, env=env).start(
        tmp_path_factory.mktemp("ray") / "ray-start.log")
    yield head
    head.stop()


def test_a_key_only_in_the_cli_shell_is_refused_and_told_where_it_must_live(
        cluster: RayHeadProcess, devnet: Any, tmp_path: Path) -> None:
    config = _config(tmp_path, devnet)
    out = subprocess.run([*ETRID_RAY, "provider", "run", "--config", str(config), "--address", cluster.gcs_address],
                         env=_env(tmp_path, ETRID_SEED=SEED), capture_output=True, text=True, timeout=180)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "ETRID_SEED is not set on the head node" in out.stderr and "seed_file" in out.stderr
    assert "Traceback" not in out.stderr and SEED not in out.stdout + out.stderr

    missing = tmp_path / "nowhere" / "seed"
    config = _config(tmp_path, devnet, seed_file=str(missing))
    out = subprocess.run([*ETRID_RAY, "provider", "run", "--config", str(config), "--address", cluster.gcs_address],
                         env=_env(tmp_path), capture_output=True, text=True, timeout=180)
    assert out.returncode == 2 and f"seed_file {missing}" in out.stderr and "head node" in out.stderr, out.stderr


def test_a_token_cluster_without_a_token_names_the_token(cluster: RayHeadProcess, devnet: Any,
                                                         tmp_path: Path) -> None:
    config = _config(tmp_path, devnet)
    env = {k: v for k, v in _env(tmp_path, ETRID_SEED=SEED).items() if not k.startswith("RAY_AUTH")}
    env["HOME"] = str(tmp_path / "empty-home")  # no ~/.ray/auth_token either
    out = subprocess.run([*ETRID_RAY, "provider", "run", "--config", str(config), "--address", cluster.gcs_address],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "RAY_AUTH_TOKEN" in out.stderr and "ray get-auth-token" in out.stderr
    assert "Traceback" not in out.stderr


def _workers(dashboard: str) -> int:
    """Task worker processes the cluster ever started (alive or not)."""
    from ray.util.state import list_workers

    return len(list_workers(address=dashboard, filters=[("worker_type", "=", "WORKER")], limit=10_000,
                            raise_on_missing_output=False))


def _batch(client: ChainClient, devnet: Any, dashboard: str, n: int) -> tuple[float, int]:
    """Jobs/s for `n` echo jobs (submission to last settlement) and the worker processes started meanwhile."""
    before = _workers(dashboard)
    t0 = time.monotonic()
    ids = _submit(client, devnet, [{"handler": "echo", "args": {"i": i}} for i in range(n)])
    wait_until(lambda: all_final(client, ids), 180, f"{n} echo jobs", poll=0.1)
    rate = n / (time.monotonic() - t0)
    assert {j.status for j in read_jobs(client, ids).values()} == {JobStatus.COMPLETED}
    return rate, _workers(dashboard) - before


def test_detached_head_keeps_reusing_workers_after_the_cli_exits_and_stop_takes_it_offline_for_good(
        cluster: RayHeadProcess, fresh_devnet: Any, tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    seed.write_text(SEED)
    seed.chmod(0o600)
    namespace = "etrid-detach"
    config = _config(tmp_path, fresh_devnet, seed_file=str(seed), namespace=namespace, max_inflight_per_gpu=64,
                     task_cpus=0.5)
    env = _env(tmp_path)
    started = subprocess.run([*ETRID_RAY, "provider", "run", "--detach", "--config", str(config),
                              "--address", cluster.gcs_address], env=env, capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "Ray job" in started.stdout
    client = ChainClient(fresh_devnet.url)
    ray.init(address=cluster.gcs_address, namespace=namespace, logging_level="ERROR", log_to_driver=False)
    try:
        # the CLI has exited; the head runs on under the Ray Job's driver, and its workers are reused
        wait_until(lambda: len(client.provider(dev_signer(PROVIDER)).my_gpus()) == 2, 60, "GPUs registered")
        _batch(client, fresh_devnet, cluster.dashboard_url, 8)  # warm-up: the pool of workers fills
        rate, new_workers = _batch(client, fresh_devnet, cluster.dashboard_url, 60)
        print(f"\n--detach, after the CLI exited: {rate:.1f} jobs/s, {new_workers} new worker processes for 60 jobs")
        assert new_workers <= 2, "the head's task workers were not reused after the CLI exited"

        # a stop is recorded in the GCS: a head Ray restarts mid-drain claims nothing
        head = ray.get_actor("etrid-provider", namespace=namespace)
        (slow,) = _submit(client, fresh_devnet, [{"handler": "sleep", "args": {"seconds": 60}}], max_compute_time=120)
        wait_until(lambda: _status(client, slow) == JobStatus.PROCESSING, 30, "the slow job claimed")
        assert ray.get(head.drain.remote(False))["draining"] is True
        ray.kill(head, no_restart=False)  # a crash: Ray restarts the head (max_restarts=-1)
        wait_until(lambda: _restarted_status(namespace).get("draining") is True, 90, "the restarted head")
        (late,) = _submit(client, fresh_devnet, [{"handler": "echo"}])
        time.sleep(3)
        assert _status(client, late) == JobStatus.PENDING

        # provider stop --now: the recovered in-flight job fails on chain with the reason, the head stays down
        stopped = subprocess.run([*ETRID_RAY, "provider", "stop", "--address", cluster.gcs_address,
                                  "--namespace", namespace, "--now"], env=env, capture_output=True, text=True,
                                 timeout=180)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert "provider head stopped" in stopped.stdout
        assert _status(client, slow) == JobStatus.FAILED
        assert failure_reasons(chain_events(client))[slow] == "provider going offline"
        time.sleep(2)
        with pytest.raises(ValueError):
            ray.get_actor("etrid-provider", namespace=namespace)
        assert _status(client, late) == JobStatus.PENDING
        again = subprocess.run([*ETRID_RAY, "provider", "stop", "--address", cluster.gcs_address,
                                "--namespace", namespace], env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 1 and "no provider head" in again.stderr
    finally:
        ray.shutdown()
        client.close()


def _restarted_status(namespace: str) -> dict[str, Any]:
    try:
        return dict(ray.get(ray.get_actor("etrid-provider", namespace=namespace).status.remote(), timeout=10))
    except Exception:  # restarting
        return {}


def test_a_foreground_run_killed_with_sigkill_takes_its_head_with_it(cluster: RayHeadProcess, devnet: Any,
                                                                     tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    seed.write_text("//Dave")
    seed.chmod(0o600)
    namespace = "etrid-sigkill"
    config = _config(tmp_path, devnet, seed_file=str(seed), namespace=namespace)
    proc = subprocess.Popen([*ETRID_RAY, "provider", "run", "--config", str(config), "--address",
                             cluster.gcs_address, "--status-every", "1"], env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = Output(proc)
    ray.init(address=cluster.gcs_address, namespace=namespace, logging_level="ERROR", log_to_driver=False)
    try:
        out.wait_for('"best_block"', 120)  # the head answers its owner
        ray.get_actor("etrid-provider", namespace=namespace)
        proc.kill()  # no drain, no cleanup: the owner is simply gone
        proc.wait(timeout=30)

        def gone() -> bool:
            try:
                ray.get_actor("etrid-provider", namespace=namespace)
            except ValueError:
                return True
            return False

        wait_until(gone, 60, "Ray to end the head with its owner (nothing left claiming without an operator)")
    finally:
        if proc.poll() is None:
            proc.kill()
        ray.shutdown()
