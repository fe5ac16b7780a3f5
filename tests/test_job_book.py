"""The job state machine and the head's stages, each driven alone with fakes at its ports (no chain, no Ray).

The end-to-end tests (test_provider_e2e, test_stale_journal, …) run the same stages against a real devnet and
a real Ray; these pin each stage's rule where a failure names the stage."""

from __future__ import annotations

import queue
from dataclasses import dataclass, field
from typing import Any

import pytest

from etrid_ray.admission import CLAIM, Verdict
from etrid_ray.chain import QueueUpdate
from etrid_ray.chain.models import GPU_JOBS_BOUND, Job, JobStatus
from etrid_ray.config import ProviderConfig, pools_from_config
from etrid_ray.manifest import Manifest
from etrid_ray.provider.chain_port import ItemResult
from etrid_ray.provider.cluster_view import ClusterView, ClusterWatch
from etrid_ray.provider.job import (
    ON_CHAIN,
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    JobBook,
    JobState,
    RunInfo,
    Settlement,
)
from etrid_ray.provider.journal import Journal
from etrid_ray.provider.preemption import CANCELLED, Lost
from etrid_ray.provider.stages.claim import Claimer
from etrid_ray.provider.stages.harvest import Harvester
from etrid_ray.provider.stages.intake import Intake
from etrid_ray.provider.stages.scaling import PoolScaling
from etrid_ray.provider.stages.settle import Settler
from etrid_ray.provider.stats import Stats
from etrid_ray.provider.task import Outcome
from etrid_ray.provider.timing import MAX_DEFER_BLOCKS, BlockPace, ClaimDeferral, Estimates, spread_key

S = JobState
NOW = 1_800_000_000.0


def job(job_id: int, *, priority: str = "Standard", submitted_at: int = 0, status: Any = JobStatus.PENDING,
        max_compute_time: int = 600) -> Job:
    return Job(job_id, "5Grw", 0, "Custom", f"0x{job_id:064x}", "json", max_compute_time, 10**18, priority, status,
               None, None, submitted_at or int(NOW) - 100 + job_id, None)


class Clock:
    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def admitted(book: JobBook, job_id: int, **kw: Any) -> Any:
    tracked = book.add(job(job_id, **kw), S.QUEUED)
    tracked.verdict, tracked.manifest = CLAIM, Manifest(handler="echo", args={"payload": job_id})
    book.move(tracked, S.ADMITTED)
    return tracked


# the state machine ---------------------------------------------------------------------------------------------

def test_every_state_is_reachable_and_only_the_terminal_ones_end_a_job() -> None:
    reachable, todo = set(), [None]
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in reachable:
                reachable.add(nxt)
                todo.append(nxt)
    assert reachable == set(JobState)
    assert {s for s in JobState if not TRANSITIONS[s]} == set(TERMINAL)


def test_a_move_the_table_does_not_allow_raises_and_changes_nothing() -> None:
    book = JobBook(Clock())
    tracked = book.add(job(1), S.QUEUED)
    with pytest.raises(IllegalTransition):
        book.move(tracked, S.RUNNING)
    assert tracked.state is S.QUEUED and book.in_state(S.QUEUED) == [tracked]
    with pytest.raises(IllegalTransition):
        book.add(job(2), S.CLAIMED)  # only recovery puts a job straight on chain


def test_a_job_counts_against_its_gpu_exactly_while_the_chain_holds_it() -> None:
    book = JobBook(Clock())
    tracked = admitted(book, 1)
    tracked.gpu_id = 7
    for state in (S.CLAIMING, S.CLAIMED, S.RUNNING):
        book.move(tracked, state)
        assert book.on_gpu[7] == 1 and tracked.state in ON_CHAIN
    book.finish(tracked, Settlement(1, True, "0xab"))
    assert book.on_gpu[7] == 1  # finished but not settled: still in GpuJobs on chain
    book.move(tracked, S.REPORTED)
    assert book.on_gpu[7] == 0 and 1 not in book
    assert [s for s, _, _ in book.history(1)] == [S.QUEUED, S.ADMITTED, S.CLAIMING, S.CLAIMED, S.RUNNING,
                                                  S.FINISHED, S.REPORTED]


