"""Hybrid bursting on Ray's fake multi-node autoscaler, from the RayCluster manifest users deploy.

The RayCluster is rendered from a provider config, translated by Ray's own KubeRay code and run
as real raylets ("nodes"); the head steers chain jobs to pools and asks for capacity. A burst fills
the local group first, then the cheapest profitable spot group grows; a pool over its max spot
price never grows; a GDPR job runs only in the EU pool (TEE jobs on attested TEE nodes: test_tee.py); when
the queue drains, cloud groups go back to zero after the idle timeout and local stays at its min.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import ray

from etrid_ray.blobs import open_blob_store
from etrid_ray.chain import ChainClient, dev_signer
from etrid_ray.chain.models import JobStatus
from etrid_ray.config import load_config
from etrid_ray.demo.fake_cluster import FakeKubeRayCluster
from etrid_ray.kuberay.render import raycluster
from etrid_ray.provider.job import JobState
from etrid_ray.provider.scaler import alive_nodes_per_pool
from tests.provider_support import CONSUMER, all_final, read_jobs, start_head, wait_until

IDLE_S = 8.0


@pytest.fixture()
def burst_config(fresh_devnet: Any, tmp_path: Path) -> Any:
    return load_config(env={}, overrides={
        "websocket_url": fresh_devnet.url, "rpc_url": fresh_devnet.http_url, "PRICE_PER_SECOND": 10**12,
        "gpus": {"count": 2}, "local_nodes": 1, "journal_path": str(tmp_path / "journal.sqlite"),
        "poll_interval_s": 0.2, "heartbeat_interval_s": 5, "telemetry_interval_s": 5, "idle_timeout_s": IDLE_S,
        "aws_max_nodes": 1, "gcp_max_nodes": 1, "azure_max_nodes": 1, "tee_max_nodes": 1,
        "azure_spot_max_price": 1.0,  # the catalog says 3.6047 $/node-h: over the max, never grows
        "scale_interval_s": 0.5})  # TEE pools and attested placement: tests/test_tee.py


def test_a_burst_fills_local_then_the_cheapest_profitable_spot_pool_and_drains_back(
        fresh_devnet: Any, burst_config: Any, tmp_path: Path) -> None:
    cluster = FakeKubeRayCluster(raycluster(burst_config), tmp_path / "fake", idle_timeout_s=IDLE_S,
                                 max_workers_per_type=1, cpus_per_node=2).start()
    client = ChainClient(fresh_devnet.url)
    head = None
    try:
        ray.init(address=cluster.address, logging_level="ERROR", namespace="etrid-autoscale")
        wait_until(lambda: alive_nodes_per_pool().get("local-gpu") == 1, 60, "the local group at its minReplicas")
        head = start_head(burst_config)
        consumer = client.consumer(dev_signer(CONSUMER), blobs=open_blob_store(fresh_devnet.http_url))
        pay = 3 * 10**18  # 3 ËDSC (= $3 at the default rate) per job: a spot node pays for itself
        burst = [consumer.submit_job({"handler": "sleep", "args": {"seconds": 6, "n": i}},
                                     payment=pay, max_compute_time=120).job_id for i in range(5)]
        gdpr = consumer.submit_job({"handler": "sleep", "args": {"seconds": 1}, "compliance": {"template": "GDPR"}},
                                   payment=pay, max_compute_time=120).job_id
        peak: dict[str, int] = {}

        def done() -> bool:
            for pool, n in alive_nodes_per_pool().items():
                peak[pool] = max(peak.get(pool, 0), n)
            return all_final(client, burst + [gdpr])

        try:
            wait_until(done, 150, "every job of the burst final", poll=0.5)
        except AssertionError:  # say what the head and the cluster were doing
            plan = head.plan.placements if head.plan is not None else ()
            raise AssertionError(
                f"burst not done: jobs {read_jobs(client, burst + [gdpr])}; head {head.status()}; "
                f"placements {[(p.job_id, p.pool, p.reason.value, p.text) for p in plan]}; "
                f"scaler {head.scaler and dict(head.scaler.decisions_total)}; requested "
                f"{head.scaler and head.scaler.requested}; nodes {alive_nodes_per_pool()}; "
                f"jobs by state {[(t.job_id, t.state.value, t.verdict) for t in head.book.in_state(*JobState)]}"
            ) from None
        jobs = read_jobs(client, burst + [gdpr])
        assert all(j.status == JobStatus.COMPLETED for j in jobs.values())
        pools = head.stats.pool_of
        ran_local = [j for j in burst if pools.get(j) == "local-gpu"]
        assert len(ran_local) >= 2  # the local group filled first
        assert {pools[j] for j in burst} <= {"local-gpu", "aws-spot-a100"}  # then the cheapest spot pool
        assert peak.get("aws-spot-a100", 0) >= 1
        assert peak.get("azure-spot-a100", 0) == 0  # over its max spot price: never grew
        assert pools[gdpr] == "gcp-spot-a100"  # GDPR: the only EU pool
        decisions = head.scaler.decisions_total
        assert any(pool == "aws-spot-a100" for pool, _ in decisions)  # every decision counted with its reason
        # drained: cloud groups go to zero after the idle timeout; local stays at its minimum
        t0 = time.monotonic()
        wait_until(lambda: {k: v for k, v in alive_nodes_per_pool().items() if v} == {"local-gpu": 1}, 90,
                   "cloud nodes removed after the idle timeout", poll=0.5)
        assert time.monotonic() - t0 <= IDLE_S + 60
    finally:
        if head is not None:
            head.stop()
        client.close()
        ray.shutdown()
        cluster.stop()
