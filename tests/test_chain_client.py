"""The chain client: unit tests of its pure parts, then integration tests against the real devnet."""

from __future__ import annotations

import pickle
import signal
import struct
import threading
import time

import pytest

from etrid_ray.chain.codec import (
    CodecError,
    TypeRegistry,
    blake2_128,
    encode_compact,
    read_compact,
    twox_128,
)
from etrid_ray.chain.errors import ConfigError, KeyLoadError, PalletError, RpcError
from etrid_ray.chain.keys import Signer, dev_signer, keypair_from_secret, load_signer
from etrid_ray.chain.provider import truncate_utf8
from etrid_ray.chain.units import format_edsc, from_planck, to_planck

ALICE = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
ALICE_PUB = bytes.fromhex("d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d")
MNEMONIC = "bottom drive obey lake curtain smoke basket hold race lonely fit walk"


# keys ---------------------------------------------------------------------------------------------
def test_dev_uri_from_env_gives_alice_and_repr_hides_secret() -> None:
    signer = load_signer(environ={"ETRID_SEED": "//Alice"})
    assert signer.address == ALICE
    assert signer.public_key == ALICE_PUB
    assert "//Alice" not in repr(signer) and "//Alice" not in str(signer)
    assert signer.source == "env:ETRID_SEED"


def test_mnemonic_from_file_and_secret_never_shown(tmp_path) -> None:
    path = tmp_path / "seed"
    path.write_text(MNEMONIC + "\n")
    signer = load_signer(file=path, environ={})
    # the well-known dev phrase without a path is the root key of //Alice's derivations
    assert signer.address == keypair_from_secret(MNEMONIC).ss58_address
    for text in (repr(signer), str(signer), signer.source):
        assert "bottom" not in text and "walk" not in text
    with pytest.raises(TypeError):
        pickle.dumps(signer)


def test_seed_file_env_and_custom_variable(tmp_path) -> None:
    path = tmp_path / "seed"
    path.write_text("//Bob")
    assert load_signer(environ={"ETRID_SEED_FILE": str(path)}).address == dev_signer("Bob").address
    assert load_signer(env_var="MY_SEED", environ={"MY_SEED": "//Charlie"}).address == dev_signer("Charlie").address
    hex_seed = "0x" + "11" * 32
    assert load_signer(environ={"ETRID_SEED": hex_seed}).address == keypair_from_secret(hex_seed).ss58_address


def test_key_errors_name_the_fix_and_never_quote_the_secret(tmp_path) -> None:
    with pytest.raises(KeyLoadError, match="ETRID_SEED"):
        load_signer(environ={})
    secret = "definitely not a valid mnemonic phrase here"
    with pytest.raises(KeyLoadError) as exc:
        load_signer(environ={"ETRID_SEED": secret})
    assert secret not in str(exc.value) and exc.value.__cause__ is None
    with pytest.raises(KeyLoadError, match="does not exist"):
        load_signer(file=tmp_path / "missing", environ={})
    with pytest.raises(KeyLoadError, match="not a regular file"):
        load_signer(file=tmp_path, environ={})
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    with pytest.raises(KeyLoadError, match="empty"):
        load_signer(file=empty, environ={})


def test_signer_signs_verifiably() -> None:
    signer = dev_signer("Alice")
    sig = signer.sign(b"payload")
    assert signer.keypair.verify(b"payload", sig)
    assert isinstance(signer, Signer)


# units --------------------------------------------------------------------------------------------
def test_edsc_units_are_exact() -> None:
    assert to_planck("100") == 10**20
    assert to_planck("0.000000000000000001") == 1
    assert to_planck(1_000_000) == 10**24
    assert from_planck(10**20 + 5) == from_planck(10**20) + from_planck(5)
    assert format_edsc(1_000_000 * 10**18) == "1,000,000.0000 ËDSC"
    for bad in ("abc", "-1", "1e-19", "nan", ""):
        with pytest.raises(ConfigError):
            to_planck(bad, what="--stake")


