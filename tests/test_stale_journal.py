"""A journal left by another chain never settles a job, and recovery reports only results it can show.

The defect this specifies (issue 12, item 1): a provider tried on one `etrid-ray devnet`, then run on
another with the same journal path, crashed; on restart it settled the new chain's `sleep` jobs 0..3
at once, without running them, with the old chain's `echo` result hashes for the same ids (blobs the
store had never seen). Real devnets, real Ray, the head as the same Ray actor `provider run` uses.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from etrid_ray.blobs import BlobIntegrityError, FileBlobStore, blob_hash, open_blob_store
from etrid_ray.chain import ChainClient, dev_signer
from etrid_ray.chain.models import JobStatus
from etrid_ray.devnet.process import DevnetProcess
from etrid_ray.provider.chain_port import ChainPort
from etrid_ray.provider.head import ProviderHead
from etrid_ray.provider.job import JobState
from etrid_ray.provider.job import Settlement as S
from etrid_ray.provider.journal import Journal
from etrid_ray.provider.stages.recovery import RERUN_LATE_REASON
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
    wait_until,
)

PAY = 10**18
SLEEP_S = 6.0


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray with 4 GPUs for the module; the head actor reads its key from its environment."""
    os.environ["ETRID_SEED"] = "//" + PROVIDER
    ray.init(address="local", num_cpus=2, num_gpus=4, include_dashboard=False, logging_level="ERROR",
             namespace="etrid-stale-journal")
    yield
    ray.shutdown()


def _processing(client: ChainClient, ids: list[int]) -> bool:
    jobs = read_jobs(client, ids)
    return len(jobs) == len(ids) and all(j.status == JobStatus.PROCESSING for j in jobs.values())


def test_a_journal_from_another_devnet_never_settles_a_job_that_did_not_run(tmp_path: Path, local_ray: Any) -> None:
    journal_path = tmp_path / "journal.sqlite"

    # devnet A: the provider serves echo jobs 0..3 and is stopped; its journal holds them as reported
    with DevnetProcess(block_time=0) as devnet_a:
        client = ChainClient(devnet_a.url)
        handle = launch_head(provider_config(devnet_a, tmp_path, task_cpus=0), detached=False)
        try:
            consumer = client.consumer(dev_signer(CONSUMER), blobs=open_blob_store(devnet_a.http_url))
            echo_ids = [j.job_id for j in consumer.submit_jobs(
                [{"handler": "echo", "args": {"payload": f"from A {i}"}} for i in range(4)], payment=PAY,
                max_compute_time=120)]
            assert echo_ids == [0, 1, 2, 3]
            wait_until(lambda: all_final(client, echo_ids), 90, "devnet A's echo jobs settled")
            echo_hashes = {j.job_id: j.result_hash for j in read_jobs(client, echo_ids).values()}
        finally:
            stop_head(handle)
            client.close()
    old = Journal(journal_path)
    try:  # the trap is set: the same ids, reported, with A's results
        assert {e.job_id: e.result_hash for e in old.in_state("reported")} == echo_hashes
    finally:
        old.close()

    # devnet B, the same journal path: sleep jobs 0..3 claimed, the head killed mid-run, Ray restarts it
    with DevnetProcess(block_time=0) as devnet_b:
        client = ChainClient(devnet_b.url)
        store_b = open_blob_store(devnet_b.http_url)
        handle = launch_head(provider_config(devnet_b, tmp_path, task_cpus=0), detached=False)
        try:
            consumer = client.consumer(dev_signer(CONSUMER), blobs=store_b)
            ids = [j.job_id for j in consumer.submit_jobs(
                [{"handler": "sleep", "args": {"seconds": SLEEP_S, "n": i}} for i in range(4)], payment=PAY,
                max_compute_time=120)]
            assert ids == [0, 1, 2, 3]
            wait_until(lambda: _processing(client, ids), 60, "devnet B's sleep jobs claimed")
            wait_until(lambda: ray.get(handle.status.remote())["running"] == 4, 30, "all four running")
            killed_at = time.time()
            ray.kill(handle, no_restart=False)  # a crash: the restarted actor's constructor recovers
            wait_until(lambda: all_final(client, ids), 120, "every sleep job final after the restart")

            jobs = read_jobs(client, ids)
            events = chain_events(client)
            assert failure_reasons(events) == {}
            assert all(j.status == JobStatus.COMPLETED for j in jobs.values())
            assert all(completions(events)[j] == 1 for j in ids)
            for job in jobs.values():
                # it ran: its sleep elapsed after the kill (the chain's clock has whole seconds)
                assert job.completed_at is not None and job.completed_at >= int(killed_at + SLEEP_S), (
                    f"job {job.job_id} completed {job.completed_at - killed_at:.1f}s after the kill")
                # and its result is B's: the blob exists, hashes to what was reported, and is this sleep's
                assert job.result_hash not in echo_hashes.values()
                result = json.loads(store_b.get(job.result_hash))
                assert result == {"job_id": job.job_id, "handler": "sleep", "result": {"slept_s": SLEEP_S}}
        finally:
            stop_head(handle)
            client.close()

    # A's journal was set aside, not used and not lost; the journal at the path is B's
    asides = list(tmp_path.glob("journal.sqlite.stale-*"))
    assert len([a for a in asides if not a.name.endswith(("-wal", "-shm"))]) == 1
    current = Journal(journal_path)
    try:
        binding = current.binding()
        assert binding is not None and binding.account == dev_signer(PROVIDER).address
        assert {e.job_id for e in current.in_state("reported")} == set(ids)
    finally:
        current.close()


