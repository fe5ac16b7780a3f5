"""Intake: the chain's queue into the job book.

The watcher's thread hands over `QueueUpdate`s; the intake loop takes them all at once. New pending jobs
enter the book `queued`; jobs that left the chain's queue while we were only watching them end `departed`
(another provider took them, their consumer cancelled, they expired) and are reported to whoever learns from
departures (the scaling stage: how long consumers wait before someone else serves them); payments to us are
counted. Pending ids the book has never seen (a claim lost in a node restart) are read from the chain.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

from etrid_ray.chain import QueueUpdate
from etrid_ray.chain.models import JobStatus
from etrid_ray.provider.job import WAITING, JobBook, JobState, TrackedJob
from etrid_ray.provider.stats import Stats


class Intake:
    def __init__(self, book: JobBook, chain: Any, stats: Stats,
                 on_departed: Callable[[TrackedJob], None] = lambda _t: None,
                 on_block: Callable[[int], None] = lambda _n: None,
                 on_paid: Callable[[int, int, int | None], None] = lambda _j, _a, _b: None) -> None:
        self.book = book
        self.chain = chain
        self.stats = stats
        self.on_departed = on_departed
        self.on_block = on_block  # each new best block seen (how often the chain makes them: timing.BlockPace)
        self.on_paid = on_paid  # each PaymentReleased to us: (job, amount, block), outside the book's lock
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
        while True:
            try:
                update = self.updates.get_nowait()
            except queue.Empty:
                break
            latest = update
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
        for job_id, amount, block in paid:
            self.on_paid(job_id, amount, block)
        if latest is None:
            return added
        self.best_block = latest.block_number
        self.on_block(latest.block_number)
        self.pending_ids = latest.pending_ids
        pending = set(latest.pending_ids)
        # set arithmetic against the last queue seen, not a walk over every waiting job: the queue can hold 10,000
        # jobs and changes by a few per block
        left, self._last_pending = self._last_pending - pending, pending
        with book.lock:
            gone = [t for t in (book.get(j) for j in left) if t is not None and t.state in WAITING]
            for tracked in gone:  # taken by someone else, cancelled or expired
                book.move(tracked, JobState.DEPARTED, "left the chain's queue")
        for tracked in gone:
            self.on_departed(tracked)
        with book.lock:
            unknown = sorted(pending - book.ids())
        if unknown:
            jobs = self.chain.jobs(unknown)
            with book.lock:
                for job_id, job in jobs.items():
                    if job.status == JobStatus.PENDING and job_id not in book:
                        book.add(job, JobState.QUEUED, note="pending on chain, unseen before")
                        added += 1
        return added