def test_a_lost_claim_frees_its_gpu_slot_and_ends_the_job() -> None:
    book = JobBook(Clock())
    tracked = admitted(book, 1)
    tracked.gpu_id = 0
    book.move(tracked, S.CLAIMING)
    book.move(tracked, S.LOST, "JobMarketplace.JobNotPending")
    assert book.on_gpu[0] == 0 and len(book) == 0 and book.history(1)[-1][2] == "JobMarketplace.JobNotPending"


def test_the_journal_keeps_the_durable_states_with_their_history(tmp_path: Any) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    journal.claimed([(1, 0)])
    journal.finished([Settlement.failure(1, "timeout after 3s")])
    journal.reported([1])
    assert [(s, note) for s, _, note in journal.history(1)] == [
        (S.CLAIMED, "gpu 0"), (S.FINISHED, "timeout after 3s"), (S.REPORTED, "")]
    assert journal.get(1).state is S.REPORTED


# intake --------------------------------------------------------------------------------------------------------

@dataclass
class FakeChain:
    address: str = "5Me"
    lose: set[int] = field(default_factory=set)  # job ids another provider wins
    fail_whole: bool = False
    on_chain: dict[int, Job] = field(default_factory=dict)
    claims: list[list[tuple[int, int]]] = field(default_factory=list)
    settled: list[list[Settlement]] = field(default_factory=list)

    def claim(self, pairs: list[tuple[int, int]]) -> list[ItemResult]:
        if self.fail_whole:
            raise ConnectionError("socket closed")
        self.claims.append(list(pairs))
        return [ItemResult(j not in self.lose, "JobMarketplace.JobNotPending" if j in self.lose else "")
                for j, _ in pairs]

    def settle(self, settlements: list[Settlement]) -> list[ItemResult]:
        if self.fail_whole:
            raise ConnectionError("socket closed")
        self.settled.append(list(settlements))
        return [ItemResult(True)] * len(settlements)

    def jobs(self, ids: list[int]) -> dict[int, Job]:
        return {j: self.on_chain[j] for j in ids if j in self.on_chain}


def test_intake_adds_pending_jobs_once_and_ends_those_that_left_the_queue() -> None:
    book, departed = JobBook(Clock()), []
    intake = Intake(book, FakeChain(), Stats(), departed.append)
    intake.offer(QueueUpdate(1, "0x01", [1, 2], {1: job(1), 2: job(2)}))
    intake.offer(QueueUpdate(2, "0x02", [1, 2], {1: job(1)}))
    assert intake.take() == 2 and book.count(S.QUEUED) == 2 and intake.best_block == 2
    intake.offer(QueueUpdate(3, "0x03", [2], {}))
    intake.take()
    assert [t.job_id for t in departed] == [1] and 1 not in book and book.history(1)[-1][0] is S.DEPARTED


def test_intake_works_from_what_the_watcher_says_left_and_compares_the_queue_only_after_a_full_read() -> None:
    """A replayed update names the ids that left: those depart, whatever else the queue holds (no pass over a
    10,000-id queue). An update after a full read (`left` None) is compared with the last queue seen, and a
    pending id the book never saw (a claim lost in a node restart) is read from the chain and enters."""
    book, departed, chain = JobBook(Clock()), [], FakeChain()
    intake = Intake(book, chain, Stats(), departed.append)
    intake.offer(QueueUpdate(1, "0x01", [1, 2, 3], {1: job(1), 2: job(2), 3: job(3)}))  # the start: a full read
    intake.offer(QueueUpdate(2, "0x02", [1, 3, 4], {4: job(4)}, left=[2]))
    assert intake.take() == 4 and [t.job_id for t in departed] == [2]
    intake.offer(QueueUpdate(3, "0x03", [3, 4], {}, left=[1]))
    intake.offer(QueueUpdate(4, "0x04", [4], {}, left=[3]))
    intake.take()
    assert [t.job_id for t in departed] == [2, 1, 3] and book.count(S.QUEUED) == 1
    chain.on_chain[9] = job(9)  # pending again after a node restart lost our claim: only a full read shows it
    intake.offer(QueueUpdate(5, "0x05", [9], {}))
    assert intake.take() == 1 and book.get(9).history[-1][2] == "pending on chain, unseen before"
    assert [t.job_id for t in departed] == [2, 1, 3, 4]


# claim ---------------------------------------------------------------------------------------------------------

