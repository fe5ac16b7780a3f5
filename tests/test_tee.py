"""Confidential compute: detection on fake /dev and configfs-tsm trees, attestation bound to a fresh nonce,
offline verification against a test CA that signs the way the hardware does, replay refused, the node's
start-time resources, the head's TEE gate, and TEE placement on the fake multi-node cluster.

Fake trees (``tests/helpers/tee_fixtures.py``): a thread stands in for the kernel's configfs-tsm (attributes
appear with a new entry; a write to ``inblob`` yields a signed ``outblob`` and bumps ``generation``) and
for Gramine's ``/dev/attestation``. Every TEE type is tried present, absent, broken and stale.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import ray
from click.testing import CliRunner

from etrid_ray.admission import Capabilities, JobTerms, admit
from etrid_ray.blobs import open_blob_store
from etrid_ray.chain import ChainClient, dev_signer
from etrid_ray.chain.codec import account_bytes
from etrid_ray.chain.models import JobStatus
from etrid_ray.cli import main
from etrid_ray.config import load_config
from etrid_ray.demo.fake_cluster import FakeKubeRayCluster
from etrid_ray.kuberay.render import raycluster
from etrid_ray.pools import POOL_LABEL, Pool
from etrid_ray.provider.job import JobState
from etrid_ray.provider.journal import Journal
from etrid_ray.provider.scaler import alive_nodes_per_pool
from etrid_ray.provider.task import Outcome, dispatch_options
from etrid_ray.security.tee import verify as v
from etrid_ray.security.tee.attest import AttestationError, AttestationRefresher, Evidence, produce_evidence
from etrid_ray.security.tee.config import TeeConfig, load_tee_config
from etrid_ray.security.tee.detect import detect
from etrid_ray.security.tee.node import TeeGate, node_status, ray_env, worker_start_command
from tests.helpers.tee_fixtures import (
    MEASUREMENTS,
    FakeBlocks,
    FakeTeeTree,
    TestCA,
    apply_node_start,
    tee_config,
    tee_gated_head_class,
)
from tests.provider_support import CONSUMER, PROVIDER, all_final, read_jobs, wait_until

TEES = ("sev-snp", "tdx", "sgx")
ACCOUNT = hashlib.blake2b(b"provider account", digest_size=32).digest()
GPU = 7
BASH = shutil.which("bash") or "/bin/bash"


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture()
def tree_factory(tmp_path: Path, ca: TestCA):
    trees: list[FakeTeeTree] = []

    def make(tee: str, **kw: Any) -> tuple[FakeTeeTree, TeeConfig]:
        tree = FakeTeeTree(tmp_path / f"node-{len(trees)}", tee, ca, **kw).start()
        trees.append(tree)
        return tree, tee_config(tmp_path / f"cfg-{len(trees)}", ca, root=tree.root)

    yield make
    for t in trees:
        t.stop()


def nonce(blocks: FakeBlocks, gpu: int = GPU) -> bytes:
    return v.make_nonce(ACCOUNT, gpu, blocks.best()[1])


def check(ev: Evidence, cfg: TeeConfig, blocks: FakeBlocks, **kw: Any) -> v.Verdict:
    args: dict[str, Any] = {"account_id": ACCOUNT, "gpu_id": GPU, "policy": v.TeePolicy.from_config(cfg),
                            "blocks": blocks, "aux": ev.aux, **kw}
    return v.verify_evidence(ev.tee, ev.quote, **args)


# --- detection ------------------------------------------------------------------------------------


@pytest.mark.parametrize("tee", TEES)
def test_each_tee_is_detected_with_its_evidence_interface(tee: str, tree_factory) -> None:
    _tree, cfg = tree_factory(tee)
    found = detect(cfg)
    assert (found.tee, found.interface, found.problems) == (tee, "gramine" if tee == "sgx" else "configfs-tsm", ())
    assert found.candidates == (tee,)
    if tee != "sgx":
        assert found.tsm_provider == {"sev-snp": "sev_guest", "tdx": "tdx_guest"}[tee]
        assert list(cfg.tsm.iterdir()) == []  # the probe entry is gone
    assert detect(cfg, want=tee).tee == tee
    other = next(t for t in TEES if t != tee)
    assert detect(cfg, want=other).tee is None


@pytest.mark.parametrize("tee", TEES)
@pytest.mark.parametrize("layout,expect", [
    ("absent", "no TEE devices"),
    ("dangling", "dangling symlink"),
    ("not-a-device", "not a character device"),
])
def test_absent_and_broken_devices_are_reported_not_detected(tee: str, layout: str, expect: str,
                                                              tree_factory) -> None:
    _tree, cfg = tree_factory(tee, layout=layout)
    found = detect(cfg)
    assert found.tee is None and not found.ok
    assert any(expect in p for p in found.problems), found.problems
    with pytest.raises(AttestationError, match="no usable TEE"):
        produce_evidence(b"\0" * 64, cfg)


@pytest.mark.parametrize("tee", ["sev-snp", "tdx"])
def test_configfs_tsm_alone_is_enough_for_tdx_and_sev_snp(tee: str, tree_factory) -> None:
    _tree, cfg = tree_factory(tee, layout="tsm-only")
    found = detect(cfg)
    assert (found.tee, found.interface) == (tee, "configfs-tsm")
    assert {d.state for d in found.devices} == {"absent"}
    blocks = FakeBlocks()
    assert check(produce_evidence(nonce(blocks), cfg), cfg, blocks).ok


def test_sgx_needs_both_devices_and_gramine_dcap(tree_factory) -> None:
    _tree, cfg = tree_factory("sgx", layout="partial")
    found = detect(cfg)
    assert found.tee is None and any("sgx_provision: absent" in p for p in found.problems)
    tree, cfg = tree_factory("sgx")
    (tree.gramine / "attestation_type").write_text("none")
    found = detect(cfg)
    assert found.tee is None and any('"dcap"' in p for p in found.problems)
    assert found.candidates == ("sgx",)


@pytest.mark.parametrize("tee", ["sev-snp", "tdx"])
def test_configfs_tsm_without_a_provider_or_with_another_one_is_not_usable(tee: str, tree_factory) -> None:
    _tree, cfg = tree_factory(tee, layout="no-provider")
    found = detect(cfg.model_copy(update={"report_timeout_s": 0.3}))
    assert found.tee is None and any("no `provider` attribute" in p for p in found.problems)
    wrong = "tdx_guest" if tee == "sev-snp" else "sev_guest"
    _tree, cfg = tree_factory(tee, provider=wrong)
    found = detect(cfg)  # the kernel's provider is believed over a device name …
    assert found.tee == {"tdx_guest": "tdx", "sev_guest": "sev-snp"}[wrong]
    assert any(f"served by {wrong!r}" in p for p in found.problems)
    found = detect(cfg, want=tee)  # … so a pool of the device's type gets nothing here
    assert found.tee is None and any(f"{tee}: not available" in p for p in found.problems)


def test_tee_config_from_file_and_env(tmp_path: Path, ca: TestCA) -> None:
    cfg = tee_config(tmp_path, ca, root=None)
    path = tmp_path / "tee.json"
    path.write_text(cfg.model_dump_json())
    loaded = load_tee_config(env={"ETRID_TEE_CONFIG": str(path), "ETRID_TEE_ROOT": str(tmp_path / "r")})
    assert loaded.root == tmp_path / "r" and loaded.dev == tmp_path / "r/dev"
    assert loaded.allowed_measurements == cfg.allowed_measurements
    assert TeeConfig().tsm == Path("/sys/kernel/config/tsm/report")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"allowed_measurements": {"sev-snp": ["zz"]}}))
    with pytest.raises(Exception, match="not hex"):
        load_tee_config(bad, env={})


# --- attestation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("tee", TEES)
def test_a_fresh_report_is_bound_to_the_nonce_and_verifies(tee: str, tree_factory) -> None:
    tree, cfg = tree_factory(tee)
    blocks = FakeBlocks()
    n = nonce(blocks)
    ev = produce_evidence(n, cfg)
    assert ev.tee == tee and ev.nonce == n and v.report_data_of(tee, ev.quote) == n
    assert v.nonce_block(n) == blocks.best()[1]
    assert ev.measurement == MEASUREMENTS[tee]
    if tee == "sev-snp":
        assert len(ev.quote) == 1184 and set(v.parse_cert_table(ev.aux)) == {v.GUID_VCEK, v.GUID_ASK, v.GUID_ARK}
    verdict = check(ev, cfg, blocks)
    assert verdict.ok, verdict.reason
    assert (verdict.tee, verdict.measurement, verdict.block_number) == (tee, MEASUREMENTS[tee], blocks.best_number())
    if tee != "sgx":
        assert list(cfg.tsm.iterdir()) == []  # every entry removed after use
    assert tree.reports >= 1
    chain = ev.to_chain(123)
    assert chain.tee_type == {"sev-snp": "AMDSEV", "tdx": "IntelSGX", "sgx": "IntelSGX"}[tee]
    assert chain.quote == ev.quote and len(chain.quote) <= 8192 and chain.timestamp == 123
    assert chain.mrenclave == (MEASUREMENTS[tee] if tee == "sgx" else hashlib.sha256(MEASUREMENTS[tee]).digest())
    assert Evidence.from_json(json.loads(json.dumps(ev.to_json()))) == ev


@pytest.mark.parametrize("tee", TEES)
def test_a_stale_report_is_refused_by_the_attester(tee: str, tree_factory) -> None:
    _tree, cfg = tree_factory(tee, mode="stale")
    with pytest.raises(AttestationError, match="stale"):
        produce_evidence(nonce(FakeBlocks()), cfg.model_copy(update={"report_timeout_s": 0.3}))


@pytest.mark.parametrize("tee", TEES)
def test_a_garbage_report_is_refused_as_malformed(tee: str, tree_factory) -> None:
    _tree, cfg = tree_factory(tee, mode="garbage")
    with pytest.raises(AttestationError, match="malformed"):
        produce_evidence(nonce(FakeBlocks()), cfg.model_copy(update={"report_timeout_s": 0.3}))


def test_configfs_tsm_generation_race_is_retried_with_a_new_entry(tree_factory) -> None:
    tree, cfg = tree_factory("sev-snp", mode="racy-once")
    blocks = FakeBlocks()
    ev = produce_evidence(nonce(blocks), cfg)
    assert tree.reports == 2 and check(ev, cfg, blocks).ok  # the first report was discarded


# --- verification ---------------------------------------------------------------------------------


@pytest.fixture()
def evidence(tree_factory) -> dict[str, tuple[Evidence, TeeConfig, FakeBlocks]]:
    out = {}
    for tee in TEES:
        _tree, cfg = tree_factory(tee)
        blocks = FakeBlocks()
        out[tee] = (produce_evidence(nonce(blocks), cfg), cfg, blocks)
    return out


@pytest.mark.parametrize("tee", TEES)
def test_replays_are_refused(tee: str, evidence) -> None:
    ev, cfg, blocks = evidence[tee]
    guard = v.ReplayGuard()
    assert check(ev, cfg, blocks, guard=guard).ok
    again = check(ev, cfg, blocks, guard=guard)
    assert not again.ok and "replayed" in again.reason  # the very same report
    # an older nonce after a newer one was accepted for the same GPU
    old_nonce_ev = produce_evidence(v.make_nonce(ACCOUNT, GPU, blocks.hashes[-3]), cfg)
    older = check(old_nonce_ev, cfg, blocks, guard=guard)
    assert not older.ok and "older than" in older.reason
    # the block moved on past max_block_age: the nonce is stale for everyone
    blocks.advance(cfg.max_block_age + 1)
    stale = check(ev, cfg, blocks)
    assert not stale.ok and stale.reason.startswith("stale")
    # another provider's or another GPU's report, and a block that is not on this chain
    assert "nonce mismatch" in check(ev, cfg, blocks, account_id=b"\2" * 32).reason
    assert "nonce mismatch" in check(ev, cfg, blocks, gpu_id=GPU + 1).reason
    forked = produce_evidence(v.make_nonce(ACCOUNT, GPU, b"\x33" * 32), cfg)
    assert "not a block of this chain" in check(forked, cfg, FakeBlocks()).reason


@pytest.mark.parametrize("tee", TEES)
def test_measurement_allow_list_and_debug_policy(tee: str, evidence, tree_factory, ca: TestCA) -> None:
    ev, cfg, blocks = evidence[tee]
    other = {t: [hashlib.sha384(b"another image").digest()] for t in TEES}
    strict = tee_config(Path(str(cfg.root) + "-strict"), ca, root=cfg.root, allowed=other)
    refused = check(ev, strict, blocks)
    assert not refused.ok and "not in the allow-list" in refused.reason
    _tree, dcfg = tree_factory(tee, debug=True)
    dev = produce_evidence(nonce(blocks), dcfg)
    assert "debug" in check(dev, dcfg, blocks).reason
    assert check(dev, dcfg.model_copy(update={"allow_debug": True}), blocks).ok


@pytest.mark.parametrize("tee", TEES)
def test_tampered_reports_and_foreign_signers_are_refused(tee: str, evidence, tmp_path: Path) -> None:
    ev, cfg, blocks = evidence[tee]
    raw = bytearray(ev.quote)
    raw[0xC0 if tee == "sev-snp" else 48 + 130] ^= 1  # HOST_DATA / inside MRSIGNER: signed, not otherwise checked
    tampered = check(replace(ev, quote=bytes(raw)), cfg, blocks)
    assert not tampered.ok and tampered.reason.startswith("signature"), tampered.reason
    truncated = check(replace(ev, quote=ev.quote[:-10]), cfg, blocks)
    assert not truncated.ok and truncated.reason.startswith("malformed")
    # the same report trusted under another CA's roots: the chain does not reach them
    foreign = tee_config(tmp_path / "foreign", TestCA(), root=cfg.root)
    refused = check(ev, foreign, blocks)
    assert not refused.ok and ("chain" in refused.reason or "not signed" in refused.reason), refused.reason
    no_roots = check(ev, cfg.model_copy(update={"trust_roots": {}}), blocks)
    assert not no_roots.ok and "no trust anchor" in no_roots.reason


def test_snp_vcek_from_the_report_table_or_configuration(evidence, tmp_path: Path) -> None:
    ev, cfg, blocks = evidence["sev-snp"]
    assert check(replace(ev, aux=b""), cfg, blocks).ok  # the VCEK cached in configuration
    bare = cfg.model_copy(update={"certificates": {}})
    assert check(ev, bare, blocks).ok  # VCEK and ASK from the host's certificate table
    missing = check(replace(ev, aux=b""), bare, blocks)
    assert not missing.ok and "no VCEK" in missing.reason
    expired_ca = TestCA(vcek_expired=True)
    stale_cert = expired_ca.snp_report(ev.nonce, MEASUREMENTS["sev-snp"])
    exp_cfg = tee_config(tmp_path / "exp", expired_ca, root=cfg.root)
    res = check(replace(ev, quote=stale_cert, aux=expired_ca.snp_aux()), exp_cfg, blocks)
    assert not res.ok and "validity period" in res.reason


def test_dcap_qe_report_must_vouch_for_the_attestation_key(evidence) -> None:
    ev, cfg, blocks = evidence["tdx"]
    quote = v.parse_dcap_quote(ev.quote)
    raw = bytearray(ev.quote)
    at = ev.quote.index(quote.qe_auth_data)
    raw[at] ^= 1  # the QE auth data is bound into the QE report's REPORT_DATA
    res = check(replace(ev, quote=bytes(raw)), cfg, blocks)
    assert not res.ok and "does not vouch" in res.reason


# --- refreshing and filing on chain ---------------------------------------------------------------


class RecordingChain:
    def __init__(self, blocks: FakeBlocks) -> None:
        self.blocks, self.filed = blocks, []

    def best(self) -> tuple[int, bytes]:
        return self.blocks.best()

    def submit(self, gpu_id: int, attestation: Any) -> None:
        self.filed.append((gpu_id, attestation))


def test_refresher_files_fresh_verified_attestations_and_skips_repeats(tree_factory) -> None:
    tree, cfg = tree_factory("sev-snp")
    blocks = FakeBlocks()
    chain = RecordingChain(blocks)
    policy, guard = v.TeePolicy.from_config(cfg), v.ReplayGuard()

    def verify(ev: Evidence, gpu: int) -> v.Verdict:
        return v.verify_evidence(ev.tee, ev.quote, aux=ev.aux, account_id=ACCOUNT, gpu_id=gpu, policy=policy,
                                 blocks=blocks, guard=guard)

    r = AttestationRefresher(ACCOUNT, [1, 2], chain, lambda n: produce_evidence(n, cfg), verify, interval_s=0.05)
    first = r.refresh_once()
    assert [(x.gpu_id, x.ok, x.submitted) for x in first] == [(1, True, True), (2, True, True)]
    assert [g for g, _ in chain.filed] == [1, 2]
    gpu, att = chain.filed[0]
    assert att.tee_type == "AMDSEV" and v.report_data_of("sev-snp", att.quote) == v.make_nonce(ACCOUNT, 1,
                                                                                                 blocks.best()[1])
    assert r.refresh_once() == []  # same best block: the nonce would repeat, nothing new to prove
    blocks.advance()
    assert all(x.ok for x in r.refresh_once()) and len(chain.filed) == 4
    tree.set_mode("stale")
    blocks.advance()
    failed = r.refresh_once()
    assert [x.ok for x in failed] == [False, False] and all("stale" in x.reason for x in failed)
    assert len(chain.filed) == 4  # nothing unverifiable is filed
    # a producer that replays an earlier report is caught by the verifier before anything is filed
    old = chain.filed[0][1]
    r2 = AttestationRefresher(ACCOUNT, [1], chain, lambda n: Evidence("sev-snp", old.quote, n,
                                                                     produce_evidence(n, cfg).aux), verify)
    tree.set_mode("live")
    blocks.advance()
    assert "another nonce" in r2.refresh_once()[0].reason and len(chain.filed) == 4
    r.start()
    time.sleep(0.5)
    r.stop()
    assert r.status()[1]["ok"] is True and r.status()[2]["ok"] is True and len(chain.filed) == 6
    assert r._thread is not None and not r._thread.is_alive()


# --- the node's start-time resources --------------------------------------------------------------


def test_node_advertises_tee_only_when_detected_and_freshly_attested(tree_factory) -> None:
    blocks = FakeBlocks()
    tree, cfg = tree_factory("sev-snp")
    policy = v.TeePolicy.from_config(cfg)
    ok = node_status(cfg, want="sev-snp", account_id=ACCOUNT, gpu_id=0, best=blocks.best, policy=policy,
                     blocks=blocks)
    assert ok.attested and ok.resources("sev-snp") == {"tee:sev-snp": 1000.0}
    assert ok.labels("sev-snp") == {"etrid.ai/tee": "sev-snp", "etrid.ai/tee-attested": "true"}
    assert "tee:sev-snp\": 1000" in ray_env(ok, "sev-snp")
    assert ok.resources("tdx") == {"tee:tdx": 0.0}  # another pool's TEE: never
    no_account = node_status(cfg, want="sev-snp", account_id=None, gpu_id=0, best=blocks.best)
    assert not no_account.attested and "ETRID_PROVIDER_ADDRESS" in no_account.reason

    def no_chain() -> tuple[int, bytes]:
        raise ConnectionRefusedError

    assert "no recent block" in node_status(cfg, want="sev-snp", account_id=ACCOUNT, gpu_id=0, best=no_chain).reason
    tree.set_mode("stale")
    stale = node_status(cfg.model_copy(update={"report_timeout_s": 0.3}), want="sev-snp", account_id=ACCOUNT,
                        gpu_id=0, best=blocks.best)
    assert not stale.attested and "stale" in stale.reason and stale.resources("sev-snp") == {"tee:sev-snp": 0.0}
    _t, absent = tree_factory("sev-snp", layout="absent")
    assert node_status(absent, want="sev-snp", account_id=ACCOUNT, gpu_id=0, best=blocks.best).resources(
        "sev-snp") == {"tee:sev-snp": 0.0}


def test_rays_resource_merge_drops_the_fail_closed_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `ray start` does with the worker's override: rayStartParams keep tee:sev-snp for the autoscaler's
    model; the zero override removes it from the node itself, the attested one keeps it."""
    from ray._private.resource_and_label_spec import ResourceAndLabelSpec

    static = {"tee:sev-snp": 1000.0}
    group_labels = TEE_POOL.labels()  # what KubeRay passes to `ray start --labels`
    for override, expected in (('{"tee:sev-snp": 0}', False), ('{"tee:sev-snp": 1000}', True)):
        monkeypatch.setenv("RAY_OVERRIDE_RESOURCES", override)
        monkeypatch.setenv("RAY_OVERRIDE_LABELS", json.dumps({"etrid.ai/tee": "sev-snp",
                                                              "etrid.ai/tee-attested": str(expected).lower()}))
        spec = ResourceAndLabelSpec(num_cpus=1, num_gpus=0, memory=10**9, object_store_memory=10**8,
                                    resources=dict(static), labels=dict(group_labels))
        resolved = spec.resolve(is_head=False, node_ip_address="127.0.0.1")
        assert ("tee:sev-snp" in resolved.to_resource_dict()) is expected
        # the start command's label override adds to the group's labels: the node keeps its pool
        assert resolved.labels["etrid.ai/pool"] == "azure-tee-h100"
        assert resolved.labels["etrid.ai/tee-attested"] == str(expected).lower()


