"""Harvest: finished Ray tasks, and tasks past their deadline, become settlements — or run again.

Ray's futures push each finished task onto the task port's queue (no scan over every running task); a scan
four times a second cancels what ran past its deadline. Each outcome is journalled before anything else, so a
crash after this point reports the result instead of running the job again, and what the claim planned is
compared with what happened (dispatch delay, run time against the declared one) so later claims plan better.

A task lost with its node or worker is the head's to rerun (Ray does not retry `run_job`): a preempted one
(its node drained: provider/preemption.py) goes back to `claimed` and is dispatched again at once, from its
checkpoint when its handler saved one, without spending its retry budget, unless its deadline can no longer be
met; a crashed one spends one retry of `TASK_MAX_RETRIES`. Either rerun keeps the first run's deadline.
"""

from __future__ import annotations

import math
import queue
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

from etrid_ray.provider.job import JobBook, JobState, RunInfo, Settlement, TrackedJob
from etrid_ray.provider.journal import Journal
from etrid_ray.provider.preemption import CANCELLED, PREEMPTED_NOTE, Cause, Lost, cause_of, next_step
from etrid_ray.provider.ray_tasks import RayTasks
from etrid_ray.provider.stats import Stats
from etrid_ray.provider.task import TASK_MAX_RETRIES, Outcome
from etrid_ray.provider.timing import Estimates
from etrid_ray.security import audit

DEADLINE_SCAN_S = 0.25
NODES_REMEMBERED = 10_000  # draining nodes the head remembers (a preemption is told by them after they are gone)


def _no_nodes() -> Iterable[str]:
    return ()


def _no_redispatch(jobs: Sequence[TrackedJob]) -> None:
    raise RuntimeError("a job to run again, but this harvester was given no dispatcher")


def timeout_reason(run: RunInfo) -> str:
    return f"timeout after {run.deadline - run.dispatched_at:.0f}s"


