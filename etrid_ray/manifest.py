"""The job manifest: what the chain does not hold (handler, inputs, resources, compliance, timeout).

A consumer stores the manifest's JSON bytes in a blob store and puts their
blake2_256 on chain as `input_hash`. Version 1 is the schema below; its JSON
Schema is exported to docs/manifest.schema.json.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

HASH_RE = re.compile(r"^0x[0-9a-f]{64}$")
MAX_MANIFEST_BYTES = 1024 * 1024


MAX_REASON_BYTES = 128


class ManifestError(ValueError):
    """Why a manifest is refused; its message goes on chain, so it is cut to 128 bytes of UTF-8."""

    def __init__(self, message: str) -> None:
        raw = message.encode("utf-8")
        if len(raw) > MAX_REASON_BYTES:
            # the message may echo a stranger's key names: cut without splitting a character
            message = raw[:MAX_REASON_BYTES].decode("utf-8", errors="ignore")
        super().__init__(message)


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

    gpus: float = Field(1, ge=0, le=64, description="GPUs the job needs (fractions share a GPU)")
    min_vram_gb: int = Field(0, ge=0, le=4096)
    accelerator: str | None = Field(None, max_length=32, description="e.g. A100, H100; None = any")
    tee: Literal["sgx", "sev-snp", "tdx"] | None = None


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
    timeout_s: float | None = Field(None, gt=0, description="at most the job's max_compute_time on chain")


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
