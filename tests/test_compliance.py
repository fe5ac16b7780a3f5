"""Compliance templates: policies, residency (manifest ∩ template) in admission and placement, enabling on
chain, and the CLI (enable, erase, report, audit verify) against a real devnet."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from etrid_ray.admission import Capabilities, JobTerms, region_allowed
from etrid_ray.blobs import FileBlobStore
from etrid_ray.chain import ChainClient, dev_signer
from etrid_ray.chain.keys import Signer
from etrid_ray.chain.models import GpuSpecs, HardwareAttestation, TeeAttestation
from etrid_ray.chain.submit import Call, Submitter
from etrid_ray.cli import main
from etrid_ray.config import ProviderConfig, pools_from_config
from etrid_ray.manifest import ComplianceSpec, Manifest
from etrid_ray.scaling.eligibility import eligible
from etrid_ray.scaling.placement import PlaceReason, place
from etrid_ray.security import audit
from etrid_ray.security.audit import Anchorer, AuditLog
from etrid_ray.security.compliance import (
    POLICIES,
    UnknownTemplate,
    enable_on_chain,
    intersect_regions,
    job_regions,
    policy_for,
    region_matches,
    region_permitted,
    serving_pools,
    template_name,
)
from etrid_ray.security.crypto import DirKeyStore, EncryptedBlobStore, FileKek, Keyring, job_ref
from etrid_ray.security.report import build_report, render
from tests.scaling_support import CONFIG, GCP, LOCAL, job, snapshot

EDSC = 10**18
BUSY_LOCAL = {"local_gpu": {"busy": 4}}


# --- policies ---------------------------------------------------------------------------------------


def test_every_template_requires_encryption_audit_and_tls_and_only_gdpr_pins_regions() -> None:
    assert set(POLICIES) == {"HIPAA", "GDPR", "SOC2", "CCPA", "FedRAMP"}
    for name, p in POLICIES.items():
        assert (p.template, p.encryption_required, p.audit_required, p.tls_required) == (name, True, True, True)
        assert p.audit_retention_days >= 365 and p.basis
        assert len(p.data_residency.encode()) <= 32
    gdpr = POLICIES["GDPR"]
    assert gdpr.allowed_regions == ("eu", "europe") and gdpr.data_residency == "EU" and gdpr.data_retention_days
    assert all(POLICIES[t].allowed_regions is None for t in ("HIPAA", "SOC2", "CCPA", "FedRAMP"))
    assert POLICIES["HIPAA"].audit_retention_days == 6 * 365  # 45 CFR 164.316(b)(2)


@pytest.mark.parametrize("given_name, canonical", [("gdpr", "GDPR"), ("FEDRAMP", "FedRAMP"), (" soc2 ", "SOC2")])
def test_template_names_are_case_insensitive(given_name: str, canonical: str) -> None:
    assert template_name(given_name) == canonical
    assert policy_for(given_name) is POLICIES[canonical]


def test_unknown_templates_and_no_template() -> None:
    with pytest.raises(UnknownTemplate, match="HIPAA, GDPR, SOC2, CCPA, FedRAMP"):
        template_name("PCI-DSS")
    assert policy_for(None) is None


# --- residency: manifest allowed_regions ∩ template regions --------------------------------------------


@pytest.mark.parametrize("a, b, expected", [
    (None, None, None),
    (None, ("eu", "europe"), ("eu", "europe")),
    (("us-",), None, ("us-",)),
    (("europe-west", "us"), ("eu", "europe"), ("europe-west",)),
    (("us-", "ap-"), ("eu", "europe"), ()),  # nowhere
    (("eu-central", "us-"), ("eu", "europe"), ("eu-central",)),
    (("e",), ("eu", "europe"), ("eu",)),  # "europe" is covered by "eu": one prefix says it all
    (("EU-West-1",), ("eu",), ("eu-west-1",)),
])
def test_region_intersection(a: Any, b: Any, expected: Any) -> None:
    assert intersect_regions(a, b) == expected


REGION = st.text(alphabet="europs-tw1234 ", min_size=0, max_size=10)
PREFIXES = st.one_of(st.none(), st.lists(st.text(alphabet="europs-tw12", min_size=0, max_size=6), max_size=4))


@given(region=REGION, a=PREFIXES, b=PREFIXES)
def test_matching_the_intersection_is_matching_both(region: str, a: list[str] | None, b: list[str] | None) -> None:
    both = region_matches(region, None if a is None else tuple(a)) and region_matches(region, None if b is None
                                                                                       else tuple(b))
    assert region_matches(region, intersect_regions(a, b)) == both


@given(region=st.sampled_from(["eu-west-1", "europe-west4", "us-east-1", "eastus", "local", "westeurope"]),
       template=st.sampled_from([None, "GDPR", "HIPAA", "SOC2", "CCPA", "FedRAMP"]),
       allowed=st.lists(st.sampled_from(["eu", "eu-west", "us-", "europe-west4", "east", "local"]), max_size=3))
def test_admission_and_the_compliance_module_agree(region: str, template: str | None, allowed: list[str]) -> None:
    m = Manifest(handler="echo", compliance=ComplianceSpec(template=template, allowed_regions=allowed))
    assert region_allowed(region, m) == region_permitted(region, template, allowed)
    manifest_ok = not allowed or any(region.startswith(p) for p in allowed)
    template_ok = template != "GDPR" or region.startswith(("eu", "europe"))
    assert region_permitted(region, template, allowed) == (manifest_ok and template_ok)


def test_serving_pools_of_the_default_config() -> None:
    pools = pools_from_config(CONFIG)
    assert serving_pools(ComplianceSpec(template="GDPR"), pools) == [GCP]
    assert serving_pools(ComplianceSpec(template="GDPR", allowed_regions=["us-"]), pools) == []
    assert job_regions(ComplianceSpec(template="GDPR", allowed_regions=["us-"])) == ()
    assert len(serving_pools(ComplianceSpec(template="HIPAA"), pools)) == len(pools)


def _head_admit(cfg: ProviderConfig, manifest: Manifest) -> Any:
    """The head's admission with pools (claimable when any pool could run it), with the pool caps it builds."""
    from etrid_ray.provider.stages.admission import judge, offers_for

    caps = Capabilities(gpus_per_node=4, vram_gb=80, accelerator="A100", tee=None, region=cfg.region,
                        handlers=frozenset(cfg.allowed_handlers), price_per_gpu_second=1, max_input_bytes=1 << 20)
    pool_caps = {p.name: replace(caps, gpus_per_node=p.gpus_per_node, vram_gb=p.vram_gb,
                                 accelerator=p.accelerator, tee=p.tee, region=p.region)
                 for p in pools_from_config(cfg)}
    offers = offers_for(caps, pool_caps, scaling=True, gate=None, default_pool=cfg.pool)
    return judge(JobTerms(1, "Custom", 60, 10**18), manifest, offers)