class FakeTasks:
    task_cpus = 0.0

    @staticmethod
    def connected() -> bool:
        return False  # driven without Ray: the declared GPUs, no probe

    @staticmethod
    def warm_slots(busy: dict[Any, int]) -> dict[Any, int]:
        return {None: 1000}

    def maybe_probe(self, *a: Any) -> None:
        pass


def claimer(book: JobBook, chain: FakeChain, gpus: list[int], capacity: float = 8.0, batch: int = 1000,
            max_per_gpu: int = 1000) -> Claimer:
    clock = book.clock
    est = Estimates()
    view = ClusterWatch(lambda: ClusterView(clock(), connected=False))
    scaling = PoolScaling(pools_from_config(ProviderConfig()), book, view, est, lambda: None, 1.0, lambda: None,
                          clock, clock)
    return Claimer(book, chain, Journal(":memory:"), Stats(), est, FakeTasks(), scaling,  # type: ignore[arg-type]
                   lambda: gpus, lambda: capacity, max_per_gpu, batch, clock)


def test_competing_heads_take_a_burst_of_equally_old_jobs_in_different_orders() -> None:
    """Every provider sees the same queue: taking the oldest first, they would all claim the same jobs in the same
    block and all but one lose. Jobs of the same age are taken in each head's own (hashed) order instead."""
    picks = []
    for address in ("5Alpha", "5Beta", "5Gamma"):
        book = JobBook(Clock())
        for i in range(300):
            admitted(book, i, submitted_at=int(NOW) - 30)  # one block's burst
        c = claimer(book, FakeChain(address=address), gpus=[0], capacity=1000.0, batch=30)
        picks.append({t.job_id for t in c.claim(c.choose())})
    assert all(len(p) == 30 for p in picks)
    overlaps = [len(a & b) for a, b in ((picks[0], picks[1]), (picks[0], picks[2]), (picks[1], picks[2]))]
    assert max(overlaps) <= 12  # 3 expected by chance; taking the oldest first, all 30 would collide


def test_older_jobs_still_come_first_beyond_a_couple_of_blocks() -> None:
    book = JobBook(Clock())
    for i in range(50):
        admitted(book, i, submitted_at=int(NOW) - 60)
    for i in range(50, 100):
        admitted(book, i, submitted_at=int(NOW) - 20)  # 40 s younger: well past two 1-second blocks
    c = claimer(book, FakeChain(), gpus=[0], capacity=1000.0, batch=50)
    c.pace.observe(1, NOW - 2)
    c.pace.observe(3, NOW)  # one block a second
    assert {t.job_id for t in c.claim(c.choose())} == set(range(50))


def test_block_pace_learns_the_chain_block_time_and_sets_the_window() -> None:
    pace = BlockPace()
    assert pace.window_s() == 1.0  # nothing seen: a job's submitted_at resolution
    for n in range(1, 12):
        pace.observe(n, 1000.0 + 6.0 * n)  # 6-second blocks
    pace.observe(11, 1100.0)  # the same block again: no interval
    assert pace.window_s() == pytest.approx(2 * 6.0)


def test_claims_never_put_more_jobs_on_a_gpu_than_the_chain_holds() -> None:
    book, chain = JobBook(Clock()), FakeChain()
    for i in range(GPU_JOBS_BOUND * 2 + 5):
        admitted(book, i)
    c = claimer(book, chain, gpus=[0, 1], capacity=1000.0)  # the config would allow 1000 per GPU
    won = c.claim(c.choose())
    assert len(won) == 2 * GPU_JOBS_BOUND and book.on_gpu == {0: GPU_JOBS_BOUND, 1: GPU_JOBS_BOUND}
    assert c.choose() == []  # full: not even sorted again
    assert book.count(S.ADMITTED) == 5


def test_the_claim_order_is_rejects_then_priority_then_first_come() -> None:
    book, chain = JobBook(Clock()), FakeChain()
    late_premium = admitted(book, 3, priority="Premium", submitted_at=int(NOW) - 1)
    admitted(book, 1, submitted_at=int(NOW) - 50)
    broken = book.add(job(2, priority="Economy"), S.QUEUED)
    broken.verdict = Verdict("reject", "manifest hash mismatch")
    book.move(broken, S.ADMITTED)
    picked = claimer(book, chain, gpus=[0]).choose()
    assert [t.job_id for t in picked] == [2, 3, 1] and late_premium.state is S.CLAIMING


