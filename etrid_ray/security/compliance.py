"""Compliance templates: what HIPAA, GDPR, SOC2, CCPA and FedRAMP demand of a job, as one policy each.

A policy says whether job data must be encrypted at rest (`crypto.py`), whether an audit trail
is required (`audit.py`), where the data may be processed (region prefixes, `None` = anywhere)
and how long evidence and job data are kept. With compliance on (`ENABLE_COMPLIANCE`), plaintext
transport to remote endpoints is refused (`transport.py`) and encryption at rest is enforced in
the job's task (`crypto.store_for_job`).

Residency is an intersection: a job may run only in a region that both its manifest's
`allowed_regions` and its template allow. Both are lists of region-name prefixes (`eu`,
`europe-west`, `us-east-1`); the intersection of two prefix sets is the set of the longer
prefix of every overlapping pair, so `["europe-west", "us"] ∩ GDPR` is `["europe-west"]` and
`["us"] ∩ GDPR` is empty: no pool anywhere may serve that job, so no pool claims it. Admission
(`etrid_ray/admission.py`) and placement (`scaling/placement.py`, through admission's
`region_allowed`) both ask `region_permitted`, so the two can never disagree.

Enabling a template on chain is `Compliance.enable_compliance(template, data_residency)`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from etrid_ray.chain.submit import Call, Submitter
from etrid_ray.manifest import ComplianceSpec
from etrid_ray.security import audit

#: GDPR's processing regions: AWS `eu-*`, GCP `europe-*` (Azure's `westeurope` is not matched: prefixes only)
EU_PREFIXES: tuple[str, ...] = ("eu", "europe")
TEMPLATE_NAMES: tuple[str, ...] = ("HIPAA", "GDPR", "SOC2", "CCPA", "FedRAMP")
MAX_RESIDENCY_BYTES = 32  # the chain's bound on `data_residency`


@dataclass(frozen=True)
class Policy:
    """What one compliance template requires of the jobs it governs."""

    template: str
    title: str
    encryption_required: bool  # inputs and results at rest: AES-256-GCM envelopes (crypto.py)
    audit_required: bool  # every security-relevant event in the hash-chained log (audit.py)
    tls_required: bool  # no plaintext ws:// or http:// to non-loopback endpoints (transport.py)
    allowed_regions: tuple[str, ...] | None  # region prefixes; None = anywhere
    audit_retention_days: int  # how long the audit trail and reports are kept
    data_retention_days: int | None  # job inputs/results erased (crypto-shredded) after this; None = no limit
    data_residency: str  # what `enable_compliance` puts on chain (≤ 32 bytes)
    basis: str  # where the numbers come from

    def to_json(self) -> dict[str, Any]:
        return {
            "template": self.template, "title": self.title, "encryption_required": self.encryption_required,
            "audit_required": self.audit_required, "tls_required": self.tls_required,
            "allowed_regions": list(self.allowed_regions) if self.allowed_regions is not None else None,
            "audit_retention_days": self.audit_retention_days, "data_retention_days": self.data_retention_days,
            "data_residency": self.data_residency, "basis": self.basis,
        }


POLICIES: dict[str, Policy] = {
    "HIPAA": Policy("HIPAA", "US Health Insurance Portability and Accountability Act", True, True, True, None,
                    6 * 365, None, "",
                    "45 CFR 164.312 (a)(2)(iv) encryption, (b) audit controls, (e) transmission security; "
                    "164.316(b)(2) six-year documentation retention"),
    "GDPR": Policy("GDPR", "EU General Data Protection Regulation", True, True, True, EU_PREFIXES,
                   3 * 365, 30, "EU",
                   "Art. 32 encryption and security of processing, Art. 30 records, Art. 5(1)(e) storage "
                   "limitation, Art. 17 erasure, Chapter V transfers (processing kept in EU regions)"),
    "SOC2": Policy("SOC2", "AICPA SOC 2 Trust Services Criteria", True, True, True, None,
                   365, None, "",
                   "CC6.1/CC6.7 encryption at rest and in transit, CC7.2 monitoring, one-year audit period"),
    "CCPA": Policy("CCPA", "California Consumer Privacy Act", True, True, True, None,
                   2 * 365, None, "",
                   "Cal. Civ. Code 1798.81.5 reasonable security, 1798.105 deletion, "
                   "11 CCR 7101 24-month request records"),
    "FedRAMP": Policy("FedRAMP", "US Federal Risk and Authorization Management Program", True, True, True, None,
                      913, None, "",
                      "NIST 800-53 SC-28 at rest, SC-8 in transit, AU-9/AU-10 protected audit, AU-11 with "
                      "OMB M-21-31 (12 months online + 18 months cold)"),
}


class UnknownTemplate(ValueError):
    pass


def template_name(name: str) -> str:
    """The canonical spelling (`gdpr` → `GDPR`, `fedramp` → `FedRAMP`)."""
    for t in TEMPLATE_NAMES:
        if t.lower() == str(name).strip().lower():
            return t
    raise UnknownTemplate(f"unknown compliance template {name!r}: use one of {', '.join(TEMPLATE_NAMES)}")


def policy_for(template: str | None) -> Policy | None:
    """The template's policy; `None` for a job without one."""
    if template is None:
        return None
    return POLICIES[template_name(template)]


