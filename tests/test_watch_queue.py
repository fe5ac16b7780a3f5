"""The queue watcher on a real devnet over sockets, both runtimes: the queue it keeps from events is the queue a
full read of `PendingJobs` gives, block after block, and it reads the queue in full exactly when it cannot vouch
for a replay (start, skipped blocks, reconnect, the periodic check)."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from etrid_ray.blobs import open_blob_store
from etrid_ray.chain import Call, ChainClient, Connection, QueueUpdate, QueueWatcher, Submitter
from etrid_ray.chain.events import ChainEvent
from etrid_ray.chain.keys import Signer, dev_signer
from etrid_ray.chain.models import GpuSpecs, HardwareAttestation, JobStatus
from etrid_ray.chain.reader import ChainReader
from etrid_ray.devnet.process import DevnetProcess

EDSC = 10**18
SPECS = GpuSpecs("A100", 80, compute_units=108, clock_speed_mhz=1410, tdp_watts=400)
ATTEST = HardwareAttestation(b"quote", benchmark_score=9000, timestamp=1_700_000_000)
#: the devnet's two runtimes; upstream has no `claim_job`, so there its built-in assigner (root `assign_job` in
#: `on_initialize`, one job per block) takes jobs out of the queue as well as the test's sudo calls
RUNTIMES = {"etrid-ray": [], "upstream": ["--assigner", "--assigner-slots", "1"]}


@dataclass
class Market:
    devnet: DevnetProcess
    client: ChainClient
    consumer: Any
    provider: Any
    gpus: list[int]
    alice: Submitter

    @property
    def upstream(self) -> bool:
        return not self.client.conn.metadata.has_call("JobMarketplace", "claim_job")

    def submit(self, n: int) -> list[int]:
        jobs = self.consumer.submit_jobs([{"watch": time.time_ns(), "i": i} for i in range(n)], payment=EDSC,
                                         max_compute_time=600)
        return [j.job_id for j in jobs]

    def sudo_assign(self, job_id: int, gpu_id: int) -> None:
        inner = self.client.conn.run(
            lambda sub: sub.compose_call("JobMarketplace", "assign_job", {"job_id": job_id, "gpu_id": gpu_id}))
        self.alice.submit(Call("Sudo", "sudo", {"call": inner.value}), check=False)


def _fund(client: ChainClient, name: str) -> Signer:
    signer = dev_signer(f"//WatchTest/{name}/{time.time_ns()}")
    Submitter(client.conn, dev_signer("Alice")).submit(
        Call("Balances", "transfer_keep_alive", {"dest": signer.address, "value": 100_000 * EDSC}))
    return signer


@pytest.fixture(scope="module", params=sorted(RUNTIMES))
def market(request: pytest.FixtureRequest) -> Iterator[Market]:
    with DevnetProcess(block_time=0, extra_args=["--runtime", request.param, *RUNTIMES[request.param]]) as devnet:
        with ChainClient(devnet.url) as client:
            provider = client.provider(_fund(client, "provider"))
            consumer = client.consumer(_fund(client, "consumer"), open_blob_store(devnet.url))
            gpus = provider.register_gpus([(SPECS, 100 * EDSC)] * 2, ATTEST)
            yield Market(devnet, client, consumer, provider, gpus, Submitter(client.conn, dev_signer("Alice")))


def _check(update: QueueUpdate, reader: ChainReader, known: set[int], before: list[int] | None = None) -> list[int]:
    """The update's queue is `PendingJobs` at its block, in order; every id in it was handed over with its job; the
    ids it says left are exactly those of the queue `before` it that are gone. Returns its queue."""
    assert update.pending_ids == reader.pending_job_ids(update.block_hash)
    for job_id, job in update.new_jobs.items():
        assert job.status == JobStatus.PENDING and job_id in update.pending_ids
    assert set(update.pending_ids) <= known | update.new_jobs.keys()
    if update.left is not None:
        assert before is not None and set(update.left) == set(before) - set(update.pending_ids)
    known.update(update.new_jobs)
    return update.pending_ids


@pytest.mark.parametrize("seed", [1, 2])
def test_the_kept_queue_is_the_chains_queue_after_random_operations(market: Market, seed: int) -> None:
    rng = random.Random(seed)
    reader = market.client.reader
    known: set[int] = set()
    polled = 0
    with Connection(market.devnet.url) as conn:
        watcher = QueueWatcher(conn, lambda _u: None, full_read_every_s=1e9)  # no safety net: events alone
        first = watcher.poll_once()
        assert first is not None and first.left is None  # the start is a full read
        queue = _check(first, reader, known)
        told = 0
        for _ in range(50):
            pending = reader.pending_job_ids()
            op = rng.choice(["submit", "submit", "cancel", "assign", "claim", "result", "poll", "poll"])
            if op == "submit" or not pending and op in ("cancel", "assign", "claim"):
                market.submit(rng.randint(1, 4))
            elif op == "cancel":
                market.consumer.submitter.submit(
                    Call("JobMarketplace", "cancel_job", {"job_id": rng.choice(pending)}), check=False)
            elif op == "assign" or (op == "claim" and market.upstream):
                market.sudo_assign(rng.choice(pending), rng.choice(market.gpus))
            elif op == "claim":
                market.provider.submitter.submit(Call("JobMarketplace", "claim_job", {
                    "job_id": rng.choice(pending), "gpu_id": rng.choice(market.gpus)}), check=False)
            elif op == "result":  # leaves the queue alone: the job is long out of it
                busy = [j for g in market.gpus for j in reader.gpu_jobs(g)]
                if busy:  # upstream's GpuJobs keeps finished jobs too: the call may be refused
                    market.provider.submitter.submit(Call("JobMarketplace", "submit_result", {
                        "job_id": rng.choice(busy), "result_hash": "0x" + "11" * 32}), check=False)
            if rng.random() < 0.5:  # else blocks pile up and the next poll replays several at once
                update = watcher.poll_once()
                if update is not None:
                    polled += 1
                    told += bool(update.left)
                    queue = _check(update, reader, known, queue)
        while (update := watcher.poll_once()) is not None:
            queue = _check(update, reader, known, queue)
    assert polled > 10 and told > 0
    assert watcher.full_reads == {"start": 1} and watcher.mismatches == 0


def test_skipped_blocks_are_read_in_full(market: Market) -> None:
    reader = market.client.reader
    with Connection(market.devnet.url) as conn:
        watcher = QueueWatcher(conn, lambda _u: None, max_catch_up=2, full_read_every_s=1e9)
        assert watcher.poll_once() is not None
        start = conn.best_number()
        ids = [i for _ in range(4) for i in market.submit(1)]  # one block each: more than max_catch_up
        assert conn.best_number() >= start + 4
        update = watcher.poll_once()
        assert update is not None
    assert watcher.full_reads == {"start": 1, "skipped blocks": 1}
    assert update.pending_ids == reader.pending_job_ids(update.block_hash)
    # jobs whose JobSubmitted was in a skipped block still reach the consumer
    assert {i for i in ids if i in update.pending_ids} <= update.new_jobs.keys()
    assert [e.block_number for e in update.events][0] >= update.block_number - 1  # events of the last 2 only


def test_a_reconnect_is_read_in_full(market: Market) -> None:
    reader = market.client.reader
    with Connection(market.devnet.url) as conn:
        watcher = QueueWatcher(conn, lambda _u: None, full_read_every_s=1e9)
        assert watcher.poll_once() is not None
        conn.close()  # the socket drops; the next read reconnects
        market.submit(1)
        update = watcher.poll_once()
        assert update is not None
    assert watcher.full_reads == {"start": 1, "reconnected": 1}
    assert update.pending_ids == reader.pending_job_ids(update.block_hash)


def test_a_queue_gone_wrong_without_an_event_heals_at_the_periodic_check(market: Market) -> None:
    """A write no event shows (here: a phantom id slipped into the kept queue) survives replays until the
    periodic full read, which replaces the queue and counts the mismatch."""
    reader = market.client.reader
    now = [0.0]
    with Connection(market.devnet.url) as conn:
        watcher = QueueWatcher(conn, lambda _u: None, full_read_every_s=5.0, clock=lambda: now[0])
        assert watcher.poll_once() is not None
        phantom = 10**12
        watcher.queue.apply([ChainEvent("JobMarketplace", "JobSubmitted", {"job_id": phantom}, 0)])
        market.submit(1)
        trusted = watcher.poll_once()
        assert trusted is not None and phantom in trusted.pending_ids and watcher.mismatches == 0
        now[0] = 6.0
        market.submit(1)
        healed = watcher.poll_once()
        assert healed is not None
    assert watcher.full_reads == {"start": 1, "periodic check": 1} and watcher.mismatches == 1
    assert healed.pending_ids == reader.pending_job_ids(healed.block_hash)


def test_a_failed_batch_item_leaves_no_job_event(market: Market) -> None:
    """`Utility.batch` over a `batch_all` whose second call fails: the job the first call stored is rolled back,
    and so is its `JobSubmitted` (events are storage in Substrate), so a watcher never queues a phantom job."""
    if not market.client.conn.metadata.has_pallet("Utility"):
        pytest.skip("the upstream runtime has no Utility pallet")
    sub = market.consumer.submitter
    submit = market.consumer._submit_call(market.consumer.store_manifest({"phantom": 1}), EDSC, 60, 0, "Custom",
                                          "json", "Standard")
    inner = sub.wrap("batch_all", [submit, Call("JobMarketplace", "cancel_job", {"job_id": 10**12})])
    with Connection(market.devnet.url) as conn:
        watcher = QueueWatcher(conn, lambda _u: None, full_read_every_s=1e9)
        assert watcher.poll_once() is not None
        receipt = sub.submit(sub.wrap("batch", [inner]))
        assert receipt.first("Utility", "BatchInterrupted") is not None
        assert receipt.find("JobMarketplace", "JobSubmitted") == []
        update = watcher.poll_once()
        assert update is not None
    assert update.pending_ids == market.client.reader.pending_job_ids(update.block_hash)
    assert watcher.mismatches == 0


def test_a_node_back_with_another_chain_starts_the_watcher_over() -> None:
    """The node restarts without its state: best is lower than the last block seen and not the same chain. The
    watcher reads the queue in full at the new chain's best instead of waiting for it to pass the old height."""
    with DevnetProcess(block_time=0) as devnet:
        with ChainClient(devnet.url) as client:
            consumer = client.consumer(_fund(client, "before"), open_blob_store(devnet.url))
            consumer.submit_jobs([{"i": i} for i in range(3)], payment=EDSC, max_compute_time=60)
        with Connection(devnet.url) as conn:
            watcher = QueueWatcher(conn, lambda _u: None, full_read_every_s=1e9)
            before = watcher.poll_once()
            assert before is not None and len(before.pending_ids) == 3
            devnet.stop()
            devnet.start()  # same port, empty chain
            with ChainClient(devnet.url) as client:
                job = client.consumer(dev_signer("Bob"), open_blob_store(devnet.url)).submit_job(
                    {"after": 1}, payment=EDSC, max_compute_time=60)
                update = watcher.poll_once()
                assert update is not None and update.block_number < before.block_number
                assert update.pending_ids == client.reader.pending_job_ids(update.block_hash) == [job.job_id]
                assert job.job_id in update.new_jobs
    assert watcher.full_reads == {"start": 1, "another chain": 1}