def test_a_gdpr_job_no_pool_may_serve_is_not_claimed() -> None:
    gdpr = Manifest(handler="echo", compliance=ComplianceSpec(template="GDPR"))
    assert _head_admit(ProviderConfig(), gdpr).action == "claim"  # the GCP pool is in europe-west4
    no_eu = ProviderConfig(gcp_enabled=False)
    verdict = _head_admit(no_eu, gdpr)
    assert verdict.action == "skip" and "not allowed by compliance rules" in verdict.reason
    assert "eu*, europe*" in verdict.reason
    # an EU pool exists, but the manifest itself only allows the US: the intersection is empty
    us_only = Manifest(handler="echo", compliance=ComplianceSpec(template="GDPR", allowed_regions=["us-"]))
    verdict = _head_admit(ProviderConfig(), us_only)
    assert verdict.action == "skip" and "nowhere" in verdict.reason
    # without a template the same manifest is served in the US
    assert _head_admit(ProviderConfig(), Manifest(handler="echo",
                                                  compliance=ComplianceSpec(allowed_regions=["us-"]))).action == "claim"


def test_gdpr_placement_goes_only_to_eu_pools() -> None:
    queue = [job(1, gpus=8, rate=9.0, compliance_template="GDPR"),
             job(2, gpus=8, rate=9.0, compliance_template="GDPR", allowed_regions=("europe-west",)),
             job(3, gpus=8, rate=9.0, compliance_template="GDPR", allowed_regions=("us-",)),
             job(4, gpus=8, rate=9.0)]
    plan = place(snapshot(queue=queue, **BUSY_LOCAL), CONFIG)
    by_job = {p.job_id: p for p in plan.placements}
    assert by_job[1].pool == GCP and by_job[2].pool == GCP
    assert by_job[3].pool is None and by_job[3].reason == PlaceReason.NO_ELIGIBLE_POOL
    assert by_job[4].pool not in (None, GCP)  # unrestricted: the cheaper US pool
    for p in pools_from_config(CONFIG):
        assert eligible(queue[0], p) == (p.name == GCP)
        assert not eligible(queue[2], p)
    # a local pool counts only when its region is allowed
    eu_local = CONFIG.model_copy(update={"region": "eu-west-1"})
    plan = place(snapshot(eu_local, queue=[job(5, gpus=1, compliance_template="GDPR")]), eu_local)
    assert plan.placements[0].pool == LOCAL


