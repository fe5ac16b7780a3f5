"""The head claims in the placement's order: when room is short, the best-paying job first.

Real devnet, real local Ray advertising the local pool (so the head's scaler and placement run),
one GPU: a blocker holds it while three jobs queue; as it frees, they are claimed one by one,
dearest first — the order the simulator proves on Philly (`scaling.placement.profit_order`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import ray

from etrid_ray.blobs import open_blob_store
from etrid_ray.chain import ChainClient, dev_signer
from etrid_ray.chain.models import JobStatus
from etrid_ray.pools import pool_selector
from tests.provider_support import (
    CONSUMER,
    PROVIDER,
    all_final,
    chain_events,
    provider_config,
    read_jobs,
    start_head,
    wait_until,
)

EDSC = 10**18


@pytest.fixture(scope="module", autouse=True)
def one_gpu_local_pool() -> Any:
    os.environ["ETRID_SEED"] = "//" + PROVIDER
    ray.init(address="local", num_cpus=2, num_gpus=1, labels=pool_selector("local-gpu"),
             include_dashboard=False, logging_level="ERROR", namespace="etrid-claim-order")
    yield
    ray.shutdown()


def test_short_of_room_the_head_claims_the_best_paying_job_first(fresh_devnet: Any, tmp_path: Path) -> None:
    config = provider_config(fresh_devnet, tmp_path, gpus={"count": 1}, local_nodes=1, aws_enabled=False,
                             gcp_enabled=False, azure_enabled=False, scale_interval_s=0.2)
    client = ChainClient(fresh_devnet.url)
    head = start_head(config)
    try:
        consumer = client.consumer(dev_signer(CONSUMER), blobs=open_blob_store(fresh_devnet.http_url))
        blocker = consumer.submit_job({"handler": "sleep", "args": {"seconds": 6}}, payment=EDSC,
                                      max_compute_time=60).job_id
        wait_until(lambda: read_jobs(client, [blocker])[blocker].status != JobStatus.PENDING, 30, "blocker claimed")
        # three jobs, each with a 5 s limit: none can finish in time behind the 6 s blocker, so the head leaves
        # them on chain until its end nears — then there is room for one at a time, and the dearest takes it
        pays = {"cheap": 1 * EDSC, "dear": 3 * EDSC, "middle": 2 * EDSC}
        ids = {name: consumer.submit_job({"handler": "sleep", "args": {"seconds": 0.5, "tag": name}}, payment=p,
                                         max_compute_time=5).job_id for name, p in pays.items()}
        assert read_jobs(client, [blocker])[blocker].status != JobStatus.COMPLETED, "the blocker ended too soon"
        wait_until(lambda: all_final(client, [blocker, *ids.values()]), 60, "every job final")
        assert {j.status for j in read_jobs(client, list(ids.values())).values()} == {JobStatus.COMPLETED}
        claimed = [int(e.get("job_id")) for e in chain_events(client) if e.is_("JobMarketplace", "JobAssigned")]
        assert claimed == [blocker, ids["dear"], ids["middle"], ids["cheap"]]
        assert head.scaler is not None  # the order came from the placement plan
    finally:
        head.stop()
        client.close()
