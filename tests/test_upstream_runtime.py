"""The devnet's two runtimes against the real Etrid AI-Compute runtime's shape, and the client on both.

The facts below are read from EojEdred/Etrid, `05-multichain/partition-burst-chains/pbc-chains/ai-compute-pbc/`
(each row names its file). `--runtime upstream` must serve exactly them; `--runtime etrid-ray` (the default) must
serve them as a prefix — same pallet indices, same call indices, upstream's errors first in upstream's order, the
same constant types — with its extensions after, so a client built for upstream works on it unchanged.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
from scalecodec.base import RuntimeConfigurationObject, ScaleBytes
from scalecodec.type_registry import load_type_registry_preset

from etrid_ray.blobs import open_blob_store
from etrid_ray.chain import Call, ChainClient, Submitter
from etrid_ray.chain.events import events_in_range
from etrid_ray.chain.keys import dev_signer
from etrid_ray.chain.metadata import ChainMetadata
from etrid_ray.chain.models import GpuSpecs, HardwareAttestation, TeeAttestation
from etrid_ray.chain.provider import QUOTE_DIGEST_PREFIX, fit_quote
from etrid_ray.devnet.assigner import GpuLoad, match_jobs
from etrid_ray.devnet.node import Node
from etrid_ray.devnet.persistence import SqliteStore
from etrid_ray.devnet.process import DevnetProcess
from etrid_ray.devnet.runtime import Runtime, RuntimeConfig

BASE = "05-multichain/partition-burst-chains/pbc-chains/ai-compute-pbc/"
RUNTIME_RS = BASE + "runtime/src/lib.rs"
GPU_RS = BASE + "pallets/gpu-registry/src/lib.rs"
JOBS_RS = BASE + "pallets/job-marketplace/src/lib.rs"
MODELS_RS = BASE + "pallets/model-registry/src/lib.rs"
TEE_RS = BASE + "pallets/confidential-compute/src/lib.rs"
COMPLIANCE_RS = BASE + "pallets/compliance/src/lib.rs"

# (pallet, index, source): construct_runtime! without explicit indices — System 0 … Sudo 4,
# RandomnessCollectiveFlip 5, then Accounts … EtridStaking (6–11, not mirrored), GpuRegistry 12 … Compliance 23.
# Read at commit 05e0228f (ASF consensus, bridge pallets). An older stored version, 507d868c (Aura + Grandpa, no
# RandomnessCollectiveFlip), numbered them GpuRegistry 8 … Compliance 17: indices move between upstream versions,
# which is why the client reads every index from the node's metadata.
PALLETS = [
    ("System", 0, RUNTIME_RS), ("Timestamp", 1, RUNTIME_RS), ("Balances", 2, RUNTIME_RS),
    ("TransactionPayment", 3, RUNTIME_RS), ("Sudo", 4, RUNTIME_RS), ("RandomnessCollectiveFlip", 5, RUNTIME_RS),
    ("GpuRegistry", 12, RUNTIME_RS), ("JobMarketplace", 13, RUNTIME_RS), ("ModelRegistry", 14, RUNTIME_RS),
    ("ConfidentialCompute", 15, RUNTIME_RS), ("Compliance", 23, RUNTIME_RS),
]
# (pallet, [(call, index, [argument names in order])], source)
CALLS = [
    ("GpuRegistry", [("register_gpu", 0, ["specs", "attestation", "stake", "schedule"]),
                     ("unregister_gpu", 1, ["gpu_id"]), ("update_availability", 2, ["gpu_id", "schedule"]),
                     ("update_status", 3, ["gpu_id", "status"]), ("report_heartbeat", 4, ["gpu_id"]),
                     ("slash_provider", 5, ["gpu_id"]),
                     ("update_reputation", 6, ["gpu_id", "job_success", "rating"])], GPU_RS),
    ("JobMarketplace", [("submit_job", 0, ["model_id", "model_type", "input_hash", "output_format",
                                           "max_compute_time", "payment", "priority"]),
                        ("assign_job", 1, ["job_id", "gpu_id"]), ("submit_result", 2, ["job_id", "result_hash"]),
                        ("confirm_job", 3, ["job_id"]), ("report_failure", 4, ["job_id", "reason"]),
                        ("dispute_job", 5, ["job_id"]), ("cancel_job", 6, ["job_id"])], JOBS_RS),
    ("ModelRegistry", [("register_model", 0, ["name", "version", "description", "weights_hash", "size_bytes",
                                              "visibility", "license", "royalty_bps", "category", "parent_id"]),
                       ("update_visibility", 1, ["model_id", "visibility"]), ("record_inference", 2, ["model_id"]),
                       ("pay_royalty", 3, ["model_id", "amount"])], MODELS_RS),
    ("ConfidentialCompute", [("submit_attestation", 0, ["gpu_id", "attestation"])], TEE_RS),
    ("Compliance", [("enable_compliance", 0, ["template", "data_residency"]),
                    ("disable_compliance", 1, [])], COMPLIANCE_RS),
]
# (pallet, errors in declaration order, source)
ERRORS = [
    ("GpuRegistry", ["GpuNotFound", "InsufficientStake", "TooManyGpus", "NotGpuOwner", "GpuAlreadyExists",
                     "InvalidAttestation", "GpuNotActive", "Overflow"], GPU_RS),
    ("JobMarketplace", ["JobNotFound", "NotJobSubmitter", "InvalidJobStatus", "InsufficientBalance", "GpuNotFound",
                        "Overflow", "JobQueueFull", "InvalidResult"], JOBS_RS),
    ("ModelRegistry", ["ModelNotFound", "NotModelOwner", "ModelNameExists", "AididExists", "InvalidRoyalty",
                       "InsufficientBalance", "Overflow", "TooManyModels"], MODELS_RS),
    ("ConfidentialCompute", ["InvalidAttestation"], TEE_RS),
    ("Compliance", ["AlreadyEnabled", "NotEnabled"], COMPLIANCE_RS),
]
# (pallet, event, [field names in order], source)
EVENTS = [
    ("GpuRegistry", "GpuRegistered", ["gpu_id", "provider", "stake"], GPU_RS),
    ("JobMarketplace", "JobAssigned", ["job_id", "gpu_id"], JOBS_RS),
    ("JobMarketplace", "JobFailed", ["job_id", "reason"], JOBS_RS),
    ("JobMarketplace", "PaymentReleased", ["job_id", "provider", "amount"], JOBS_RS),
    ("ModelRegistry", "ModelRegistered", ["model_id", "owner", "aidid"], MODELS_RS),
    ("ModelRegistry", "RoyaltyPaid", ["model_id", "owner", "amount"], MODELS_RS),
]
# (pallet, constant, primitive type, value, source): types from the pallets' Config, values from the runtime
CONSTANTS = [
    ("GpuRegistry", "MinimumStake", "u128", 10**20, RUNTIME_RS),
    ("GpuRegistry", "SlashPercentage", "u16", 1000, RUNTIME_RS),
    ("GpuRegistry", "MaxOfflineBlocks", "u32", 1000, RUNTIME_RS),
    ("JobMarketplace", "PlatformFeeBps", "u16", 500, RUNTIME_RS),
    ("JobMarketplace", "MaxJobDuration", "u32", 10000, RUNTIME_RS),
    ("ModelRegistry", "RegistrationFee", "u128", 10**19, RUNTIME_RS),
    ("ModelRegistry", "MaxRoyaltyBps", "u16", 5000, RUNTIME_RS),
]
# (pallet, storage names, source)
STORAGE = [
    ("GpuRegistry", ["GpuNodes", "NextGpuId", "ProviderGpus", "ActiveGpuCount"], GPU_RS),
    ("JobMarketplace", ["Jobs", "NextJobId", "UserJobs", "GpuJobs", "PendingJobs", "TotalJobs", "TotalVolume"],
     JOBS_RS),
    ("ModelRegistry", ["Models", "NextModelId", "OwnerModels", "ModelByName", "ModelByAidid", "ModelLineages",
                       "TotalModels"], MODELS_RS),
    ("ConfidentialCompute", ["TeeAttestations"], TEE_RS),
    ("Compliance", ["ComplianceConfigs"], COMPLIANCE_RS),
]
# (pallet, call, path to a BoundedVec, bound, source)
BOUNDS = [
    ("ConfidentialCompute", "submit_attestation", ("attestation", "quote"), 512, TEE_RS),
    ("JobMarketplace", "report_failure", ("reason",), 128, JOBS_RS),
    ("JobMarketplace", "submit_job", ("output_format",), 32, JOBS_RS),
    ("ModelRegistry", "register_model", ("name",), 64, MODELS_RS),
]
UPSTREAM_SPEC_VERSION = 1  # RUNTIME_RS: `spec_version: 1`

_runtimes: dict[str, Runtime] = {}


def runtime(flavour: str) -> Runtime:
    if flavour not in _runtimes:
        _runtimes[flavour] = Runtime(RuntimeConfig(flavour=flavour))
    return _runtimes[flavour]


def metadata(flavour: str) -> ChainMetadata:
    """The runtime's metadata bytes, decoded by scalecodec and read by the client — what a node would serve."""
    config = RuntimeConfigurationObject()
    config.update_type_registry(load_type_registry_preset("core"))
    obj = config.create_scale_object("MetadataVersioned", ScaleBytes(runtime(flavour).metadata_bytes))
    obj.decode()
    return ChainMetadata(obj.value)


