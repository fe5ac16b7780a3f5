"""`etrid-ray compliance` and `etrid-ray audit`: templates, erasure, reports, the audit log."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from etrid_ray.cli.common import (
    F,
    RegistryChoice,
    friendly,
    json_option,
    key_file_option,
    print_json,
    signer_from,
    url_option,
)


def _template_names() -> tuple[str, ...]:
    from etrid_ray.security.compliance import TEMPLATE_NAMES

    return TEMPLATE_NAMES


def template_option() -> Callable[[F], F]:
    """`--template`: one of the compliance templates `etrid_ray.security.compliance` defines (any case)."""
    return click.option("--template", required=True, type=RegistryChoice(_template_names, case_sensitive=False),
                        help="the compliance template")


def audit_log_option() -> Callable[[F], F]:
    return click.option("--audit-log", "audit_log", default=None, envvar="ETRID_AUDIT_LOG",
                        help="audit log (JSON lines; env ETRID_AUDIT_LOG)")


def _audit_log_path(path: str | None) -> Path:
    from etrid_ray.security.audit import DEFAULT_PATH

    return Path(path).expanduser() if path else DEFAULT_PATH.expanduser()


def _keyring(kek: str | None, keystore: str | None, *, required: bool = True) -> Any:
    from etrid_ray.security.crypto import ENV_KEK, ENV_KEYSTORE, CryptoError, keyring_from_env

    env = {ENV_KEK: kek or os.environ.get(ENV_KEK, ""), ENV_KEYSTORE: keystore or os.environ.get(ENV_KEYSTORE, "")}
    try:
        return keyring_from_env(env)
    except CryptoError as exc:
        if required:
            raise click.UsageError(f"{exc} (or pass --kek and --keystore)") from None
        return None


@click.group("compliance")
def compliance_group() -> None:
    """Compliance templates (HIPAA, GDPR, SOC2, CCPA, FedRAMP): enable on chain, erase a job's data, report."""


@compliance_group.command("enable")
@template_option()
@click.option("--residency", default=None, help="data residency put on chain (≤ 32 bytes; default: the "
              "template's, e.g. EU for GDPR)")
@url_option()
@key_file_option()
@audit_log_option()
@json_option()
@friendly
def compliance_enable(template: str, residency: str | None, url: str, key_file: str | None, audit_log: str | None,
                      as_json: bool) -> None:
    """Call Compliance.enable_compliance(template, data_residency) for our account and audit it."""
    from etrid_ray.security import audit, transport
    from etrid_ray.security.compliance import enable_on_chain, policy_for

    policy = policy_for(template)
    assert policy is not None
    transport.check_endpoint(url, compliance=True, what="--url")
    signer = signer_from(key_file)
    audit.configure(_audit_log_path(audit_log))
    try:
        with transport.connect(url, compliance=True) as conn:
            try:
                receipt = enable_on_chain(conn, signer, policy.template, residency)
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--residency") from None
    finally:
        audit.configure(None)
    out = {"account": signer.address, "template": policy.template,
           "data_residency": policy.data_residency if residency is None else residency,
           "block": receipt.block_number, "policy": policy.to_json()}
    if as_json:
        print_json(out)
        return
    click.echo(f"{policy.template} enabled for {signer.address} in block #{receipt.block_number} "
               f"(residency {out['data_residency'] or 'none'})")
    regions = ", ".join(policy.allowed_regions) if policy.allowed_regions is not None else "any"
    click.echo(f"policy: encryption at rest {'required' if policy.encryption_required else 'off'}, audit "
               f"{'required' if policy.audit_required else 'off'}, TLS in transit, regions {regions}, "
               f"audit kept {policy.audit_retention_days} days")


@compliance_group.command("erase")
@click.option("--job", "job_id", required=True, type=click.IntRange(0, 2**64 - 1), help="the job to erase")
@url_option("node URL: find the job's manifest, inputs and result on chain", default=None)
@click.option("--blob-store", default=None, help="where the job's blobs are (default: the --url node's store)")
@click.option("--blob", "extra_blobs", multiple=True, help="another blob hash of the job (repeatable)")
@click.option("--kek", default=None, help="key-encryption key: file:///path or kms:<key id> (env ETRID_KEK)")
@click.option("--keystore", default=None, help="wrapped data keys: a directory or s3://… (env ETRID_KEYSTORE)")
@click.option("--reason", default="erasure request", show_default=True, help="recorded with the erasure")
@audit_log_option()
@json_option()
@friendly
def compliance_erase(job_id: int, url: str | None, blob_store: str | None, extra_blobs: tuple[str, ...],
                     kek: str | None, keystore: str | None, reason: str, audit_log: str | None, as_json: bool) -> None:
    """Crypto-shred a job: destroy its data keys, delete its blobs where the store can, and record it.

    Exits non-zero when a plaintext blob had to be left behind (a store without delete).
    """
    from etrid_ray.blobs import normalize_hash
    from etrid_ray.security import audit, transport
    from etrid_ray.security.crypto import erase_job, job_blobs_from_chain

    for h in extra_blobs:
        try:
            normalize_hash(h)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--blob") from None
    if not url and not blob_store:
        raise click.UsageError("pass --url (to find the job's blobs on chain) or --blob-store with --blob")
    ring = _keyring(kek, keystore)
    store = transport.open_secure_blob_store(blob_store or str(url), compliance=True)
    blobs = list(extra_blobs)
    audit.configure(_audit_log_path(audit_log))
    try:
        if url:
            with transport.connect(url, compliance=True) as conn:
                blobs = job_blobs_from_chain(conn, store, job_id) + blobs
        result = erase_job(job_id, ring, store, blobs, reason=reason)
    finally:
        audit.configure(None)
    if as_json:
        print_json(result.to_json())
    else:
        click.echo(f"job {job_id}: destroyed keys {', '.join(result.keys_destroyed) or 'none'}; "
                   f"deleted {len(result.blobs_deleted)} blob(s); {len(result.blobs_kept_sealed)} sealed blob(s) "
                   "kept by a store without delete (unreadable now)")
    if not result.complete:
        raise click.ClickException(f"erasure incomplete: {len(result.blobs_kept_plaintext)} plaintext blob(s) "
                                   f"could not be deleted from {store.url}: {', '.join(result.blobs_kept_plaintext)}")


