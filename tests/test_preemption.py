"""Preemption is not failure (target R12), rule by rule: how a lost run's cause is told, what becomes of the job,
and how a handler with a checkpoint hook resumes. The stages are driven with fakes at the Ray port (the real
cluster test is `test_provider_faults.py::test_r12_…`); the handlers run for real against a real blob store."""

from __future__ import annotations

import json
import queue
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import ray

from etrid_ray.blobs import open_blob_store
from etrid_ray.chain.models import Job, JobStatus
from etrid_ray.manifest import Manifest
from etrid_ray.provider.job import JobBook, JobState, RunInfo, TrackedJob
from etrid_ray.provider.journal import Journal, JournalBinding
from etrid_ray.provider.manifests import ManifestSource
from etrid_ray.provider.preemption import Lost, cause_of, next_step
from etrid_ray.provider.stages.harvest import Harvester
from etrid_ray.provider.stages.recovery import Recovery
from etrid_ray.provider.stats import Stats
from etrid_ray.provider.task import DrainWatch, Outcome, execute
from etrid_ray.provider.timing import Estimates
from tests.test_job_book import NOW, Clock, admitted

S = JobState
NODE_A, NODE_B = "a" * 56, "b" * 56

# telling a preemption from a crash ------------------------------------------------------------------------------


def test_rays_node_died_error_names_the_node_it_was_lost_with() -> None:
    err = ray.exceptions.NodeDiedError(
        f"Task failed because the node it was running on is dead or unavailable. Node IP: 192.0.2.2, node ID: "
        f"{NODE_A}. This can happen if the node was preempted, had a hardware failure, …")
    assert Lost.of(err) == Lost("NodeDiedError", NODE_A, Lost.of(err).message)
    assert Lost.of(ray.exceptions.TaskCancelledError()).error == "TaskCancelledError"


def test_a_run_lost_with_a_node_seen_draining_was_preempted_and_anything_else_crashed_or_failed() -> None:
    draining = {NODE_A}
    assert cause_of(Lost("NodeDiedError", NODE_A), draining) == "preempted"
    assert cause_of(Lost("NodeDiedError", NODE_B), draining) == "crashed"  # no drain: a crash
    assert cause_of(Lost("WorkerCrashedError"), draining) == "crashed"
    assert cause_of(Lost("RuntimeEnvSetupError", NODE_A), draining) == "failed"  # not worth running again


def test_a_preempted_job_runs_again_free_until_its_deadline_cannot_be_met() -> None:
    kw: dict[str, Any] = {"now": 100.0, "deadline": 130.0, "budget": 3}
    assert next_step("preempted", retries=3, needed_s=20.0, **kw) == ("rerun", "")  # the budget is not asked
    step, reason = next_step("preempted", retries=0, needed_s=31.0, **kw)
    assert step == "fail" and reason == "preempted too late for its deadline (needs 31s, 30s left)"
    assert next_step("crashed", retries=2, needed_s=1e9, **kw) == ("retry", "")  # a crash spends a retry
    assert next_step("crashed", retries=3, needed_s=1.0, **kw) == ("fail", "")
    assert next_step("failed", retries=0, needed_s=1.0, **kw) == ("fail", "")


# the harvest stage with a fake Ray port --------------------------------------------------------------------------


@dataclass
class LossyRay:
    """The Ray task port as the harvest sees it: outcomes or losses, and the GCS's record of preempted nodes."""

    done: queue.Queue[tuple[int, Any]] = field(default_factory=queue.Queue)
    gcs_preempted: set[str] = field(default_factory=set)  # dead after their PREEMPTION drain deadline
    asked: list[set[str]] = field(default_factory=list)

    def cancel(self, ref: Any) -> None:
        pass

    def observe_start(self, *a: Any) -> None:
        pass

    def preempted_nodes(self, node_ids: set[str]) -> set[str]:
        self.asked.append(set(node_ids))
        return node_ids & self.gcs_preempted


class Redispatch:
    """The dispatcher's part: a claimed job becomes a running task again (with a fresh ref)."""

    def __init__(self, book: JobBook, clock: Clock) -> None:
        self.book, self.clock, self.runs = book, clock, 0

    def __call__(self, jobs: list[TrackedJob]) -> None:
        for tracked in jobs:
            assert tracked.state is S.CLAIMED and tracked.run is not None
            self.runs += 1
            deadline = min(self.clock() + 600, tracked.chain_deadline or float("inf"))
            tracked.run = RunInfo(f"ref{tracked.job_id}.{self.runs}", deadline, self.clock(), 1.0, "spot-a",
                                  "sleep", 10.0, True)
            self.book.move(tracked, S.RUNNING)


