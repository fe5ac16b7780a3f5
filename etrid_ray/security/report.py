"""Compliance reports: the evidence for one template over a period, as JSON, Markdown or HTML.

Everything comes from records someone else can check: the audit log (verified, with its anchors
checked against the chain when a node is given), the blob store (is each blob an AES-256-GCM
envelope, and does its key still exist), and the chain (the account's `Compliance` config and its
GPUs' `ConfidentialCompute.TeeAttestations`). Sections: policy, jobs served and where, encryption
status of every blob, audit-chain verification and anchors, attestations, erasures, and policy
violations refused. `compliant` is true only when the audit chain verifies, every blob that must be
encrypted is, and every job ran in a region its rules allow.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from etrid_ray.chain.reader import ChainReader
from etrid_ray.security.audit import AuditLog, Record, parse_time, verify
from etrid_ray.security.compliance import POLICIES, Policy, region_matches, template_name
from etrid_ray.security.crypto import blob_status

JOB_KINDS = ("claim", "placement", "admission", "data_access", "result", "failure")
BLOB_FIELDS = ("blob", "result_hash", "input_hash", "manifest")
BLOB_LIST_FIELDS = ("blobs", "inputs")


def _blobs_of(fields: dict[str, Any]) -> list[str]:
    out = [fields[k] for k in BLOB_FIELDS if isinstance(fields.get(k), str) and fields[k].startswith("0x")]
    for k in BLOB_LIST_FIELDS:
        for v in fields.get(k) or []:
            h = v.get("hash") if isinstance(v, dict) else v
            if isinstance(h, str) and h.startswith("0x"):
                out.append(h)
    return out


def build_report(template: str, since: str | datetime, audit_path: str | Path, *,
                 until: str | datetime | None = None, conn: Any = None, account: str | None = None,
                 store: Any = None, keyring: Any = None) -> dict[str, Any]:
    """The evidence as one JSON-able dict (see the module docstring)."""
    policy: Policy = POLICIES[template_name(template)]
    start = parse_time(since) if isinstance(since, str) else since.astimezone(UTC)
    end = (parse_time(until) if isinstance(until, str) else until.astimezone(UTC)) if until else datetime.now(UTC)
    path = Path(audit_path).expanduser()
    verification = verify(path, conn, account=account)
    records = _records(path)  # all of them: a broken chain makes the report non-compliant, not shorter
    period = [r for r in records if start <= r.when <= end]

    jobs = _jobs(period, policy)
    blobs = _blob_evidence(jobs, policy, store, keyring)
    erasures = [{"seq": r.seq, "time": r.time, **r.fields} for r in period if r.kind == "erasure"]
    refused = [{"seq": r.seq, "time": r.time, "kind": r.kind, **r.fields} for r in period
               if r.kind == "policy_violation" or (r.kind in ("placement", "admission")
                                                    and r.fields.get("decision") in ("skip", "refused")
                                                    and r.fields.get("template") in (policy.template, None)
                                                    and "region" in str(r.fields.get("reason", "")))]
    anchors_in_period = [a.__dict__ for a in verification.anchors]
    residency_breaches = [j for j in jobs.values() if j["region_ok"] is False]
    plaintext = [b for b in blobs if policy.encryption_required and b["encrypted"] is False]
    attestations = _attestations(conn, account, period)
    on_chain = _on_chain_config(conn, account)
    report: dict[str, Any] = {
        "template": policy.template,
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "period": {"since": start.isoformat(), "until": end.isoformat()},
        "account": account,
        "policy": policy.to_json(),
        "on_chain_config": on_chain,
        "jobs": sorted(jobs.values(), key=lambda j: j["job"]),
        "blobs": blobs,
        "audit": {**verification.to_json(), "records_in_period": len(period),
                  "anchors": anchors_in_period},
        "attestations": attestations,
        "erasures": erasures,
        "violations_refused": refused,
        "summary": {
            "jobs": len(jobs),
            "jobs_completed": sum(1 for j in jobs.values() if j["outcome"] == "completed"),
            "jobs_failed": sum(1 for j in jobs.values() if j["outcome"] == "failed"),
            "regions": sorted({j["region"] for j in jobs.values() if j["region"]}),
            "blobs": len(blobs),
            "blobs_encrypted": sum(1 for b in blobs if b["encrypted"]),
            "blobs_plaintext": len(plaintext),
            "residency_breaches": len(residency_breaches),
            "audit_chain_ok": verification.ok,
            "anchors_on_chain": sum(1 for a in verification.anchors if a.on_chain),
            "chain_checked": verification.chain_checked,
            "erasures": len(erasures),
            "violations_refused": len(refused),
            "attestations": len(attestations),
        },
    }
    report["summary"]["compliant"] = bool(verification.ok and not plaintext and not residency_breaches
                                          and (not policy.audit_required or path.exists()))
    return report


def _records(path: Path) -> list[Record]:
    return list(AuditLog(path).records()) if path.exists() else []


def _jobs(period: list[Record], policy: Policy) -> dict[int, dict[str, Any]]:
    jobs: dict[int, dict[str, Any]] = {}
    for r in period:
        if r.kind not in JOB_KINDS or not isinstance(r.fields.get("job"), int):
            continue
        f = r.fields
        j = jobs.setdefault(f["job"], {"job": f["job"], "template": None, "pool": None, "region": None,
                                       "reason": None, "gpu": None, "claimed_at": None, "outcome": "in progress",
                                       "failure": None, "result": None, "blobs": [], "region_ok": None,
                                       "served": False})
        if f.get("template"):
            j["template"] = f["template"]
        if r.kind in ("placement", "admission") and f.get("decision") in ("skip", "refused"):
            continue  # not served here: evidence of a refusal, listed with the violations refused
        j["served"] = True
        for k in ("pool", "region", "reason", "gpu"):
            if f.get(k) is not None:
                j[k] = f[k]
        if r.kind == "claim":
            j["claimed_at"] = r.time
        elif r.kind == "result":
            j["outcome"], j["result"] = "completed", f.get("blob") or f.get("result_hash")
        elif r.kind == "failure":
            j["outcome"], j["failure"] = "failed", f.get("reason")
        j["blobs"] += [b for b in _blobs_of(f) if b not in j["blobs"]]
    out = {}
    for job_id, j in jobs.items():
        if j.pop("served") is False or j["template"] != policy.template:
            continue  # refused here, or under other rules (or none): not this template's jobs served
        if j["region"] is not None:
            j["region_ok"] = region_matches(j["region"], policy.allowed_regions)
        out[job_id] = j
    return out


def _blob_evidence(jobs: dict[int, dict[str, Any]], policy: Policy, store: Any, keyring: Any) -> list[dict[str, Any]]:
    out = []
    for j in sorted(jobs.values(), key=lambda j: j["job"]):
        for h in j["blobs"]:
            entry: dict[str, Any] = {"job": j["job"], "blob": h, "encrypted": None, "key": None, "source": "audit"}
            if store is not None:
                try:
                    st = blob_status(store, h, keyring)
                except Exception as err:  # noqa: BLE001 - evidence: say the store could not be read
                    entry["error"] = f"{type(err).__name__}: {err}"
                else:
                    entry.update(source="store", present=st["present"], encrypted=st["encrypted"],
                                 key_ref=st.get("key_ref"), kek=st.get("kek"), key=st.get("key"))
                    if not st["present"]:
                        entry["encrypted"] = None  # deleted (erased): nothing left to judge
            out.append(entry)
    return out


def _attestations(conn: Any, account: str | None, period: list[Record]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if conn is not None and account:
        reader = ChainReader(conn)
        for gpu in reader.provider_gpus(account):
            att = reader.tee_attestation(gpu)
            if att is not None:
                out.append({"gpu": gpu, "source": "chain", "tee_type": att.tee_type,
                            "measurement": "0x" + att.mrenclave.hex(), "quote_bytes": len(att.quote),
                            "timestamp": datetime.fromtimestamp(att.timestamp, UTC).isoformat()})
    out += [{"source": "audit", "seq": r.seq, "time": r.time, **r.fields} for r in period if r.kind == "attestation"]
    return out


def _on_chain_config(conn: Any, account: str | None) -> dict[str, Any] | None:
    if conn is None or not account:
        return None

    cfg = ChainReader(conn).compliance(account)
    return None if cfg is None else dict(cfg.__dict__)


# --- rendering --------------------------------------------------------------------------------------------


def render(report: dict[str, Any], fmt: str = "md") -> str:
    if fmt == "json":
        return json.dumps(report, indent=2, sort_keys=True, default=str)
    if fmt == "md":
        return _markdown(report)
    if fmt == "html":
        return _html(report)
    raise ValueError(f"unknown format {fmt!r}: md, json or html")


def _sections(r: dict[str, Any]) -> list[tuple[str, list[str], list[list[Any]], str]]:
    """(title, columns, rows, note) for each table, shared by Markdown and HTML."""
    s, a = r["summary"], r["audit"]
    first = a["problems"][0] if a["problems"] else None
    audit_note = ("verified: " + f"{a['records']} records, head seq {a['head_seq']}, hash {a['head_hash'][:16]}…"
                  if a["ok"] else f"FAILED: {first['kind']} at record {first['seq']}: {first['detail']}")
    if not a["chain_checked"]:
        audit_note += " (anchors not checked against a chain: pass --url)"
    pol = r["policy"]
    return [
        ("Policy", ["requirement", "value"], [
            ["encryption at rest", "required" if pol["encryption_required"] else "no"],
            ["audit trail", "required" if pol["audit_required"] else "no"],
            ["encryption in transit", "TLS required" if pol["tls_required"] else "no"],
            ["allowed regions", ", ".join(f"{p}*" for p in pol["allowed_regions"]) if pol["allowed_regions"]
             is not None else "anywhere"],
            ["audit retention", f"{pol['audit_retention_days']} days"],
            ["job data retention", f"{pol['data_retention_days']} days" if pol["data_retention_days"] else "no limit"],
            ["basis", pol["basis"]],
            ["on-chain config", json.dumps(r["on_chain_config"]) if r["on_chain_config"] else "not read"],
        ], ""),
        ("Jobs served", ["job", "pool", "region", "region allowed", "outcome", "reason"],
         [[j["job"], j["pool"], j["region"], _yn(j["region_ok"]), j["outcome"] + (f" ({j['failure']})"
           if j["failure"] else ""), j["reason"]] for j in r["jobs"]], f"{s['jobs']} jobs"),
        ("Encryption at rest", ["job", "blob", "encrypted", "key", "evidence"],
         [[b["job"], b["blob"][:18] + "…", _yn(b["encrypted"]), b.get("key") or "", b["source"]]
          for b in r["blobs"]], f"{s['blobs_encrypted']} of {s['blobs']} encrypted, {s['blobs_plaintext']} plaintext"),
        ("Audit chain and anchors", ["anchored seq", "block", "on chain", "matches log", "found in", "detail"],
         [[x["seq"], x["block"], _yn(x["on_chain"]), _yn(x["matches_log"]), x["source"], x["detail"]]
          for x in a["anchors"]], audit_note),
        ("Attestations", ["gpu", "source", "TEE", "measurement", "time"],
         [[x.get("gpu"), x["source"], x.get("tee_type"), str(x.get("measurement", ""))[:20],
           x.get("timestamp") or x.get("time")] for x in r["attestations"]], ""),
        ("Erasures", ["time", "job", "keys destroyed", "blobs deleted", "kept sealed", "kept plaintext"],
         [[e["time"], e.get("job"), ", ".join(e.get("keys_destroyed", [])), len(e.get("blobs_deleted", [])),
           len(e.get("blobs_kept_sealed", [])), len(e.get("blobs_kept_plaintext", []))] for e in r["erasures"]], ""),
        ("Policy violations refused", ["time", "kind", "rule / job", "detail"],
         [[v["time"], v["kind"], v.get("rule") or v.get("job"), v.get("endpoint") or v.get("reason") or
           v.get("detail")] for v in r["violations_refused"]], ""),
    ]


def _yn(v: Any) -> str:
    return "yes" if v is True else "no" if v is False else "—"


def _md_cell(v: Any) -> str:
    return ("" if v is None else str(v)).replace("|", "\\|").replace("\n", " ")


def _markdown(r: dict[str, Any]) -> str:
    s = r["summary"]
    lines = [f"# {r['template']} compliance report", "",
             f"Period {r['period']['since']} – {r['period']['until']}; generated {r['generated_at']}"
             + (f"; account `{r['account']}`" if r["account"] else ""), "",
             f"**{'COMPLIANT' if s['compliant'] else 'NOT COMPLIANT'}** — {s['jobs']} jobs "
             f"({s['jobs_completed']} completed, {s['jobs_failed']} failed) "
             f"in {', '.join(s['regions']) or 'no region'}; "
             f"{s['blobs_encrypted']}/{s['blobs']} blobs encrypted; audit chain "
             f"{'verified' if s['audit_chain_ok'] else 'BROKEN'}, {s['anchors_on_chain']} anchors on chain; "
             f"{s['erasures']} erasures; {s['violations_refused']} violations refused; "
             f"{s['residency_breaches']} residency breaches.", ""]
    for title, cols, rows, note in _sections(r):
        lines += [f"## {title}", ""]
        if note:
            lines += [note, ""]
        if rows:
            lines.append("| " + " | ".join(cols) + " |")
            lines.append("|" + "---|" * len(cols))
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
        else:
            lines.append("_none_")
        lines.append("")
    return "\n".join(lines)


def _html(r: dict[str, Any]) -> str:
    e = html.escape
    s = r["summary"]
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{e(r['template'])} compliance report</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}"
             "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}.ok{color:#060}.bad{color:#a00}</style>",
             "</head><body>", f"<h1>{e(r['template'])} compliance report</h1>",
             f"<p>Period {e(r['period']['since'])} – {e(r['period']['until'])}; generated {e(r['generated_at'])}</p>",
             f"<p class=\"{'ok' if s['compliant'] else 'bad'}\"><strong>"
             f"{'COMPLIANT' if s['compliant'] else 'NOT COMPLIANT'}</strong></p>",
             "<table><tr>" + "".join(f"<th>{e(k)}</th>" for k in s) + "</tr><tr>"
             + "".join(f"<td>{e(str(v))}</td>" for v in s.values()) + "</tr></table>"]
    for title, cols, rows, note in _sections(r):
        parts.append(f"<h2>{e(title)}</h2>")
        if note:
            parts.append(f"<p>{e(note)}</p>")
        if not rows:
            parts.append("<p><em>none</em></p>")
            continue
        parts.append("<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in cols) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e('' if c is None else str(c))}</td>" for c in row) + "</tr>"
                  for row in rows]
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