# --- on chain ----------------------------------------------------------------------------------------


def funded(client: ChainClient, amount: int = 1_000 * EDSC, uri: str | None = None) -> Signer:
    """An account of this test's own, funded by //Alice (no shared balances or nonces)."""
    signer = dev_signer(uri or f"//ComplianceTest/{time.time_ns()}")
    Submitter(client.conn, dev_signer("Alice")).submit(
        Call("Balances", "transfer_keep_alive", {"dest": signer.address, "value": amount}))
    return signer


@pytest.fixture()
def client(devnet: Any) -> Any:
    with ChainClient(devnet.url) as c:
        yield c


def test_enabling_a_template_calls_the_chain_and_is_audited(client: ChainClient, tmp_path: Path) -> None:
    who = funded(client)
    log_path = tmp_path / "audit.jsonl"
    audit.configure(log_path, fsync=False)
    try:
        receipt = enable_on_chain(client.conn, who, "gdpr")
        assert receipt.first("Compliance", "ComplianceEnabled").get("account") == who.address
        cfg = client.reader.compliance(who.address)
        assert cfg is not None
        assert (cfg.template, cfg.data_residency, cfg.encryption_required, cfg.audit_logs_required) == (
            "GDPR", "EU", True, True)
        enable_on_chain(client.conn, who, "HIPAA", "US")
        assert client.reader.compliance(who.address).template == "HIPAA"
        with pytest.raises(ValueError, match="at most 32 bytes"):
            enable_on_chain(client.conn, who, "GDPR", "x" * 33)
        changes = [r.fields for r in AuditLog(log_path).records() if r.kind == "config_change"]
        assert [(c["template"], c["data_residency"], c["block"]) for c in changes] == [
            ("GDPR", "EU", receipt.block_number), ("HIPAA", "US", changes[1]["block"])]
    finally:
        audit.configure(None)


def run(args: list[str], env: dict[str, str] | None = None) -> Any:
    base = {"ETRID_SEED": "", "ETRID_SEED_FILE": "", "ETRID_WS_URL": "", "ETRID_AUDIT_LOG": "", "ETRID_KEK": "",
            "ETRID_KEYSTORE": ""}
    return CliRunner().invoke(main, args, env={**base, **(env or {})}, catch_exceptions=False)