def test_worker_start_command_fails_closed_in_a_real_shell(devnet, tree_factory, tmp_path: Path) -> None:
    """The exact string KubeRay runs before `ray start`, in bash, against the devnet and fake trees."""
    pool = Pool(name="azure-tee-h100", kind="azure", tee="sev-snp", gpus_per_node=1)
    command = worker_start_command(pool)
    bindir = str(Path(sys.executable).parent)

    def run(env: dict[str, str], path: str = f"{bindir}:/usr/bin:/bin") -> str:
        script = command + ' && printf %s "$RAY_OVERRIDE_RESOURCES"'
        out = subprocess.run([BASH, "-c", script], env={"PATH": path, "HOME": str(tmp_path), **env},
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip().splitlines()[-1]

    address = dev_signer("Bob").address
    tree, cfg = tree_factory("sev-snp")
    cfg_path = tmp_path / "tee.json"
    cfg_path.write_text(cfg.model_dump_json())
    env = {"WEBSOCKET_URL": devnet.url, "ETRID_PROVIDER_ADDRESS": address, "ETRID_TEE_CONFIG": str(cfg_path)}
    assert json.loads(run(env)) == {"tee:sev-snp": 1000}
    assert json.loads(run({**env, "ETRID_PROVIDER_ADDRESS": ""})) == {"tee:sev-snp": 0}
    assert json.loads(run({**env, "WEBSOCKET_URL": "ws://127.0.0.1:1"})) == {"tee:sev-snp": 0}
    assert json.loads(run(env, path="/nonexistent")) == {"tee:sev-snp": 0}  # no python at all: still closed
    tree.set_mode("stale")
    assert json.loads(run(env)) == {"tee:sev-snp": 0}


# --- the head's gate ------------------------------------------------------------------------------

TEE_POOL = Pool(name="azure-tee-h100", kind="azure", accelerator="H100", gpus_per_node=1, vram_gb=94,
                region="eastus2", tee="sev-snp", min_nodes=1, max_nodes=2)
PLAIN_POOL = Pool(name="local-gpu", kind="local", gpus_per_node=2, max_nodes=1)


def caps_for(pool: Pool) -> Capabilities:
    return Capabilities(gpus_per_node=pool.gpus_per_node, vram_gb=pool.vram_gb, accelerator=pool.accelerator,
                        tee=pool.tee, region=pool.region, handlers=frozenset({"sleep"}), price_per_gpu_second=1,
                        max_input_bytes=10**6)


def node(node_id: str, pool: Pool, *, tee: bool = True, alive: bool = True) -> dict[str, Any]:
    res = {"GPU": float(pool.gpus_per_node)}
    if tee and pool.tee:
        res[f"tee:{pool.tee}"] = 1000.0
    return {"NodeID": node_id, "Alive": alive, "Resources": res, "Labels": pool.labels()}


def tee_job_verdict(gate: TeeGate) -> str:
    from etrid_ray.manifest import parse_manifest

    manifest = parse_manifest(json.dumps({"handler": "sleep", "resources": {"tee": "sev-snp"}}).encode())
    caps = gate.admission_caps({p.name: caps_for(p) for p in (PLAIN_POOL, TEE_POOL)})
    verdicts = [admit(JobTerms(1, "Custom", 60, 10**9), manifest, c) for c in caps.values()]
    return "claim" if any(x.action == "claim" for x in verdicts) else verdicts[-1].reason


def make_gate(cfg: TeeConfig, blocks: FakeBlocks, clock: list[float], **kw: Any) -> TeeGate:
    def attest_node(node_id: str, tee: str, n: bytes) -> Evidence:
        return produce_evidence(n, cfg, want=tee)

    filed: list[tuple[int, Any]] = []
    gate = TeeGate(pools=[PLAIN_POOL, TEE_POOL], policy=v.TeePolicy.from_config(cfg), account_id=ACCOUNT,
                   gpu_ids=[10, 11], blocks=blocks, attest_node=attest_node,
                   submit=lambda g, a: filed.append((g, a)), refresh_interval_s=5, max_age_s=20,
                   clock=lambda: clock[0], **kw)
    gate.filed = filed  # type: ignore[attr-defined]
    return gate


def test_gate_admits_claims_and_pins_only_on_attested_nodes(tree_factory) -> None:
    tree, cfg = tree_factory("sev-snp")
    blocks, clock = FakeBlocks(), [1000.0]
    gate = make_gate(cfg, blocks, clock)
    # cold: no node yet — admitted (the pool may grow) but nothing is claimable and no task is pinned
    assert gate.refresh([]) is False and gate.pool_state(TEE_POOL.name) == "cold"
    assert tee_job_verdict(gate) == "claim"
    assert gate.pool_room({TEE_POOL.name: 1.0, PLAIN_POOL.name: 2.0}) == {TEE_POOL.name: 0.0, PLAIN_POOL.name: 2.0}
    assert gate.task_options("sev-snp", TEE_POOL.name, {}) is None
    # a node that did not attest at start (no tee: resource) is never challenged and never trusted
    nodes = [node("a" * 8, TEE_POOL, tee=False), node("p" * 8, PLAIN_POOL)]
    gate.refresh(nodes)
    assert gate.pool_state(TEE_POOL.name) == "unattested" and "did not attest at start" in gate.records["a" * 8].reason
    assert tee_job_verdict(gate) == "needs TEE sev-snp"  # admission skips it: not claimed
    # a node that did: challenged, verified, filed on chain, and then the pool serves TEE jobs
    nodes = [node("a" * 8, TEE_POOL, tee=False), node("b" * 8, TEE_POOL), node("p" * 8, PLAIN_POOL)]
    assert gate.refresh(nodes) is True and gate.take_changed() and not gate.take_changed()
    assert gate.attested_nodes(TEE_POOL.name) == ["b" * 8] and tee_job_verdict(gate) == "claim"
    assert [g for g, _ in gate.filed] == [11] and gate.filed[0][1].tee_type == "AMDSEV"  # type: ignore[attr-defined]
    assert gate.pool_room({TEE_POOL.name: 2.0}) == {TEE_POOL.name: 1.0}  # the quarantined node's GPU left out
    opts = gate.task_options("sev-snp", TEE_POOL.name, dispatch_options(1, 0, TEE_POOL.name, fallback=["local-gpu"]))
    assert opts == {"num_gpus": 1, "num_cpus": 0, "resources": {"tee:sev-snp": 0.001},
                    "label_selector": {**TEE_POOL.selector(), "ray.io/node-id": f"in({'b' * 8})"}}
    assert gate.task_options(None, PLAIN_POOL.name, {"x": 1}) == {"x": 1}
    assert gate.task_options("tdx", TEE_POOL.name, {}) is None
    # not due yet: no new challenge; due but the chain did not move: the nonce would repeat, no new report
    reports = tree.reports
    clock[0] += 1
    gate.refresh(nodes)
    clock[0] += 10
    gate.refresh(nodes)
    assert tree.reports == reports and gate.pool_state(TEE_POOL.name) == "attested"
    # … and with no new block for max_age_s the attestation expires
    clock[0] += 30
    gate.refresh(nodes)
    assert gate.pool_state(TEE_POOL.name) == "unattested" and tee_job_verdict(gate) == "needs TEE sev-snp"
    blocks.advance()
    clock[0] += 6
    gate.refresh(nodes)
    assert gate.pool_state(TEE_POOL.name) == "attested" and tree.reports == reports + 1
    # the TEE goes stale: the next challenge fails and the pool is quarantined at once
    tree.set_mode("stale")
    blocks.advance()
    clock[0] += 6
    assert gate.refresh(nodes) is True
    assert gate.pool_state(TEE_POOL.name) == "unattested" and "stale" in gate.records["b" * 8].reason
    assert gate.task_options("sev-snp", TEE_POOL.name, {}) is None
    # the node goes away: its record with it
    gate.refresh([node("p" * 8, PLAIN_POOL)])
    assert gate.records == {} and gate.pool_state(TEE_POOL.name) == "cold"
    assert "pools" in gate.status() and gate.status()["pools"] == {TEE_POOL.name: "cold"}


def test_gate_refuses_a_node_that_replays_an_old_report(tree_factory) -> None:
    _tree, cfg = tree_factory("sev-snp")
    blocks, clock = FakeBlocks(), [0.0]
    gate = make_gate(cfg, blocks, clock, admit_cold_pools=False)
    assert tee_job_verdict(gate) == "needs TEE sev-snp"  # cold pools not admitted when asked so
    nodes = [node("n1", TEE_POOL)]
    gate.refresh(nodes)
    first = gate.filed[0][1]  # type: ignore[attr-defined]
    gate.attest_node = lambda node_id, tee, n: Evidence("sev-snp", first.quote, n)  # answers with its old report
    blocks.advance()
    clock[0] += 6
    gate.refresh(nodes)
    assert gate.pool_state(TEE_POOL.name) == "unattested"
    assert "another nonce" in gate.records["n1"].reason


# --- CLI --------------------------------------------------------------------------------------------


def test_cli_detect_and_attest_file_a_verifiable_attestation(devnet, tree_factory, tmp_path: Path) -> None:
    tree, cfg = tree_factory("sev-snp")
    cfg_path = tmp_path / "tee.json"
    cfg_path.write_text(cfg.model_dump_json())
    runner = CliRunner()
    env = {"ETRID_SEED": "//Dave", "ETRID_SEED_FILE": "", "ETRID_TEE_CONFIG": str(cfg_path), "ETRID_WS_URL": ""}
    res = runner.invoke(main, ["tee", "detect", "--json"], env=env)
    assert res.exit_code == 0 and json.loads(res.stdout)["tee"] == "sev-snp"
    res = runner.invoke(main, ["tee", "detect", "--root", str(tmp_path / "nothing")], env=env)
    assert res.exit_code == 1 and "no usable TEE" in res.output
    with ChainClient(devnet.url) as client:
        from etrid_ray.chain import GpuSpecs, HardwareAttestation

        dave = dev_signer("Dave")
        gpu = client.provider(dave).register_gpu(GpuSpecs("H100", 94, 132, 1980, 700), 100 * 10**18,
                                                 HardwareAttestation(b"", 1000, int(time.time())))
        res = runner.invoke(main, ["tee", "attest", "--url", devnet.url, "--gpu-id", str(gpu), "--json"], env=env)
        assert res.exit_code == 0, res.output
        result = json.loads(res.stdout.splitlines()[-1])
        assert result["ok"] and result["submitted"] and result["tee"] == "sev-snp"
        att = client.reader.tee_attestation(gpu)
        assert att is not None and att.tee_type == "AMDSEV"
        # a third party verifies the on-chain quote offline (VCEK from its cache, the ARK as anchor) …
        blocks = v.ChainBlocks(client.conn)
        policy = v.TeePolicy.from_config(cfg)
        guard = v.ReplayGuard()
        ok = v.verify_evidence("sev-snp", att.quote, account_id=dave.public_key, gpu_id=gpu, policy=policy,
                               blocks=blocks, guard=guard)
        assert ok.ok, ok.reason
        assert ok.block_number == result["block"]
        # … and the same quote presented again is a replay
        assert "replayed" in v.verify_evidence("sev-snp", att.quote, account_id=dave.public_key, gpu_id=gpu,
                                               policy=policy, blocks=blocks, guard=guard).reason
        assert "nonce mismatch" in v.verify_evidence("sev-snp", att.quote, account_id=dev_signer("Eve").public_key,
                                                     gpu_id=gpu, policy=policy, blocks=blocks).reason
        # a stale TEE: nothing is filed, the command fails
        tree.set_mode("stale")
        res = runner.invoke(main, ["tee", "attest", "--url", devnet.url, "--gpu-id", str(gpu)],
                            env={**env, "ETRID_TEE_ROOT": str(tree.root)})
        assert res.exit_code == 1 and "stale" in res.output
        assert client.reader.tee_attestation(gpu) == att


# --- placement on the fake multi-node cluster -------------------------------------------------------


def test_a_tee_job_runs_only_on_the_attested_tee_node_and_waits_when_attestation_goes_stale(
        fresh_devnet: Any, tmp_path: Path, ca: TestCA) -> None:
    tee_pool = {"name": "azure-tee-h100", "kind": "azure", "accelerator": "H100", "gpus_per_node": 1,
                "cpus_per_node": 40, "memory_gib": 320, "vram_gb": 94, "instance_type": "Standard_NCC40ads_H100_v5",
                "region": "eastus2", "tee": "sev-snp", "min_nodes": 1, "max_nodes": 1, "startup_s": 300}
    config = load_config(env={}, overrides={
        "websocket_url": fresh_devnet.url, "rpc_url": fresh_devnet.http_url, "PRICE_PER_SECOND": 10**12,
        "gpus": {"count": 2}, "local_nodes": 1, "journal_path": str(tmp_path / "journal.sqlite"),
        "poll_interval_s": 0.2, "heartbeat_interval_s": 5, "telemetry_interval_s": 5, "idle_timeout_s": 30,
        "aws_enabled": False, "gcp_enabled": False, "azure_enabled": False, "pools": [tee_pool],
        "scale_interval_s": 0.5})
    tree = FakeTeeTree(tmp_path / "tee-node", "sev-snp", ca).start()
    tee_cfg = tee_config(tmp_path / "pki", ca, root=tree.root, refresh_interval_s=1.0, max_age_s=6.0)
    provider = dev_signer(PROVIDER)
    # the worker start command on the TEE node: detection and a fresh attestation → tee:sev-snp
    with ChainClient(fresh_devnet.url) as c0:
        start = node_status(tee_cfg, want="sev-snp", account_id=account_bytes(provider.address), gpu_id=0,
                            best=v.ChainBlocks(c0.conn).best)
    assert start.attested, start.reason
    cr = apply_node_start(raycluster(config), "azure-tee-h100", start.resources("sev-snp"))
    cluster = FakeKubeRayCluster(cr, tmp_path / "fake", idle_timeout_s=30, max_workers_per_type=1,
                                 cpus_per_node=2).start()
    client = ChainClient(fresh_devnet.url)
    head = None
    try:
        ray.init(address=cluster.address, logging_level="ERROR", namespace="etrid-tee")
        wait_until(lambda: alive_nodes_per_pool() == {"local-gpu": 1, "azure-tee-h100": 1}, 90,
                   "the local node and the TEE node up")
        tee_node = next(n["NodeID"] for n in ray.nodes()
                        if n["Alive"] and n["Labels"].get(POOL_LABEL) == "azure-tee-h100")
        assert "tee:sev-snp" in next(n for n in ray.nodes() if n["NodeID"] == tee_node)["Resources"]
        head_cls = tee_gated_head_class()
        head_cls.make_gate = staticmethod(lambda h: TeeGate.for_head(h, v.TeePolicy.from_config(tee_cfg), tee_cfg))
        head = head_cls(config, provider, journal=Journal(config.journal_file)).start()
        consumer = client.consumer(dev_signer(CONSUMER), blobs=open_blob_store(fresh_devnet.http_url))
        pay = 3 * 10**18

        def submit(manifest: dict[str, Any]) -> int:
            return consumer.submit_job(manifest, payment=pay, max_compute_time=120).job_id

        plain = submit({"handler": "sleep", "args": {"seconds": 1}})
        tee_job = submit({"handler": "sleep", "args": {"seconds": 1}, "resources": {"tee": "sev-snp"}})
        wait_until(lambda: all_final(client, [plain, tee_job]), 90, "both jobs final", poll=0.5)
        jobs = read_jobs(client, [plain, tee_job])
        assert {j.status for j in jobs.values()} == {JobStatus.COMPLETED}
        assert head.stats.pool_of[tee_job] == "azure-tee-h100" and head.stats.pool_of[plain] == "local-gpu"
        if "node_id" in Outcome.__dataclass_fields__:  # the task reports the node it ran on
            assert head.node_of[tee_job] == tee_node and head.node_of[plain] != tee_node
        gate = head.tee_gate
        assert gate.attested_nodes("azure-tee-h100") == [tee_node]
        rec = gate.records[tee_node]
        assert rec.ok and rec.submitted
        att = client.reader.tee_attestation(rec.gpu_id)  # filed on chain under one of our GPUs
        assert att is not None and att.tee_type == "AMDSEV"
        policy = replace(v.TeePolicy.from_config(tee_cfg), max_block_age=10**6)
        assert v.verify_evidence("sev-snp", att.quote, account_id=provider.public_key, gpu_id=rec.gpu_id,
                                 policy=policy, blocks=v.ChainBlocks(client.conn)).ok

        # the TEE starts handing back an old report: the node is quarantined, TEE jobs are no longer claimed
        tree.set_mode("stale")
        wait_until(lambda: gate.pool_state("azure-tee-h100") == "unattested", 20, "the stale TEE quarantined")
        assert "stale" in gate.records[tee_node].reason
        plain2 = submit({"handler": "sleep", "args": {"seconds": 1}})
        tee2 = submit({"handler": "sleep", "args": {"seconds": 1}, "resources": {"tee": "sev-snp"}})
        wait_until(lambda: all_final(client, [plain2]), 60, "the plain job done", poll=0.5)
        time.sleep(3 * config.scale_interval_s + 1)  # several more admission and claim rounds
        assert read_jobs(client, [tee2])[tee2].status == JobStatus.PENDING  # not claimed
        waiting = head.book.get(tee2)
        assert tee2 not in head.stats.pool_of and waiting is not None and waiting.state == JobState.SKIPPED
        assert waiting.verdict.action == "skip"
        assert waiting.verdict.reason == "needs TEE sev-snp"
        assert gate.pool_state("azure-tee-h100") == "unattested"
    finally:
        if head is not None:
            head.stop()
        client.close()
        ray.shutdown()
        cluster.stop()
        tree.stop()
