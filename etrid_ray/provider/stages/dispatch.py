"""Dispatch: claimed jobs become Ray tasks — short jobs of one shape several to a task (provider/packing.py).

A job claimed only to be failed (a bad manifest: `reject`) is finished with its reason at once. A job Ray
would refuse (a resource shape it cannot take), or that a TEE gate no longer has an attested node for, fails
alone with a reason that names why — never the rest of its claim batch, which would otherwise sit claimed
and unrun until the chain timed them all out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from etrid_ray.manifest import Manifest, chain_reason
from etrid_ray.provider.job import JobBook, JobState, RunInfo, Settlement, TrackedJob, tasks_by_pool
from etrid_ray.provider.journal import Journal
from etrid_ray.provider.manifests import ManifestSource
from etrid_ray.provider.packing import MAX_PACK, Candidate, packs
from etrid_ray.provider.ray_tasks import RayTasks
from etrid_ray.provider.stats import Stats
from etrid_ray.provider.task import dispatch_failure, dispatch_options
from etrid_ray.provider.timing import Estimates, job_timing
from etrid_ray.security import audit

log = logging.getLogger(__name__)
GATE_LAPSED = "TEE attestation lapsed before the job could start"


@dataclass
class _Start:
    """A job ready to become a task: what its task needs and what the claim planned."""

    tracked: TrackedJob
    manifest: Manifest
    options: dict[str, Any] | None  # a TEE gate's own task options (never shared); None: the cached shape
    timing: tuple[str, float, bool, float]  # job_timing: handler, declared run, declares, limit


class Dispatcher:
    def __init__(self, book: JobBook, tasks: RayTasks, manifests: ManifestSource, journal: Journal, stats: Stats,
                 store_url: str, max_input_bytes: int, clock: Callable[[], float], gate: Callable[[], Any],
                 estimates: Estimates | None = None, max_pack: int = MAX_PACK) -> None:
        self.book = book
        self.tasks = tasks
        self.manifests = manifests
        self.journal = journal
        self.stats = stats
        self.store_url = store_url
        self.max_input_bytes = max_input_bytes
        self.clock = clock
        self.gate = gate  # the TEE gate once built (None without confidential pools)
        self.estimates = estimates or Estimates()  # what runs how long here: which jobs may share a task
        self.max_pack = max_pack

    def dispatch(self, claimed: Sequence[TrackedJob]) -> None:
        """Each claimed job runs, or is finished as a failure with its reason (caller holds the book's lock)."""
        starts: list[_Start] = []
        for tracked in claimed:
            if tracked.verdict.action == "reject" or tracked.manifest is None:
                self.fail(tracked, tracked.verdict.reason)
                continue
            try:
                start = self._prepare(tracked, tracked.manifest)
            except Exception as err:  # anything that went wrong before the task existed
                self._refused(tracked, tracked.manifest, err)
                continue
            if start is not None:
                starts.append(start)
        if not starts:
            return
        candidates = [Candidate(s.manifest.resources.gpus, s.tracked.pool, self._run_s(s), self._may_share(s))
                      for s in starts]
        groups = packs(candidates, self.estimates.observed_dispatch_s(), self._spare_workers(), self.max_pack) \
            if len(starts) > 1 and self.max_pack > 1 else [[i] for i in range(len(starts))]
        for group in groups:
            members = [starts[i] for i in group]
            try:
                ref = self._submit(members)
            except Exception as err:  # Ray refused the task
                for s in members:
                    self._refused(s.tracked, s.manifest, err)
                continue
            self._running(members, ref)

    def _refused(self, tracked: TrackedJob, manifest: Manifest, err: BaseException) -> None:
        options = self.tasks.options(manifest.resources.gpus, tracked.pool)
        self.fail(tracked, dispatch_failure(options, err))
        log.warning("job %d could not be dispatched: %s", tracked.job_id, err)

    def fail(self, tracked: TrackedJob, reason: str) -> None:
        """A claimed job that will not run: settled on chain as a failure with `reason`."""
        settlement = Settlement.failure(tracked.job_id, reason)
        self.book.finish(tracked, settlement)
        self.journal.finished([settlement])
        audit.record("failure", job=tracked.job_id, reason=reason)
        self.stats.count_failure(reason)

    def _prepare(self, tracked: TrackedJob, manifest: Manifest) -> _Start | None:
        """What the job's task needs, or None when the job was failed instead (a shape Ray refuses, a lapsed gate)."""
        job, pool = tracked.job, tracked.pool
        problem = self.tasks.problem(manifest.resources.gpus, pool)
        if problem is not None:  # what Ray would refuse: this job fails alone, naming the field
            self.fail(tracked, chain_reason(f"cannot dispatch {problem}"))
            return None
        if audit.default_log() is not None:
            audit.record_many([
                ("placement", {"job": job.job_id, "pool": pool, "decision": "dispatched",
                               "template": manifest.compliance.template}),
                ("data_access", {"job": job.job_id, "blobs": [job.input_hash, *(r.hash for r in manifest.inputs)]})])
        options = None
        gate, tee = self.gate(), manifest.resources.tee
        if gate is not None and tee is not None:
            # the job's own shape and pool selector: the gate adds the attested nodes' pin and TEE resource
            base = dispatch_options(manifest.resources.gpus, self.tasks.task_cpus, pool)
            options = gate.task_options(tee, pool, base)  # never cached: attested nodes change
            if options is None:
                self.fail(tracked, GATE_LAPSED)
                return None
        return _Start(tracked, manifest, options, job_timing(job, manifest))

    def _spare_workers(self) -> dict[str | None, int]:
        """Per pool, the warm Ray workers not running one of our tasks now."""
        return self.tasks.warm_slots(tasks_by_pool(self.book.iter_state(JobState.RUNNING)))

    def _run_s(self, s: _Start) -> float:
        handler, declared, declares, limit = s.timing
        return self.estimates.run_s(handler, declared, limit, declares)

    @staticmethod
    def _may_share(s: _Start) -> bool:
        """Reruns (after a crash, a preemption, a pack-mate's timeout) and resumed or confidential jobs run alone."""
        t = s.tracked
        return s.options is None and t.checkpoint is None and not (t.retries or t.preemptions or t.runs_alone)

    def _submit(self, members: list[_Start]) -> Any:
        first = members[0]
        gpus, pool = first.manifest.resources.gpus, first.tracked.pool
        if len(members) == 1:
            t = first.tracked
            return self.tasks.submit(t.job_id, self.manifests.text(t.job.input_hash, first.manifest), self.store_url,
                                     self.max_input_bytes, gpus, pool, first.options, t.checkpoint)
        jobs = [(s.tracked.job_id, self.manifests.text(s.tracked.job.input_hash, s.manifest)) for s in members]
        return self.tasks.submit_pack(jobs, self.store_url, self.max_input_bytes, gpus, pool)

    def _running(self, members: list[_Start], ref: Any) -> None:
        now = self.clock()
        self.stats.tasks += 1
        if len(members) > 1:
            self.stats.shared += len(members)
        for index, s in enumerate(members):
            tracked = s.tracked
            handler, declared, declares, limit = s.timing
            deadline = now + limit
            if tracked.chain_deadline is not None:  # a rerun (after a restart, a preemption, a crash): the first one
                deadline = min(deadline, tracked.chain_deadline)
            tracked.run = RunInfo(ref, deadline, now, s.manifest.resources.gpus, tracked.pool, handler, declared,
                                  declares, max(now, tracked.free_at or now), tracked.cold, pack_size=len(members),
                                  pack_index=index)
            self.book.move(tracked, JobState.RUNNING, tracked.pool or "", now)
            if not tracked.preemptions and not tracked.retries:  # a job's wait is counted once, at its first run
                self.stats.waits.append(max(0.0, now - tracked.job.submitted_at))
