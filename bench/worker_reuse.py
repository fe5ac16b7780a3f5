"""Worker reuse of the head's GPU tasks before and after the process that started the head exits.

Ray gives a task the job id of whoever submitted it, so the head's tasks belong to the driver that
created the head actor; when that driver exits, the raylet force-exits the job's idle workers and each
later task needs a new worker process. Two ways of starting the head are timed on one `ray start --head`
cluster (token auth on), each with N echo jobs (chain → head → Ray → chain on the devnet):

  detached head (the old `provider run --leave-running`): a driver creates a detached head, then exits;
  provider run --detach (now): a Ray Job's driver owns the head; the CLI that submitted it exits.

Printed per phase: jobs/s (submission to last settlement) and task worker processes started.

    .venv/bin/python bench/worker_reuse.py [--jobs 80]
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on loopback only
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etrid_ray.ray_auth import use_token  # noqa: E402

use_token()  # before Ray is imported: this process is a driver of the token-auth cluster below

from etrid_ray.blobs import open_blob_store  # noqa: E402
from etrid_ray.chain import ChainClient, dev_signer  # noqa: E402
from etrid_ray.chain.models import JobStatus  # noqa: E402
from etrid_ray.devnet.process import DevnetProcess  # noqa: E402
from tests.helpers.ray_head_process import RayHeadProcess  # noqa: E402

PROVIDER, CONSUMER = "Bob", "Charlie"
ETRID_RAY = [sys.executable, "-m", "etrid_ray"]
OLD_DRIVER = """
import os, sys, ray
from etrid_ray.config import load_config
from etrid_ray.service.actor import launch_head
ray.init(address=sys.argv[1], namespace=sys.argv[2], logging_level="ERROR", log_to_driver=False)
launch_head(load_config(sys.argv[3]), detached=True)
print("up", flush=True)
sys.stdin.read()  # until the bench closes stdin: then this driver exits and the head stays
"""


def workers(dashboard: str) -> int:
    from ray.util.state import list_workers

    return len(list_workers(address=dashboard, filters=[("worker_type", "=", "WORKER")], limit=10_000,
                            raise_on_missing_output=False))


def batch(client: ChainClient, devnet: DevnetProcess, dashboard: str, n: int) -> tuple[float, int]:
    consumer = client.consumer(dev_signer(CONSUMER), blobs=open_blob_store(devnet.http_url))
    reader = consumer.reader
    before = workers(dashboard)
    t0 = time.monotonic()
    ids = [j.job_id for j in consumer.submit_jobs([{"handler": "echo", "args": {"i": i}} for i in range(n)],
                                                  payment=10**18, max_compute_time=120)]
    while True:
        jobs = reader.jobs(ids)
        if len(jobs) == n and all(j.status in (JobStatus.COMPLETED, JobStatus.FAILED) for j in jobs.values()):
            break
        if time.monotonic() - t0 > 600:
            raise TimeoutError("jobs not final after 600 s")
        time.sleep(0.1)
    rate = n / (time.monotonic() - t0)
    failed = sum(j.status == JobStatus.FAILED for j in jobs.values())
    if failed:
        print(f"  ({failed} of {n} failed)")
    return rate, workers(dashboard) - before


def wait_gpus(client: ChainClient, count: int) -> None:
    deadline = time.monotonic() + 120
    while len(client.provider(dev_signer(PROVIDER)).my_gpus()) < count:
        if time.monotonic() > deadline:
            raise TimeoutError("the head did not register its GPUs")
        time.sleep(0.5)


def config_file(tmp: Path, devnet: DevnetProcess, name: str, seed: Path) -> Path:
    path = tmp / f"{name}.json"
    path.write_text(json.dumps({
        "websocket_url": devnet.url, "rpc_url": devnet.http_url, "PRICE_PER_SECOND": 10**12, "gpus": {"count": 2},
        "journal_path": str(tmp / f"{name}.sqlite"), "poll_interval_s": 0.1, "namespace": name,
        "seed_file": str(seed), "task_cpus": 0.5}))
    return path


def stop(cluster: RayHeadProcess, namespace: str, env: dict[str, str]) -> None:
    subprocess.run([*ETRID_RAY, "provider", "stop", "--address", cluster.gcs_address, "--namespace", namespace,
                    "--now"], env=env, capture_output=True, text=True, timeout=180, check=True)


def report(label: str, n: int, result: tuple[float, int]) -> dict[str, Any]:
    rate, new = result
    print(f"  {label:<34} {rate:6.1f} jobs/s   {new:3d} new worker processes for {n} jobs", flush=True)
    return {"phase": label, "jobs_per_s": round(rate, 2), "new_workers": new, "jobs": n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=80)
    args = parser.parse_args()
    n = args.jobs
    tmp = Path(tempfile.mkdtemp(prefix="etrid-reuse-"))
    seed = tmp / "seed"
    seed.write_text("//" + PROVIDER)
    seed.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETRID_SEED")}  # the key: seed_file only
    cluster = RayHeadProcess(num_cpus=4, num_gpus=2, resources="{}").start(tmp / "ray-start.log")
    results = []
    try:
        print(f"detached head, created by a driver that then exits ({n} echo jobs per phase):")
        with DevnetProcess(block_time=0) as devnet:
            client = ChainClient(devnet.url)
            driver = subprocess.Popen([sys.executable, "-c", OLD_DRIVER, cluster.gcs_address, "old",
                                       str(config_file(tmp, devnet, "old", seed))], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, env=env)
            assert driver.stdout is not None and driver.stdout.readline().strip() == "up"
            wait_gpus(client, 2)
            batch(client, devnet, cluster.dashboard_url, 8)  # warm-up
            results.append(report("driver alive", n, batch(client, devnet, cluster.dashboard_url, n)))
            assert driver.stdin is not None
            driver.stdin.close()
            driver.wait(timeout=60)
            time.sleep(2)
            results.append(report("driver exited", n, batch(client, devnet, cluster.dashboard_url, n)))
            stop(cluster, "old", env)
            client.close()
        print(f"provider run --detach: the head's owner is a Ray Job's driver ({n} echo jobs per phase):")
        with DevnetProcess(block_time=0) as devnet:
            client = ChainClient(devnet.url)
            subprocess.run([*ETRID_RAY, "provider", "run", "--detach", "--address", cluster.gcs_address, "--config",
                            str(config_file(tmp, devnet, "new", seed))], env=env, capture_output=True, text=True,
                           timeout=300, check=True)
            wait_gpus(client, 2)
            batch(client, devnet, cluster.dashboard_url, 8)  # warm-up
            results.append(report("CLI exited", n, batch(client, devnet, cluster.dashboard_url, n)))
            time.sleep(2)
            results.append(report("CLI exited, a second batch", n, batch(client, devnet, cluster.dashboard_url, n)))
            stop(cluster, "new", env)
            client.close()
    finally:
        cluster.stop()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
