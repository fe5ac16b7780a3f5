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

Jobs the chain assigned to our GPUs (root `assign_job`; intake.py notes them in `assigned`) are taken first, on the
GPU the chain chose, with no extrinsic and no timing gate: the chain's clock already runs and the job is ours to run
or to fail. One that admission would skip (a handler we do not serve, a price below our floor) is taken to be failed
at once, which refunds its consumer instead of leaving it to time out. On a runtime without `claim_job` (upstream's)
these are the only jobs taken; the rest wait on chain for an assignment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Literal

from etrid_ray.admission import reject
from etrid_ray.chain.models import GPU_JOBS_BOUND
from etrid_ray.provider.claim_order import ClaimOrder
from etrid_ray.provider.job import JobBook, JobState, TrackedJob, tasks_by_pool
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
                 pace: BlockPace | None = None, assigned: dict[int, int] | None = None) -> None:
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
        self.assigned = assigned if assigned is not None else {}  # job id → our GPU, from intake (JobAssigned)
        self._taken: set[int] = set()  # picked from `assigned`: won without a claim extrinsic
        self._late: set[int] = set()  # jobs counted once as impossible to finish in time here
        self._too_big: set[int] = set()  # jobs counted once as needing more GPUs than the Ray cluster has
        self.last_claim_at = float("-inf")
        self.claim_again_at = float("-inf")  # when a claim held back to coalesce may go (the loop wakes for it)
        self.order: ClaimOrder[TrackedJob] = ClaimOrder(self._fixed, lambda t: t.state is JobState.ADMITTED)
        self._order_stale = True  # arrivals were dropped (no claiming meanwhile): rebuild from the book
        self._window = 1.0
        book.follow(JobState.ADMITTED)

    # choosing ------------------------------------------------------------------------------------------------

    def choose(self) -> list[TrackedJob]:
        """Moves the jobs to claim now to `claiming`, each with its GPU and planned pool (jobs the chain assigned
        us first)."""
        taken = self._take_assigned()
        if not self._can_claim():
            with self.book.lock:
                self.book.arrivals(JobState.ADMITTED)  # nothing to order them for
            self._order_stale = True
            return taken
        return taken + self._choose()

    def _can_claim(self) -> bool:
        supports = getattr(self.chain, "supports_claim", None)
        return supports() if supports is not None else True

    def _take_assigned(self) -> list[TrackedJob]:
        """The assigned jobs admission has judged, moved to `claiming` on the GPU the chain chose."""
        if not self.assigned:
            return []
        now = self.clock()
        out: list[TrackedJob] = []
        with self.book.lock:
            timelines: dict[str | None, GpuTimeline] | None = None
            for job_id, gpu in list(self.assigned.items()):
                tracked = self.book.get(job_id)
                if tracked is None or tracked.state not in (JobState.QUEUED, JobState.ADMITTED, JobState.SKIPPED):
                    del self.assigned[job_id]  # ended, or already ours by our own claim
                    continue
                if tracked.state is JobState.QUEUED:
                    continue  # admission has not judged it yet (its manifest is on its way)
                if tracked.state is JobState.SKIPPED:
                    tracked.verdict = reject("assigned_unservable",
                                             f"assigned here but not served: {tracked.verdict.reason}")
                    self.book.move(tracked, JobState.QUEUED, "assigned to us", now)
                    self.book.move(tracked, JobState.ADMITTED, tracked.verdict.reason, now)
                tracked.gpu_id = gpu
                tracked.pool, tracked.free_at = None, None
                if tracked.verdict.action != "reject" and tracked.manifest is not None:
                    if timelines is None:
                        timelines = self._timelines(now, self.book.in_state(JobState.RUNNING))
                    warm = self.tasks.warm_slots({})
                    # the pool it fits best; when none fits in time it still runs (the chain gave it to us)
                    self._place(tracked, now, timelines, warm, self.estimates.dispatch_s())
                del self.assigned[job_id]
                self._taken.add(job_id)
                self.book.move(tracked, JobState.CLAIMING, f"assigned to gpu {gpu}", now)
                out.append(tracked)
        return out

    def _choose(self) -> list[TrackedJob]:
        now = self.clock()
        with self.book.lock:
            self._sync_order()
            if not self.book.count(JobState.ADMITTED):
                return []
            load = {g: self.book.on_gpu[g] for g in self.gpu_ids()}  # our jobs the chain holds per GPU
            free = sum(max(0, self.max_per_gpu - n) for n in load.values())
            if free <= 0:
                return []  # every GPU of ours holds as many jobs as the chain takes: nothing to sort for
            if self._coalesce(now, free, len(load) * self.max_per_gpu):
                return []
            chosen = self.order.top(self.batch, self.book.count(JobState.ADMITTED))
            picked: list[TrackedJob] = []
            held = self._pick(chosen, now, load, picked)
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

    def _sync_order(self) -> None:
        """Brings the claim order up to date with the book (caller holds its lock): the jobs admitted since the last
        pass join it (provider/claim_order.py); all are sorted anew only when the placement ranks jobs differently."""
        self._window = self.pace.window_s()
        plan = self.scaling.plan
        rank = (plan.order if plan is not None else None) or None
        arrivals = self.book.arrivals(JobState.ADMITTED)
        if self._order_stale or rank is not self.order.rank:
            self.order.rerank(rank, self.book.iter_state(JobState.ADMITTED))
            self._order_stale = False
        else:
            self.order.arrive(arrivals)

    def _fixed(self, t: TrackedJob) -> tuple[int, int]:
        """A job's place apart from the plan's rank, fixed once judged: bad manifests first, then the chain's
        priority; after the rank, age in claim windows (jobs a couple of blocks apart are equally old), then this
        head's hash of the job."""
        if t.order is None:
            t.spread = spread_key(self.chain.address, t.job_id)  # type: ignore[attr-defined]
            high = (int(t.verdict.action != "reject") << 2) | PRIORITY_ORDER.get(t.job.priority, 1)
            t.order = (high, (int(t.job.submitted_at // self._window) << 64) | t.spread)
        return t.order

    def _pick(self, chosen: list[TrackedJob], now: float, load: dict[int, int], picked: list[TrackedJob]) -> bool:
        """Fills `picked`, counting each pick into `load` (our jobs the chain holds per GPU); returns whether a job
        was held back on timing (worth probing how fast Ray starts tasks now)."""
        running = self.book.in_state(JobState.RUNNING)
        timelines = self._timelines(now, running)
        dispatch_s = self.estimates.dispatch_s()
        observed = self.estimates.cold.count > 0 or not self.tasks.connected()
        warm = self.tasks.warm_slots(tasks_by_pool(running))
        held = False
        block_s = self.pace.interval.mean
        for tracked in chosen:
            if tracked.verdict.action == "claim" and not observed:
                held = True
                continue  # nothing claimed on timings never seen: the probe measures them first
            if self.deferral.blocks and tracked.spread is not None and \
                    now - tracked.first_seen < self.deferral.delay_s(tracked.spread, block_s):
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
        """Claims `picked` on chain; returns the jobs won (now `claimed`). Jobs the chain assigned us are won
        without an extrinsic. Lost races end `lost`; an extrinsic that failed as a whole puts every job it claimed
        back to `admitted` and raises (logs, when assigned jobs were won meanwhile)."""
        if not picked:
            return []
        assigned = [t for t in picked if t.job_id in self._taken]
        self._taken.difference_update(t.job_id for t in assigned)
        to_claim = [t for t in picked if t not in assigned]
        results = []
        if to_claim:
            try:
                results = self.chain.claim([(t.job_id, t.gpu_id) for t in to_claim])  # type: ignore[attr-defined]
            except Exception:
                self.book.move_all(to_claim, JobState.ADMITTED, "claim extrinsic failed")
                if not assigned:
                    raise
                # the assigned jobs are ours whatever became of the claims: they go on to run
                log.exception("claim extrinsic failed; %d assigned jobs go on", len(assigned))
        won = assigned + [t for t, r in zip(to_claim, results, strict=True) if r.ok]
        lost = [(t, r) for t, r in zip(to_claim, results, strict=True) if not r.ok]
        self._won(won, lost)
        return won

    def _won(self, won: list[TrackedJob], lost: list[tuple[TrackedJob, Any]]) -> None:
        """Records the jobs now ours (`claimed`) and the races lost (`lost`)."""
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