# --- residency ------------------------------------------------------------------------------------


def _norm(prefixes: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({p.strip().lower() for p in prefixes}))


def intersect_regions(a: Sequence[str] | None, b: Sequence[str] | None) -> tuple[str, ...] | None:
    """Intersection of two region-prefix sets; `None` means anywhere, `()` means nowhere.

    A region matches both sets exactly when it matches the longer prefix of some overlapping pair,
    so that longer prefix is what the intersection holds.
    """
    if a is None:
        return None if b is None else _norm(b)
    if b is None:
        return _norm(a)
    out: set[str] = set()
    for x in _norm(a):
        for y in _norm(b):
            if x.startswith(y):
                out.add(x)
            elif y.startswith(x):
                out.add(y)
    # drop prefixes already covered by a shorter one in the result (same regions, shorter list)
    return tuple(sorted(p for p in out if not any(q != p and p.startswith(q) for q in out)))


def job_regions(spec: ComplianceSpec) -> tuple[str, ...] | None:
    """Where a job may run: its manifest's `allowed_regions` (empty = anywhere) ∩ its template's regions."""
    policy = policy_for(spec.template)
    manifest_regions = tuple(spec.allowed_regions) if spec.allowed_regions else None
    return intersect_regions(manifest_regions, policy.allowed_regions if policy else None)


def region_matches(region: str, regions: tuple[str, ...] | None) -> bool:
    region = region.strip().lower()
    return regions is None or any(region.startswith(p) for p in regions)


def region_permitted(region: str, template: str | None, allowed_regions: Sequence[str] = ()) -> bool:
    """May a job with this template and these manifest `allowed_regions` be processed in `region`?"""
    return region_matches(region, job_regions(ComplianceSpec(template=template,  # type: ignore[arg-type]
                                                             allowed_regions=list(allowed_regions))))


def describe_regions(regions: tuple[str, ...] | None) -> str:
    if regions is None:
        return "anywhere"
    if not regions:
        return "nowhere (the manifest's allowed_regions and the template's regions do not overlap)"
    return ", ".join(f"{p}*" for p in regions)


def serving_pools(spec: ComplianceSpec, pools: Iterable[Any]) -> list[str]:
    """Names of the pools (anything with `.name` and `.region`) in which the job may be processed."""
    regions = job_regions(spec)
    return [p.name for p in pools if region_matches(p.region, regions)]


# --- on chain -------------------------------------------------------------------------------------


def enable_on_chain(conn: Any, signer: Any, template: str, data_residency: str | None = None) -> Any:
    """`Compliance.enable_compliance(template, data_residency)` signed by `signer`; returns the receipt.

    `data_residency` defaults to the template's (GDPR: `EU`). An audit `config_change` record is
    written when an audit log is configured (`audit.configure`).
    """
    policy = POLICIES[template_name(template)]
    residency = policy.data_residency if data_residency is None else data_residency
    raw = residency.encode("utf-8")
    if len(raw) > MAX_RESIDENCY_BYTES:
        raise ValueError(f"data_residency is at most {MAX_RESIDENCY_BYTES} bytes on chain, got {len(raw)}")
    receipt = Submitter(conn, signer).submit(
        Call("Compliance", "enable_compliance", {"template": policy.template, "data_residency": raw}))
    audit.record("config_change", setting="compliance", action="enable", template=policy.template,
                 data_residency=residency, account=signer.address, block=receipt.block_number,
                 extrinsic=receipt.extrinsic_hash)
    return receipt


def disable_on_chain(conn: Any, signer: Any) -> Any:
    """`Compliance.disable_compliance()`; audited like enabling."""
    receipt = Submitter(conn, signer).submit(Call("Compliance", "disable_compliance", {}))
    audit.record("config_change", setting="compliance", action="disable", account=signer.address,
                 block=receipt.block_number, extrinsic=receipt.extrinsic_hash)
    return receipt