def test_recovery_reports_a_journalled_result_only_when_its_blob_exists_and_verifies(
        fresh_devnet: Any, tmp_path: Path, local_ray: Any) -> None:
    """Three jobs in flight, each journalled as finished with a result: one whose blob is in the store, one
    whose blob was never stored, one whose stored bytes no longer match their hash. A restarted head
    reports the first as journalled and runs the other two again."""
    store_dir = tmp_path / "blobs"
    store = FileBlobStore(store_dir)
    config = provider_config(fresh_devnet, tmp_path, task_cpus=0, blob_store=f"file://{store_dir}")
    client = ChainClient(fresh_devnet.url)
    first = ProviderHead(config, dev_signer(PROVIDER), journal=Journal(config.journal_file)).start()
    try:
        consumer = client.consumer(dev_signer(CONSUMER), blobs=store)
        ids = [j.job_id for j in consumer.submit_jobs(
            [{"handler": "sleep", "args": {"seconds": 3, "n": i}} for i in range(3)], payment=PAY,
            max_compute_time=120)]
        wait_until(lambda: first.status().running == 3, 60, "three jobs claimed and running")
    finally:
        first.stop()  # the first head is gone before it harvests anything (its tasks finish into nobody)
        first.journal.close()
    good = store.put(b'{"a result": "that is in the store"}')
    missing = blob_hash(b"a result that was never stored")
    tampered = store.put(b'{"a result": "overwritten on disk later"}')
    store._path(tampered).write_bytes(b"other bytes")  # what a disk or an operator may do to a file
    assert not store.exists(missing)
    with pytest.raises(BlobIntegrityError):
        store.get(tampered)
    journal = Journal(config.journal_file)
    journal.finished([S(ids[0], True, good), S(ids[1], True, missing), S(ids[2], True, tampered)])
    journal.close()

    second = ProviderHead(config, dev_signer(PROVIDER), journal=Journal(config.journal_file)).start(background=False)
    try:
        assert [t.settlement for t in second.book.in_state(JobState.FINISHED)] == [S(ids[0], True, good)]
        assert sorted(t.job_id for t in second.book.in_state(JobState.RUNNING)) == [ids[1], ids[2]]
        wait_until(lambda: (second.step(), all_final(client, ids))[1], 60, "the reruns settled")
        jobs = read_jobs(client, ids)
        assert all(j.status == JobStatus.COMPLETED for j in jobs.values())
        assert jobs[ids[0]].result_hash == good
        for job_id in ids[1:]:
            result = json.loads(store.get(jobs[job_id].result_hash))   # exists and verifies
            assert result["handler"] == "sleep" and result["job_id"] == job_id
        assert all(completions(chain_events(client))[j] == 1 for j in ids)
    finally:
        second.stop()
        second.journal.close()
        client.close()


