"""Intake: the chain's queue into the job book.

The watcher's thread hands over `QueueUpdate`s; the intake loop takes them all at once. New pending jobs
enter the book `queued`; jobs that left the chain's queue while we were only watching them end `departed`
(another provider took them, their consumer cancelled, they expired) and are reported to whoever learns from
departures (the scaling stage: how long consumers wait before someone else serves them); payments to us are
counted. Pending ids the book has never seen (a claim lost in a node restart) are read from the chain.

Jobs also reach us without a claim: root `assign_job` (upstream's only way — its runtime has no `claim_job` — and
the devnet's `--assigner`) puts a job on one of our GPUs and emits `JobAssigned`. Such a job is ours to run or to
fail: it does not depart when it leaves the queue, it enters the book if it never was there (assigned in the block
it was submitted), and `assigned` tells the claim stage which GPU the chain gave it (claim.py takes it from there).
Our own `claim_job` emits `JobAssigned` too; a job the book already holds as claimed is left alone.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Sequence
from typing import Any

from etrid_ray.chain import QueueUpdate
from etrid_ray.chain.models import JobStatus
from etrid_ray.provider.job import WAITING, JobBook, JobState, TrackedJob
from etrid_ray.provider.stats import Stats


class Intake:
    def __init__(self, book: JobBook, chain: Any, stats: Stats,
                 on_departed: Callable[[TrackedJob], None] = lambda _t: None,
                 gpu_ids: Callable[[], Sequence[int]] = tuple, on_block: Callable[[int], None] = lambda _n: None,
                 on_paid: Callable[[list[tuple[int, int, int | None]]], None] = lambda _p: None) -> None:
        self.book = book
        self.chain = chain
        self.stats = stats
        self.on_departed = on_departed
        self.on_block = on_block  # each new best block seen (how often the chain makes them: timing.BlockPace)
        self.on_paid = on_paid  # the PaymentReleased to us of a pass: [(job, amount, block)], outside the book's lock
        self.gpu_ids = gpu_ids
        self.assigned: dict[int, int] = {}  # job id → our GPU the chain assigned it to, until the claim stage takes it
        self.updates: queue.Queue[QueueUpdate] = queue.Queue()
        self.best_block = 0
        self.pending_ids: list[int] = []
        self._last_pending: set[int] = set()

    def offer(self, update: QueueUpdate) -> None:
        """The watcher's callback (its own thread): queued for the intake loop."""
        self.updates.put(update)

    def take(self) -> int:
        """Takes every update waiting; returns how many jobs entered the book."""
        latest: QueueUpdate | None = None
        added = 0
        book = self.book
        me = self.chain.address
        paid: list[tuple[int, int, int | None]] = []
        ours = set(self.gpu_ids())
        fresh: dict[int, int] = {}  # assigned to us in these updates
        left: set[int] | None = set()  # ids that left the queue in these updates (None: some update cannot say)
        entered: set[int] = set()
        while True:
            try:
                update = self.updates.get_nowait()
            except queue.Empty:
                break
            latest = update
            if left is not None and update.left is not None:
                left.update(update.left)
                entered.update(update.new_jobs)
            else:
                left = None
            with book.lock:
                for job_id, job in update.new_jobs.items():
                    if job.status == JobStatus.PENDING and job_id not in book:
                        book.add(job, JobState.QUEUED)
                        self._last_pending.add(job_id)  # pending when seen, even if gone by the latest update
                        added += 1
                for event in update.events:
                    if event.is_("JobMarketplace", "PaymentReleased") and event.get("provider") == me:
                        self.stats.earnings_planck += int(event.get("amount"))
                        self.stats.payments += 1
                        paid.append((int(event.get("job_id")), int(event.get("amount")), event.block_number))
                    elif event.is_("JobMarketplace", "JobAssigned") and int(event.get("gpu_id")) in ours:
                        fresh[int(event.get("job_id"))] = int(event.get("gpu_id"))
        if paid:
            self.on_paid(paid)
        if latest is None:
            return added
        added += self._take_assigned(fresh)
        self.best_block = latest.block_number
        self.on_block(latest.block_number)
        self.pending_ids = latest.pending_ids
        incremental = left is not None
        unknown: list[int] = []
        if left is not None:  # the watcher said what left: work from the change, not the whole queue
            self._last_pending.difference_update(left)
            self._last_pending.update(entered)
        else:  # after a full read: set arithmetic against the last queue seen (in C, not a walk over the jobs)
            pending = set(latest.pending_ids)
            left, self._last_pending = self._last_pending - pending, pending
        with book.lock:
            gone = [t for t in (book.get(j) for j in left - self.assigned.keys())
                    if t is not None and t.state in WAITING]
            for tracked in gone:  # taken by someone else, cancelled or expired
                book.move(tracked, JobState.DEPARTED, "left the chain's queue")
            if not incremental:  # pending ids the book never saw (a claim lost in a node restart)
                unknown = sorted(self._last_pending - book.ids())
        for tracked in gone:
            self.on_departed(tracked)
        if unknown:
            jobs = self.chain.jobs(unknown)
            with book.lock:
                for job_id, job in jobs.items():
                    if job.status == JobStatus.PENDING and job_id not in book:
                        book.add(job, JobState.QUEUED, note="pending on chain, unseen before")
                        added += 1
        return added

    def _take_assigned(self, fresh: dict[int, int]) -> int:
        """Notes the jobs the chain assigned to our GPUs for the claim stage; reads those the book never saw.
        Returns how many entered the book."""
        if not fresh:
            return 0
        book = self.book
        with book.lock:
            for job_id, gpu_id in fresh.items():
                tracked = book.get(job_id)
                if tracked is None or tracked.state in WAITING:
                    self.assigned[job_id] = gpu_id
            unseen = sorted(j for j in fresh if j in self.assigned and j not in book)
        jobs = self.chain.jobs(unseen) if unseen else {}
        added = 0
        with book.lock:
            for job_id in unseen:
                job = jobs.get(job_id)
                if job is None or job.status != JobStatus.PROCESSING or job.assigned_gpu != fresh[job_id]:
                    self.assigned.pop(job_id, None)  # finished (or moved) before we looked: nothing to run
                elif job_id not in book:
                    book.add(job, JobState.QUEUED, note=f"assigned to our gpu {fresh[job_id]}")
                    added += 1
        return added