def test_the_claim_order_holds_across_passes_as_jobs_arrive_leave_and_come_back() -> None:
    """The order is kept between passes (not sorted anew each pass): what it picks must still be exactly the order
    a full sort would give."""
    book, chain = JobBook(Clock()), FakeChain()
    c = claimer(book, chain, gpus=[0], batch=2)
    for i in (5, 6, 7):
        admitted(book, i, submitted_at=int(NOW) - 100 + 10 * i)
    assert [t.job_id for t in c.claim(c.choose())] == [5, 6]
    admitted(book, 1, submitted_at=int(NOW) - 200)  # older than every waiting job: it goes first
    admitted(book, 9, priority="Premium")
    book.move(book.get(7), S.DEPARTED)  # another provider took it meanwhile
    assert [t.job_id for t in c.choose()] == [9, 1]
    book.move_all(book.in_state(S.CLAIMING), S.ADMITTED, "claim extrinsic failed")  # both back, same places
    admitted(book, 3, submitted_at=int(NOW) - 150)
    assert [t.job_id for t in c.claim(c.choose())] == [9, 1]
    assert [t.job_id for t in c.claim(c.choose())] == [3]


def test_the_book_tells_which_jobs_entered_a_followed_state() -> None:
    book = JobBook(Clock())
    book.follow(S.ADMITTED)
    first, second = admitted(book, 1), admitted(book, 2)
    assert book.arrivals(S.ADMITTED) == [first, second] and book.arrivals(S.ADMITTED) == []
    book.move(first, S.CLAIMING)
    book.move(first, S.ADMITTED, "claim extrinsic failed")
    assert book.arrivals(S.ADMITTED) == [first]


def test_a_lost_race_ends_the_job_and_a_failed_extrinsic_puts_the_batch_back() -> None:
    book, chain = JobBook(Clock()), FakeChain(lose={1})
    for i in range(3):
        admitted(book, i)
    c = claimer(book, chain, gpus=[0])
    won = c.claim(c.choose())
    assert [t.job_id for t in won] == [0, 2] and c.stats.lost_claims == 1 and 1 not in book
    admitted(book, 5)
    chain.fail_whole = True
    with pytest.raises(ConnectionError):
        c.claim(c.choose())
    assert book.get(5).state is S.ADMITTED and book.on_gpu[0] == 2  # only the two won hold slots


def test_a_job_that_cannot_finish_in_its_limit_is_left_on_chain_and_counted_once() -> None:
    book, chain = JobBook(Clock()), FakeChain()
    tracked = admitted(book, 1, max_compute_time=1)  # the margin alone exceeds one second
    c = claimer(book, chain, gpus=[0])
    assert c.choose() == [] and c.choose() == []
    assert tracked.state is S.ADMITTED and c.stats.skipped == {"cannot_finish_in_time": 1}


# harvest and settle --------------------------------------------------------------------------------------------

@dataclass
class FakeRay:
    done: queue.Queue[tuple[int, Any]] = field(default_factory=queue.Queue)
    cancelled: list[Any] = field(default_factory=list)

    def cancel(self, ref: Any) -> None:
        self.cancelled.append(ref)

    def observe_start(self, *a: Any) -> None:
        pass


def running(book: JobBook, job_id: int, deadline: float) -> Any:
    tracked = admitted(book, job_id)
    tracked.gpu_id = 0
    for state in (S.CLAIMING, S.CLAIMED):
        book.move(tracked, state)
    tracked.run = RunInfo(ref=f"ref{job_id}", deadline=deadline, dispatched_at=NOW - 1, gpus=1.0)
    book.move(tracked, S.RUNNING)
    return tracked


def test_harvest_settles_finished_tasks_and_times_out_late_ones_once() -> None:
    clock = Clock()
    book, tasks = JobBook(clock), FakeRay()
    running(book, 1, NOW + 60)
    late = running(book, 2, NOW - 0.5)
    tasks.done.put((1, Outcome(1, True, "0xaa", "", NOW - 0.5, NOW - 0.1)))
    journal = Journal(":memory:")
    h = Harvester(book, tasks, journal, Stats(), Estimates(), 100, clock)  # type: ignore[arg-type]
    assert h.harvest() == 2
    assert [t.settlement for t in book.in_state(S.FINISHED)] == [
        Settlement(1, True, "0xaa", ""), Settlement.failure(2, "timeout after 0s")]
    assert tasks.cancelled == ["ref2"] and late.run.ref is None
    tasks.done.put((2, Outcome(2, True, "0xbb")))  # the cancelled task's future fires later
    assert h.harvest() == 0 and journal.get(2).ok is False