# failure reasons ----------------------------------------------------------------------------------
def test_truncate_utf8_never_splits_a_character() -> None:
    assert truncate_utf8("short") == b"short"
    assert truncate_utf8("a" * 200) == b"a" * 128
    # 'é' is 2 bytes, '€' 3, '😀' 4: cut at every alignment and check each decodes cleanly
    for ch in ("é", "€", "😀"):
        for pad in range(4):
            text = "x" * pad + ch * 100
            out = truncate_utf8(text)
            assert len(out) <= 128
            out.decode("utf-8")  # must not raise
            assert len(out) > 128 - len(ch.encode())
    assert truncate_utf8("€" * 10, limit=4) == "€".encode()


# errors -------------------------------------------------------------------------------------------
def test_rpc_error_classification() -> None:
    stale = RpcError(1010, "Invalid Transaction", "Transaction is outdated")
    assert stale.is_stale and not stale.is_future
    assert RpcError(1010, "Invalid Transaction", "Transaction will be valid in the future").is_future
    assert RpcError(1014, "Priority is too low: (1 vs 1)").is_priority_too_low
    assert RpcError(1013, "Transaction Already Imported").is_already_imported
    assert not RpcError(1002, "Verification Error").is_stale
    err = PalletError("JobMarketplace", "JobNotPending", ("The job is not pending",))
    assert err.as_error_message() == {"type": "Module", "name": "JobNotPending", "docs": ["The job is not pending"]}
    assert str(err).startswith("JobMarketplace.JobNotPending")


# SCALE codec --------------------------------------------------------------------------------------
def _t(i: int, d: dict, path: tuple[str, ...] = ()) -> dict:
    return {"id": i, "type": {"path": list(path), "params": [], "def": d, "docs": []}}


def _f(name: str | None, ty: int) -> dict:
    return {"name": name, "type": ty, "typeName": None, "docs": []}


REGISTRY = [
    _t(0, {"primitive": "u8"}),
    _t(1, {"primitive": "u64"}),
    _t(2, {"primitive": "u128"}),
    _t(3, {"primitive": "u32"}),
    _t(4, {"array": {"len": 32, "type": 0}}),
    _t(5, {"composite": {"fields": [_f(None, 4)]}}, ("sp_core", "crypto", "AccountId32")),
    _t(6, {"composite": {"fields": [_f(None, 4)]}}, ("primitive_types", "H256")),
    _t(7, {"sequence": {"type": 0}}),
    _t(8, {"composite": {"fields": [_f(None, 7)]}}, ("bounded_collections", "bounded_vec", "BoundedVec")),
    _t(
        9,
        {
            "variant": {
                "variants": [
                    {"name": n, "fields": [], "index": i, "docs": []}
                    for i, n in enumerate(["Pending", "Processing", "Completed", "Failed", "Disputed", "Cancelled"])
                ]
            }
        },
    ),
    _t(
        10,
        {
            "variant": {
                "variants": [
                    {"name": "None", "fields": [], "index": 0, "docs": []},
                    {"name": "Some", "fields": [_f(None, 1)], "index": 1, "docs": []},
                ]
            }
        },
        ("Option",),
    ),
    _t(
        11,
        {
            "variant": {
                "variants": [
                    {"name": "None", "fields": [], "index": 0, "docs": []},
                    {"name": "Some", "fields": [_f(None, 6)], "index": 1, "docs": []},
                ]
            }
        },
        ("Option",),
    ),
    _t(
        12,
        {
            "composite": {
                "fields": [
                    _f("submitter", 5),
                    _f("model_id", 1),
                    _f("input_hash", 6),
                    _f("output_format", 8),
                    _f("payment", 2),
                    _f("status", 9),
                    _f("assigned_gpu", 10),
                    _f("result_hash", 11),
                    _f("max_compute_time", 3),
                ]
            }
        },
        ("pallet_job_marketplace", "Job"),
    ),
    _t(13, {"sequence": {"type": 1}}),
    _t(14, {"compact": {"type": 3}}),
    _t(15, {"primitive": "bool"}),
    _t(16, {"tuple": [1, 15]}),
    _t(
        17,
        {
            "variant": {
                "variants": [
                    {"name": "AlwaysOn", "fields": [], "index": 0, "docs": []},
                    {"name": "Custom", "fields": [_f(None, 8)], "index": 2, "docs": []},
                ]
            }
        },
    ),
    _t(
        18,
        {"variant": {"variants": [{"name": "Moved", "fields": [_f("from", 1), _f("to", 1)], "index": 0, "docs": []}]}},
    ),
]


