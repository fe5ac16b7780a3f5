"""Dispatch: claimed jobs become Ray tasks.

A job claimed only to be failed (a bad manifest: `reject`) is finished with its reason at once. A job Ray
would refuse (a resource shape it cannot take), or that a TEE gate no longer has an attested node for, fails
alone with a reason that names why — never the rest of its claim batch, which would otherwise sit claimed
and unrun until the chain timed them all out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from etrid_ray.manifest import Manifest, chain_reason
from etrid_ray.pools import STEER
from etrid_ray.provider.job import JobBook, JobState, RunInfo, Settlement, TrackedJob
from etrid_ray.provider.journal import Journal
from etrid_ray.provider.manifests import ManifestSource
from etrid_ray.provider.ray_tasks import RayTasks
from etrid_ray.provider.stats import Stats
from etrid_ray.provider.task import dispatch_failure, dispatch_options
from etrid_ray.provider.timing import job_timing
from etrid_ray.security import audit

log = logging.getLogger(__name__)
GATE_LAPSED = "TEE attestation lapsed before the job could start"


class Dispatcher:
    def __init__(self, book: JobBook, tasks: RayTasks, manifests: ManifestSource, journal: Journal, stats: Stats,
                 store_url: str, max_input_bytes: int, clock: Callable[[], float], gate: Callable[[], Any]) -> None:
        self.book = book
        self.tasks = tasks
        self.manifests = manifests
        self.journal = journal
        self.stats = stats
        self.store_url = store_url
        self.max_input_bytes = max_input_bytes
        self.clock = clock
        self.gate = gate  # the TEE gate once built (None without confidential pools)

    def dispatch(self, claimed: Sequence[TrackedJob]) -> None:
        """Each claimed job runs, or is finished as a failure with its reason (caller holds the book's lock)."""
        for tracked in claimed:
            if tracked.verdict.action == "reject" or tracked.manifest is None:
                self.fail(tracked, tracked.verdict.reason)
                continue
            try:
                self._start(tracked, tracked.manifest)
            except Exception as err:  # Ray refused the task (or anything else went wrong before it existed)
                options = self.tasks.options(tracked.manifest.resources.gpus, tracked.pool)
                self.fail(tracked, dispatch_failure(options, err))
                log.warning("job %d could not be dispatched: %s", tracked.job_id, err)

    def fail(self, tracked: TrackedJob, reason: str) -> None:
        """A claimed job that will not run: settled on chain as a failure with `reason`."""
        settlement = Settlement.failure(tracked.job_id, reason)
        self.book.finish(tracked, settlement)
        self.journal.finished([settlement])
        audit.record("failure", job=tracked.job_id, reason=reason)
        self.stats.count_failure(reason)

    def _start(self, tracked: TrackedJob, manifest: Manifest) -> None:
        job, pool = tracked.job, tracked.pool
        problem = self.tasks.problem(manifest.resources.gpus, pool)
        if problem is not None:  # what Ray would refuse: this job fails alone, naming the field
            self.fail(tracked, chain_reason(f"cannot dispatch {problem}"))
            return
        if audit.default_log() is not None:
            audit.record_many([
                ("placement", {"job": job.job_id, "pool": pool, "decision": "dispatched",
                               "template": manifest.compliance.template}),
                ("data_access", {"job": job.job_id, "blobs": [job.input_hash, *(r.hash for r in manifest.inputs)]})])
        options = None
        gate, tee = self.gate(), manifest.resources.tee
        if gate is not None and tee is not None:
            # the job's own shape without the head's pool resource: the gate adds the attested node's
            base = dispatch_options(manifest.resources.gpus, self.tasks.task_cpus, pool, {}, STEER)
            options = gate.task_options(tee, pool, base)  # never cached: attested nodes change
            if options is None:
                self.fail(tracked, GATE_LAPSED)
                return
        ref = self.tasks.submit(job.job_id, self.manifests.text(job.input_hash, manifest), self.store_url,
                                self.max_input_bytes, manifest.resources.gpus, pool, options, tracked.checkpoint)
        now = self.clock()
        handler, declared, declares, limit = job_timing(job, manifest)
        deadline = now + limit
        if tracked.chain_deadline is not None:  # a rerun (after a restart, a preemption, a crash): the first deadline
            deadline = min(deadline, tracked.chain_deadline)
        tracked.run = RunInfo(ref, deadline, now, manifest.resources.gpus, pool, handler, declared, declares,
                              max(now, tracked.free_at or now), tracked.cold)
        self.book.move(tracked, JobState.RUNNING, pool or "", now)
        if not tracked.preemptions and not tracked.retries:  # a job's wait is counted once, at its first run
            self.stats.waits.append(max(0.0, now - job.submitted_at))
