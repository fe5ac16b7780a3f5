"""Faults the provider survives (targets R1, R2, R3): a worker node dies mid-job, the head dies
mid-run, the chain node restarts under load. Each job still ends on chain exactly once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import ray
from ray._private.state import available_resources_per_node, total_resources_per_node
from ray.cluster_utils import Cluster

from etrid_ray.blobs import open_blob_store
from etrid_ray.chain import ChainClient, dev_signer
from etrid_ray.chain.models import JobStatus
from etrid_ray.devnet.process import DevnetProcess
from etrid_ray.service.actor import launch_head, stop_head
from tests.provider_support import (
    CONSUMER,
    PROVIDER,
    all_final,
    chain_events,
    completions,
    failure_reasons,
    provider_config,
    read_jobs,
    start_head,
    wait_until,
)

PAY = 10**18


def _busy_gpu_nodes() -> list[str]:
    total, free = total_resources_per_node(), available_resources_per_node()
    return [node for node, res in total.items() if res.get("GPU", 0) > free.get(node, {}).get("GPU", 0)]


def test_a_job_on_a_killed_worker_node_is_retried_elsewhere_and_completes_once(fresh_devnet: Any,
                                                                                tmp_path: Path) -> None:
    """R1."""
    cluster = Cluster(initialize_head=True, connect=True,
                      head_node_args={"num_cpus": 1, "num_gpus": 0, "include_dashboard": False})
    nodes = {n.node_id: n for n in (cluster.add_node(num_cpus=1, num_gpus=2) for _ in range(2))}
    cluster.wait_for_nodes()
    client = ChainClient(fresh_devnet.url)
    head = start_head(provider_config(fresh_devnet, tmp_path))
    try:
        consumer = client.consumer(dev_signer(CONSUMER), blobs=open_blob_store(fresh_devnet.http_url))
        job = consumer.submit_job({"handler": "sleep", "args": {"seconds": 6}, "resources": {"gpus": 2}},
                                  payment=PAY, max_compute_time=120)
        wait_until(lambda: len(_busy_gpu_nodes()) == 1, 30, "the job running on a worker node")
        victim = _busy_gpu_nodes()[0]
        cluster.remove_node(nodes[victim], allow_graceful=False)
        wait_until(lambda: all_final(client, [job.job_id]), 90, "the job to finish elsewhere")
        assert read_jobs(client, [job.job_id])[job.job_id].status == JobStatus.COMPLETED
        assert completions(chain_events(client))[job.job_id] == 1
        assert head.status().completed == 1 and head.status().errors == {}
    finally:
        head.stop()
        client.close()
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture()
def local_ray() -> Any:
    os.environ["ETRID_SEED"] = "//" + PROVIDER  # the head actor reads its key from its environment
    ray.init(address="local", num_cpus=2, num_gpus=4, include_dashboard=False, logging_level="ERROR",
             namespace="etrid-faults")
    yield
    ray.shutdown()


def test_a_killed_head_restarts_and_recovers_every_in_flight_job(fresh_devnet: Any, tmp_path: Path,
                                                                  local_ray: Any) -> None:
    """R2: the detached head actor is killed mid-run; Ray restarts it; nothing is lost or reported twice."""
    client = ChainClient(fresh_devnet.url)
    config = provider_config(fresh_devnet, tmp_path)
    handle = launch_head(config, detached=False)
    try:
        consumer = client.consumer(dev_signer(CONSUMER), blobs=open_blob_store(fresh_devnet.http_url))
        ids = [j.job_id for j in consumer.submit_jobs(
            [{"handler": "sleep", "args": {"seconds": 1.5, "n": i}} for i in range(16)], payment=PAY,
            max_compute_time=120)]
        wait_until(lambda: 2 <= ray.get(handle.status.remote())["completed"], 60, "some jobs done")
        ray.kill(handle, no_restart=False)  # a crash: Ray restarts the actor, whose constructor recovers
        wait_until(lambda: all_final(client, ids), 120, "every job final after the restart")
        jobs = read_jobs(client, ids)
        assert all(j.status == JobStatus.COMPLETED for j in jobs.values())
        counts = completions(chain_events(client))
        assert all(counts[j] == 1 for j in ids)
        assert failure_reasons(chain_events(client)) == {}
    finally:
        stop_head(handle)
        client.close()


def test_the_head_rides_out_a_devnet_restart_under_load(tmp_path: Path, local_ray: Any) -> None:
    """R3: the persisted chain stops and comes back on the same port; the head reconnects, loses nothing."""
    devnet = DevnetProcess(block_time=0, data_dir=tmp_path / "chain").start()
    client = ChainClient(devnet.url)
    head = start_head(provider_config(devnet, tmp_path))
    try:
        consumer = client.consumer(dev_signer(CONSUMER), blobs=open_blob_store(devnet.http_url))
        first = [j.job_id for j in consumer.submit_jobs(
            [{"handler": "sleep", "args": {"seconds": 0.5, "n": i}} for i in range(20)], payment=PAY,
            max_compute_time=120)]
        wait_until(lambda: head.status().completed >= 3, 60, "the head busy")
        devnet.restart()
        second = [j.job_id for j in consumer.submit_jobs(
            [{"handler": "echo", "args": {"payload": i}} for i in range(10)], payment=PAY, max_compute_time=120)]
        ids = first + second
        wait_until(lambda: all_final(client, ids), 150, "every job final after the restart")
        jobs = read_jobs(client, ids)
        assert all(j.status == JobStatus.COMPLETED for j in jobs.values()), failure_reasons(chain_events(client))
        counts = completions(chain_events(client))
        assert all(counts[j] == 1 for j in ids)
    finally:
        head.stop()
        client.close()
        devnet.stop()