def primitive(meta: ChainMetadata, pallet: str, constant: str) -> str:
    ty, _ = meta.pallets[pallet].constants[constant]
    return meta.registry.type_def(ty)["primitive"]


def field_names(meta: ChainMetadata, pallet: str, kind: str, name: str) -> list[str | None]:
    return list(getattr(meta.pallets[pallet], kind)[name].field_names)


@pytest.fixture(scope="module", params=["upstream", "etrid-ray"])
def meta(request: pytest.FixtureRequest) -> tuple[str, ChainMetadata]:
    return request.param, metadata(request.param)


def test_both_runtimes_carry_every_upstream_fact(meta: tuple[str, ChainMetadata]) -> None:
    flavour, m = meta
    for pallet, index, _src in PALLETS:
        assert m.pallets[pallet].index == index, (flavour, pallet)
    for pallet, calls, _src in CALLS:
        for call, index, args in calls:
            info = m.pallets[pallet].calls[call]
            assert (info.index, list(info.field_names)) == (index, args), (flavour, pallet, call)
    for pallet, errors, _src in ERRORS:
        declared = [m.pallets[pallet].errors[i].name for i in sorted(m.pallets[pallet].errors)]
        assert declared[: len(errors)] == errors, (flavour, pallet)  # upstream's first, in upstream's order
    for pallet, event, fields, _src in EVENTS:
        assert field_names(m, pallet, "events", event) == fields, (flavour, pallet, event)
    for pallet, constant, ty, value, _src in CONSTANTS:
        assert (primitive(m, pallet, constant), m.constant(pallet, constant)) == (ty, value), (flavour, constant)
    for pallet, names, _src in STORAGE:
        assert set(names) <= set(m.pallets[pallet].storage), (flavour, pallet)
    reason = m.pallets["JobMarketplace"].events["JobFailed"].field_type_names[1]
    assert reason == "BoundedVec<u8, ConstU32<128>>"  # JOBS_RS: `reason: BoundedVec<u8, ConstU32<128>>`


