"""The job manifest: what the chain does not hold (handler, inputs, resources, compliance, timeout).

A consumer stores the manifest's JSON bytes in a blob store and puts their
blake2_256 on chain as `input_hash`. Version 1 is the schema below; its JSON
Schema is exported to docs/manifest.schema.json.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, WithJsonSchema, field_validator

HASH_RE = re.compile(r"^0x[0-9a-f]{64}$")
MAX_MANIFEST_BYTES = 1024 * 1024
# What Ray can schedule, so that every manifest the schema accepts is one the head can dispatch: Ray counts
# resources in units of 1/10,000 (a smaller non-zero request is refused), and above one GPU only whole GPUs.
MIN_GPU_FRACTION = 0.0001
MAX_GPUS = 64
MAX_TIMEOUT_S = 2**32 - 1  # the chain's max_compute_time is a u32 of seconds: a longer limit means nothing
GPUS_JSON_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "number", "minimum": MIN_GPU_FRACTION, "maximum": 1},
              {"type": "integer", "minimum": 0, "maximum": MAX_GPUS}],
    "default": 1,
    "description": f"GPUs the job needs on one node: 0 (no GPU), a fraction in [{MIN_GPU_FRACTION}, 1] "
                   f"(fractions share a GPU) or a whole number up to {MAX_GPUS}",
    "title": "Gpus",
}


def gpus_problem(gpus: float) -> str | None:
    """Why Ray would refuse `gpus` as a task's `num_gpus`, or None: the one rule the parser, the JSON Schema
    and the dispatcher share (a schema-valid manifest that Ray refuses would be claimed and then fail)."""
    if not math.isfinite(gpus) or gpus < 0 or gpus > MAX_GPUS:
        return f"must be within 0..{MAX_GPUS}"
    if 0 < gpus < MIN_GPU_FRACTION:
        return f"a fraction of a GPU must be at least {MIN_GPU_FRACTION}"
    if gpus > 1 and not float(gpus).is_integer():
        return "above 1, GPUs must be whole (fractions only within 0..1)"
    return None


MAX_REASON_BYTES = 128


def chain_reason(message: str) -> str:
    """A failure reason as the chain stores it: at most 128 bytes of UTF-8, cut without splitting a character
    (reasons echo strangers' key names and handlers' exception messages, of any length and script)."""
    raw = message.encode("utf-8", errors="replace")
    if len(raw) > MAX_REASON_BYTES:
        return raw[:MAX_REASON_BYTES].decode("utf-8", errors="ignore")
    return raw.decode("utf-8")


class ManifestError(ValueError):
    """Why a manifest is refused; its message goes on chain, so it is cut to 128 bytes of UTF-8."""

    def __init__(self, message: str) -> None:
        super().__init__(chain_reason(message))


class BlobRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, max_length=64, description="argument name the handler sees")
    hash: str = Field(..., description="0x blake2_256 of the blob bytes")
    size: int | None = Field(None, ge=0, description="declared size in bytes (checked against the limit)")

    @field_validator("hash")
    @classmethod
    def _hash(cls, v: str) -> str:
        v = v.lower()
        if not HASH_RE.match(v):
            raise ValueError("must be 0x followed by 64 hex digits")
        return v


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gpus: Annotated[float, Strict(), WithJsonSchema(GPUS_JSON_SCHEMA)] = 1  # strict: true/"1" are not numbers
    min_vram_gb: int = Field(0, ge=0, le=4096)
    accelerator: str | None = Field(None, max_length=32, description="e.g. A100, H100; None = any")
    tee: Literal["sgx", "sev-snp", "tdx"] | None = None

    @field_validator("gpus")
    @classmethod
    def _gpus(cls, v: float) -> float:
        problem = gpus_problem(v)
        if problem is not None:
            raise ValueError(problem)
        return v


class ComplianceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template: Literal["HIPAA", "GDPR", "SOC2", "CCPA", "FedRAMP"] | None = None
    allowed_regions: list[str] = Field(default_factory=list, description="region prefixes; empty = anywhere")


class OutputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["json", "bytes"] = "json"


class Manifest(BaseModel):
    """Job manifest, schema version 1."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    handler: str = Field(..., min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_\-]*$")
    args: dict[str, Any] = Field(default_factory=dict)
    inputs: list[BlobRef] = Field(default_factory=list, max_length=64)
    output: OutputSpec = Field(default_factory=OutputSpec)
    resources: Resources = Field(default_factory=Resources)
    compliance: ComplianceSpec = Field(default_factory=ComplianceSpec)
    timeout_s: float | None = Field(None, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False,
                                    description="handler wall-clock limit in seconds; the job's max_compute_time "
                                                "on chain caps it")


def parse_manifest(data: bytes) -> Manifest:
    """Parses manifest bytes; raises ManifestError with a short reason fit for the chain."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"manifest too large ({len(data)} bytes)")
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise ManifestError(f"malformed manifest JSON: {type(err).__name__}") from None
    if not isinstance(obj, dict):
        raise ManifestError("manifest must be a JSON object")
    try:
        manifest = Manifest.model_validate(obj)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(x) for x in first["loc"]) or "manifest"
        raise ManifestError(f"invalid manifest: {loc}: {first['msg']}") from None
    try:
        manifest.model_dump_json()  # the head re-encodes it to dispatch; args nested too deeply cannot be
    except ValueError:
        raise ManifestError("invalid manifest: args nested too deeply") from None
    return manifest


def manifest_json_schema() -> dict[str, Any]:
    schema = Manifest.model_json_schema()
    schema["$id"] = "https://etrid.org/schemas/etrid-ray/manifest-v1.json"
    return schema


def encode_manifest(manifest: Manifest | dict[str, Any]) -> bytes:
    """Canonical bytes (sorted keys, no spaces), so equal manifests hash equally."""
    obj = manifest.model_dump(mode="json", exclude_none=True) if isinstance(manifest, Manifest) else manifest
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
