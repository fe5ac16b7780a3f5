"""Which jobs this provider takes: a pure function of the job, its manifest and our capabilities.

Three outcomes. `claim`: we can and want to serve it. `skip`: we cannot or do
not want to (capability, price, allow-list) — the job is left untouched for
other providers. `reject`: the job is broken for everyone (bad manifest,
unknown handler, oversized input) — we claim it only to fail it on chain with
the reason, so the consumer is refunded instead of waiting forever.

Why it lives here, below `scaling` and `provider`: the job's terms (`JobTerms`, billable GPUs, the
accelerator and residency rules) are read by the pure placement (`scaling`) and by the head's admission
stage (`provider`) alike; a module of either would make the other import it sideways or upwards. It
depends only on the manifest, the compliance templates and the workload registry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from etrid_ray.manifest import Manifest, ManifestError
from etrid_ray.security.compliance import describe_regions, job_regions, region_matches
from etrid_ray.workloads.registry import REGISTRY

MIN_BILLABLE_GPUS = 0.01


@dataclass(frozen=True)
class Capabilities:
    """What one provider (one pool, for now) offers."""

    gpus_per_node: int
    vram_gb: int
    accelerator: str
    tee: str | None
    region: str
    handlers: frozenset[str]
    price_per_gpu_second: int  # planck
    max_input_bytes: int


@dataclass(frozen=True)
class JobTerms:
    """The parts of an on-chain job admission looks at."""

    job_id: int
    model_type: str
    max_compute_time: int
    payment: int


# Why a job was not claimed, as a label value: metrics count by these (a small fixed set, so a stream of jobs
# offering ever-new prices cannot grow a metric's series); the particulars — the offered price, the VRAM asked —
# stay in the reason, which the logs and the audit trail carry.
REJECT_KINDS = ("manifest_invalid", "handler_unknown", "model_type", "inputs_too_large", "assigned_unservable")
SKIP_KINDS = ("unevaluated", "handler_not_offered", "gpus_per_node", "vram", "accelerator", "tee", "region", "price",
              "cannot_finish_in_time", "more_gpus_than_cluster")


@dataclass(frozen=True)
class Verdict:
    action: Literal["claim", "skip", "reject"]
    reason: str = ""
    kind: str = ""  # one of REJECT_KINDS / SKIP_KINDS; "" for a claim


CLAIM = Verdict("claim")


def skip(kind: str, reason: str) -> Verdict:
    if kind not in SKIP_KINDS:
        raise ValueError(f"skip kind {kind!r} is not one of {SKIP_KINDS}")
    return Verdict("skip", reason, kind)


def reject(kind: str, reason: str) -> Verdict:
    if kind not in REJECT_KINDS:
        raise ValueError(f"reject kind {kind!r} is not one of {REJECT_KINDS}")
    return Verdict("reject", reason, kind)


UNEVALUATED = skip("unevaluated", "unevaluated")  # a job not judged yet (one shared, immutable verdict)


def region_allowed(region: str, manifest: Manifest) -> bool:
    """Residency: the manifest's `allowed_regions` (prefixes of region names) ∩ its compliance template's
    regions (GDPR → EU), as `security/compliance.py` computes them for admission and placement alike."""
    return region_matches(region, job_regions(manifest.compliance))


def accelerator_matches(wanted: str, ours: str) -> bool:
    """`A100` is served by NVML's `A100-SXM4-80GB` or `Tesla A100 PCIe`, but not `A10` by `A100`: whole tokens."""
    return re.search(rf"(?:^|[\s\-_]){re.escape(wanted.strip())}(?:$|[\s\-_])", ours.strip(), re.I) is not None


def billable_gpus(manifest: Manifest) -> float:
    """GPUs a job is priced for: at least MIN_BILLABLE_GPUS, so a `gpus: 0` job cannot run for free."""
    return max(float(manifest.resources.gpus), MIN_BILLABLE_GPUS)


def pays_enough(terms: JobTerms, manifest: Manifest, price_per_gpu_second: int) -> bool:
    """payment / (max_compute_time × gpus) ≥ price, in exact arithmetic (planck sums exceed a float's 53 bits)."""
    gpus = Fraction(repr(billable_gpus(manifest)))  # the decimal the manifest wrote
    seconds = max(terms.max_compute_time, 1)
    return terms.payment >= price_per_gpu_second * seconds * gpus


def price_per_gpu_second(terms: JobTerms, manifest: Manifest) -> float:
    """What the job pays per GPU-second if it runs for its whole max_compute_time (the worst case)."""
    seconds = max(terms.max_compute_time, 1)
    return terms.payment / (seconds * billable_gpus(manifest))


def admit(terms: JobTerms, manifest: Manifest | ManifestError, caps: Capabilities) -> Verdict:
    if isinstance(manifest, ManifestError):
        return reject("manifest_invalid", str(manifest))
    workload = REGISTRY.get(manifest.handler)
    if workload is None:
        return reject("handler_unknown", f"unknown handler {manifest.handler!r}")
    if terms.model_type not in workload.model_types:
        return reject("model_type", f"handler {manifest.handler!r} does not serve model type {terms.model_type}")
    declared = sum(ref.size or 0 for ref in manifest.inputs)
    if declared > caps.max_input_bytes:
        return reject("inputs_too_large", f"inputs too large: {declared} bytes > {caps.max_input_bytes}")
    if manifest.handler not in caps.handlers:
        return skip("handler_not_offered", f"handler {manifest.handler!r} not offered here")
    res = manifest.resources
    if res.gpus > caps.gpus_per_node:
        return skip("gpus_per_node", f"needs {res.gpus:g} GPUs on one node; nodes have {caps.gpus_per_node}")
    if res.min_vram_gb > caps.vram_gb:
        return skip("vram", f"needs {res.min_vram_gb} GB VRAM; GPUs have {caps.vram_gb}")
    if res.accelerator and not accelerator_matches(res.accelerator, caps.accelerator):
        return skip("accelerator", f"needs {res.accelerator}; GPUs are {caps.accelerator}")
    if res.tee and res.tee != caps.tee:
        return skip("tee", f"needs TEE {res.tee}")
    if not region_allowed(caps.region, manifest):
        allowed = describe_regions(job_regions(manifest.compliance))
        return skip("region", f"region {caps.region} not allowed by compliance rules (allowed: {allowed})")
    if not pays_enough(terms, manifest, caps.price_per_gpu_second):
        offered = price_per_gpu_second(terms, manifest)
        return skip("price", f"pays {offered:.3g} planck/GPU-s < {caps.price_per_gpu_second}")
    return CLAIM
