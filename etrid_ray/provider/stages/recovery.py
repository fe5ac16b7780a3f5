"""Recovery: a restarted head rebuilds what it had in flight from the chain, trusting the journal only where
the chain agrees.

A Processing job on our GPUs is reported from the journal only when the journal belongs to this chain and
account (`Journal.bind`), its row says this head finished the job on the GPU the chain assigned it to, and —
for a result — the result blob is in the store and hashes to what would be reported. Anything else runs again
when the chain's deadline leaves time, or is failed with a reason. A journal row never makes a job ours: only
the chain's `GpuJobs` does. Nothing is reported for a job that did not run here, nothing is lost, nothing is
reported twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

from etrid_ray.admission import CLAIM
from etrid_ray.blobs import BlobIntegrityError, BlobNotFound
from etrid_ray.chain.models import Job, JobStatus
from etrid_ray.manifest import Manifest
from etrid_ray.provider.job import JobBook, JobState, Settlement, TrackedJob
from etrid_ray.provider.journal import Journal, JournalBinding, JournalEntry
from etrid_ray.provider.manifests import ManifestSource
from etrid_ray.provider.stages.dispatch import Dispatcher

log = logging.getLogger(__name__)

RERUN_MIN_S = 2.0  # a recovered job with less time than this before the chain's deadline is failed, not rerun
RERUN_MARGIN_S = 1.0  # a rerun is timed out this long before the chain's deadline, so our report lands first
RERUN_LATE_REASON = "result lost in a provider restart; too close to the deadline to run again"


def result_blob_problem(store: Any, result_hash: str) -> str | None:
    """None when the result blob is in the store and its bytes hash to `result_hash`; else why not."""
    if not result_hash:
        return "no result hash journalled"
    store = getattr(store, "inner", store)  # the sealed bytes are what the hash names
    try:
        store.get(result_hash)  # verifies the bytes against the hash
    except BlobNotFound:
        return "result blob not in the store"
    except BlobIntegrityError:
        return "result blob does not match its hash"
    except Exception as err:  # unreachable store, malformed hash: unverified is not reported
        return f"result blob not verifiable ({type(err).__name__})"
    return None


class Recovery:
    def __init__(self, book: JobBook, chain: Any, journal: Journal, store: Any, manifests: ManifestSource,
                 dispatcher: Dispatcher, gpu_ids: Callable[[], Sequence[int]], pool: Executor,
                 clock: Callable[[], float]) -> None:
        self.book = book
        self.chain = chain
        self.journal = journal
        self.store = store
        self.manifests = manifests
        self.dispatcher = dispatcher
        self.gpu_ids = gpu_ids
        self.pool = pool
        self.clock = clock

    def recover(self) -> None:
        self._bind_journal()
        on_chain = self.chain.gpu_jobs(list(self.gpu_ids()))
        ours = {j: g for g, jobs in on_chain.items() for j in jobs}
        jobs = self.chain.jobs(list(ours))
        settle: list[tuple[Job, int, Settlement]] = []
        results: list[tuple[Job, int, JournalEntry]] = []
        redo: list[tuple[Job, int, JournalEntry | None]] = []
        for job_id, gpu_id in ours.items():
            job = jobs.get(job_id)
            if job is None or job.status != JobStatus.PROCESSING or job.assigned_gpu != gpu_id:
                continue
            entry = self.journal.get(job_id)
            if (entry is None or entry.state not in (JobState.FINISHED, JobState.REPORTED) or entry.ok is None
                    or entry.gpu_id not in (None, gpu_id)):
                redo.append((job, gpu_id, entry))
            elif entry.ok:
                results.append((job, gpu_id, entry))
            else:
                settle.append((job, gpu_id, Settlement.failure(job_id, entry.reason or "failed")))
        hashes = list({entry.result_hash or "" for _, _, entry in results})
        problems = dict(zip(hashes, self.pool.map(lambda h: result_blob_problem(self.store, h), hashes),
                            strict=True))
        for job, gpu_id, entry in results:
            problem = problems[entry.result_hash or ""]
            if problem is None:
                settle.append((job, gpu_id, Settlement(job.job_id, True, entry.result_hash, "")))
            else:
                log.warning("job %d: journalled result %s is not reported (%s); running the job again",
                            job.job_id, entry.result_hash, problem)
                redo.append((job, gpu_id, entry))
        for entry in self.journal.in_state(JobState.FINISHED) + self.journal.in_state(JobState.CLAIMED):
            if entry.job_id not in ours:
                self.journal.reported([entry.job_id])  # settled before the crash (or timed out on chain)
        rerun, late = self._rerun_or_fail(redo)
        resume = {job.job_id: entry.checkpoint for job, _, entry in redo
                  if entry is not None and entry.state == JobState.CLAIMED and entry.checkpoint}
        settle.extend(late)
        if rerun:  # a fresh run of a job the chain shows as ours: its old row (e.g. an unverified result) goes
            self.journal.claimed([(job.job_id, gpu_id) for job, gpu_id, _ in rerun])
        manifests = self.manifests.many(job.input_hash for job, _, _ in rerun)
        failures = [s for _, _, s in settle if not s.ok]
        with self.book.lock:
            claimed: list[TrackedJob] = []
            for job, gpu_id, deadline in rerun:
                manifest = manifests.get(job.input_hash)
                if isinstance(manifest, Manifest):
                    tracked = self.book.recovered(job, gpu_id, JobState.CLAIMED)
                    tracked.manifest = manifest
                    tracked.verdict = CLAIM
                    tracked.checkpoint = resume.get(job.job_id)  # preempted before the restart: resumes
                    if deadline is not None:
                        tracked.chain_deadline = deadline - RERUN_MARGIN_S  # fail it before the chain does
                    claimed.append(tracked)
                else:
                    reason = str(manifest) if manifest is not None else "manifest unavailable"
                    settlement = Settlement.failure(job.job_id, reason)
                    settle.append((job, gpu_id, settlement))
                    failures.append(settlement)
            if failures:
                self.journal.finished(failures)
            now = self.clock()
            for job, gpu_id, settlement in settle:
                tracked = self.book.recovered(job, gpu_id, JobState.FINISHED)
                tracked.settlement, tracked.finished_at = settlement, now
            self.dispatcher.dispatch(claimed)
        if ours:
            log.info("recovered %d in-flight jobs (%d re-dispatched, %d to report: %d results verified in the "
                     "blob store, %d failures)", len(ours), len(claimed), len(settle),
                     sum(1 for *_, s in settle if s.ok), len(failures))

    def _bind_journal(self) -> None:
        """Binds the journal to this chain and account before recovery reads it. A journal of another chain (an
        earlier devnet whose job ids this one reuses) or another account is never used: it is renamed aside and
        a fresh one takes its place (see `journal.Journal.bind` for why)."""
        genesis, block1 = self.chain.identity()
        outcome = self.journal.bind(JournalBinding(genesis, block1, self.chain.address))
        if not outcome.used:
            where = f"moved to {outcome.set_aside}" if outcome.set_aside else "cleared"
            log.warning("journal %s not used for recovery: %s; %s, starting a fresh journal",
                        self.journal.path or ":memory:", outcome.reason, where)

    def _rerun_or_fail(self, redo: list[tuple[Job, int, JournalEntry | None]]
                       ) -> tuple[list[tuple[Job, int, float | None]], list[tuple[Job, int, Settlement]]]:
        """Splits jobs to run again into those the chain's deadline still leaves time for (with that deadline,
        None when unknown) and failures: a job whose deadline is (nearly) past cannot finish in time, and failing
        it now tells its consumer at once instead of at the chain's timeout."""
        deadlines = {j: float(d) for j, d in self.chain.job_deadlines([job.job_id for job, _, _ in redo]).items()}
        now = self.clock()
        rerun: list[tuple[Job, int, float | None]] = []
        late: list[tuple[Job, int, Settlement]] = []
        for job, gpu_id, entry in redo:
            deadline = deadlines.get(job.job_id)
            if deadline is None and entry is not None and entry.state == JobState.CLAIMED and entry.updated:
                deadline = entry.updated + job.max_compute_time  # no JobDeadlines: from the journalled claim
            if deadline is not None and deadline - now < RERUN_MIN_S:
                late.append((job, gpu_id, Settlement.failure(job.job_id, RERUN_LATE_REASON)))
            else:
                rerun.append((job, gpu_id, deadline))
        return rerun, late