def test_a_job_whose_shared_task_was_cancelled_for_a_pack_mate_runs_again_alone_and_free() -> None:
    """Two jobs shared a Ray task; the first ran past its deadline, so the task was cancelled: that job timed out,
    its pack-mate did not — it runs again in a task of its own, spending no retry, keeping its deadline."""
    clock = Clock()
    book, tasks = JobBook(clock), FakeRay()
    late, mate = running(book, 1, NOW - 0.5), running(book, 2, NOW + 60)
    for index, tracked in enumerate((late, mate)):
        tracked.run.ref, tracked.run.pack_size, tracked.run.pack_index = "pack", 2, index
    again: list[Any] = []
    h = Harvester(book, tasks, Journal(":memory:"), Stats(), Estimates(), 100, clock,  # type: ignore[arg-type]
                  redispatch=again.extend)
    assert h.harvest() == 1 and tasks.cancelled == ["pack"]
    assert late.settlement == Settlement.failure(1, "timeout after 0s")
    tasks.done.put((2, Lost(CANCELLED)))  # the cancelled task's end reaches the mate
    assert h.harvest() == 0
    assert again == [mate] and mate.state is S.CLAIMED and mate.runs_alone and mate.retries == 0
    assert mate.chain_deadline == NOW + 60
    tasks.done.put((1, Lost(CANCELLED)))  # and the job that timed out is not settled twice
    assert h.harvest() == 0 and book.count(S.FINISHED) == 1


def test_settle_reports_each_finished_job_once_even_after_a_lost_connection() -> None:
    clock = Clock()
    book, chain = JobBook(clock), FakeChain()
    for i in (1, 2):
        book.finish(running(book, i, NOW + 60), Settlement(i, True, f"0x{i}"))
    s = Settler(book, chain, Journal(":memory:"), Stats(), 100, lambda: [0], clock)
    chain.fail_whole = True
    with pytest.raises(ConnectionError):
        s.settle()
    assert book.count(S.FINISHED) == 2  # kept: the extrinsic may or may not have landed
    chain.fail_whole = False
    done = job(1, status=JobStatus.COMPLETED)  # it had landed for job 1
    chain.on_chain = {1: done, 2: Job(**{**job(2, status=JobStatus.PROCESSING).__dict__, "assigned_gpu": 0})}
    assert s.settle() == 1
    assert [[x.job_id for x in batch] for batch in chain.settled] == [[2]]
    assert len(book) == 0 and book.on_gpu[0] == 0


def test_a_head_that_loses_claims_waits_a_hashed_share_of_a_few_blocks_and_alone_stops_waiting() -> None:
    deferral = ClaimDeferral()
    assert deferral.delay_s(123_456, 6.0) == 0.0  # nothing lost yet: claim at once
    deferral.observe(won=6, lost=4)
    deferral.observe(won=3, lost=3)
    assert deferral.blocks == 1.0
    delays = [deferral.delay_s(spread_key("5Me", j), 6.0) for j in range(1000)]
    assert 0 <= min(delays) < 0.1 and 5.9 < max(delays) <= 6.0  # spread over the window, job by job
    for _ in range(40):
        deferral.observe(won=5, lost=0)  # competitors gone
    assert deferral.blocks == 0.0


def test_a_deferred_job_is_left_for_a_moment_and_claimed_when_its_wait_is_over() -> None:
    book, chain = JobBook(Clock()), FakeChain(lose={0, 1, 2})
    for i in range(4):
        admitted(book, i)
    c = claimer(book, chain, gpus=[0], capacity=1000.0)
    c.pace.observe(1, NOW - 1)
    c.pace.observe(2, NOW)  # one-second blocks
    c.claim(c.choose())  # three of four lost: this head now waits before claiming what it has just seen
    assert c.deferral.blocks > 0
    for i in range(10, 30):
        admitted(book, i)  # seen now
    first = {t.job_id for t in c.claim(c.choose())}
    assert first < set(range(10, 30))  # some wait their turn ...
    book.clock.t += MAX_DEFER_BLOCKS + 1
    assert first | {t.job_id for t in c.claim(c.choose())} == set(range(10, 30))  # ... and are claimed after it
