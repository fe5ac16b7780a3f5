"""Faults the provider survives (targets R1, R2, R3, R12): a worker node dies mid-job, the head dies
mid-run, the chain node restarts under load, a spot node is preempted twice under one job. Each job still ends
on chain exactly once."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster

from etrid_ray.blobs import open_blob_store
from etrid_ray.chain import ChainClient, dev_signer
from etrid_ray.chain.models import JobStatus
from etrid_ray.devnet.process import DevnetProcess
from etrid_ray.kuberay.prestop import Drainer
from etrid_ray.provider.job import JobState
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
from tests.test_interruptions import _task_attempts

PAY = 10**18


def _running_on(head: Any, job_id: int) -> str | None:
    """The node where the job's current task has started running in its worker (Ray's task events), or None. A
    node that holds the task's lease while the worker process still starts is not enough: lost then, the task
    never ran, and Ray's core worker quietly asks another node for a lease (no loss the head could see)."""
    with head.book.lock:
        tracked = head.book.get(job_id)
        ref = tracked.run.ref if tracked is not None and tracked.run is not None else None
    if ref is None:
        return None
    started = [(began, node) for _, _, node, began in _task_attempts({ref.task_id().hex()}) if began > 0]
    return max(started)[1] if started else None


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
        wait_until(lambda: _running_on(head, job.job_id) is not None, 60, "the job running on a worker node")
        victim = _running_on(head, job.job_id)
        cluster.remove_node(nodes[victim], allow_graceful=False)
        wait_until(lambda: all_final(client, [job.job_id]), 90, "the job to finish elsewhere")
        assert read_jobs(client, [job.job_id])[job.job_id].status == JobStatus.COMPLETED
        assert completions(chain_events(client))[job.job_id] == 1
        status = head.status()
        assert status.completed == 1 and status.errors == {}
        assert status.retried == 1 and status.preempted == {}  # a node lost without a drain: a crash, charged
    finally:
        head.stop()
        client.close()
        ray.shutdown()
        cluster.shutdown()


@pytest.mark.timeout(180)
def test_r12_a_job_preempted_twice_completes_once_with_no_retry_charged(fresh_devnet: Any, tmp_path: Path) -> None:
    """R12. One `sleep` job on three 1-GPU spot nodes. First a spot notice with 5 s to go: the node drains, the
    handler saves its progress and leaves, the job runs on another node from that checkpoint. Then that node is
    reclaimed at once (drained with its deadline already past, and killed: no time to checkpoint), and the job
    runs on the third node, from the first checkpoint. It completes once; no retry is charged; both preemptions
    are in the journal, the status and the metrics; Ray itself retried nothing."""
    cluster = Cluster(initialize_head=True, connect=True,
                      head_node_args={"num_cpus": 1, "num_gpus": 0, "include_dashboard": False})
    nodes = {n.node_id: n for n in (cluster.add_node(num_cpus=1, num_gpus=1) for _ in range(3))}
    cluster.wait_for_nodes()
    client = ChainClient(fresh_devnet.url)
    config = provider_config(fresh_devnet, tmp_path)
    head = start_head(config)
    outcomes: list[Any] = []
    head.harvester.on_outcome = lambda _tracked, outcome: outcomes.append(outcome)
    seconds = 12.0
    try:
        drainer = Drainer(cluster.address)
        consumer = client.consumer(dev_signer(CONSUMER), blobs=open_blob_store(fresh_devnet.http_url))
        job = consumer.submit_job({"handler": "sleep", "args": {"seconds": seconds}, "resources": {"gpus": 1}},
                                  payment=PAY, max_compute_time=120)
        wait_until(lambda: _running_on(head, job.job_id) is not None, 60, "the job running on a spot node")
        first = _running_on(head, job.job_id)
        time.sleep(2.0)  # progress to save

        notice_at = time.time()
        deadline = notice_at + 5
        assert drainer.drain(first, "aws spot interruption", deadline_at=deadline)[0]
        wait_until(lambda: _running_on(head, job.job_id) not in (None, first), 60, "the job running on another node")
        second = _running_on(head, job.job_id)
        assert outcomes and outcomes[0].preempted and outcomes[0].checkpoint and outcomes[0].node_id == first
        assert outcomes[0].finished_at < deadline  # it left at the notice, not when the node went
        wait_until(lambda: time.time() >= deadline, 6, "the notice's deadline")
        cluster.remove_node(nodes[first], allow_graceful=False)  # the cloud reclaims the instance
        time.sleep(1.0)  # the second run under way

        assert drainer.drain(second, "reclaimed without notice", deadline_at=time.time() - 0.01)[0]
        cluster.remove_node(nodes[second], allow_graceful=False)
        wait_until(lambda: all_final(client, [job.job_id]), 60, "the job final")

        assert read_jobs(client, [job.job_id])[job.job_id].status == JobStatus.COMPLETED
        assert completions(chain_events(client))[job.job_id] == 1 and failure_reasons(chain_events(client)) == {}
        status = head.status()
        assert status.completed == 1 and status.errors == {} and status.failed == {}
        assert status.retried == 0 and status.preempted == {config.pool: 2}  # no retry charged
        assert head.journal.preemptions(job.job_id) == 2
        notes = [note for state, _, note in head.history(job.job_id) if state is JobState.CLAIMED][1:]
        assert notes[0].startswith(f"preempted (Preempted on node {first[:12]}), resumes from 0x")
        # the second run is lost with its node (NodeDiedError: the GCS records it dead after its drain deadline),
        # or its worker, outliving the killed raylet for a moment, saw the drain and saved its progress first
        assert notes[1].startswith("preempted (") and f"on node {second[:12]}), resumes from 0x" in notes[1]
        final = outcomes[-1]
        assert final.ok and final.node_id not in (first, second)
        ran = final.finished_at - final.started_at
        print(f"R12: first run left {outcomes[0].finished_at - notice_at:.2f}s after the notice; second run: "
              f"{notes[1]}; the last run took {ran:.2f}s of the job's {seconds:.0f}s")
        assert ran < seconds - 2.0  # resumed from the first run's checkpoint
        # the GCS's own record, which the head reads when a drain it did not see ends in a NodeDiedError: the first
        # node, reclaimed after its notice's deadline, died preempted (the second may have left idle before)
        assert first in head.tasks.preempted_nodes({first, second})
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