def test_cli_enable_refuses_a_remote_plaintext_node_and_enables_on_the_devnet(devnet: Any, client: ChainClient,
                                                                            tmp_path: Path) -> None:
    uri = f"//ComplianceTest/cli/{time.time_ns()}"
    who = funded(client, uri=uri)
    seed = tmp_path / "seed"
    seed.write_text(uri)
    log_path = tmp_path / "audit.jsonl"
    res = run(["compliance", "enable", "--template", "gdpr", "--url", "ws://10.9.8.7:9944"],
              {"ETRID_SEED": "//Alice"})
    assert res.exit_code != 0 and "plaintext ws://" in res.output and "wss://" in res.output
    res = run(["compliance", "enable", "--template", "gdpr", "--url", devnet.url, "--seed-file", str(seed),
               "--audit-log", str(log_path), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert (out["account"], out["template"], out["data_residency"]) == (who.address, "GDPR", "EU")
    assert client.reader.compliance(who.address).template == "GDPR"
    assert run(["audit", "verify", "--audit-log", str(log_path)]).exit_code == 0


def test_cli_erase_shreds_a_jobs_data_found_on_chain(devnet: Any, client: ChainClient, tmp_path: Path) -> None:
    consumer = funded(client)
    kek, keys = tmp_path / "kek", tmp_path / "keys"
    ring = Keyring(FileKek.generate(kek), DirKeyStore(keys))
    store = FileBlobStore(tmp_path / "blobs")
    h_in = EncryptedBlobStore(store, ring).put(b"personal data of a data subject")
    job = client.consumer(consumer, store).submit_job(
        {"handler": "echo", "inputs": [{"name": "rec", "hash": h_in}], "compliance": {"template": "GDPR"}},
        payment=EDSC, max_compute_time=60)
    h_out = EncryptedBlobStore(store, ring, job_ref(job.job_id)).put(b"the result")
    log_path = tmp_path / "audit.jsonl"
    res = run(["compliance", "erase", "--job", str(job.job_id), "--url", devnet.url, "--blob-store",
               f"file://{tmp_path / 'blobs'}", "--blob", h_out, "--kek", f"file://{kek}", "--keystore", str(keys),
               "--audit-log", str(log_path), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["complete"] and sorted(out["blobs_deleted"]) == sorted([job.input_hash, h_in, h_out])
    assert job_ref(job.job_id) in out["keys_destroyed"] and len(out["keys_destroyed"]) == 2
    assert list((tmp_path / "blobs").iterdir()) == []
    erasure = [r for r in AuditLog(log_path).records() if r.kind == "erasure"]
    assert len(erasure) == 1 and erasure[0].fields["job"] == job.job_id
    # erasing again finds nothing left, and says so
    again = json.loads(run(["compliance", "erase", "--job", str(job.job_id), "--blob-store",
                            f"file://{tmp_path / 'blobs'}", "--blob", h_out, "--kek", str(kek), "--keystore",
                            str(keys), "--audit-log", str(log_path), "--json"]).output)
    assert again["keys_destroyed"] == [] and again["blobs_absent"] == [h_out]
    res = run(["compliance", "erase", "--job", "1", "--blob-store", str(tmp_path / "blobs")])
    assert res.exit_code != 0 and "ETRID_KEK" in res.output


# --- reports ------------------------------------------------------------------------------------------


def _scenario(tmp_path: Path, client: ChainClient | None) -> dict[str, Any]:
    """What a provider head records for a few jobs, plus an erasure, a refusal, an anchor and an attestation."""
    from etrid_ray.security import transport
    from etrid_ray.security.crypto import erase_job

    log_path = tmp_path / "audit.jsonl"
    ring = Keyring(FileKek.generate(tmp_path / "kek"), DirKeyStore(tmp_path / "keys"))
    store = FileBlobStore(tmp_path / "blobs")
    audit.configure(log_path, fsync=False)
    try:
        h_in = EncryptedBlobStore(store, ring).put(b"input of 501")
        h_out = EncryptedBlobStore(store, ring, job_ref(501)).put(b"result of 501")
        h_502 = EncryptedBlobStore(store, ring, job_ref(502)).put(b"input of 502")
        rec = audit.record
        rec("placement", job=501, template="GDPR", decision="placed", pool=GCP, region="europe-west4",
            reason="new gcp-spot-a100 node: pays <script>alert(1)</script>")
        rec("claim", job=501, template="GDPR", gpu=3, pool=GCP, region="europe-west4")
        rec("data_access", job=501, template="GDPR", blobs=[h_in], actor="task")
        rec("result", job=501, template="GDPR", blob=h_out, encrypted=True)
        rec("placement", job=502, template="GDPR", decision="placed", pool=GCP, region="europe-west4", reason="ok")
        rec("data_access", job=502, template="GDPR", blobs=[h_502])
        rec("failure", job=502, template="GDPR", reason="echo failed: ValueError")
        rec("placement", job=503, template="GDPR", decision="skip", region="us-east-1",
            reason="region us-east-1 not allowed by compliance rules (allowed: eu*, europe*)")
        rec("claim", job=504, template="HIPAA", pool="aws-spot-a100", region="us-east-1")
        with pytest.raises(transport.InsecureTransportError):
            transport.check_endpoint("http://blobs.example.com", compliance=True, what="blob_store")
        erase_job(502, ring, store, [h_502])
        account = None
        if client is not None:
            who = funded(client, 1_000 * EDSC)
            account = who.address
            enable_on_chain(client.conn, who, "GDPR")
            provider = client.provider(who)
            gpu = provider.register_gpu(GpuSpecs("H100", 80, 132, 1980, 700), 100 * EDSC,
                                        HardwareAttestation(b"", 1000, int(time.time())))
            provider.submit_tee_attestation(gpu, TeeAttestation("AMDSEV", b"\x01" * 1184, b"\xab" * 32,
                                                                int(time.time())))
            assert Anchorer(AuditLog(log_path), Submitter(client.conn, who), 60).maybe_anchor() is not None
    finally:
        audit.configure(None)
    return {"log": log_path, "store": store, "ring": ring, "account": account, "h_in": h_in, "h_out": h_out,
            "h_502": h_502, "kek": tmp_path / "kek", "keys": tmp_path / "keys", "blobs": tmp_path / "blobs"}


def test_cli_report_on_the_devnet_in_all_three_formats(devnet: Any, client: ChainClient, tmp_path: Path) -> None:
    s = _scenario(tmp_path, client)
    args = ["compliance", "report", "--template", "gdpr", "--since", "2000-01-01", "--audit-log", str(s["log"]),
            "--url", devnet.url, "--address", s["account"], "--blob-store", f"file://{s['blobs']}",
            "--kek", str(s["kek"]), "--keystore", str(s["keys"])]
    res = run([*args, "--format", "json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.output)
    sm = r["summary"]
    assert sm["compliant"] is True and sm["audit_chain_ok"] and sm["chain_checked"] and sm["anchors_on_chain"] == 1
    assert [(j["job"], j["pool"], j["region"], j["region_ok"], j["outcome"]) for j in r["jobs"]] == [
        (501, GCP, "europe-west4", True, "completed"), (502, GCP, "europe-west4", True, "failed")]  # 504: HIPAA
    blobs = {b["blob"]: b for b in r["blobs"]}
    assert blobs[s["h_in"]]["encrypted"] is True and blobs[s["h_in"]]["key"] == "present"
    assert blobs[s["h_out"]]["key_ref"] == "job-501" and blobs[s["h_out"]]["source"] == "store"
    assert blobs[s["h_502"]]["present"] is False  # erased
    assert [e["job"] for e in r["erasures"]] == [502]
    refused = r["violations_refused"]
    assert {v["kind"] for v in refused} == {"placement", "policy_violation"}
    assert any(v.get("rule") == "tls_required" for v in refused) and any(v.get("job") == 503 for v in refused)
    att = [a for a in r["attestations"] if a["source"] == "chain"]
    assert len(att) == 1 and att[0]["tee_type"] == "AMDSEV" and att[0]["measurement"] == "0x" + "ab" * 32
    assert r["on_chain_config"]["template"] == "GDPR" and r["on_chain_config"]["data_residency"] == "EU"
    md = run([*args, "--format", "md"]).output
    assert md.startswith("# GDPR compliance report") and "**COMPLIANT**" in md
    assert "| 501 | gcp-spot-a100 | europe-west4 | yes | completed |" in md
    out = tmp_path / "report.html"
    res = run([*args, "--format", "html", "--out", str(out)])
    assert res.exit_code == 0 and "compliant" in res.output
    page = out.read_text()
    assert page.startswith("<!doctype html>") and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>" not in page
    # a period after everything: no jobs, still a verified chain
    later = json.loads(run([*args[:5], "2999-01-01", *args[6:], "--format", "json"]).output)
    assert later["jobs"] == [] and later["summary"]["audit_chain_ok"]
    # tamper with the log: verify fails loudly, the report says NOT compliant
    text = s["log"].read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(text) if '"kind":"claim"' in line and "europe-west4" in line)
    text[at] = text[at].replace("europe-west4", "us-east-1")
    s["log"].write_text("".join(text))
    res = run(["audit", "verify", "--audit-log", str(s["log"]), "--url", devnet.url])
    assert res.exit_code == 1 and f"edited: record {at} (line {at + 1})" in res.output
    tampered = json.loads(run([*args, "--format", "json"]).output)
    assert tampered["summary"]["compliant"] is False and tampered["audit"]["problems"][0]["kind"] == "edited"


def test_a_plaintext_blob_or_a_region_breach_makes_a_report_non_compliant(tmp_path: Path) -> None:
    s = _scenario(tmp_path, None)
    assert build_report("GDPR", "2000-01-01", s["log"], store=s["store"], keyring=s["ring"])["summary"]["compliant"]
    plain = s["store"].put(b"forgot to encrypt")
    audit.configure(s["log"], fsync=False)
    try:
        audit.record("data_access", job=501, template="GDPR", blobs=[plain])
        r = build_report("GDPR", "2000-01-01", s["log"], store=s["store"], keyring=s["ring"])
        assert not r["summary"]["compliant"] and r["summary"]["blobs_plaintext"] == 1
        audit.record("claim", job=505, template="GDPR", pool="aws-spot-a100", region="us-east-1")
        r = build_report("GDPR", "2000-01-01", s["log"])
        assert r["summary"]["residency_breaches"] == 1
        assert "NOT COMPLIANT" in render(r, "md")
    finally:
        audit.configure(None)
    with pytest.raises(ValueError, match="md, json or html"):
        render(r, "pdf")