@compliance_group.command("report")
@template_option()
@click.option("--since", required=True, help="start of the period: a date or ISO 8601 time (UTC)")
@click.option("--until", default=None, help="end of the period (default: now)")
@click.option("--format", "fmt", type=click.Choice(["md", "json", "html"]), default="md", show_default=True)
@audit_log_option()
@url_option("node URL: check anchors, read attestations and the on-chain config", default=None)
@click.option("--address", default=None, help="the provider account (default: from ETRID_SEED / --key-file)")
@key_file_option()
@click.option("--blob-store", default=None, help="check every blob's encryption in this store")
@click.option("--kek", default=None, help="with --keystore: also say whether each blob's key still exists")
@click.option("--keystore", default=None)
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write the report here instead of stdout")
@friendly
def compliance_report(template: str, since: str, until: str | None, fmt: str, audit_log: str | None, url: str | None,
                      address: str | None, key_file: str | None, blob_store: str | None, kek: str | None,
                      keystore: str | None, out_path: Path | None) -> None:
    """Evidence for a template over a period: jobs and regions, encryption of every blob, audit chain and
    anchors, attestations, erasures and refused violations."""
    from etrid_ray.security import transport
    from etrid_ray.security.audit import parse_time
    from etrid_ray.security.report import build_report, render

    for value, hint in ((since, "--since"), (until, "--until")):
        if value is not None:
            try:
                parse_time(value)
            except ValueError:
                raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD or ISO 8601)", param_hint=hint) from None
    if address is None:
        signer = signer_from(key_file, required=False)
        address = signer.address if signer is not None else None
    store = transport.open_secure_blob_store(blob_store, compliance=True) if blob_store else None
    ring = _keyring(kek, keystore, required=False) if store is not None else None
    conn = transport.connect(url, compliance=True) if url else None
    try:
        report = build_report(template, since, _audit_log_path(audit_log), until=until, conn=conn, account=address,
                              store=store, keyring=ring)
    finally:
        if conn is not None:
            conn.close()
    text = render(report, fmt)
    if out_path is not None:
        out_path.write_text(text)
        click.echo(f"wrote {out_path} ({'compliant' if report['summary']['compliant'] else 'NOT compliant'})",
                   err=True)
    else:
        click.echo(text)


@click.group("audit")
def audit_group() -> None:
    """The hash-chained audit log."""


@audit_group.command("verify")
@audit_log_option()
@url_option("node URL: check the anchors on chain", default=None)
@click.option("--account", default=None,
              help="the account that anchors; its anchors on chain are the evidence (default: from the anchor records)")
@click.option("--from-block", type=click.IntRange(1), default=None,
              help="oldest block to scan for the account's anchors (default: 1; the scan walks back from the best "
                   "block and stops early once the log's own anchors are covered)")
@json_option()
@friendly
def audit_verify(audit_log: str | None, url: str | None, account: str | None, from_block: int | None,
                 as_json: bool) -> None:
    """Check the log's hash chain, seq run and head file, and its anchors on chain; exit 1 on the first problem.

    With --url the account's anchors on chain are the evidence: the log must back the newest one the
    account put there, so a log swapped for another, emptied or deleted fails instead of passing as
    "0/0 anchors"."""
    from etrid_ray.security import transport
    from etrid_ray.security.audit import verify

    path = _audit_log_path(audit_log)
    conn = transport.connect(url, compliance=True) if url else None
    try:
        res = verify(path, conn, account=account, from_block=from_block)
    finally:
        if conn is not None:
            conn.close()
    newest = res.newest_anchor
    if as_json:
        print_json(res.to_json())
    else:
        on_chain = sum(1 for a in res.anchors if a.on_chain)
        if not res.chain_checked:
            anchors = f"{len(res.anchors)} anchors (not checked on chain: pass --url)"
        else:
            anchors = f"{on_chain}/{len(res.anchors)} of this log's anchors on chain"
            if res.account is not None and res.scanned is not None:
                anchors += (f"; {res.account}'s newest anchor in blocks {res.scanned[1]}..{res.scanned[0]}: "
                            f"{newest if newest is not None else 'none'}")
        click.echo(f"{path}: {res.records} records, head seq {res.head_seq} {res.head_hash[:16]}…, {anchors}")
        for problem in res.problems:
            click.echo(f"PROBLEM {problem}", err=True)
    if not res.ok:
        first = res.first_problem
        raise click.ClickException(f"audit log does not verify: {first}")
    if not as_json:
        if res.chain_checked and newest is not None:
            click.echo(f"OK: the chain of hashes is intact and backs {res.account}'s newest anchor "
                       f"(block {newest.block}, seq {newest.seq})")
        else:
            click.echo("OK: the chain of hashes is intact (not checked on chain: pass --url)")
