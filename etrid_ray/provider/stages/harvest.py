"""Harvest: finished Ray tasks, and tasks past their deadline, become settlements.

Ray's futures push each finished task onto the task port's queue (no scan over every running task); a scan
four times a second cancels what ran past its deadline. Each outcome is journalled before anything else, so a
crash after this point reports the result instead of running the job again, and what the claim planned is
compared with what happened (dispatch delay, run time against the declared one) so later claims plan better.
"""

from __future__ import annotations

import queue
from collections.abc import Callable

from etrid_ray.provider.job import JobBook, JobState, RunInfo, Settlement, TrackedJob
from etrid_ray.provider.journal import Journal
from etrid_ray.provider.ray_tasks import RayTasks
from etrid_ray.provider.stats import Stats
from etrid_ray.provider.task import Outcome
from etrid_ray.provider.timing import Estimates
from etrid_ray.security import audit

DEADLINE_SCAN_S = 0.25


def timeout_reason(run: RunInfo) -> str:
    return f"timeout after {run.deadline - run.dispatched_at:.0f}s"


class Harvester:
    def __init__(self, book: JobBook, tasks: RayTasks, journal: Journal, stats: Stats, estimates: Estimates,
                 batch: int, clock: Callable[[], float]) -> None:
        self.book = book
        self.tasks = tasks
        self.journal = journal
        self.stats = stats
        self.estimates = estimates
        self.batch = batch
        self.clock = clock
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
        finished: list[tuple[TrackedJob, Settlement]] = []
        with self.book.lock:
            for job_id, future in batch:
                tracked = self.book.get(job_id)
                if tracked is None or tracked.state is not JobState.RUNNING or tracked.run is None \
                        or tracked.run.ref is None:
                    continue  # already settled as timed out, or drained
                finished.append((tracked, self._settlement(tracked, tracked.run, future)))
                tracked.run.ref = None  # collected: the deadline scan must not take it again
            if now - self._last_scan >= DEADLINE_SCAN_S:
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

    def _settlement(self, tracked: TrackedJob, run: RunInfo, future: object) -> Settlement:
        outcome = self.tasks.outcome(future)
        if isinstance(outcome, str):
            reason = timeout_reason(run) if outcome == "cancelled" else outcome
            return Settlement.failure(tracked.job_id, reason)
        run.started_at, run.ended_at = outcome.started_at, outcome.finished_at
        self.stats.queue_to_start.append(max(0.0, outcome.started_at - tracked.job.submitted_at))
        self.stats.started_at[tracked.job_id] = outcome.started_at
        self.stats.ended_at[tracked.job_id] = outcome.finished_at
        self.stats.gpu_seconds += (outcome.finished_at - outcome.started_at) * run.gpus
        self.stats.pool_of[tracked.job_id] = run.pool
        self._learn(run, outcome)
        if self.on_outcome is not None:
            self.on_outcome(tracked, outcome)
        return Settlement(tracked.job_id, outcome.ok, outcome.result_hash, outcome.reason)

    def _learn(self, run: RunInfo, outcome: Outcome) -> None:
        """What the claim planned against what happened: how late Ray started the task after its GPUs were
        expected free, and how long the handler ran against what the job declared (successes only: a handler
        that fails at once says nothing about how long the work takes)."""
        if not run.handler or outcome.started_at <= 0:
            return
        self.tasks.observe_start(run.pool, outcome.worker, outcome.started_at - run.free_at)
        if outcome.ok:
            self.estimates.observe_run(run.handler, outcome.finished_at - outcome.started_at, run.declared_s,
                                       run.declares)