def test_upstream_runtime_is_exactly_upstream() -> None:
    m = metadata("upstream")
    assert {(p.name, p.index) for p in m.pallets.values()} == {(p, i) for p, i, _ in PALLETS}
    assert not m.has_pallet("Utility")
    for pallet, calls, _src in CALLS:
        assert set(m.pallets[pallet].calls) == {c for c, _, _ in calls}, pallet  # no claim_job, no report_telemetry
    for pallet, errors, _src in ERRORS:
        assert [m.pallets[pallet].errors[i].name for i in sorted(m.pallets[pallet].errors)] == errors
    for pallet, names, _src in STORAGE:
        assert set(m.pallets[pallet].storage) == set(names), pallet
    constants = {(p, c) for p, c, *_ in CONSTANTS}
    for pallet in ("GpuRegistry", "JobMarketplace", "ModelRegistry", "ConfidentialCompute", "Compliance"):
        assert {(pallet, c) for c in m.pallets[pallet].constants} <= constants, pallet
    for pallet, call, path, bound, _src in BOUNDS:
        assert m.bound(pallet, call, *path) == bound, (pallet, call, path)
    assert runtime("upstream").version["specVersion"] == UPSTREAM_SPEC_VERSION


def test_etrid_ray_runtime_appends_its_extensions_after_upstream() -> None:
    m = metadata("etrid-ray")
    assert m.pallets["Utility"].index > max(i for _, i, _ in PALLETS)
    assert m.pallets["JobMarketplace"].calls["claim_job"].index == 7  # after upstream's 0–6
    assert m.pallets["GpuRegistry"].calls["report_telemetry"].index == 7
    errors = m.pallets["JobMarketplace"].errors
    assert [errors[i].name for i in sorted(errors)][8:] == ["InsufficientPayment", "InvalidComputeTime",
                                                           "TooManyUserJobs", "TooManyGpuJobs", "NotAssignedProvider"]
    assert m.bound("ConfidentialCompute", "submit_attestation", "attestation", "quote") == 8192  # a larger bound


