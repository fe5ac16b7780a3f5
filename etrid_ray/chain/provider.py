"""The provider side: register GPUs, keep them alive, claim jobs, settle them, count earnings.

Why claims and settlements differ: a *claim* can lose a race (another provider
took the job first), so many claims go as separate extrinsics in flight and
each succeeds or fails alone; *settlements* (results, heartbeats, telemetry)
do not race, so they go through ``Utility.batch_all``, many per extrinsic.
When the runtime lacks ``JobMarketplace.claim_job`` (a real Etrid node, where
only root ``assign_job`` matches jobs) :meth:`ProviderClient.claim` waits for an
assignment to one of our GPUs by reading ``GpuJobs``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from etrid_ray.chain.connection import Connection
from etrid_ray.chain.errors import ChainError, ExtrinsicFailed, UnsupportedError
from etrid_ray.chain.events import events_in_range
from etrid_ray.chain.keys import Signer
from etrid_ray.chain.models import (
    AccountBalance,
    GpuNode,
    GpuSpecs,
    HardwareAttestation,
    Job,
    JobStatus,
    Payment,
    Schedule,
    TeeAttestation,
)
from etrid_ray.chain.reader import ChainReader
from etrid_ray.chain.submit import Call, Receipt, Submitter

REGISTRY = "GpuRegistry"
MARKET = "JobMarketplace"
MAX_REASON_BYTES = 128


def truncate_utf8(text: str, limit: int = MAX_REASON_BYTES) -> bytes:
    """UTF-8 bytes of ``text`` cut to ``limit`` without splitting a character."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return raw
    cut = limit
    # step back over continuation bytes (10xxxxxx) so the cut lands on a character boundary
    while cut > 0 and (raw[cut] & 0xC0) == 0x80:
        cut -= 1
    return raw[:cut]


#: what stands for a TEE quote longer than the runtime's bound: this prefix and the quote's SHA-256 (39 bytes)
QUOTE_DIGEST_PREFIX = b"sha256:"


def fit_quote(quote: bytes, bound: int | None) -> bytes:
    """The quote as the chain can hold it: itself when it fits `bound` (None: unbounded), else
    `QUOTE_DIGEST_PREFIX + sha256(quote)`. Why a digest and not a cut: a truncated report verifies nothing, while
    the digest pins the exact evidence the provider verified and serves (upstream's bound is 512 bytes; an SEV-SNP
    report alone is 1184)."""
    if bound is None or len(quote) <= bound:
        return quote
    digest = QUOTE_DIGEST_PREFIX + hashlib.sha256(quote).digest()
    if len(digest) > bound:
        raise ValueError(f"the runtime's quote bound ({bound} bytes) cannot even hold a digest ({len(digest)})")
    return digest


class ClaimTimeout(ChainError):
    """No assignment to our GPUs arrived in time (runtimes without ``claim_job``)."""


@dataclass(frozen=True)
class ClaimOutcome:
    job_id: int
    gpu_id: int
    receipt: Receipt | None
    error: ExtrinsicFailed | None

    @property
    def ok(self) -> bool:
        return self.error is None


