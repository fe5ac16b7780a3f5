"""Admission: each queued job's manifest read and judged — claim, reject (claimed only to fail it with the
reason) or skip (left to other providers) — by the pure `etrid_ray.admission.admit` against what this head
offers: its own GPUs, or, once the cluster advertises pools, any pool that could run the job (a TEE gate, when
confidential pools exist, narrows both to freshly attested nodes)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from etrid_ray.admission import UNEVALUATED, Capabilities, JobTerms, Verdict, admit
from etrid_ray.manifest import Manifest, ManifestError
from etrid_ray.provider.job import JobBook, JobState, TrackedJob
from etrid_ray.provider.manifests import ManifestSource
from etrid_ray.provider.stats import Stats
from etrid_ray.security import audit

MANIFEST_RETRY_S = 5.0


def terms_of(tracked: TrackedJob) -> JobTerms:
    job = tracked.job
    return JobTerms(job.job_id, job.model_type, job.max_compute_time, job.payment)


def judge(terms: JobTerms, manifest: Manifest | ManifestError, offers: Sequence[Capabilities]) -> Verdict:
    """Claimable when any of `offers` could run it; otherwise the first offer's reason."""
    verdicts = [admit(terms, manifest, caps) for caps in offers]
    return next((v for v in verdicts if v.action != "skip"), verdicts[0])


class Admission:
    def __init__(self, book: JobBook, manifests: ManifestSource, stats: Stats,
                 offers: Callable[[], Sequence[Capabilities]], clock: Callable[[], float]) -> None:
        self.book = book
        self.manifests = manifests
        self.stats = stats
        self.offers = offers
        self.clock = clock

    def evaluate(self) -> int:
        """Judges every queued job whose manifest is due; returns how many were judged."""
        now = self.clock()
        with self.book.lock:
            todo = [t for t in self.book.iter_state(JobState.QUEUED) if t.retry_manifest_at <= now]
        if not todo:
            return 0
        fetched = self.manifests.many(t.job.input_hash for t in todo)
        offers = self.offers()
        judged = 0
        with self.book.lock:
            for tracked in todo:
                if tracked.state is not JobState.QUEUED:
                    continue  # departed while its manifest was read
                manifest = fetched.get(tracked.job.input_hash)
                if manifest is None:
                    tracked.retry_manifest_at = now + MANIFEST_RETRY_S
                    continue
                verdict = judge(terms_of(tracked), manifest, offers)
                tracked.verdict = verdict
                tracked.manifest = manifest if isinstance(manifest, Manifest) else None
                self._audit(tracked, verdict)
                if verdict.action == "skip":
                    self.stats.skipped[verdict.kind] += 1
                    self.book.move(tracked, JobState.SKIPPED, verdict.reason)
                else:
                    self.book.move(tracked, JobState.ADMITTED, verdict.reason or verdict.action)
                judged += 1
        return judged

    def again(self, note: str) -> None:
        """What this head offers changed (pools appeared, the attested set moved): judge every waiting job anew."""
        with self.book.lock:
            for tracked in self.book.in_state(JobState.ADMITTED, JobState.SKIPPED):
                tracked.verdict, tracked.order = UNEVALUATED, None
                tracked.retry_manifest_at = 0.0
                self.book.move(tracked, JobState.QUEUED, note)

    @staticmethod
    def _audit(tracked: TrackedJob, verdict: Verdict) -> None:
        manifest = tracked.manifest
        if manifest is not None and (manifest.compliance.template or manifest.compliance.allowed_regions):
            audit.record("placement", job=tracked.job_id, template=manifest.compliance.template,
                         decision="skip" if verdict.action == "skip" else "admitted", reason=verdict.reason)


def offers_for(caps: Capabilities, pool_caps: dict[str, Capabilities], scaling: bool, gate: Any,
               default_pool: str) -> list[Capabilities]:
    """What admission judges against: without pools, this provider's GPUs; with pools, every pool."""
    if not scaling:
        return [gate.local_caps(caps, default_pool) if gate is not None else caps]
    return list((gate.admission_caps(pool_caps) if gate is not None else pool_caps).values())