def test_a_call_composed_against_upstream_metadata_is_the_same_bytes_on_the_default_runtime() -> None:
    """A client built for upstream encodes calls with upstream's indices; every such call means the same thing on
    the etrid-ray runtime (byte for byte), and an error index decodes to the same name on both."""
    up, ours = runtime("upstream").codec, runtime("etrid-ray").codec
    samples: list[tuple[str, str, dict[str, Any]]] = [
        ("JobMarketplace", "submit_job", {"model_id": 3, "model_type": "LLM", "input_hash": "0x" + "11" * 32,
                                          "output_format": b"json", "max_compute_time": 60, "payment": 10**18,
                                          "priority": "Premium"}),
        ("JobMarketplace", "submit_result", {"job_id": 9, "result_hash": "0x" + "22" * 32}),
        ("JobMarketplace", "report_failure", {"job_id": 9, "reason": b"out of memory"}),
        ("GpuRegistry", "report_heartbeat", {"gpu_id": 4}),
        ("ModelRegistry", "record_inference", {"model_id": 2}),
        ("Compliance", "disable_compliance", {}),
    ]
    for pallet, call, args in samples:
        encoded = up.encode_call(pallet, call, args)
        assert encoded == ours.encode_call(pallet, call, args), (pallet, call)
        assert ours.decode_call(encoded)["call_function"] == call
    mu, mo = metadata("upstream"), metadata("etrid-ray")
    for pallet, errors, _src in ERRORS:
        for i in range(len(errors)):
            index = mu.pallets[pallet].index
            assert mu.module_error(index, i).name == mo.module_error(index, i).name == errors[i]


def test_assigner_rule_priority_then_queue_order_to_the_least_busy_gpu() -> None:
    queue = [(10, "Economy"), (11, "Standard"), (12, "Premium"), (13, "Standard"), (14, "Economy")]
    gpus = [GpuLoad(7, processing=1, room=100), GpuLoad(3, processing=0, room=100), GpuLoad(5, processing=0, room=1)]
    # Premium first, then Standard in queue order, then Economy; fewest Processing first, ties to the lowest id
    assert match_jobs(queue, gpus, slots=2) == [(12, 3), (11, 5), (13, 3), (10, 7)]
    assert match_jobs(queue, [GpuLoad(1, 2, 100)], slots=2) == []  # full: the queue waits
    assert match_jobs(queue, [GpuLoad(1, 0, 0)], slots=4) == []  # GpuJobs at its bound
    assert match_jobs([], gpus, slots=4) == []


def test_fit_quote_files_a_digest_when_the_runtime_bound_is_smaller() -> None:
    report = bytes(range(256)) * 5  # 1280 bytes, like an SEV-SNP report (1184)
    assert fit_quote(report, 8192) == report and fit_quote(report, None) == report
    assert fit_quote(report, 512) == QUOTE_DIGEST_PREFIX + hashlib.sha256(report).digest()
    with pytest.raises(ValueError, match="cannot even hold"):
        fit_quote(report, 16)


# --- a real devnet, `--runtime upstream --assigner`, over sockets -----------------------------------------------

