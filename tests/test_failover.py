"""Specification, on a real Ray cluster: a pool whose nodes never come is withdrawn and its jobs run elsewhere.

The rendered RayCluster on Ray's fake multi-node autoscaler, with the cheapest pool's worker group (AWS spot)
allowed no node at all by the provider (`max_workers 0`: a quota of zero — the head asks, Ray keeps the
request infeasible, nothing joins). A spike of 8-GPU jobs, which the 2-GPU local node cannot run, is placed on
AWS first; its nodes not having joined within the pool's startup plus the margin, the head withdraws the
request, backs the pool off, takes back the jobs it had already claimed and sent there, and runs them on the
next pool that pays (Azure spot). Every job completes; no request for AWS is left in Ray.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import ray

from etrid_ray.blobs import open_blob_store
from etrid_ray.chain import ChainClient, dev_signer
from etrid_ray.chain.models import JobStatus
from etrid_ray.config import load_config, pools_from_config
from etrid_ray.demo.fake_cluster import FakeKubeRayCluster
from etrid_ray.kuberay.render import raycluster
from etrid_ray.provider.scaler import alive_nodes_per_pool
from etrid_ray.scaling import Reason
from tests.provider_support import CONSUMER, all_final, read_jobs, start_head, wait_until

BROKEN, FALLBACK = "aws-spot-a100", "azure-spot-a100"
STARTUP_S, MARGIN_S = 10.0, 10.0


@pytest.fixture()
def failover_config(fresh_devnet: Any, tmp_path: Path) -> Any:
    config = load_config(env={}, overrides={
        "websocket_url": fresh_devnet.url, "rpc_url": fresh_devnet.http_url, "PRICE_PER_SECOND": 10**12,
        "gpus": {"count": 2}, "local_nodes": 1, "journal_path": str(tmp_path / "journal.sqlite"),
        "poll_interval_s": 0.2, "heartbeat_interval_s": 5, "telemetry_interval_s": 5, "idle_timeout_s": 8,
        "aws_max_nodes": 1, "azure_max_nodes": 1, "gcp_enabled": False, "scale_interval_s": 0.5,
        "capacity_margin_s": MARGIN_S})
    # both cloud pools declared to start in 10 s (a fake node joins in seconds)
    pools = [p.model_copy(update={"startup_s": STARTUP_S}) for p in pools_from_config(config) if p.is_cloud]
    return config.model_copy(update={"clouds": config.clouds.model_copy(update={"pools": pools})})


def test_a_pool_whose_nodes_never_come_is_withdrawn_and_its_jobs_run_on_the_next_pool(
        fresh_devnet: Any, failover_config: Any, tmp_path: Path) -> None:
    cluster = FakeKubeRayCluster(raycluster(failover_config), tmp_path / "fake", idle_timeout_s=8,
                                 max_workers_per_type=1, cpus_per_node=2, max_workers_by_type={BROKEN: 0}).start()
    client = ChainClient(fresh_devnet.url)
    head = None
    try:
        ray.init(address=cluster.address, logging_level="ERROR", namespace="etrid-failover")
        wait_until(lambda: alive_nodes_per_pool().get("local-gpu") == 1, 60, "the local group at its minReplicas")
        head = start_head(failover_config)
        consumer = client.consumer(dev_signer(CONSUMER), blobs=open_blob_store(fresh_devnet.http_url))
        job = consumer.submit_job({"handler": "sleep", "args": {"seconds": 2}, "resources": {"gpus": 8}},
                                  payment=3 * 10**18, max_compute_time=300).job_id
        wait_until(lambda: head.scaler is not None and head.scaler.requested.get(BROKEN) == 1, 30,
                   "the cheapest pool asked for a node")
        wait_until(lambda: all_final(client, [job]), 150, "the job final", poll=0.5)

        assert read_jobs(client, [job])[job].status == JobStatus.COMPLETED
        assert head.stats.pool_of[job] == FALLBACK
        assert head.status().failed == {}
        scaler = head.scaler
        assert scaler.decisions_total[(BROKEN, str(Reason.UNAVAILABLE))] == 1
        assert BROKEN not in scaler.requested  # nothing left asking for the pool that cannot launch
        assert scaler.capacity.get(BROKEN).failures == 1
        assert alive_nodes_per_pool().get(BROKEN, 0) == 0
    finally:
        if head is not None:
            head.stop()
        client.close()
        ray.shutdown()
        cluster.stop()