def sleep_job(book: JobBook, job_id: int, deadline: float) -> TrackedJob:
    tracked = admitted(book, job_id)
    tracked.manifest = Manifest(handler="sleep", args={"seconds": 10})
    tracked.gpu_id = 0
    book.move(tracked, S.CLAIMING)
    book.move(tracked, S.CLAIMED)
    tracked.run = RunInfo(f"ref{job_id}", deadline, NOW, 1.0, "spot-a", "sleep", 10.0, True)
    book.move(tracked, S.RUNNING)
    return tracked



def harvester(book: JobBook, clock: Clock, tasks: LossyRay, draining: set[str]) -> tuple[Harvester, Journal, Stats]:
    journal, stats = Journal(":memory:"), Stats()
    h = Harvester(book, tasks, journal, stats, Estimates(), 100, clock,  # type: ignore[arg-type]
                  redispatch=Redispatch(book, clock), draining=lambda: draining, default_pool="local-gpu")
    return h, journal, stats


def test_a_job_preempted_twice_runs_again_each_time_and_completes_once_with_no_retry_charged() -> None:
    clock = Clock()
    book, tasks, draining = JobBook(clock), LossyRay(), {NODE_A}
    tracked = sleep_job(book, 1, NOW + 600)
    h, journal, stats = harvester(book, clock, tasks, draining)
    journal.claimed([(1, 0)])
    h.harvest()  # the deadline scan sees node A draining (the head's cluster view)
    # 1: its handler saw the drain and left with its progress saved
    tasks.done.put((1, Outcome(1, False, None, "preempted", NOW, NOW + 3, NODE_A, preempted=True,
                               checkpoint="0x" + "c" * 64, remaining_s=7.0)))
    clock.t += 4
    assert h.harvest() == 0 and tracked.state is S.RUNNING and tracked.run.ref == "ref1.1"
    # 2: node B reclaimed at once (no time to checkpoint): the GCS records it dead after its drain deadline
    tasks.gcs_preempted.add(NODE_B)
    tasks.done.put((1, Lost("NodeDiedError", NODE_B)))
    clock.t += 2
    assert h.harvest() == 0 and tracked.state is S.RUNNING and tasks.asked == [{NODE_B}]
    tasks.done.put((1, Outcome(1, True, "0xaa", "", NOW + 7, NOW + 14)))
    clock.t += 8
    assert h.harvest() == 1
    assert tracked.state is S.FINISHED and tracked.settlement.ok and tracked.settlement.result_hash == "0xaa"
    assert (tracked.preemptions, tracked.retries) == (2, 0)
    assert tracked.checkpoint == "0x" + "c" * 64  # the second run saved none: the third resumed from the first's
    assert tracked.chain_deadline == NOW + 600  # every rerun kept the first run's deadline
    assert stats.preempted == {"spot-a": 2} and stats.retried == 0 and stats.completed == 1 and not stats.failed
    assert journal.preemptions(1) == 2
    notes = [note for state, _, note in journal.history(1) if state is S.CLAIMED][1:]
    assert notes[0].startswith("preempted (Preempted on node aaaaaaaaaaaa), resumes from 0xcccc")
    assert notes[1].startswith("preempted (NodeDiedError on node bbbbbbbbbbbb)")
    assert [s for s, _, _ in book.history(1)].count(S.CLAIMED) == 3


def test_a_crash_spends_the_retry_budget_and_fails_the_job_once_it_is_spent() -> None:
    clock = Clock()
    book, tasks = JobBook(clock), LossyRay()
    tracked = sleep_job(book, 2, NOW + 600)
    h, journal, stats = harvester(book, clock, tasks, set())
    for attempt in range(4):
        tasks.done.put((2, Lost("NodeDiedError", NODE_B)))  # no drain seen, none recorded: a crash
        clock.t += 1
        h.harvest()
        assert tracked.retries == min(attempt + 1, 3)
    assert tracked.state is S.FINISHED and tracked.preemptions == 0
    assert tracked.settlement.reason == "execution lost: NodeDiedError (after 3 retries)"
    assert stats.retried == 3 and stats.preempted == {} and journal.preemptions(2) == 0