EDSC = 10**18


@pytest.fixture(scope="module")
def upstream_devnet():
    args = ["--runtime", "upstream", "--assigner", "--assigner-slots", "2"]
    with DevnetProcess(block_time=0.3, extra_args=args) as d:
        yield d


def _fund(client: ChainClient, name: str) -> Any:
    signer = dev_signer(f"//Upstream/{name}/{time.time_ns()}")
    Submitter(client.conn, dev_signer("Alice")).submit(
        Call("Balances", "transfer_keep_alive", {"dest": signer.address, "value": 10_000 * EDSC}))
    return signer


def test_provider_client_serves_assigned_jobs_on_the_upstream_runtime(upstream_devnet: DevnetProcess) -> None:
    with ChainClient(upstream_devnet.url) as client:
        meta = client.conn.metadata
        assert not meta.has_pallet("Utility") and not meta.has_call("JobMarketplace", "claim_job")
        provider = client.provider(_fund(client, "provider"))
        consumer = client.consumer(_fund(client, "consumer"), open_blob_store(upstream_devnet.url))
        assert not provider.supports_claim() and not provider.supports_telemetry()
        gpus = provider.register_gpus([(GpuSpecs("A100", 80, 108, 1410, 400), 100 * EDSC)] * 2,
                                      HardwareAttestation(b"tpm", 9000, 1))  # no batch_all: two extrinsics
        assert len(set(gpus)) == 2
        jobs = consumer.submit_jobs([{"handler": "echo", "n": i} for i in range(4)], payment=2 * EDSC,
                                    max_compute_time=60)
        ids = {j.job_id for j in jobs}
        deadline = time.monotonic() + 30
        on_gpus: dict[int, list[int]] = {}
        while time.monotonic() < deadline:  # the assigner fills 2 slots per GPU: all 4 jobs land on ours
            on_gpus = provider.reader.gpu_jobs_many(gpus)
            if {j for js in on_gpus.values() for j in js} >= ids:
                break
            time.sleep(0.2)
        assert sorted(len(v) for v in on_gpus.values()) == [2, 2]
        # results go one extrinsic each, all in flight with consecutive local nonces (no Utility to batch them)
        nonce_before = provider.submitter.nonces.peek()
        receipts = provider.submit_results([(j, "0x" + "33" * 32) for j in sorted(ids)])
        assert all(r.success for r in receipts) and len({r.extrinsic_hash for r in receipts}) == 4
        assert nonce_before is not None and provider.submitter.nonces.peek() == nonce_before + 4
        for job in jobs:
            consumer.confirm_job(job.job_id)
        # upstream releases the escrow to the submitter and names it as `provider`: none of it is ours
        assert provider.earnings() == []
        released = [e for e in _events(client) if e.is_("JobMarketplace", "PaymentReleased")]
        assert {e.get("provider") for e in released} == {consumer.address}
        # a TEE quote longer than upstream's 512 bytes is filed as its digest
        report = bytes(range(256)) * 5
        provider.submit_tee_attestation(gpus[0], TeeAttestation("AMDSEV", report, b"m" * 32, 1)).raise_for_error()
        stored = provider.reader.tee_attestation(gpus[0])
        assert stored is not None and stored.quote == fit_quote(report, 512)


def _events(client: ChainClient) -> list[Any]:
    return events_in_range(client.conn, 0, client.conn.best_number())


def test_a_data_dir_keeps_the_runtime_it_was_made_with(tmp_path: Path) -> None:
    """A saved chain's blocks are encoded with its runtime's indices: reopening it with the other runtime would
    decode them wrongly, so the devnet refuses and names the fix."""
    store = SqliteStore(tmp_path / "chain.sqlite")
    Node(block_time=0, config=RuntimeConfig(flavour="upstream"), store=store)
    store.close()
    again = SqliteStore(tmp_path / "chain.sqlite")
    try:
        with pytest.raises(SystemExit, match="--runtime upstream"):
            Node(block_time=0, config=RuntimeConfig(flavour="etrid-ray"), store=again)
        assert Node(block_time=0, config=RuntimeConfig(flavour="upstream"), store=again).best.number == 0
    finally:
        again.close()