class ProviderClient:
    """Everything a GPU provider does on chain, signed as ``signer``."""

    def __init__(self, conn: Connection, signer: Signer, *, submitter: Submitter | None = None) -> None:
        self.conn = conn
        self.signer = signer
        self.submitter = submitter or Submitter(conn, signer)
        self.reader = ChainReader(conn)

    @property
    def address(self) -> str:
        return self.signer.address

    # GPUs -----------------------------------------------------------------------------------------
    def _register_call(
        self, specs: GpuSpecs, stake: int, attestation: HardwareAttestation, schedule: Schedule | None
    ) -> Call:
        if attestation.benchmark_score <= 0:
            raise ValueError("the attestation needs a positive benchmark_score (the chain rejects 0)")
        return Call(
            REGISTRY,
            "register_gpu",
            {
                "specs": specs.to_call(),
                "attestation": attestation.to_call(),
                "stake": int(stake),
                "schedule": (schedule or Schedule()).to_call(),
            },
        )

    def register_gpu(
        self,
        specs: GpuSpecs,
        stake: int,
        attestation: HardwareAttestation,
        schedule: Schedule | None = None,
    ) -> int:
        """Registers one GPU (reserving ``stake`` planck) and returns its ``gpu_id``.

        ``attestation`` carries the hardware quote and the measured ``benchmark_score`` (must be > 0).
        """
        receipt = self.submitter.submit(self._register_call(specs, stake, attestation, schedule))
        return _gpu_ids(receipt)[0]

    def register_gpus(
        self,
        gpus: Sequence[tuple[GpuSpecs, int]],
        attestation: HardwareAttestation,
        schedule: Schedule | None = None,
    ) -> list[int]:
        """Registers several GPUs in one ``batch_all`` (all or none); returns their ids in order."""
        calls = [self._register_call(s, stake, attestation, schedule) for s, stake in gpus]
        ids: list[int] = []
        for receipt in self.submitter.batch(calls):
            ids.extend(_gpu_ids(receipt))
        return ids

    def unregister_gpu(self, gpu_id: int) -> Receipt:
        return self.submitter.submit(Call(REGISTRY, "unregister_gpu", {"gpu_id": gpu_id}))

    def update_status(self, gpu_id: int, status: str) -> Receipt:
        return self.submitter.submit(Call(REGISTRY, "update_status", {"gpu_id": gpu_id, "status": status}))

    def update_availability(self, gpu_id: int, schedule: Schedule) -> Receipt:
        return self.submitter.submit(
            Call(REGISTRY, "update_availability", {"gpu_id": gpu_id, "schedule": schedule.to_call()})
        )

    def heartbeat(self, gpu_ids: int | Iterable[int]) -> list[Receipt]:
        """``report_heartbeat`` for each GPU, batched."""
        ids = [gpu_ids] if isinstance(gpu_ids, int) else list(gpu_ids)
        return self.submitter.batch([Call(REGISTRY, "report_heartbeat", {"gpu_id": g}) for g in ids])

    def supports_telemetry(self) -> bool:
        return self.conn.metadata.has_call(REGISTRY, "report_telemetry")

    def report_telemetry(self, gpu_id: int, utilization_bps: int, jobs_completed: int, earnings: int) -> Receipt:
        """The devnet extension ``report_telemetry``; :class:`UnsupportedError` on a runtime without it."""
        if not 0 <= utilization_bps <= 10_000:
            raise ValueError(f"utilization_bps must be 0..10000, got {utilization_bps}")
        self.conn.metadata.require_call(REGISTRY, "report_telemetry")
        return self.submitter.submit(
            Call(
                REGISTRY,
                "report_telemetry",
                {
                    "gpu_id": gpu_id,
                    "utilization_bps": utilization_bps,
                    "jobs_completed": jobs_completed,
                    "earnings": earnings,
                },
            )
        )

    def quote_bound(self) -> int | None:
        """The runtime's bound on a TEE quote, from its metadata (upstream: 512 bytes; the etrid-ray devnet: 8192)."""
        return self.conn.metadata.bound("ConfidentialCompute", "submit_attestation", "attestation", "quote")

    def submit_tee_attestation(self, gpu_id: int, attestation: TeeAttestation) -> Receipt:
        """``ConfidentialCompute.submit_attestation``: binds a TEE quote to one of our GPUs; a quote longer than the
        runtime's bound is filed as its digest (:func:`fit_quote`)."""
        fitted = replace(attestation, quote=fit_quote(attestation.quote, self.quote_bound()))
        return self.submitter.submit(
            Call("ConfidentialCompute", "submit_attestation", {"gpu_id": gpu_id, "attestation": fitted.to_call()})
        )

    def my_gpus(self) -> list[int]:
        return self.reader.provider_gpus(self.address)

    def gpu(self, gpu_id: int) -> GpuNode | None:
        return self.reader.gpu(gpu_id)

    # the queue ------------------------------------------------------------------------------------
    def pending_jobs(self) -> list[Job]:
        return self.reader.pending_jobs()[1]

    def read_jobs(self, job_ids: list[int]) -> dict[int, Job]:
        return self.reader.jobs(job_ids)

    def supports_claim(self) -> bool:
        return self.conn.metadata.has_call(MARKET, "claim_job")

    def claim(self, job_id: int, gpu_id: int, *, timeout: float = 60.0) -> Job:
        """Takes a pending job for ``gpu_id``; returns the job as Processing.

        With ``claim_job`` this is one extrinsic (a lost race raises :class:`ExtrinsicFailed`, e.g.
        ``JobMarketplace.JobNotPending``); without it, waits up to ``timeout`` for a root ``assign_job``
        of this job to one of our GPUs.
        """
        if self.supports_claim():
            self.submitter.submit(Call(MARKET, "claim_job", {"job_id": job_id, "gpu_id": gpu_id}))
            job = self.reader.job(job_id)
            assert job is not None
            return job
        return self.wait_for_assignment(job_id, timeout=timeout)

    def claim_many(self, pairs: Sequence[tuple[int, int]]) -> list[ClaimOutcome]:
        """Claims ``(job_id, gpu_id)`` pairs as separate extrinsics, all in flight; each may lose alone."""
        self.conn.metadata.require_call(MARKET, "claim_job")
        calls = [Call(MARKET, "claim_job", {"job_id": j, "gpu_id": g}) for j, g in pairs]
        receipts = self.submitter.submit_many(calls, check=False)
        out = []
        for (j, g), r in zip(pairs, receipts, strict=True):
            err = None if r.error is None else ExtrinsicFailed(r.error, r, r.call)
            out.append(ClaimOutcome(j, g, r, err))
        return out

    def wait_for_assignment(
        self,
        job_id: int | None = None,
        *,
        gpu_ids: list[int] | None = None,
        timeout: float = 60.0,
        poll: float = 0.5,
    ) -> Job:
        """Waits until a job (``job_id``, or any new one) sits in ``GpuJobs`` of one of our GPUs."""
        gpus = gpu_ids if gpu_ids is not None else self.my_gpus()
        if not gpus:
            raise ClaimTimeout("this account has no registered GPUs to be assigned jobs")
        seen = {j for js in self.reader.gpu_jobs_many(gpus).values() for j in js} if job_id is None else set()
        deadline = time.monotonic() + timeout
        while True:
            for _gpu, jobs in self.reader.gpu_jobs_many(gpus).items():
                for j in jobs:
                    if (job_id is None and j not in seen) or j == job_id:
                        job = self.reader.job(j)
                        if job is not None and job.status == JobStatus.PROCESSING:
                            return job
            if time.monotonic() > deadline:
                what = f"job {job_id}" if job_id is not None else "a job"
                raise ClaimTimeout(f"{what} was not assigned to GPUs {gpus} within {timeout:.0f}s")
            time.sleep(poll)

    # settling -------------------------------------------------------------------------------------
    def submit_result(self, job_id: int, result_hash: str) -> Receipt:
        return self.submitter.submit(Call(MARKET, "submit_result", {"job_id": job_id, "result_hash": result_hash}))

    def submit_results(self, results: Sequence[tuple[int, str]]) -> list[Receipt]:
        """Many ``submit_result`` calls through ``batch_all``."""
        return self.submitter.batch(
            [Call(MARKET, "submit_result", {"job_id": j, "result_hash": h}) for j, h in results]
        )

    def report_failure(self, job_id: int, reason: str) -> Receipt:
        """Reports a failed job; ``reason`` is cut to 128 UTF-8 bytes on a character boundary."""
        return self.submitter.submit(
            Call(MARKET, "report_failure", {"job_id": job_id, "reason": truncate_utf8(reason)})
        )

    # money ----------------------------------------------------------------------------------------
    def balance(self) -> AccountBalance:
        return self.reader.balance(self.address)

    def earnings(self, from_block: int = 0, to_block: int | None = None) -> list[Payment]:
        """``PaymentReleased`` events paying this account in blocks ``from_block..=to_block``."""
        last = self.conn.best_number() if to_block is None else to_block
        return [
            Payment(int(e.get("job_id")), e.get("provider"), int(e.get("amount")), e.block_number)
            for e in events_in_range(self.conn, from_block, last)
            if e.is_(MARKET, "PaymentReleased") and e.get("provider") == self.address
        ]


def _gpu_ids(receipt: Receipt) -> list[int]:
    ids = [int(e.get("gpu_id")) for e in receipt.find(REGISTRY, "GpuRegistered")]
    if not ids:
        raise UnsupportedError("register_gpu succeeded but emitted no GpuRegistered event")
    return ids