def test_a_preempted_job_whose_deadline_cannot_be_met_is_failed_at_once_with_why() -> None:
    clock = Clock()
    book, tasks = JobBook(clock), LossyRay()
    tracked = sleep_job(book, 3, NOW + 12)
    h, _, stats = harvester(book, clock, tasks, {NODE_A})
    h.harvest()
    clock.t += 5  # 7 s left; the handler says 8 s remain (plus dispatch)
    tasks.done.put((3, Outcome(3, False, None, "preempted", NOW, NOW + 5, NODE_A, preempted=True,
                               checkpoint="0x" + "d" * 64, remaining_s=8.0)))
    assert h.harvest() == 1 and tracked.state is S.FINISHED
    assert tracked.settlement.reason.startswith("preempted too late for its deadline (needs ")
    assert stats.failed == {"preempted too late for its deadline": 1} and stats.preempted == {}


# the checkpoint hook: sleep and matmul resume ---------------------------------------------------------------------


class DrainAfter:
    """A node that starts draining after `polls` questions, until `deadline` (the worker's `DrainWatch`, told by a
    fake GCS; outside Ray the node id is "")."""

    def __init__(self, polls: int, deadline: float | None = None) -> None:
        self.left, self.deadline = polls, deadline

    def __call__(self) -> dict[str, float | None]:
        self.left -= 1
        return {"": self.deadline} if self.left < 0 else {}


def _run(tmp_path: Path, manifest: dict[str, Any], drain_after: int | None, checkpoint: str | None = None,
         deadline: float | None = None) -> Outcome:
    watch = DrainWatch(poll_s=0.0, read=DrainAfter(drain_after, deadline)) if drain_after is not None else \
        DrainWatch(poll_s=0.0, read=dict)
    return execute(7, json.dumps(manifest), f"file://{tmp_path}", 1 << 20, checkpoint, drain=watch)


def test_a_handler_that_would_finish_before_the_drain_deadline_stays_and_one_that_would_not_leaves(
        tmp_path: Path) -> None:
    manifest = {"handler": "sleep", "args": {"seconds": 1.0}}
    stays = _run(tmp_path, manifest, drain_after=0, deadline=time.time() + 1.0 + 2.5)  # 1 s + margin fits
    assert stays.ok and not stays.preempted
    leaves = _run(tmp_path, manifest, drain_after=0, deadline=time.time() + 1.5)  # 1 s + 2 s margin does not
    assert leaves.preempted and leaves.checkpoint


def test_sleep_checkpoints_on_a_drain_and_its_rerun_sleeps_only_the_rest(tmp_path: Path) -> None:
    manifest = {"handler": "sleep", "args": {"seconds": 1.5}}
    first = _run(tmp_path, manifest, drain_after=2)  # drains after ~0.5 s
    assert first.preempted and not first.ok and first.checkpoint and 0.5 < first.remaining_s < 1.2
    saved = json.loads(open_blob_store(f"file://{tmp_path}").get(first.checkpoint))["checkpoint"]
    assert saved["job_id"] == 7 and saved["handler"] == "sleep" and 0.3 < saved["progress"]["slept_s"] < 1.0
    began = time.monotonic()
    second = _run(tmp_path, manifest, drain_after=None, checkpoint=first.checkpoint)
    took = time.monotonic() - began
    assert second.ok and abs(took - first.remaining_s) < 0.3  # the rest, not all 1.5 s
    whole = _run(tmp_path, manifest, drain_after=None)
    assert whole.result_hash == second.result_hash  # a resumed job's result is the uninterrupted one's


def test_matmul_checkpoints_between_iterations_and_resumes_to_the_same_checksum(tmp_path: Path) -> None:
    manifest = {"handler": "matmul", "args": {"n": 64, "iterations": 6, "seed": 3}}
    first = _run(tmp_path, manifest, drain_after=2)  # the third question (after iteration 3) says draining
    progress = json.loads(open_blob_store(f"file://{tmp_path}").get(first.checkpoint))["checkpoint"]["progress"]
    assert first.preempted and progress["iterations_done"] == 3 and first.remaining_s is not None
    second = _run(tmp_path, manifest, drain_after=None, checkpoint=first.checkpoint)
    whole = _run(tmp_path, manifest, drain_after=None)
    result = json.loads(open_blob_store(f"file://{tmp_path}").get(second.result_hash))["result"]
    expected = json.loads(open_blob_store(f"file://{tmp_path}").get(whole.result_hash))["result"]
    assert result["checksum"] == expected["checksum"] and result["iterations"] == 6
    assert result["seconds"] >= progress["seconds"]  # the time of both runs