def _job_bytes(status: int = 1, gpu: int | None = 7, result: bytes | None = None) -> bytes:
    out = ALICE_PUB + struct.pack("<Q", 42) + b"\xab" * 32
    out += encode_compact(4) + b"json"
    out += (10**20).to_bytes(16, "little") + bytes([status])
    out += b"\x00" if gpu is None else b"\x01" + struct.pack("<Q", gpu)
    out += b"\x00" if result is None else b"\x01" + result
    out += struct.pack("<I", 3600)
    return out


def test_codec_decodes_a_job_shaped_struct() -> None:
    reg = TypeRegistry(REGISTRY)
    job = reg.decode(12, _job_bytes())
    assert job == {
        "submitter": ALICE,
        "model_id": 42,
        "input_hash": "0x" + "ab" * 32,
        "output_format": b"json",
        "payment": 10**20,
        "status": "Processing",
        "assigned_gpu": 7,
        "result_hash": None,
        "max_compute_time": 3600,
    }
    done = reg.decode(12, _job_bytes(status=2, gpu=None, result=b"\x01" * 32))
    assert done["status"] == "Completed" and done["assigned_gpu"] is None
    assert done["result_hash"] == "0x" + "01" * 32


def test_codec_sequences_compacts_tuples_and_enums() -> None:
    reg = TypeRegistry(REGISTRY)
    ids = list(range(10_000))
    raw = encode_compact(len(ids)) + b"".join(struct.pack("<Q", i) for i in ids)
    t0 = time.perf_counter()
    assert reg.decode(13, raw) == ids
    assert time.perf_counter() - t0 < 0.5
    for n in (0, 63, 64, 16383, 16384, 2**30 - 1, 2**30, 2**64):
        enc = encode_compact(n)
        assert read_compact(memoryview(enc), 0) == (n, len(enc))
        if n < 2**32:
            assert reg.decode(14, enc) == n
    assert reg.decode(16, struct.pack("<Q", 5) + b"\x01") == (5, True)
    assert reg.decode(17, b"\x00") == "AlwaysOn"
    assert reg.decode(17, b"\x02" + encode_compact(3) + b"\xff\xff\x01") == {"Custom": b"\xff\xff\x01"}
    assert reg.decode(18, b"\x00" + struct.pack("<QQ", 1, 2)) == {"Moved": {"from": 1, "to": 2}}


def test_codec_rejects_bad_input() -> None:
    reg = TypeRegistry(REGISTRY)
    with pytest.raises(CodecError):
        reg.decode(12, _job_bytes()[:-1])  # truncated
    with pytest.raises(CodecError):
        reg.decode(12, _job_bytes() + b"\x00")  # trailing
    with pytest.raises(CodecError):
        reg.decode(9, b"\x09")  # unknown variant
    with pytest.raises(CodecError):
        reg.decode(15, b"\x02")  # not a bool
    with pytest.raises(CodecError):
        reg.decode(13, encode_compact(2**29))  # absurd length


def test_codec_encodes_keys_and_hashers_match_substrate() -> None:
    reg = TypeRegistry(REGISTRY)
    assert reg.encode_key(1, 5) == struct.pack("<Q", 5)
    assert reg.encode_key(5, ALICE) == ALICE_PUB
    assert reg.encode_key(5, "0x" + ALICE_PUB.hex()) == ALICE_PUB
    # System.Account(Alice) is a well-known key on every Substrate chain
    key = twox_128(b"System") + twox_128(b"Account") + blake2_128(ALICE_PUB) + ALICE_PUB
    assert key.hex() == (
        "26aa394eea5630e07c48ae0c9558cef7b99d880ec681799c0cf30e8886371da9"
        "de1e86a9a8c739864cf3cc5ec2bea59fd43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"
    )


# ==================================================================================================
# Integration: the real devnet over real sockets
# ==================================================================================================
from etrid_ray.blobs import open_blob_store  # noqa: E402
from etrid_ray.chain import (  # noqa: E402
    ChainClient,
    ExtrinsicFailed,
    GpuSpecs,
    HardwareAttestation,
    JobStatus,
    QueueWatcher,
    UnsupportedError,
)
from etrid_ray.chain.connection import Connection, RetryPolicy  # noqa: E402
from etrid_ray.chain.submit import Call, Submitter  # noqa: E402
from etrid_ray.devnet.process import DevnetProcess  # noqa: E402