class Harvester:
    def __init__(self, book: JobBook, tasks: RayTasks, journal: Journal, stats: Stats, estimates: Estimates,
                 batch: int, clock: Callable[[], float], *,
                 redispatch: Callable[[Sequence[TrackedJob]], None] = _no_redispatch,
                 draining: Callable[[], Iterable[str]] = _no_nodes, default_pool: str = "",
                 retry_budget: int = TASK_MAX_RETRIES) -> None:
        self.book = book
        self.tasks = tasks
        self.journal = journal
        self.stats = stats
        self.estimates = estimates
        self.batch = batch
        self.clock = clock
        self.redispatch = redispatch  # the dispatcher's: claimed jobs become Ray tasks (caller holds the lock)
        self.draining = draining  # ids of the nodes Ray drains now (the head's cluster view)
        self.default_pool = default_pool  # what a job with no pool counts its preemptions under
        self.retry_budget = retry_budget
        self.seen_draining: OrderedDict[str, float] = OrderedDict()  # node id -> first seen draining
        self._last_scan = 0.0
        #: called with each outcome the head collects (tests and the TEE check read which node ran a job)
        self.on_outcome: Callable[[TrackedJob, Outcome], None] | None = None

    def harvest(self, wait: float = 0.0) -> int:
        done = self.tasks.done
        try:
            first = done.get(timeout=wait) if wait > 0 else done.get_nowait()
        except queue.Empty:
            first = None
        batch = [first] if first is not None else []
        while len(batch) < self.batch:
            try:
                batch.append(done.get_nowait())
            except queue.Empty:
                break
        now = self.clock()
        scan = now - self._last_scan >= DEADLINE_SCAN_S
        if scan and self.book.count(JobState.RUNNING):
            self._note_draining(now)  # outside the book's lock: it may read Ray's node table
        finished: list[tuple[TrackedJob, Settlement]] = []
        with self.book.lock:
            again: list[TrackedJob] = []
            for job_id, outcome in batch:
                tracked = self.book.get(job_id)
                if tracked is None or tracked.state is not JobState.RUNNING or tracked.run is None \
                        or tracked.run.ref is None:
                    continue  # already settled as timed out, or drained
                run = tracked.run
                run.ref = None  # collected: the deadline scan must not take it again
                settlement = self._settlement(tracked, run, outcome, now)
                if settlement is None:
                    again.append(tracked)
                else:
                    finished.append((tracked, settlement))
            if again:
                self.redispatch(again)
            if scan:
                self._last_scan = now
                for tracked in self.book.iter_state(JobState.RUNNING):
                    run = tracked.run
                    if run is not None and run.ref is not None and now > run.deadline:
                        self.tasks.cancel(run.ref)
                        run.ref = None
                        finished.append((tracked, Settlement.failure(tracked.job_id, timeout_reason(run))))
        if not finished:
            return 0
        settlements = [s for _, s in finished]
        self.journal.finished(settlements)
        audit.record_many([("result", {"job": s.job_id, "blob": s.result_hash}) if s.ok
                           else ("failure", {"job": s.job_id, "reason": s.reason}) for s in settlements])
        with self.book.lock:
            for tracked, settlement in finished:
                self.book.finish(tracked, settlement, now)
                if settlement.ok:
                    self.stats.completed += 1
                else:
                    self.stats.count_failure(settlement.reason)
        return len(finished)

    def _note_draining(self, now: float) -> None:
        """Remembers the nodes Ray drains now: once one is gone, a task lost with it was preempted, not crashed
        (the GCS records a preemption only for a node that died after its drain deadline)."""
        for node_id in self.draining():
            if node_id not in self.seen_draining:
                self.seen_draining[node_id] = now
                while len(self.seen_draining) > NODES_REMEMBERED:
                    self.seen_draining.popitem(last=False)

    def _settlement(self, tracked: TrackedJob, run: RunInfo, outcome: Outcome | Lost, now: float
                    ) -> Settlement | None:
        """The job's settlement, or None when it runs again (moved back to claimed, for the dispatcher)."""
        if isinstance(outcome, Lost):
            if outcome.error == CANCELLED:
                if run.pack_size > 1 and now < run.deadline:
                    return self._alone(tracked, run, now)  # its pack was cancelled for a pack-mate's deadline
                return Settlement.failure(tracked.job_id, timeout_reason(run))
            return self._lost(tracked, run, outcome, None, now)
        if outcome.preempted:  # the handler left its draining node with its progress saved
            self._account(tracked, run, outcome)
            return self._lost(tracked, run, Lost("Preempted", outcome.node_id), outcome, now)
        self._account(tracked, run, outcome)
        return Settlement(tracked.job_id, outcome.ok, outcome.result_hash, outcome.reason)

    def _lost(self, tracked: TrackedJob, run: RunInfo, lost: Lost, outcome: Outcome | None,
              now: float) -> Settlement | None:
        """A run that ended without a result: run again (free when preempted, charged when crashed) or fail."""
        cause: Cause = "preempted"  # the handler said so itself
        if outcome is None:
            if lost.error == "NodeDiedError" and lost.node_id and lost.node_id not in self.seen_draining:
                # drained and gone before the head's view saw it drain: the GCS's record of why it died
                self.seen_draining.update(dict.fromkeys(self.tasks.preempted_nodes({lost.node_id}), now))
            cause = cause_of(lost, self.seen_draining)
        remaining = outcome.remaining_s if outcome is not None else None
        limit = max(0.0, run.deadline - run.dispatched_at)
        rest = remaining if remaining is not None else self.estimates.run_s(run.handler, run.declared_s, limit,
                                                                            run.declares)
        step, reason = next_step(cause, retries=tracked.retries, budget=self.retry_budget, now=now,
                                 deadline=run.deadline, needed_s=self.estimates.cold_s() + rest)  # elsewhere: cold
        if step == "fail":
            return Settlement.failure(tracked.job_id, reason or f"execution lost: {lost.error}"
                                      + (f" (after {tracked.retries} retries)" if tracked.retries else ""))
        if step == "rerun":
            tracked.preemptions += 1
            if outcome is not None and outcome.checkpoint:
                tracked.checkpoint = outcome.checkpoint  # else the last one saved, if any: still this job's
            note = f"{PREEMPTED_NOTE} ({lost.describe()})" + (
                f", resumes from {tracked.checkpoint[:18]}" if tracked.checkpoint else "")
            self.stats.preempted[run.pool or self.default_pool] += 1
        else:
            tracked.retries += 1
            note = f"retry {tracked.retries}/{self.retry_budget} ({lost.describe()})"
            self.stats.retried += 1
        tracked.chain_deadline = min(run.deadline, tracked.chain_deadline or math.inf)  # the rerun keeps it
        self.journal.rerun([(tracked.job_id, note, tracked.checkpoint)])
        self.book.move(tracked, JobState.CLAIMED, note, now)
        return None

    def _alone(self, tracked: TrackedJob, run: RunInfo, now: float) -> None:
        """A job whose shared task was cancelled for another job (a pack-mate past its deadline, or taken back to
        another pool) runs again in a task of its own, free (not its failure), keeping its deadline."""
        tracked.runs_alone = True
        tracked.chain_deadline = min(run.deadline, tracked.chain_deadline or math.inf)
        note = "its shared task was cancelled for another job: runs again alone"
        self.journal.rerun([(tracked.job_id, note, tracked.checkpoint)])
        self.book.move(tracked, JobState.CLAIMED, note, now)

    def _account(self, tracked: TrackedJob, run: RunInfo, outcome: Outcome) -> None:
        run.started_at, run.ended_at = outcome.started_at, outcome.finished_at
        self.stats.queue_to_start.append(max(0.0, outcome.started_at - tracked.job.submitted_at))
        self.stats.started_at[tracked.job_id] = outcome.started_at
        self.stats.ended_at[tracked.job_id] = outcome.finished_at
        self.stats.gpu_seconds += (outcome.finished_at - outcome.started_at) * run.gpus
        self.stats.pool_of[tracked.job_id] = run.pool
        self._learn(run, outcome)
        if self.on_outcome is not None:
            self.on_outcome(tracked, outcome)

    def _learn(self, run: RunInfo, outcome: Outcome) -> None:
        """What the claim planned against what happened: how late Ray started the task after its GPUs were
        expected free, and how long the handler ran against what the job declared (successes only: a handler
        that fails at once says nothing about how long the work takes)."""
        if not run.handler or outcome.started_at <= 0:
            return
        if run.pack_index == 0:  # later jobs of a pack also waited for the ones before them: not Ray's delay
            self.tasks.observe_start(run.pool, outcome.worker, outcome.started_at - run.free_at)
        if outcome.ok:
            self.estimates.observe_run(run.handler, outcome.finished_at - outcome.started_at, run.declared_s,
                                       run.declares)
