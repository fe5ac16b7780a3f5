"""The consumer side: store a job manifest, submit the job (escrowing the payment), settle it.

Why the manifest goes to the blob store first: the chain holds only
``input_hash = blake2_256(manifest bytes)``. Storing first and submitting second
means a provider never sees a job whose manifest it cannot fetch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from etrid_ray.blobs import BlobStore, blob_hash
from etrid_ray.chain.connection import Connection
from etrid_ray.chain.errors import UnsupportedError
from etrid_ray.chain.keys import Signer
from etrid_ray.chain.models import AccountBalance, Job, ModelType, Priority
from etrid_ray.chain.reader import ChainReader
from etrid_ray.chain.submit import Call, Receipt, Submitter

MARKET = "JobMarketplace"
MAX_OUTPUT_FORMAT = 32


def manifest_bytes(manifest: bytes | str | Mapping[str, Any]) -> bytes:
    """The exact bytes that get hashed: given bytes as they are; a dict as canonical JSON."""
    if isinstance(manifest, bytes | bytearray):
        return bytes(manifest)
    if isinstance(manifest, str):
        return manifest.encode("utf-8")
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class SubmittedJob:
    job_id: int
    input_hash: str
    payment: int
    receipt: Receipt


class ConsumerClient:
    """Submits and settles jobs, signed as ``signer``."""

    def __init__(
        self,
        conn: Connection,
        signer: Signer,
        blobs: BlobStore | None = None,
        *,
        submitter: Submitter | None = None,
    ) -> None:
        self.conn = conn
        self.signer = signer
        self.blobs = blobs
        self.submitter = submitter or Submitter(conn, signer)
        self.reader = ChainReader(conn)

    @property
    def address(self) -> str:
        return self.signer.address

    def store_manifest(self, manifest: bytes | str | Mapping[str, Any]) -> str:
        if self.blobs is None:
            raise UnsupportedError("no blob store configured: pass blobs=open_blob_store(URL)")
        data = manifest_bytes(manifest)
        h = self.blobs.put(data)
        if h != blob_hash(data):  # a store must name a blob by its hash
            raise ValueError(f"blob store {self.blobs} returned {h}, expected {blob_hash(data)}")
        return h

    def _submit_call(
        self,
        input_hash: str,
        payment: int,
        max_compute_time: int,
        model_id: int,
        model_type: ModelType | str,
        output_format: str,
        priority: Priority | str,
    ) -> Call:
        fmt = output_format.encode("utf-8")
        if len(fmt) > MAX_OUTPUT_FORMAT:
            raise ValueError(f"output_format is {len(fmt)} bytes; the chain allows {MAX_OUTPUT_FORMAT}")
        if payment <= 0:
            raise ValueError("payment must be positive (planck)")
        if not 0 < max_compute_time < 2**32:
            raise ValueError("max_compute_time must be 1..4294967295 seconds")
        return Call(
            MARKET,
            "submit_job",
            {
                "model_id": int(model_id),
                "model_type": str(ModelType(model_type)),
                "input_hash": input_hash,
                "output_format": fmt,
                "max_compute_time": int(max_compute_time),
                "payment": int(payment),
                "priority": str(Priority(priority)),
            },
        )

    def submit_job(
        self,
        manifest: bytes | str | Mapping[str, Any],
        *,
        payment: int,
        max_compute_time: int,
        model_id: int = 0,
        model_type: ModelType | str = ModelType.CUSTOM,
        output_format: str = "json",
        priority: Priority | str = Priority.STANDARD,
    ) -> SubmittedJob:
        """Stores ``manifest`` and submits a job for it; ``payment`` (planck) is reserved as escrow."""
        input_hash = self.store_manifest(manifest)
        call = self._submit_call(input_hash, payment, max_compute_time, model_id, model_type, output_format, priority)
        receipt = self.submitter.submit(call)
        return SubmittedJob(_job_id(receipt), input_hash, payment, receipt)

    def submit_jobs(
        self,
        manifests: list[bytes | str | Mapping[str, Any]],
        *,
        payment: int,
        max_compute_time: int,
        **kwargs: Any,
    ) -> list[SubmittedJob]:
        """Many jobs, all in flight together (one extrinsic each, so each job id maps to its receipt)."""
        hashes = [self.store_manifest(m) for m in manifests]
        calls = [
            self._submit_call(
                h,
                payment,
                max_compute_time,
                kwargs.get("model_id", 0),
                kwargs.get("model_type", ModelType.CUSTOM),
                kwargs.get("output_format", "json"),
                kwargs.get("priority", Priority.STANDARD),
            )
            for h in hashes
        ]
        receipts = self.submitter.submit_many(calls)
        return [SubmittedJob(_job_id(r), h, payment, r) for h, r in zip(hashes, receipts, strict=True)]

    def confirm_job(self, job_id: int) -> Receipt:
        """Accepts the result: releases the escrow to the provider (minus the platform fee)."""
        return self.submitter.submit(Call(MARKET, "confirm_job", {"job_id": job_id}))

    def cancel_job(self, job_id: int) -> Receipt:
        """Withdraws a job that is still Pending; the escrow returns."""
        return self.submitter.submit(Call(MARKET, "cancel_job", {"job_id": job_id}))

    def dispute_job(self, job_id: int) -> Receipt:
        return self.submitter.submit(Call(MARKET, "dispute_job", {"job_id": job_id}))

    def enable_compliance(self, template: str, data_residency: str = "") -> Receipt:
        """``Compliance.enable_compliance``: HIPAA, GDPR, SOC2, CCPA or FedRAMP, and a residency (≤ 32 bytes)."""
        residency = data_residency.encode("utf-8")
        if len(residency) > 32:
            raise ValueError("data_residency is at most 32 bytes")
        return self.submitter.submit(
            Call("Compliance", "enable_compliance", {"template": template, "data_residency": residency})
        )

    def disable_compliance(self) -> Receipt:
        return self.submitter.submit(Call("Compliance", "disable_compliance", {}))

    def balance(self) -> AccountBalance:
        """Our free and reserved (escrowed) balance."""
        return self.reader.balance(self.address)

    def job(self, job_id: int) -> Job | None:
        return self.reader.job(job_id)

    def fetch_result(self, job: Job) -> bytes:
        """The result blob named by ``job.result_hash``, verified against that hash."""
        if self.blobs is None:
            raise UnsupportedError("no blob store configured")
        if not job.result_hash:
            raise ValueError(f"job {job.job_id} has no result yet (status {job.status})")
        return self.blobs.get(job.result_hash)


def _job_id(receipt: Receipt) -> int:
    ev = receipt.first(MARKET, "JobSubmitted")
    if ev is None:
        raise UnsupportedError("submit_job succeeded but emitted no JobSubmitted event")
    return int(ev.get("job_id"))