EDSC = 10**18
SPECS = GpuSpecs("A100", 80, compute_units=108, clock_speed_mhz=1410, tdp_watts=400)
ATTEST = HardwareAttestation(b"quote", benchmark_score=9000, timestamp=1_700_000_000)
_counter = iter(range(10**6))


def fund(client: ChainClient, amount: int = 10_000 * EDSC) -> Signer:
    """A fresh account of this test's own, funded by //Alice, so tests never share balances or nonces."""
    signer = dev_signer(f"//ChainClientTest/{time.time_ns()}/{next(_counter)}")
    Submitter(client.conn, dev_signer("Alice")).submit(
        Call("Balances", "transfer_keep_alive", {"dest": signer.address, "value": amount})
    )
    return signer


def fees(receipts) -> int:
    """Transaction fees an account paid, from the receipts' TransactionFeePaid events."""
    return sum(int(e.get("actual_fee")) for r in receipts for e in r.find("TransactionPayment", "TransactionFeePaid"))


@pytest.fixture(scope="module")
def client(devnet):
    with ChainClient(devnet.url) as c:
        yield c


def test_metadata_is_read_not_hardcoded(client) -> None:
    meta = client.conn.metadata
    for pallet in ("GpuRegistry", "JobMarketplace", "ConfidentialCompute", "Compliance", "Utility", "Sudo"):
        assert meta.has_pallet(pallet)
    assert meta.has_call("JobMarketplace", "claim_job") and meta.has_call("GpuRegistry", "report_telemetry")
    assert not meta.has_call("JobMarketplace", "no_such_call")
    with pytest.raises(UnsupportedError, match="no call"):
        meta.require_call("JobMarketplace", "no_such_call")
    # our hand-built storage keys equal substrate-interface's own
    sub = client.conn.substrate
    for pallet, name, params in (
        ("System", "Account", [dev_signer("Bob").address]),
        ("JobMarketplace", "Jobs", [7]),
        ("GpuRegistry", "GpuNodes", [3]),
        ("JobMarketplace", "PendingJobs", []),
    ):
        expected = sub.create_storage_key(pallet, name, params).to_hex()
        assert meta.storage(pallet, name).key_hex(*params) == expected
    info = client.info()
    assert info.spec_name == "ai-compute-pbc" and info.token_decimals == 18 and info.ss58_format == 42