def test_a_journal_row_never_makes_a_job_ours_only_the_chain_does(fresh_devnet: Any, tmp_path: Path,
                                                                   local_ray: Any) -> None:
    """A pending job the journal claims to have finished (with a real blob) is neither reported nor run by
    recovery: the chain does not show it on our GPUs. Claimed later for real, it runs and gets its own result."""
    config = provider_config(fresh_devnet, tmp_path, task_cpus=0)
    client = ChainClient(fresh_devnet.url)
    store = open_blob_store(fresh_devnet.http_url)
    first = ProviderHead(config, dev_signer(PROVIDER), journal=Journal(config.journal_file)).start(background=False)
    first.stop()  # binds the journal to this chain and registers the GPUs; claims nothing
    gpu = first.gpu_ids[0]
    first.journal.close()
    job = client.consumer(dev_signer(CONSUMER), blobs=store).submit_job(
        {"handler": "echo", "args": {"payload": "mine"}}, payment=PAY, max_compute_time=120)
    planted = store.put(b'{"a result": "for a job this head never ran"}')
    journal = Journal(config.journal_file)
    journal.claimed([(job.job_id, gpu)])
    journal.finished([S(job.job_id, True, planted)])
    journal.close()

    head = ProviderHead(config, dev_signer(PROVIDER), journal=Journal(config.journal_file)).start(background=False)
    try:
        assert head.book.count(JobState.FINISHED, JobState.RUNNING) == 0
        assert read_jobs(client, [job.job_id])[job.job_id].status == JobStatus.PENDING
        wait_until(lambda: (head.step(), all_final(client, [job.job_id]))[1], 60, "the job claimed, run, settled")
        done = read_jobs(client, [job.job_id])[job.job_id]
        assert done.status == JobStatus.COMPLETED and done.result_hash != planted
        assert json.loads(store.get(done.result_hash))["result"] == {"payload": "mine"}
    finally:
        head.stop()
        head.journal.close()
        client.close()


def test_a_recovered_job_too_close_to_its_chain_deadline_is_failed_not_run(tmp_path: Path, local_ray: Any) -> None:
    """A job on our GPU with no result to show (here: claimed, then the head died before it journalled or ran
    anything) whose chain deadline (claim + max_compute_time) leaves no time to run it again: recovery fails
    it with a reason instead of starting work that cannot be paid for."""
    with DevnetProcess(block_time=0, extra_args=["--timeout-grace", "0"]) as devnet:
        config = provider_config(devnet, tmp_path, task_cpus=0)
        client = ChainClient(devnet.url)
        first = ProviderHead(config, dev_signer(PROVIDER), journal=Journal(config.journal_file)).start(background=False)
        first.stop()  # binds the journal to this chain and registers the GPUs
        first.journal.close()
        consumer = client.consumer(dev_signer(CONSUMER), blobs=open_blob_store(devnet.http_url))
        job = consumer.submit_job({"handler": "sleep", "args": {"seconds": 1}}, payment=PAY, max_compute_time=3)
        client.provider(dev_signer(PROVIDER)).claim(job.job_id, first.gpu_ids[0])  # the claim the dead head made
        deadline = ChainPort(client.conn, dev_signer(PROVIDER)).job_deadlines([job.job_id])[job.job_id]
        # no block is sealed meanwhile (instant seal, nobody sends anything): the chain still says Processing
        time.sleep(max(0.0, deadline + 0.5 - time.time()))
        assert read_jobs(client, [job.job_id])[job.job_id].status == JobStatus.PROCESSING

        head = ProviderHead(config, dev_signer(PROVIDER), journal=Journal(config.journal_file)).start(background=False)
        try:
            assert head.book.count(JobState.RUNNING) == 0
            assert [t.settlement for t in head.book.in_state(JobState.FINISHED)] == [
                S.failure(job.job_id, RERUN_LATE_REASON)]
            wait_until(lambda: (head.step(), all_final(client, [job.job_id]))[1], 30, "the job settled")
            assert read_jobs(client, [job.job_id])[job.job_id].status == JobStatus.FAILED
        finally:
            head.stop()
            head.journal.close()
            client.close()
