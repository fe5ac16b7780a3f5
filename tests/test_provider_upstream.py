"""The provider end to end with jobs matched by root `assign_job` (the devnet's `--assigner`), on both runtimes.

On upstream's shape there is no `claim_job` and no `Utility`, and `PaymentReleased` names the submitter; on the
etrid-ray runtime the head also claims, racing the matcher for the same jobs. Real devnet over sockets, real local
Ray with simulated GPUs, the real head — unchanged between the two.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import ray

from etrid_ray.blobs import open_blob_store
from etrid_ray.chain import ChainClient, dev_signer
from etrid_ray.chain.models import JobStatus
from etrid_ray.devnet.process import DevnetProcess
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


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Any:
    os.environ["ETRID_SEED"] = "//" + PROVIDER  # the head actor reads its key from its environment
    ray.init(address="local", num_cpus=2, num_gpus=4, resources={"pool:local": 1000},
             include_dashboard=False, logging_level="ERROR", namespace="etrid-tests-upstream")
    yield
    ray.shutdown()


@pytest.fixture(params=["upstream", "etrid-ray"])
def upstream_devnet(request: pytest.FixtureRequest) -> Any:
    with DevnetProcess(block_time=0.5, extra_args=["--runtime", request.param, "--assigner"]) as proc:
        yield proc


def test_the_head_serves_assigned_jobs(upstream_devnet: Any, tmp_path: Path) -> None:
    client = ChainClient(upstream_devnet.url)
    meta = client.conn.metadata
    upstream = not meta.has_call("JobMarketplace", "claim_job")
    assert upstream == (not meta.has_pallet("Utility"))
    provider = dev_signer(PROVIDER)
    head = start_head(provider_config(upstream_devnet, tmp_path))
    try:
        consumer = client.consumer(dev_signer(CONSUMER), blobs=open_blob_store(upstream_devnet.http_url))
        good = [consumer.submit_job({"handler": "echo", "args": {"payload": i}}, payment=PAY,
                                    max_compute_time=60).job_id for i in range(5)]
        # assigned to us but not servable here: an unknown handler, and a price far below our floor
        bad = consumer.submit_job({"handler": "no-such-handler", "args": {}}, payment=PAY,
                                  max_compute_time=60).job_id
        cheap = consumer.submit_job({"handler": "echo", "args": {"payload": "x"}}, payment=1,
                                    max_compute_time=60).job_id
        ids = good + [bad, cheap]
        wait_until(lambda: all_final(client, ids), 90, "every assigned job final")
        jobs = read_jobs(client, ids)
        assert {j: jobs[j].status for j in good} == dict.fromkeys(good, JobStatus.COMPLETED)
        assert jobs[bad].status == jobs[cheap].status == JobStatus.FAILED  # failed at once: refunded, not left
        for job_id in good:
            assert json.loads(consumer.fetch_result(jobs[job_id]))["result"] == {"payload": good.index(job_id)}
        events = chain_events(client)
        reasons = failure_reasons(events)
        assert set(reasons) == {bad, cheap}
        assert "assigned here but not served" in reasons[cheap]  # never claimed: only the matcher gave it to us
        assert set(completions(events).values()) == {1}  # nothing served twice, however claims and matcher raced
        if upstream:
            assert head.status().claimed == len(ids) and head.status().lost_claims == 0  # no claim extrinsic
        for job_id in good:
            consumer.confirm_job(job_id)
        released = [e for e in chain_events(client) if e.is_("JobMarketplace", "PaymentReleased")]
        if upstream:  # upstream's placeholder names the submitter as `provider`: none of it is our earnings
            assert released and all(e.get("provider") == consumer.address for e in released)
            assert head.status().payments == 0 and head.status().earnings_planck == 0
        else:
            paid = sum(int(e.get("amount")) for e in released if e.get("provider") == provider.address)
            assert paid == len(good) * (PAY - PAY * 500 // 10_000)
            wait_until(lambda: head.status().earnings_planck == paid, 30, "earnings seen by the head")
    finally:
        head.stop()
        client.close()
