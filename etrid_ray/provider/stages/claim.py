"""Claim: which admitted jobs to take now, and taking them on chain.

A claim starts the chain's clock, so a job is claimed only when its estimated start (when GPUs free up on
the pool the placement chose, or the next one it may use, plus Ray's dispatch delay) and its expected run
fit its limit with a margin (provider/timing.py). What cannot start in time yet stays on chain — for us
later, or for another provider; what could never finish here in time is counted once in `skipped`. Nothing
is claimed on timings never observed: until Ray has been seen starting a task, a probe measures it first.

Order: bad manifests first (failing them costs nothing and refunds their consumers), then the chain's
priority, then the placement's order (best-paying first, the order the simulator proves), then first come —
where jobs a couple of blocks apart count as equally old and are taken in this head's own order
(`timing.BlockPace`, `spread_key`), so competing providers do not all claim the same jobs in the same block.
Each claim takes one of our GPUs with room on chain (`GpuJobs` is bounded per GPU: a claim past the bound
fails there), the least loaded first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Literal

from etrid_ray.chain.models import GPU_JOBS_BOUND
from etrid_ray.provider.job import JobBook, JobState, TrackedJob
from etrid_ray.provider.journal import Journal
from etrid_ray.provider.ray_tasks import RayTasks
from etrid_ray.provider.stages.scaling import PoolScaling
from etrid_ray.provider.stats import Stats
from etrid_ray.provider.timing import (
    COALESCE_S,
    BlockPace,
    ClaimDeferral,
    Estimates,
    GpuTimeline,
    finishes_in_time,
    job_timing,
    spread_key,
)
from etrid_ray.security import audit

log = logging.getLogger(__name__)

PRIORITY_ORDER = {"Premium": 0, "Standard": 1, "Economy": 2}
SKIPS_REMEMBERED = 4096


class Claimer:
    def __init__(self, book: JobBook, chain: object, journal: Journal, stats: Stats, estimates: Estimates,
                 tasks: RayTasks, scaling: PoolScaling, gpu_ids: Callable[[], Sequence[int]],
                 capacity: Callable[[], float], max_per_gpu: int, batch: int, clock: Callable[[], float],
                 pace: BlockPace | None = None) -> None:
        self.book = book
        self.chain = chain
        self.journal = journal
        self.stats = stats
        self.estimates = estimates
        self.tasks = tasks
        self.scaling = scaling
        self.gpu_ids = gpu_ids
        self.capacity = capacity
        self.max_per_gpu = min(max_per_gpu, GPU_JOBS_BOUND)
        self.batch = batch
        self.clock = clock
        self.pace = pace or BlockPace()
        self.deferral = ClaimDeferral()
        self._late: set[int] = set()  # jobs counted once as impossible to finish in time here
        self._too_big: set[int] = set()  # jobs counted once as needing more GPUs than the Ray cluster has
        self.last_claim_at = float("-inf")
        self.claim_again_at = float("-inf")  # when a claim held back to coalesce may go (the loop wakes for it)

    # choosing ------------------------------------------------------------------------------------------------

    def choose(self) -> list[TrackedJob]:
        """Moves the jobs to claim now to `claiming`, each with its GPU and planned pool."""
        now = self.clock()
        with self.book.lock:
            if not self.book.count(JobState.ADMITTED):
                return []
            load = {g: self.book.on_gpu[g] for g in self.gpu_ids()}  # our jobs the chain holds per GPU
            free = sum(max(0, self.max_per_gpu - n) for n in load.values())
            if free <= 0:
                return []  # every GPU of ours holds as many jobs as the chain takes: nothing to sort for
            if self._coalesce(now, free, len(load) * self.max_per_gpu):
                return []
            chosen = self._ordered(list(self.book.iter_state(JobState.ADMITTED)))
            picked: list[TrackedJob] = []
            held = self._pick(chosen[: self.batch], now, load, picked)
            if picked:
                self.last_claim_at = now
            for tracked in picked:
                self.book.move(tracked, JobState.CLAIMING, tracked.pool or "", now)
        may_probe, probe_pool = self.scaling.probe_pool()
        self.tasks.maybe_probe(held, now, probe_pool, may_probe)
        return picked

    def _coalesce(self, now: float, free: int, slots: int) -> bool:
        """Whether to wait a moment before claiming: when more jobs wait than our GPUs have chain slots for, slots
        free one settlement at a time, and claiming each the moment it frees would send an extrinsic (a fee, a
        signature, a block's worth of events) per job or two. Then claims go at most every `COALESCE_S`, or at
        once when a quarter of the slots are free. With room to spare a claim goes at once (latency first)."""
        if self.book.count(JobState.ADMITTED) <= free or free >= max(1, slots // 4):
            return False
        if now - self.last_claim_at >= COALESCE_S:
            return False
        self.claim_again_at = self.last_claim_at + COALESCE_S
        return True

    def _ordered(self, admitted: list[TrackedJob]) -> list[TrackedJob]:
        """The admitted jobs in claim order. The parts of a job's key that never change are built once per job
        (the queue is re-sorted every pass, thousands of jobs deep at a burst); the placement's rank is looked up
        per pass when there is a plan."""
        window = self.pace.window_s()
        address = self.chain.address  # type: ignore[attr-defined]
        for t in admitted:
            if t.order is None:
                t.order = (t.verdict.action != "reject", PRIORITY_ORDER.get(t.job.priority, 1),
                           int(t.job.submitted_at // window), spread_key(address, t.job_id))
        plan = self.scaling.plan
        rank: dict[int, int] = plan.order if plan is not None else {}
        if not rank:
            return sorted(admitted, key=attrgetter("order"))
        last = len(rank)
        return sorted(admitted, key=lambda t: (t.order[0], t.order[1], rank.get(t.job_id, last), t.order[2],  # type: ignore[index]
                                               t.order[3]))  # type: ignore[index]

    def _pick(self, chosen: list[TrackedJob], now: float, load: dict[int, int], picked: list[TrackedJob]) -> bool:
        """Fills `picked`, counting each pick into `load` (our jobs the chain holds per GPU); returns whether a job
        was held back on timing (worth probing how fast Ray starts tasks now)."""
        running = self.book.in_state(JobState.RUNNING)
        timelines = self._timelines(now, running)
        dispatch_s = self.estimates.dispatch_s()
        observed = self.estimates.cold.count > 0 or not self.tasks.connected()
        busy: dict[str | None, int] = {}
        for t in running:
            if t.run is not None:
                busy[t.run.pool] = busy.get(t.run.pool, 0) + 1
        warm = self.tasks.warm_slots(busy)
        held = False
        block_s = self.pace.interval.mean
        for tracked in chosen:
            if tracked.verdict.action == "claim" and not observed:
                held = True
                continue  # nothing claimed on timings never seen: the probe measures them first
            if self.deferral.blocks and tracked.order is not None and \
                    now - tracked.first_seen < self.deferral.delay_s(tracked.order[-1], block_s):  # type: ignore[arg-type]
                continue  # just seen: another provider may take it in its own first block (ClaimDeferral)
            gpu = min(load, key=load.__getitem__, default=None)
            if gpu is None or load[gpu] >= self.max_per_gpu:
                break  # every GPU of ours holds as many jobs as the chain takes
            if tracked.verdict.action == "reject" or tracked.manifest is None:
                tracked.pool, tracked.free_at = None, None
            else:
                placed = self._place(tracked, now, timelines, warm, dispatch_s)
                if placed != "placed":
                    held = held or placed == "late"
                    continue
            tracked.gpu_id = gpu
            load[gpu] += 1
            picked.append(tracked)
        return held

    def _place(self, tracked: TrackedJob, now: float, timelines: dict[str | None, GpuTimeline],
               warm: dict[str | None, int], dispatch_s: float) -> Literal["placed", "late", "wait"]:
        """Books the job's GPUs on the first pool that frees them soon and can run it in time (`placed`); `late`:
        not in time even on idle GPUs now; `wait`: no GPUs soon enough yet.

        Soon: within the claim horizon (`BlockPace.window_s`, a couple of blocks) — what this head can start before
        a claim it sends later would land. A job that would only start further out stays on chain: claiming it now
        would hold it from a provider with idle GPUs (the consumer waits longer), and every head claiming all it
        could ever finish is how competing heads lose most of their claims to one another."""
        manifest = tracked.manifest
        assert manifest is not None
        gpus = manifest.resources.gpus
        handler, declared, declares, limit = job_timing(tracked.job, manifest)
        run_s = self.estimates.run_s(handler, declared, limit, declares)
        if not finishes_in_time(now, now + dispatch_s, run_s, limit):  # even on a warm worker
            if not finishes_in_time(now, now, run_s, limit):
                self._skip_late(tracked.job_id, limit, run_s)  # not even if Ray started it at once
            return "late"  # not even on idle GPUs now: left on chain (to us later, or to other providers)
        pools = self.scaling.pools_to_try(tracked) if self.scaling.active else [None]
        horizon = now + self.pace.window_s()
        for pool in pools:
            timeline = timelines.get(pool)
            free_at = timeline.earliest(gpus) if timeline is not None else None
            cold = warm.get(pool, 0) <= 0
            delay = self.estimates.cold_s() if cold else dispatch_s
            if free_at is not None and free_at <= horizon and finishes_in_time(now, free_at + delay, run_s, limit):
                timelines[pool].reserve(free_at, free_at + delay + run_s, gpus)
                warm[pool] = warm.get(pool, 0) - 1
                tracked.pool, tracked.free_at, tracked.cold = pool, free_at, cold
                return "placed"
        if not self.scaling.active and gpus > self.capacity() + 1e-9:
            self._skip_too_big(tracked.job_id, gpus)
        return "wait"  # no GPUs in time yet: the scaler asks for them; the job stays on chain meanwhile

    def _timelines(self, now: float, running: list[TrackedJob]) -> dict[str | None, GpuTimeline]:
        dispatch_s = self.estimates.dispatch_s()

        def end_of(t: TrackedJob) -> float:
            return self._expected_end(t, now, dispatch_s)

        if self.scaling.active:
            return self.scaling.timelines(now, running, end_of)
        used = sum(t.run.gpus for t in running if t.run is not None)
        return {None: GpuTimeline(now, self.capacity() - used, lambda: [(end_of(t), t.run.gpus) for t in running
                                                                         if t.run is not None])}

    def _expected_end(self, tracked: TrackedJob, now: float, dispatch_s: float) -> float:
        """When a running job should free its GPUs: its planned start plus its expected run, never before now
        and never after its deadline (the head cancels it there). Before the head has seen Ray start a single
        task it assumes the deadline: it does not bet on timings it has not observed."""
        run = tracked.run
        assert run is not None
        if self.estimates.cold.count == 0 or not run.handler:
            return max(now, run.deadline)
        limit = run.deadline - run.dispatched_at
        delay = self.estimates.cold_s() if run.cold else dispatch_s
        expected = run.free_at + delay + self.estimates.run_s(run.handler, run.declared_s, limit, run.declares)
        return min(run.deadline, max(now, expected))

    def _skip_once(self, seen: set[int], job_id: int, kind: str) -> bool:
        """Counts `kind` (one of admission's SKIP_KINDS) in `stats.skipped` once per job (an unclaimed job is
        looked at again every pass); the caller logs the particulars."""
        if job_id in seen:
            return False
        seen.add(job_id)
        self.stats.skipped[kind] += 1
        if len(seen) > SKIPS_REMEMBERED:
            seen.clear()
        return True

    def _skip_late(self, job_id: int, limit: float, needs: float) -> None:
        if self._skip_once(self._late, job_id, "cannot_finish_in_time"):
            log.info("job %d left unclaimed: needs about %.1fs here, its limit is %.0fs", job_id, needs, limit)

    def _skip_too_big(self, job_id: int, gpus: float) -> None:
        # more than the whole cluster offers: never claimed here, left to other providers
        if self._skip_once(self._too_big, job_id, "more_gpus_than_cluster"):
            log.info("job %d left unclaimed: needs %g GPUs, Ray has %g", job_id, gpus, self.capacity())

    # claiming ------------------------------------------------------------------------------------------------

    def claim(self, picked: list[TrackedJob]) -> list[TrackedJob]:
        """Claims `picked` on chain; returns the jobs won (now `claimed`). Lost races end `lost`; an extrinsic
        that failed as a whole puts every job back to `admitted` and raises."""
        if not picked:
            return []
        try:
            results = self.chain.claim([(t.job_id, t.gpu_id) for t in picked])  # type: ignore[attr-defined]
        except Exception:
            self.book.move_all(picked, JobState.ADMITTED, "claim extrinsic failed")
            raise
        won = [t for t, r in zip(picked, results, strict=True) if r.ok]
        lost = [(t, r) for t, r in zip(picked, results, strict=True) if not r.ok]
        self.journal.claimed([(t.job_id, t.gpu_id) for t in won])
        audit.record_many([("claim", {"job": t.job_id, "gpu": t.gpu_id, "pool": t.pool}) for t in won])
        with self.book.lock:
            now = self.clock()
            for tracked in won:
                self.book.move(tracked, JobState.CLAIMED, f"gpu {tracked.gpu_id}", now)
            for tracked, result in lost:
                self.book.move(tracked, JobState.LOST, result.error, now)  # another provider won the race
                self.scaling.note_departed(tracked)
            self.stats.claimed += len(won)
            self.stats.lost_claims += len(lost)
            self.deferral.observe(len(won), len(lost))
        return won
