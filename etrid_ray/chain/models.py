"""Typed values of the Etrid AI-Compute pallets, mapped by field *name* from decoded storage.

Why by name: chain.md fixes names, not layouts, and the compiled decoder yields
dicts keyed by the metadata's field names. A field the node adds is ignored; a
field it lacks takes the dataclass default, so a real node and the devnet both map.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    PENDING = "Pending"
    PROCESSING = "Processing"
    COMPLETED = "Completed"
    FAILED = "Failed"
    DISPUTED = "Disputed"
    CANCELLED = "Cancelled"


class ModelType(StrEnum):
    LLM = "LLM"
    IMAGE_GEN = "ImageGen"
    IMAGE_RECOGNITION = "ImageRecognition"
    AUDIO_PROCESSING = "AudioProcessing"
    VIDEO_PROCESSING = "VideoProcessing"
    CUSTOM = "Custom"


class Priority(StrEnum):
    ECONOMY = "Economy"
    STANDARD = "Standard"
    PREMIUM = "Premium"


class GpuStatus(StrEnum):
    ACTIVE = "Active"
    PAUSED = "Paused"
    OFFLINE = "Offline"
    SLASHED = "Slashed"


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def _variant_name(value: Any) -> str:
    if isinstance(value, dict) and len(value) == 1:
        return next(iter(value))
    return str(value)


#: `JobMarketplace.GpuJobs: u64 -> BoundedVec<u64, 100>`: at most this many jobs are assigned to one GPU at
#: once (claimed and not yet settled); a claim beyond it fails with `TooManyGpuJobs`
GPU_JOBS_BOUND = 100


@dataclass(frozen=True)
class GpuSpecs:
    model: str
    vram_gb: int
    compute_units: int = 0
    clock_speed_mhz: int = 0
    tdp_watts: int = 0

    def to_call(self) -> dict[str, Any]:
        model = self.model.encode("utf-8")
        if len(model) > 64:
            raise ValueError(f"GPU model name is {len(model)} bytes; the chain allows 64")
        return {
            "model": model,
            "vram_gb": self.vram_gb,
            "compute_units": self.compute_units,
            "clock_speed_mhz": self.clock_speed_mhz,
            "tdp_watts": self.tdp_watts,
        }

    @classmethod
    def from_chain(cls, v: dict[str, Any]) -> GpuSpecs:
        return cls(
            _text(v.get("model")),
            int(v.get("vram_gb", 0)),
            int(v.get("compute_units", 0)),
            int(v.get("clock_speed_mhz", 0)),
            int(v.get("tdp_watts", 0)),
        )


@dataclass(frozen=True)
class HardwareAttestation:
    tpm_quote: bytes = b""
    benchmark_score: int = 0
    timestamp: int = 0  # unix seconds

    def to_call(self) -> dict[str, Any]:
        if len(self.tpm_quote) > 256:
            raise ValueError(f"TPM quote is {len(self.tpm_quote)} bytes; the chain allows 256")
        return {
            "tpm_quote": bytes(self.tpm_quote),
            "benchmark_score": self.benchmark_score,
            "timestamp": self.timestamp,
        }

    @classmethod
    def from_chain(cls, v: dict[str, Any]) -> HardwareAttestation:
        return cls(bytes(v.get("tpm_quote") or b""), int(v.get("benchmark_score", 0)), int(v.get("timestamp", 0)))


@dataclass(frozen=True)
class Schedule:
    """``AlwaysOn`` | ``BusinessHours`` | ``Custom(168-bit week mask)``."""

    kind: str = "AlwaysOn"
    mask: bytes = b""

    def to_call(self) -> Any:
        if self.kind == "Custom":
            if len(self.mask) > 21:
                raise ValueError("a custom schedule mask is at most 21 bytes (168 hours)")
            return {"Custom": bytes(self.mask)}
        if self.kind not in ("AlwaysOn", "BusinessHours"):
            raise ValueError(f"unknown schedule {self.kind!r}: AlwaysOn, BusinessHours or Custom")
        return self.kind

    @classmethod
    def from_chain(cls, v: Any) -> Schedule:
        if isinstance(v, dict) and "Custom" in v:
            return cls("Custom", bytes(v["Custom"] or b""))
        return cls(str(v))


@dataclass(frozen=True)
class Reputation:
    jobs_completed: int = 0
    jobs_failed: int = 0
    uptime_bps: int = 0
    rating: int = 0
    rating_count: int = 0

    @classmethod
    def from_chain(cls, v: dict[str, Any] | None) -> Reputation:
        v = v or {}
        return cls(
            *(int(v.get(k, 0)) for k in ("jobs_completed", "jobs_failed", "uptime_bps", "rating", "rating_count"))
        )


@dataclass(frozen=True)
class GpuNode:
    gpu_id: int
    provider: str
    specs: GpuSpecs
    attestation: HardwareAttestation
    stake: int
    status: str
    reputation: Reputation
    schedule: Schedule
    registered_at: int
    last_heartbeat: int

    @classmethod
    def from_chain(cls, gpu_id: int, v: dict[str, Any]) -> GpuNode:
        return cls(
            gpu_id=gpu_id,
            provider=str(v.get("provider")),
            specs=GpuSpecs.from_chain(v.get("specs") or {}),
            attestation=HardwareAttestation.from_chain(v.get("attestation") or {}),
            stake=int(v.get("stake", 0)),
            status=_variant_name(v.get("status")),
            reputation=Reputation.from_chain(v.get("reputation")),
            schedule=Schedule.from_chain(v.get("schedule", "AlwaysOn")),
            registered_at=int(v.get("registered_at", 0)),
            last_heartbeat=int(v.get("last_heartbeat", 0)),
        )


@dataclass(frozen=True)
class Job:
    """A job as ``JobMarketplace.Jobs`` stores it; times are unix seconds, money in planck."""

    job_id: int
    submitter: str
    model_id: int
    model_type: str
    input_hash: str
    output_format: str
    max_compute_time: int
    payment: int
    priority: str
    status: JobStatus | str
    assigned_gpu: int | None
    result_hash: str | None
    submitted_at: int
    completed_at: int | None

    @property
    def is_pending(self) -> bool:
        return self.status == JobStatus.PENDING

    @classmethod
    def from_chain(cls, job_id: int, v: dict[str, Any]) -> Job:
        status = _variant_name(v.get("status"))
        try:
            status = JobStatus(status)
        except ValueError:
            pass
        return cls(
            job_id=job_id,
            submitter=str(v.get("submitter")),
            model_id=int(v.get("model_id", 0)),
            model_type=_variant_name(v.get("model_type")),
            input_hash=str(v.get("input_hash")),
            output_format=_text(v.get("output_format")),
            max_compute_time=int(v.get("max_compute_time", 0)),
            payment=int(v.get("payment", 0)),
            priority=_variant_name(v.get("priority")),
            status=status,
            assigned_gpu=v.get("assigned_gpu"),
            result_hash=v.get("result_hash"),
            submitted_at=int(v.get("submitted_at", 0)),
            completed_at=v.get("completed_at"),
        )


@dataclass(frozen=True)
class TeeAttestation:
    """``ConfidentialCompute.TeeAttestations[gpu_id]``: a TEE quote bound to a GPU."""

    tee_type: str  # IntelSGX | AMDSEV | ARMTrustZone
    quote: bytes
    mrenclave: bytes = b""
    timestamp: int = 0  # unix seconds

    def to_call(self) -> dict[str, Any]:
        if self.tee_type not in ("IntelSGX", "AMDSEV", "ARMTrustZone"):
            raise ValueError(f"unknown TEE type {self.tee_type!r}: IntelSGX, AMDSEV or ARMTrustZone")
        if len(self.mrenclave) > 32:
            raise ValueError("mrenclave is at most 32 bytes")
        return {
            "tee_type": self.tee_type,
            "quote": bytes(self.quote),
            "mrenclave": bytes(self.mrenclave),
            "timestamp": self.timestamp,
        }

    @classmethod
    def from_chain(cls, v: dict[str, Any]) -> TeeAttestation:
        return cls(
            _variant_name(v.get("tee_type")),
            bytes(v.get("quote") or b""),
            bytes(v.get("mrenclave") or b""),
            int(v.get("timestamp", 0)),
        )


@dataclass(frozen=True)
class ComplianceConfig:
    """``Compliance.ComplianceConfigs[account]``."""

    account: str
    template: str  # HIPAA | GDPR | SOC2 | CCPA | FedRAMP
    data_residency: str
    encryption_required: bool
    audit_logs_required: bool
    enabled_at: int

    @classmethod
    def from_chain(cls, v: dict[str, Any]) -> ComplianceConfig:
        return cls(
            str(v.get("account")),
            _variant_name(v.get("template")),
            _text(v.get("data_residency")),
            bool(v.get("encryption_required")),
            bool(v.get("audit_logs_required")),
            int(v.get("enabled_at", 0)),
        )


@dataclass(frozen=True)
class AccountBalance:
    address: str
    free: int
    reserved: int
    frozen: int = 0
    nonce: int = 0

    @property
    def total(self) -> int:
        return self.free + self.reserved

    @classmethod
    def from_chain(cls, address: str, v: dict[str, Any]) -> AccountBalance:
        data = v.get("data") or {}
        frozen = int(data.get("frozen", data.get("misc_frozen", 0)) or 0)
        return cls(address, int(data.get("free", 0)), int(data.get("reserved", 0)), frozen, int(v.get("nonce", 0)))


@dataclass(frozen=True)
class Telemetry:
    utilization_bps: int
    jobs_completed: int
    earnings: int
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_chain(cls, v: dict[str, Any]) -> Telemetry:
        return cls(
            int(v.get("utilization_bps", 0)),
            int(v.get("jobs_completed", 0)),
            int(v.get("earnings", 0)),
            dict(v),
        )


@dataclass(frozen=True)
class Payment:
    """One ``PaymentReleased`` event."""

    job_id: int
    provider: str
    amount: int
    block_number: int | None


@dataclass(frozen=True)
class ChainInfo:
    url: str
    chain: str
    spec_name: str
    spec_version: int
    best_number: int
    best_hash: str
    finalized_number: int
    token_symbol: str
    token_decimals: int
    ss58_format: int
    pallets: list[str]
