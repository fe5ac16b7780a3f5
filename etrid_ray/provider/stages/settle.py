"""Settle: finished jobs onto the chain, in batches, exactly once.

Settlements share extrinsics: while results arrive faster than one per `COALESCE_S`, they wait for each other
(at most that long, or until a quarter batch is ready); a result after a quiet spell goes at once. A batch whose
extrinsic may or may not have landed (the connection dropped) is kept; before it is sent again
the jobs the chain already settled are dropped from it, so nothing is reported twice. An item the chain
refuses (it timed the job out meanwhile) is settled either way and never retried.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from etrid_ray.chain.models import JobStatus
from etrid_ray.provider.job import JobBook, JobState, TrackedJob
from etrid_ray.provider.journal import Journal
from etrid_ray.provider.stats import Stats
from etrid_ray.provider.timing import COALESCE_S

log = logging.getLogger(__name__)



class Settler:
    def __init__(self, book: JobBook, chain: object, journal: Journal, stats: Stats, batch: int,
                 gpu_ids: Callable[[], Sequence[int]], clock: Callable[[], float]) -> None:
        self.book = book
        self.chain = chain
        self.journal = journal
        self.stats = stats
        self.batch = batch
        self.gpu_ids = gpu_ids
        self.clock = clock
        self._retry = False  # the last batch may have landed: check the chain before sending it again
        self.last_settle_at = float("-inf")

    def settle(self) -> int:
        now = self.clock()
        with self.book.lock:
            waiting = self.book.count(JobState.FINISHED)
            if not waiting or (waiting < max(1, self.batch // 4) and now - self.last_settle_at < COALESCE_S):
                return 0  # results are flowing: one extrinsic for the next few instead of one per result
            batch = [t for _, t in zip(range(self.batch), self.book.iter_state(JobState.FINISHED), strict=False)]
        if self._retry:
            batch = self._still_ours(batch)
            if not batch:
                self._retry = False
                return 0
        try:
            results = self.chain.settle([t.settlement for t in batch])  # type: ignore[attr-defined]
        except Exception:
            self._retry = True  # unknown whether the extrinsic landed
            raise
        self._retry = False
        now = self.last_settle_at = self.clock()
        with self.book.lock:
            for tracked, res in zip(batch, results, strict=True):
                job_id = tracked.job_id
                ended = self.stats.ended_at.get(job_id, tracked.finished_at or now)
                self.stats.result_to_chain.append(now - ended)
                self.stats.on_chain_at[job_id] = now
                if res.ok:
                    self.stats.reported += 1
                else:  # e.g. the chain timed the job out meanwhile: it is settled either way; never retry
                    self.stats.report_errors += 1
                    log.warning("settling job %d failed: %s", job_id, res.error)
                self.book.move(tracked, JobState.REPORTED, "" if res.ok else res.error, now)
        self.journal.reported([t.job_id for t in batch])
        return len(batch)

    def _still_ours(self, batch: list[TrackedJob]) -> list[TrackedJob]:
        jobs = self.chain.jobs([t.job_id for t in batch])  # type: ignore[attr-defined]
        mine = set(self.gpu_ids())
        keep, done = [], []
        for tracked in batch:
            job = jobs.get(tracked.job_id)
            if job is not None and job.status == JobStatus.PROCESSING and job.assigned_gpu in mine:
                keep.append(tracked)
            else:
                done.append(tracked)
        if done:
            self.journal.reported([t.job_id for t in done])
            self.book.move_all(done, JobState.REPORTED, "already settled on chain")
        return keep