@pytest.mark.parametrize("checkpoint", ["0x" + "e" * 64, "not a hash"])
def test_a_checkpoint_that_cannot_be_read_means_starting_over_never_failing(tmp_path: Path, checkpoint: str) -> None:
    outcome = _run(tmp_path, {"handler": "sleep", "args": {"seconds": 0.3}}, None, checkpoint)
    assert outcome.ok


def test_another_jobs_checkpoint_is_not_resumed(tmp_path: Path) -> None:
    store = open_blob_store(f"file://{tmp_path}")
    other = store.put(json.dumps({"checkpoint": {"job_id": 8, "handler": "sleep",
                                                 "progress": {"slept_s": 100}}}).encode())
    began = time.monotonic()
    assert _run(tmp_path, {"handler": "sleep", "args": {"seconds": 0.5}}, None, other).ok
    assert time.monotonic() - began >= 0.45  # slept all of it


def test_a_handler_without_the_hook_is_never_told_of_a_drain(tmp_path: Path) -> None:
    outcome = _run(tmp_path, {"handler": "echo", "args": {"payload": 1}}, drain_after=0)
    assert outcome.ok and not outcome.preempted


# a restart between a preemption and the rerun ----------------------------------------------------------------------

GENESIS, BLOCK1 = "0x" + "60" * 32, "0x" + "a1" * 32


@dataclass
class RestartedChain:
    """The chain as a restarted head reads it: one Processing job on our GPU 0."""

    job: Job
    address: str = "5Grw"

    def identity(self) -> tuple[str, str]:
        return GENESIS, BLOCK1

    def gpu_jobs(self, gpu_ids: list[int]) -> dict[int, list[int]]:
        return {0: [self.job.job_id]}

    def jobs(self, ids: list[int]) -> dict[int, Job]:
        return {self.job.job_id: self.job}

    def job_deadlines(self, ids: list[int]) -> dict[int, int]:
        return {self.job.job_id: int(NOW + 600)}


class Dispatched:
    def __init__(self) -> None:
        self.jobs: list[TrackedJob] = []

    def dispatch(self, claimed: list[TrackedJob]) -> None:
        self.jobs.extend(claimed)


def test_a_head_restarted_after_a_preemption_resumes_the_job_from_its_checkpoint(tmp_path: Path) -> None:
    store = open_blob_store(f"file://{tmp_path}")
    manifest_hash = store.put(Manifest(handler="sleep", args={"seconds": 30}).model_dump_json().encode())
    checkpoint = store.put(b'{"checkpoint": {}}')
    job = Job(4, "5Grw", 0, "Custom", manifest_hash, "json", 600, 10**18, "Standard", JobStatus.PROCESSING, 0,
              None, int(NOW) - 10, None)
    path = tmp_path / "journal.sqlite"
    before = Journal(path)  # the head that saw the preemption, then died
    before.bind(JournalBinding(GENESIS, BLOCK1, "5Grw"))
    before.claimed([(4, 0)])
    before.rerun([(4, "preempted (NodeDiedError on node aaaaaaaaaaaa)", checkpoint)])
    before.close()
    journal, dispatcher = Journal(path), Dispatched()
    assert journal.get(4).checkpoint == checkpoint and journal.preemptions(4) == 1
    with ThreadPoolExecutor(1) as pool:
        Recovery(JobBook(Clock()), RestartedChain(job), journal, store, ManifestSource(store), dispatcher,  # type: ignore[arg-type]
                 lambda: [0], pool, Clock()).recover()
    assert [(t.job_id, t.checkpoint) for t in dispatcher.jobs] == [(4, checkpoint)]
    assert journal.get(4).checkpoint == checkpoint  # still there for a second restart


def test_a_journal_written_before_checkpoints_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE jobs (job_id INTEGER PRIMARY KEY, gpu_id INTEGER, state TEXT NOT NULL, ok INTEGER, "
                     "result_hash TEXT, reason TEXT, updated REAL NOT NULL);"
                     "INSERT INTO jobs VALUES (1, 0, 'claimed', NULL, NULL, NULL, 1.0);")
    db.commit()
    db.close()
    journal = Journal(path)
    assert journal.get(1).state is S.CLAIMED and journal.get(1).checkpoint is None
    journal.rerun([(1, "preempted (x)", "0x" + "f" * 64)])
    assert journal.get(1).checkpoint == "0x" + "f" * 64
