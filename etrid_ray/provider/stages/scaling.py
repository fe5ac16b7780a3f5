"""Pool scaling for the live head: the admitted queue placed on pools and the shared tick's targets applied.

Scaling turns on once the cluster advertises one of our pools (KubeRay worker groups, the fake multi-node
autoscaler). Each step turns the admitted jobs into the policy's `QueuedJob`s (once per job), hands the
scaler the departures seen since the last step, keeps the plan (where each job should run, in which order to
claim), and learns each pool's node startup from when a request made a node pending to when it was seen alive.

When the tick withdraws a pool's requests because its nodes never came (`scaling.capacity`), the jobs this head
had already claimed and sent to that pool's coming nodes are stranded: their Ray tasks wait for nodes that will
not join. They are taken back (task cancelled before it started, job claimed again, never failed), go into the
next snapshot's queue as ours (`QueuedJob.claimed`: never too late for a node), and are dispatched again as soon
as the pool the placement steers them to has room (`runnable`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from etrid_ray.pools import Pool
from etrid_ray.provider.cluster_view import ClusterWatch
from etrid_ray.provider.job import JobBook, JobState, TrackedJob
from etrid_ray.provider.stages.admission import terms_of
from etrid_ray.provider.timing import Estimates, GpuTimeline
from etrid_ray.scaling import Departure, QueuedJob, Reason
from etrid_ray.scaling.eligibility import eligible

log = logging.getLogger(__name__)

POOL_CHECK_S = 2.0  # how often a head without pools looks for nodes with a pool label in the cluster


class PoolScaling:
    def __init__(self, pools: Sequence[Pool], book: JobBook, cluster: ClusterWatch, estimates: Estimates,
                 make_scaler: Callable[[], Any], interval_s: float, gate: Callable[[], Any],
                 clock: Callable[[], float], monotonic: Callable[[], float],
                 cancel: Callable[[Any, int], None] | None = None) -> None:
        self.pools = list(pools)
        self.book = book
        self.cluster = cluster
        self.estimates = estimates
        self.make_scaler = make_scaler
        self.interval_s = interval_s
        self.gate = gate
        self.clock = clock
        self.monotonic = monotonic
        self.cancel = cancel  # withdraws a Ray task (RayTasks.withdraw); None: stranded tasks wait for their deadline
        self.scaler: Any = None
        self.requeued: dict[int, TrackedJob] = {}  # claimed jobs taken back from a pool whose nodes never came
        self.plan: Any = None
        self.pool_capacity: dict[str, float] = {}  # GPUs of each pool's alive nodes at the last step
        self.pool_nodes: dict[str, tuple[int, int]] = {}  # pool -> (alive, pending) at the last step
        self._node_waits: dict[str, list[float]] = {}  # pool -> when each of its pending nodes was requested
        self._alive_seen: dict[str, int] = {}
        self._queued: dict[int, QueuedJob] = {}
        self._departed: list[Departure] = []
        self._checked_at = -math.inf
        self._last_step = 0.0

    @property
    def active(self) -> bool:
        return self.scaler is not None

    def maybe_enable(self, connected: bool) -> bool:
        """Turns scaling on once the cluster advertises one of our pools; True when it just did (what admission
        offers changed: every waiting job is judged again). Looked at every few seconds, not every pass."""
        if self.scaler is not None or not connected:
            return False
        now = self.monotonic()
        if now - self._checked_at < POOL_CHECK_S:
            return False
        self._checked_at = now
        view = self.cluster.view()
        if not any(view.has_pool(p.name) for p in self.pools):
            return False
        self.scaler = self.make_scaler()
        log.info("cluster advertises pools: scaling across %s", [p.name for p in self.pools])
        return True

    def due(self, now: float) -> bool:
        return self.scaler is not None and now - self._last_step >= self.interval_s

    def queued(self, tracked: TrackedJob) -> QueuedJob | None:
        """The policy's view of an admitted job, built once per job."""
        if tracked.manifest is None:
            return None
        job = self._queued.get(tracked.job_id)
        if job is None:
            job = self._queued[tracked.job_id] = QueuedJob.from_chain(
                terms_of(tracked), tracked.manifest, waiting_since=tracked.first_seen)
        return job

    def step(self, now: float, running: Iterable[TrackedJob]) -> None:
        """Places the admitted queue on pools and applies the policy's targets."""
        self._last_step = now
        with self.book.lock:
            admitted = [t for t in self.book.iter_state(JobState.ADMITTED)
                        if t.verdict.action == "claim" and t.manifest is not None]
        queue = [q for q in (self.queued(t) for t in admitted) if q is not None]
        live = {t.job_id for t in admitted}
        for job_id in [j for j in self._queued if j not in live]:
            del self._queued[job_id]
        for tracked in self.requeued.values():  # ours already: placed like any job, never too late for a node
            if tracked.manifest is not None:
                queue.append(QueuedJob.from_chain(terms_of(tracked), tracked.manifest,
                                                  waiting_since=tracked.first_seen).claimed_again())
        departed, self._departed = tuple(self._departed), []
        step = self.scaler.step(queue, now, departed)
        self.plan = step.plan
        with self.book.lock:
            # Room per pool = GPUs of its alive nodes − GPUs of our tasks steered there (queued in Ray or
            # running): Ray's "available" lags tasks not yet scheduled, and only we use these GPUs.
            self.pool_capacity = {ps.name: ps.alive * ps.pool.gpus_per_node for ps in step.snapshot.pools}
            self._observe_nodes(step.snapshot.pools, now)
            withdrawn = {d.pool for d in step.decisions if d.reason is Reason.UNAVAILABLE}
            if withdrawn:
                self._take_back(withdrawn, list(running), now)

    def _take_back(self, pools: set[str], running: list[TrackedJob], now: float) -> None:
        """Jobs sent to a pool whose requested nodes were just withdrawn, beyond what its alive nodes can be running
        (all of them when none is alive; else the latest dispatched), are claimed again: their Ray tasks waited
        for nodes that will not come (caller holds the book's lock)."""
        if self.cancel is None:
            return
        for name in pools:
            on_pool = sorted((t for t in running if t.state is JobState.RUNNING and t.run is not None
                              and t.run.pool == name), key=lambda t: t.run.dispatched_at)  # type: ignore[union-attr]
            room = self.pool_capacity.get(name, 0.0)
            for tracked in on_pool:
                run = tracked.run
                assert run is not None
                if run.gpus <= room + 1e-9:
                    room -= run.gpus  # may be running on an alive node: left alone
                    continue
                self.cancel(run.ref, tracked.job_id)
                tracked.chain_deadline = min(run.deadline, tracked.chain_deadline or run.deadline)
                tracked.run, tracked.pool, tracked.free_at = None, None, None
                self.book.move(tracked, JobState.CLAIMED, f"taken back from {name}: its nodes never came", now)
                self.requeued[tracked.job_id] = tracked
                log.warning("job %d taken back from pool %s (its requested nodes never came): placed again",
                            tracked.job_id, name)

    def runnable(self, running: Iterable[TrackedJob]) -> list[TrackedJob]:
        """Jobs taken back that the placement now steers to a pool with room for them, each with that pool: to
        dispatch again (caller holds the book's lock)."""
        if not self.requeued or self.plan is None:
            return []
        room = self.pool_room(running)
        out: list[TrackedJob] = []
        for job_id, tracked in list(self.requeued.items()):
            if tracked.state is not JobState.CLAIMED:  # finished meanwhile (e.g. failed on its deadline)
                del self.requeued[job_id]
                continue
            try:
                pool = self.plan.pool_for(job_id)
            except KeyError:
                continue  # not placed yet: the next step places it
            gpus = tracked.manifest.resources.gpus if tracked.manifest is not None else 0.0
            if pool is not None and room.get(pool, 0.0) >= gpus - 1e-9:
                room[pool] -= gpus
                tracked.pool = pool
                del self.requeued[job_id]
                out.append(tracked)
        return out

    def expired(self, now: float) -> list[TrackedJob]:
        """Jobs taken back that no pool could run before their deadline on chain: to settle as failures, as the
        chain would time them out anyway (caller holds the book's lock)."""
        out = [t for t in self.requeued.values()
               if t.state is JobState.CLAIMED and t.chain_deadline is not None and now >= t.chain_deadline]
        for tracked in out:
            del self.requeued[tracked.job_id]
        return out

    def note_departed(self, tracked: TrackedJob) -> None:
        """A job the policy saw in its queue (admitted to claim, manifest read) left it without being ours: the
        next snapshot tells the policy how long consumers wait. None are kept while nothing scales."""
        if self.scaler is None or tracked.verdict.action != "claim":
            return
        job = self.queued(tracked)
        self._queued.pop(tracked.job_id, None)
        if job is not None:
            self._departed.append(Departure.of(job, self.clock()))

    def _observe_nodes(self, pools: Any, now: float) -> None:
        for ps in pools:
            waits = self._node_waits.setdefault(ps.name, [])
            arrived = ps.alive - self._alive_seen.get(ps.name, ps.alive)
            for _ in range(max(0, arrived)):
                if waits:
                    self.estimates.observe_node(ps.name, now - waits.pop(0), ps.pool.startup_s)
            del waits[ps.pending:]  # requests withdrawn (or nodes that came up unannounced)
            waits.extend([now] * (ps.pending - len(waits)))
            self._alive_seen[ps.name] = ps.alive
            self.pool_nodes[ps.name] = (ps.alive, ps.pending)

    # where a job may go -----------------------------------------------------------------------------------

    def pool_room(self, running: Iterable[TrackedJob]) -> dict[str, float]:
        used: dict[str, float] = {}
        for t in running:
            if t.run is not None and t.run.pool is not None:
                used[t.run.pool] = used.get(t.run.pool, 0.0) + t.run.gpus
        room = {name: cap - used.get(name, 0.0) for name, cap in self.pool_capacity.items()}
        gate = self.gate()
        return gate.pool_room(room) if gate is not None else room

    def pool_for(self, tracked: TrackedJob) -> str | None:
        """The pool the placement chose; a job it left waiting goes to the first local pool that can run it.
        None: not placed yet (at the next scaling step)."""
        chosen = None
        if self.plan is not None:
            try:
                chosen = self.plan.pool_for(tracked.job_id)
            except KeyError:
                return None
        if chosen is not None:
            return chosen
        job = self.queued(tracked)
        return next((p.name for p in self.pools if not p.is_cloud and job is not None and eligible(job, p)), None)

    def pools_to_try(self, tracked: TrackedJob) -> list[str | None]:
        """The placement's choice first, then any other pool the job is eligible for (one that can run it in time
        beats one that cannot)."""
        first = self.pool_for(tracked)
        if first is None:
            return []
        job = self.queued(tracked)
        return [first] + [p.name for p in self.pools if p.name != first and job is not None and eligible(job, p)]

    def timelines(self, now: float, running: Sequence[TrackedJob], end_of: Callable[[TrackedJob], float]
                  ) -> dict[str | None, GpuTimeline]:
        """Each pool's GPUs over the coming seconds: free now on alive nodes, freed as running jobs end, added
        as requested nodes arrive after the pool's observed startup time."""
        by_pool: dict[str | None, list[tuple[float, float]]] | None = None

        def later(name: str) -> list[tuple[float, float]]:  # every pool's, built once, when a first one is asked
            nonlocal by_pool
            if by_pool is None:
                by_pool = {}
                for t in running:
                    if t.run is not None:
                        by_pool.setdefault(t.run.pool, []).append((end_of(t), t.run.gpus))
                for pool in self.pools:
                    waits = self._node_waits.get(pool.name, [])
                    startup = self.estimates.node_startup_s(pool.name, pool.startup_s)
                    by_pool.setdefault(pool.name, []).extend((w + startup, float(pool.gpus_per_node)) for w in waits)
            return by_pool.get(name, [])

        return {name: GpuTimeline(now, room, lambda name=name: later(name))
                for name, room in self.pool_room(running).items()}

    def probe_pool(self) -> tuple[bool, str | None]:
        """Where a dispatch probe may go: (whether one may go at all, the pool). Not before a pool has a live
        node: a probe would measure node startup, which is learnt apart."""
        if self.scaler is None:
            return True, None
        pool = next((name for name, cap in self.pool_capacity.items() if cap > 0), None)
        return pool is not None, pool

    def release(self) -> None:
        if self.scaler is not None:
            try:
                self.scaler.release()
            except Exception:  # the cluster may already be gone
                log.warning("could not release requested capacity")
