"""The way users start the provider: `ray job submit … -- python jobs/provider.py --config FILE`,
against a real `ray start --head` (token auth on), earning on the devnet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from etrid_ray.blobs import open_blob_store
from etrid_ray.chain import ChainClient, dev_signer
from etrid_ray.chain.models import JobStatus
from tests.helpers.ray_head_process import RayHeadProcess
from tests.provider_support import CONSUMER, PROVIDER, all_final, read_jobs, wait_until

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def ray_head(tmp_path: Path) -> Any:
    head = RayHeadProcess(env={"ETRID_SEED": "//" + PROVIDER}).start(tmp_path / "ray-start.log")
    yield head
    head.stop()


def test_ray_job_submit_runs_the_provider_which_serves_chain_jobs(fresh_devnet: Any, ray_head: RayHeadProcess,
                                                                  tmp_path: Path) -> None:
    config = tmp_path / "provider.json"
    config.write_text(json.dumps({
        "websocket_url": fresh_devnet.url, "rpc_url": fresh_devnet.http_url, "PRICE_PER_SECOND": 10**12,
        "gpus": {"count": 2}, "journal_path": str(tmp_path / "journal.sqlite"), "poll_interval_s": 0.2,
        "heartbeat_interval_s": 5, "telemetry_interval_s": 5}))
    job = subprocess.Popen(
        [str(Path(sys.executable).with_name("ray")), "job", "submit", "--address", ray_head.dashboard_url,
         "--working-dir", str(REPO), "--entrypoint-num-cpus", "0", "--",
         sys.executable, "jobs/provider.py", "--config", str(config), "--run-for", "20", "--status-every", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
        env={**os.environ, "RAY_AUTH_MODE": "token"})  # the client sends the cluster's token (~/.ray/auth_token)
    client = ChainClient(fresh_devnet.url)
    try:
        consumer = client.consumer(dev_signer(CONSUMER), blobs=open_blob_store(fresh_devnet.http_url))
        wait_until(lambda: len(client.provider(dev_signer(PROVIDER)).my_gpus()) == 2, 90,
                   "the provider to register its GPUs")
        ids = [j.job_id for j in consumer.submit_jobs([{"handler": "echo", "args": {"payload": i}} for i in range(5)],
                                                      payment=10**18, max_compute_time=60)]
        wait_until(lambda: all_final(client, ids), 60, "jobs served by the Ray job")
        assert all(j.status == JobStatus.COMPLETED for j in read_jobs(client, ids).values())
        out, _ = job.communicate(timeout=120)
        assert job.returncode == 0, out[-3000:]
        assert '"completed": 5' in out
        assert "//" + PROVIDER not in out  # the key never reaches the job's output
    finally:
        if job.poll() is None:
            job.kill()
        client.close()