def test_full_lifecycle_with_exact_balances(client, devnet) -> None:
    provider_key, consumer_key = fund(client), fund(client)
    provider = client.provider(provider_key)
    consumer = client.consumer(consumer_key, open_blob_store(devnet.url))
    p0, c0 = provider.balance(), consumer.balance()

    gpu_id = provider.register_gpu(SPECS, 100 * EDSC, ATTEST)
    assert gpu_id in provider.my_gpus()
    node = provider.gpu(gpu_id)
    assert node is not None and node.provider == provider.address and node.specs == SPECS
    assert node.stake == 100 * EDSC and node.status == "Active"
    p1 = provider.balance()
    assert p1.reserved - p0.reserved == 100 * EDSC

    payment = 10 * EDSC
    job = consumer.submit_job({"handler": "matmul", "args": {"n": 4}}, payment=payment, max_compute_time=60)
    c1 = consumer.balance()
    assert c1.reserved - c0.reserved == payment
    assert c0.free - c1.free == payment + fees([job.receipt])
    assert job.job_id in client.reader.pending_job_ids()
    on_chain = client.reader.job(job.job_id)
    assert on_chain is not None and on_chain.status == JobStatus.PENDING
    assert on_chain.input_hash == job.input_hash and on_chain.submitter == consumer.address
    assert abs(on_chain.submitted_at - time.time()) < 120  # unix seconds

    claimed = provider.claim(job.job_id, gpu_id)
    assert claimed.status == JobStatus.PROCESSING and claimed.assigned_gpu == gpu_id
    assert job.job_id not in client.reader.pending_job_ids()
    assert job.job_id in client.reader.gpu_jobs(gpu_id)

    result_hash = consumer.blobs.put(b"the result")
    provider.submit_result(job.job_id, result_hash)
    before_confirm = provider.balance()
    r_confirm = consumer.confirm_job(job.job_id)
    paid = r_confirm.first("JobMarketplace", "PaymentReleased")
    assert paid is not None and paid.get("provider") == provider.address
    assert int(paid.get("amount")) == payment - payment * 500 // 10_000
    after = provider.balance()
    assert after.free - before_confirm.free == payment * 95 // 100
    assert consumer.balance().reserved == c0.reserved
    done = consumer.job(job.job_id)
    assert done is not None and done.status == JobStatus.COMPLETED and done.result_hash == result_hash
    assert consumer.fetch_result(done) == b"the result"
    earned = provider.earnings(from_block=r_confirm.block_number, to_block=r_confirm.block_number)
    assert [(p.job_id, p.amount) for p in earned] == [(job.job_id, payment * 95 // 100)]


def test_pallet_errors_carry_module_name_docs_like_substrate_interface(client) -> None:
    from substrateinterface import ExtrinsicReceipt

    consumer = client.consumer(fund(client))
    with pytest.raises(ExtrinsicFailed) as exc:
        consumer.confirm_job(10**12)  # no such job
    err = exc.value
    assert err.module == "JobMarketplace" and err.name
    assert err.docs and all(isinstance(d, str) for d in err.docs)
    r = err.receipt
    theirs = ExtrinsicReceipt(client.conn.substrate, extrinsic_hash=r.extrinsic_hash, block_hash=r.block_hash)
    assert theirs.is_success is False
    assert r.error_message == {**theirs.error_message, "docs": list(theirs.error_message["docs"])}
    # too little stake: InsufficientStake by name
    with pytest.raises(ExtrinsicFailed, match="InsufficientStake"):
        client.provider(fund(client)).register_gpu(SPECS, 99 * EDSC, ATTEST)


def test_fast_job_decoding_matches_scalecodec(client, devnet) -> None:
    consumer = client.consumer(fund(client), open_blob_store(devnet.url))
    jobs = consumer.submit_jobs(
        [{"n": i} for i in range(3)],
        payment=EDSC,
        max_compute_time=30,
        output_format="safetensors",
        priority="Premium",
        model_type="LLM",
    )
    ids = [j.job_id for j in jobs]
    fast = client.reader.jobs(ids)
    for job_id in ids:
        slow = client.conn.substrate.query("JobMarketplace", "Jobs", [job_id]).value
        ours = fast[job_id]
        assert ours.submitter == slow["submitter"] and ours.payment == slow["payment"]
        assert ours.input_hash == slow["input_hash"] and ours.status == slow["status"]
        assert ours.output_format == "safetensors" and ours.priority == "Premium" and ours.model_type == "LLM"
        assert ours.submitted_at == slow["submitted_at"] and ours.max_compute_time == 30
    for j in jobs:
        consumer.cancel_job(j.job_id)


def test_many_extrinsics_in_flight_with_local_nonces(client) -> None:
    signer = fund(client)
    sub = Submitter(client.conn, signer)
    calls = [Call("System", "remark", {"remark": f"in flight {i}".encode()}) for i in range(40)]
    t0 = time.perf_counter()
    receipts = sub.submit_many(calls)
    elapsed = time.perf_counter() - t0
    assert all(r.success for r in receipts)
    assert len({r.extrinsic_hash for r in receipts}) == 40
    nonces = [
        client.conn.substrate.retrieve_extrinsic_by_hash(r.block_hash, r.extrinsic_hash).extrinsic.value["nonce"]
        for r in receipts[:3]
    ]
    assert nonces == [0, 1, 2]
    assert sub.nonces.peek() == 40 and client.balance(signer.address).nonce == 40
    assert elapsed < 20


def test_stale_nonce_is_resynced(client) -> None:
    signer = fund(client)
    first, second = Submitter(client.conn, signer), Submitter(client.conn, signer)
    first.submit(Call("System", "remark", {"remark": b"a"}))
    second.nonces.take()  # seeds second's counter at 1 ...
    second.nonces._next = 0  # ... then force it behind the chain, as a second process would leave it
    r = second.submit(Call("System", "remark", {"remark": b"b"}))
    assert r.success and second.nonces.resyncs >= 1
    assert client.balance(signer.address).nonce == 2


def test_batch_all_and_sequential_fallback(client) -> None:
    provider = client.provider(fund(client))
    ids = provider.register_gpus([(SPECS, 100 * EDSC)] * 3, ATTEST)
    assert len(ids) == 3 and sorted(provider.my_gpus()) == sorted(ids)
    receipts = provider.heartbeat(ids)
    assert len(receipts) == 1  # one extrinsic for three calls
    assert len(receipts[0].find("Utility", "ItemCompleted")) == 3 or receipts[0].first("Utility", "BatchCompleted")
    provider.submitter.use_batch = False  # what happens on a runtime without Utility
    receipts = provider.heartbeat(ids)
    assert len(receipts) == 3 and all(r.success for r in receipts)
    # an atomic batch with one bad call fails whole, naming the inner pallet error
    provider.submitter.use_batch = None
    bad = [
        Call("GpuRegistry", "report_heartbeat", {"gpu_id": ids[0]}),
        Call("GpuRegistry", "report_heartbeat", {"gpu_id": 10**9}),
    ]
    with pytest.raises(ExtrinsicFailed, match="GpuNotFound"):
        provider.submitter.batch(bad)


def test_claim_many_and_lost_races(client, devnet) -> None:
    provider = client.provider(fund(client))
    gpu = provider.register_gpu(SPECS, 100 * EDSC, ATTEST)
    consumer = client.consumer(fund(client), open_blob_store(devnet.url))
    jobs = consumer.submit_jobs([{"n": i} for i in range(3)], payment=EDSC, max_compute_time=60)
    consumer.cancel_job(jobs[2].job_id)  # this one can no longer be claimed
    outcomes = provider.claim_many([(j.job_id, gpu) for j in jobs])
    assert [o.ok for o in outcomes] == [True, True, False]
    assert outcomes[2].error is not None and outcomes[2].error.module == "JobMarketplace"
    assert sorted(client.reader.gpu_jobs(gpu))[-2:] == sorted(j.job_id for j in jobs[:2])


def test_assignment_by_sudo_is_seen_without_claim(client, devnet) -> None:
    """The path for a runtime without claim_job: root assign_job, seen through GpuJobs."""
    provider = client.provider(fund(client))
    gpu = provider.register_gpu(SPECS, 100 * EDSC, ATTEST)
    consumer = client.consumer(fund(client), open_blob_store(devnet.url))
    job = consumer.submit_job({"n": 1}, payment=EDSC, max_compute_time=60)
    result: dict = {}

    def waiter() -> None:
        result["job"] = provider.wait_for_assignment(job.job_id, gpu_ids=[gpu], timeout=30, poll=0.05)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.2)
    alice = Submitter(client.conn, dev_signer("Alice"))
    inner = client.conn.substrate.compose_call("JobMarketplace", "assign_job", {"job_id": job.job_id, "gpu_id": gpu})
    alice.submit(Call("Sudo", "sudo", {"call": inner.value}))
    t.join(35)
    assert result["job"].job_id == job.job_id and result["job"].assigned_gpu == gpu
    # a plain signed assign_job is refused: only root may assign
    with pytest.raises(ExtrinsicFailed, match="BadOrigin"):
        Submitter(client.conn, dev_signer("Bob")).submit(
            Call("JobMarketplace", "assign_job", {"job_id": job.job_id, "gpu_id": gpu})
        )


def test_failure_reason_truncated_telemetry_and_dispute(client, devnet) -> None:
    provider = client.provider(fund(client))
    gpu = provider.register_gpu(SPECS, 100 * EDSC, ATTEST)
    consumer = client.consumer(fund(client), open_blob_store(devnet.url))
    a, b = consumer.submit_jobs([{"x": 1}, {"x": 2}], payment=EDSC, max_compute_time=60)
    provider.claim(a.job_id, gpu)
    reason = "CUDA out of memory: " + "€" * 80
    r = provider.report_failure(a.job_id, reason)
    failed = r.first("JobMarketplace", "JobFailed")
    assert failed is not None and failed.get("reason") == truncate_utf8(reason)
    assert len(failed.get("reason")) <= 128
    assert consumer.job(a.job_id).status == JobStatus.FAILED
    # telemetry, a devnet extension read back from GpuTelemetry
    provider.report_telemetry(gpu, utilization_bps=7_500, jobs_completed=3, earnings=42 * EDSC)
    tel = client.reader.telemetry(gpu)
    assert tel is not None and (tel.utilization_bps, tel.jobs_completed, tel.earnings) == (7_500, 3, 42 * EDSC)
    with pytest.raises(ValueError):
        provider.report_telemetry(gpu, utilization_bps=10_001, jobs_completed=0, earnings=0)
    # only the assigned provider may report: another account is refused by name
    provider.claim(b.job_id, gpu)
    with pytest.raises(ExtrinsicFailed, match="NotAssignedProvider"):
        client.provider(fund(client)).submit_result(b.job_id, "0x" + "78" * 32)
    # dispute after a result
    provider.submit_result(b.job_id, "0x" + "77" * 32)
    consumer.dispute_job(b.job_id)
    assert consumer.job(b.job_id).status == JobStatus.DISPUTED


def test_cancel_refunds_escrow(client, devnet) -> None:
    consumer = client.consumer(fund(client), open_blob_store(devnet.url))
    before = consumer.balance()
    job = consumer.submit_job({"cancel": True}, payment=3 * EDSC, max_compute_time=60)
    r = consumer.cancel_job(job.job_id)
    assert r.first("JobMarketplace", "JobCancelled") is not None
    after = consumer.balance()
    assert after.reserved == before.reserved
    assert before.free - after.free == fees([job.receipt, r])
    with pytest.raises(ExtrinsicFailed):
        consumer.cancel_job(job.job_id)


@pytest.mark.parametrize("transport", ["ws", "http"])
def test_queue_watcher_sees_new_jobs(client, devnet, transport) -> None:
    url = devnet.url if transport == "ws" else devnet.http_url
    updates: list = []
    with Connection(url) as conn:
        watcher = QueueWatcher(conn, updates.append, poll_interval=0.1)
        with watcher:
            deadline = time.monotonic() + 10
            while not updates and time.monotonic() < deadline:
                time.sleep(0.02)
            if transport == "ws":  # the subscription comes up
                while watcher.mode != "subscription" and time.monotonic() < deadline:
                    time.sleep(0.02)
                assert watcher.mode == "subscription"
            consumer = client.consumer(fund(client), open_blob_store(devnet.url))
            job = consumer.submit_job({"watch": transport}, payment=EDSC, max_compute_time=60)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not any(job.job_id in u.new_jobs for u in updates):
                time.sleep(0.02)
        assert watcher.mode == ("subscription" if transport == "ws" else "polling")
    hit = next(u for u in updates if job.job_id in u.new_jobs)
    assert hit.new_jobs[job.job_id].input_hash == job.input_hash
    assert any(e.get("job_id") == job.job_id for u in updates for e in u.submitted)
    assert watcher.errors == 0
    consumer.cancel_job(job.job_id)


def test_reconnects_with_backoff_after_a_node_restart(tmp_path) -> None:
    from etrid_ray.chain.errors import ChainConnectionError

    with DevnetProcess(block_time=0, data_dir=tmp_path / "chain") as node:
        conn = Connection(node.url, retry=RetryPolicy(initial_delay=0.1, max_delay=1.0, max_attempts=30))
        bob = Submitter(conn, dev_signer("Bob"))
        bob.submit(Call("System", "remark", {"remark": b"before"}))
        best = conn.best_number()
        node.stop(signal.SIGKILL)  # a crash: the socket drops ...
        node.start()  # ... and the node comes back on the same port with the same data dir
        assert conn.best_number() == best  # the call reconnects behind the scenes
        assert conn.reconnects == 1
        r = bob.submit(Call("System", "remark", {"remark": b"after"}))  # nonce re-seeded after reconnect
        assert r.success and conn.reconnects == 1
        node.stop(signal.SIGKILL)
        conn.retry = RetryPolicy(initial_delay=0.05, max_delay=0.1, max_attempts=3)
        t0 = time.monotonic()
        with pytest.raises(ChainConnectionError):
            conn.best_number()
        assert time.monotonic() - t0 < 10  # gives up after the policy's attempts
        conn.close()


def test_reading_10000_pending_jobs_takes_under_a_second() -> None:
    """P6: the whole queue (10,000 ids, the PendingJobs bound) plus every Job, in ≤ 1 s."""
    with DevnetProcess(block_time=0) as node, ChainClient(node.url) as client:
        users = [fund(client, 1_000 * EDSC) for _ in range(10)]  # UserJobs holds 1,000 per account
        for user in users:
            consumer = client.consumer(user)
            call = consumer._submit_call("0x" + "22" * 32, EDSC // 1000, 60, 0, "Custom", "json", "Standard")
            consumer.submitter.max_batch = 1000
            consumer.submitter.batch([call] * 1000)
        client.reader.pending_jobs()  # warm the node's caches; the figure is the steady state
        best = 10.0
        for _ in range(3):
            t0 = time.perf_counter()
            _at, jobs = client.reader.pending_jobs()
            best = min(best, time.perf_counter() - t0)
        assert len(jobs) == 10_000 and all(j.status == JobStatus.PENDING for j in jobs)
        assert best <= 1.0, f"reading 10,000 pending jobs took {best:.2f}s"
        print(f"read 10,000 pending jobs in {best:.3f}s")


def test_unregister_tee_attestation_and_compliance(client) -> None:
    from etrid_ray.chain import TeeAttestation

    provider = client.provider(fund(client))
    keep, drop = provider.register_gpus([(SPECS, 100 * EDSC)] * 2, ATTEST)
    reserved = provider.balance().reserved
    r = provider.unregister_gpu(drop)
    assert r.first("GpuRegistry", "GpuUnregistered").get("gpu_id") == drop
    assert provider.my_gpus() == [keep] and provider.gpu(drop) is None
    assert reserved - provider.balance().reserved == 100 * EDSC
    # ConfidentialCompute: an SEV-SNP report (1184 bytes) fits the devnet's larger bound
    quote = bytes(range(256)) * 4 + bytes(160)
    att = TeeAttestation("AMDSEV", quote, b"\x01" * 32, 1_700_000_000)
    r = provider.submit_tee_attestation(keep, att)
    assert r.first("ConfidentialCompute", "AttestationVerified").get("gpu_id") == keep
    assert client.reader.tee_attestation(keep) == att
    with pytest.raises(ExtrinsicFailed, match="InvalidAttestation"):
        provider.submit_tee_attestation(keep, TeeAttestation("IntelSGX", b""))
    # Compliance, consumer side
    consumer = client.consumer(fund(client))
    consumer.enable_compliance("GDPR", "eu-west-1")
    cfg = client.reader.compliance(consumer.address)
    assert cfg is not None and (cfg.template, cfg.data_residency) == ("GDPR", "eu-west-1")
    consumer.disable_compliance()
    assert client.reader.compliance(consumer.address) is None
    with pytest.raises(ExtrinsicFailed, match="NotEnabled"):
        consumer.disable_compliance()


@pytest.mark.parametrize("prim,fmt", [("u64", "<Q"), ("u32", "<I"), ("i16", "<h")])
def test_a_vector_of_fixed_width_integers_decodes_like_element_by_element(prim: str, fmt: str) -> None:
    """The one-call fast path for `Vec<u64>` and friends (PendingJobs holds up to 10,000 ids) gives what decoding
    each element does, and refuses a length the input cannot hold."""
    from etrid_ray.chain.codec import CodecError, TypeRegistry
    from etrid_ray.scale_codec import encode_compact

    reg = TypeRegistry([{"id": 0, "type": {"def": {"primitive": prim}}},
                        {"id": 1, "type": {"def": {"sequence": {"type": 0}}}}])
    lo, hi = (-(2**15), 2**15 - 1) if prim == "i16" else (0, 2**(8 * struct.calcsize(fmt)) - 1)
    for values in ([], [lo, hi], list(range(1000)) if hi >= 1000 else [hi] * 1000):
        data = encode_compact(len(values)) + b"".join(struct.pack(fmt, v) for v in values)
        assert reg.decode(1, data) == values
        element = reg.decoder(0)
        assert [element(memoryview(struct.pack(fmt, v)), 0)[0] for v in values] == values
    with pytest.raises(CodecError):
        reg.decode(1, encode_compact(3) + struct.pack(fmt, hi))
