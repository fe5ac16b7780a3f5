"""The devnet's compiled SCALE encoder must be byte-for-byte scalecodec (the reference it replaces on
the hot path), and must refuse — handing over to scalecodec — every value scalecodec refuses."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etrid_ray.devnet.node import Node
from etrid_ray.devnet.runtime import dev_account
from etrid_ray.scale_encoder import FastEncoder


@pytest.fixture(scope="module")
def node() -> Node:
    return Node(block_time=0)


def slow_or_error(node: Node, type_id: int, value: Any) -> bytes | None:
    try:
        return node.runtime.codec.encode_slow(type_id, value)
    except Exception:
        return None


def fast_or_error(fast: FastEncoder, type_id: int, value: Any) -> bytes | None:
    try:
        return fast.encoder(type_id)(value)
    except Exception:
        return None


def assert_same(node: Node, type_id: int, value: Any) -> None:
    fast = fast_or_error(node.runtime.codec.fast, type_id, value)
    slow = slow_or_error(node, type_id, value)
    if fast is not None:
        assert fast == slow, f"type {type_id}: fast {fast.hex()} != scalecodec {slow!r} for {value!r}"
    assert node.runtime.codec.encode(type_id, value) == slow if slow is not None else True


def test_every_genesis_storage_value_encodes_as_scalecodec_does(node: Node) -> None:
    state = node.runtime.state
    checked = 0
    for item in state.items.values():
        for _key, value in state.values[id(item)].items():
            assert node.runtime.codec.encode(item.value_ty, value) == node.runtime.codec.encode_slow(
                item.value_ty, value)
            assert node.runtime.codec.fast.encoder(item.value_ty)(value) == node.runtime.codec.encode_slow(
                item.value_ty, value)
            checked += 1
    assert checked >= 8


def test_events_of_every_shape_encode_as_scalecodec_does(node: Node) -> None:
    rt = node.runtime
    alice, bob = dev_account("Alice"), dev_account("Bob")
    module_error = {"Module": {"index": 11, "error": "0x08000000"}}
    info = {"weight": {"ref_time": 10_000_000, "proof_size": 0}, "class": "Normal", "pays_fee": "Yes"}
    events = [
        {"phase": {"ApplyExtrinsic": 1}, "event": {"Balances": {"Transfer": {"from": alice, "to": bob,
                                                                             "amount": 10**18}}}, "topics": []},
        {"phase": "Initialization", "event": {"Utility": "BatchCompleted"}, "topics": []},
        {"phase": "Finalization", "event": {"System": {"ExtrinsicFailed": {"dispatch_error": module_error,
                                                                          "dispatch_info": info}}},
         "topics": ["0x" + "ab" * 32]},
        {"phase": {"ApplyExtrinsic": 2}, "event": {"Sudo": {"Sudid": {"sudo_result": {"Ok": ()}}}}, "topics": []},
        {"phase": {"ApplyExtrinsic": 2}, "event": {"Sudo": {"Sudid": {"sudo_result": {"Err": "BadOrigin"}}}},
         "topics": []},
        {"phase": {"ApplyExtrinsic": 3}, "event": {"JobMarketplace": {"JobFailed": {"job_id": 7,
                                                                                   "reason": b"timeout"}}},
         "topics": []},
        {"phase": {"ApplyExtrinsic": 3}, "event": {"GpuRegistry": {"ReputationUpdated": {
            "gpu_id": 1, "reputation": {"jobs_completed": 1, "jobs_failed": 0, "uptime_bps": 10_000, "rating": 5,
                                        "rating_count": 1}}}}, "topics": []},
    ]
    ty = rt.system.Events.value_ty
    assert rt.codec.fast.encoder(ty)(events) == rt.codec.encode_slow(ty, events)


def test_a_job_in_every_status_encodes_as_scalecodec_does(node: Node) -> None:
    rt = node.runtime
    ty = rt.job_marketplace.Jobs.value_ty
    for status in ("Pending", "Processing", "Completed", "Failed", "Disputed", "Cancelled"):
        job = {"submitter": dev_account("Charlie"), "model_id": 2**64 - 1, "model_type": "ImageGen",
               "input_hash": "0x" + "11" * 32, "output_format": b"json", "max_compute_time": 60,
               "payment": 2**128 - 1, "priority": "Premium", "status": status,
               "assigned_gpu": None if status == "Pending" else 3,
               "result_hash": "0x" + "22" * 32 if status == "Completed" else None,
               "submitted_at": 1_700_000_000, "completed_at": 1_700_000_100 if status == "Completed" else None}
        assert rt.codec.fast.encoder(ty)(job) == rt.codec.encode_slow(ty, job)


# Hypothesis: any value of any shape, for every type the runtime stores or emits ---------------------

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-5, max_value=2**130), st.text(max_size=8),
    st.binary(max_size=40), st.just("0x" + "ab" * 32), st.just("0x" + "cd" * 4), st.just("0xzz"),
    st.just(dev_account("Alice")), st.just("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"),
    st.sampled_from(["Pending", "Active", "None", "Some", "Ok", "Err", "AlwaysOn", "Custom", "LLM", "BadOrigin"]),
)


def value_for(node: Node, type_id: int, depth: int = 0) -> st.SearchStrategy[Any]:
    """A plausible value of the type, mixed with arbitrary scalars (malformed shapes)."""
    entry = node.runtime.registry.types[type_id]
    assert entry is not None
    definition = entry["def"]
    if depth > 4:
        return SCALARS
    if "composite" in definition:
        fields = definition["composite"]["fields"]
        if fields and all(f["name"] for f in fields):
            plausible = st.fixed_dictionaries({f["name"]: value_for(node, f["type"], depth + 1) for f in fields})
        elif len(fields) == 1:
            plausible = value_for(node, fields[0]["type"], depth + 1)
        else:
            plausible = st.tuples(*[value_for(node, f["type"], depth + 1) for f in fields])
    elif "variant" in definition:
        options = []
        for v in definition["variant"]["variants"]:
            if not v["fields"]:
                options.append(st.just(v["name"]))
            elif all(f["name"] for f in v["fields"]):
                options.append(st.fixed_dictionaries({v["name"]: st.fixed_dictionaries(
                    {f["name"]: value_for(node, f["type"], depth + 1) for f in v["fields"]})}))
            else:
                options.append(st.fixed_dictionaries({v["name"]: value_for(node, v["fields"][0]["type"], depth + 1)}))
        plausible = st.one_of(options) if options else SCALARS
    elif "sequence" in definition:
        plausible = st.lists(value_for(node, definition["sequence"]["type"], depth + 1), max_size=3)
    elif "array" in definition:
        n = definition["array"]["len"]
        plausible = st.one_of(st.binary(min_size=n, max_size=n), st.binary(min_size=n, max_size=n).map(
            lambda b: "0x" + b.hex()))
    elif "primitive" in definition:
        plausible = st.one_of(st.integers(min_value=0, max_value=2**128 - 1), st.booleans())
    else:
        plausible = SCALARS
    return st.one_of(plausible, plausible, plausible, SCALARS)


@pytest.mark.parametrize("item_name", ["Jobs", "GpuNodes", "Account", "Events", "TeeAttestations",
                                       "ComplianceConfigs", "GpuTelemetry", "PendingJobs"])
def test_fast_encoder_never_disagrees_with_scalecodec(node: Node, item_name: str) -> None:
    item = next(i for i in node.runtime.state.items.values() if i.name == item_name)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(value_for(node, item.value_ty))
    def check(value: Any) -> None:
        assert_same(node, item.value_ty, value)

    check()


# canonical Compact decoding (issue 12, item 7) -----------------------------------------------------------

COMPACT_BOUNDARIES = [0, 1, 63, 64, 2**14 - 1, 2**14, 2**30 - 1, 2**30, 2**32 - 1, 2**32, 2**64, 2**128 - 1]


@pytest.mark.parametrize("value", COMPACT_BOUNDARIES)
def test_every_minimal_compact_decodes_back_to_its_value(value: int) -> None:
    from etrid_ray.devnet.codec import compact_decode, compact_encode

    encoded = compact_encode(value)
    assert compact_decode(encoded + b"tail", 0, bits=128) == (value, len(encoded))
    if value < 2**32:
        assert compact_decode(encoded, 0, bits=32) == (value, len(encoded))


@pytest.mark.parametrize(("encoded", "bits"), [
    (b"\x01\x00", 128),                             # 0 in the 2-byte mode
    ((63 << 2 | 1).to_bytes(2, "little"), 128),     # 63 in the 2-byte mode
    (b"\x06\x00\x00\x00", 128),                     # 1 in the 4-byte mode
    ((2**14 - 1 << 2 | 2).to_bytes(4, "little"), 128),
    (b"\x03" + (2**30 - 1).to_bytes(4, "little"), 128),  # fits the 4-byte mode
    (b"\x07" + (2**32 - 1).to_bytes(5, "little"), 128),  # a zero top byte
    (b"\xff" + b"\xff" * 67, 128),                  # 2^536 - 1: over u128
    (b"\x37" + (2**128).to_bytes(17, "little"), 128),
    (b"\x07" + (2**32).to_bytes(5, "little"), 32),  # over u32
])
def test_non_minimal_and_overflowing_compacts_are_refused(encoded: bytes, bits: int) -> None:
    from etrid_ray.devnet.codec import NonCanonicalError, compact_decode

    with pytest.raises(NonCanonicalError):
        compact_decode(encoded, 0, bits=bits)


def test_scalecodec_decoding_in_the_runtime_refuses_non_canonical_compacts_in_calls(node: Node) -> None:
    codec = node.runtime.codec
    transfer = codec.encode_call("Balances", "transfer_keep_alive", {"dest": {"Id": dev_account("Bob")}, "value": 1})
    assert transfer.endswith(b"\x04")
    assert codec.decode_call(transfer)["call_args"][1]["value"] == 1
    with pytest.raises(ValueError, match="minimally encoded"):
        codec.decode_call(transfer[:-1] + b"\x06\x00\x00\x00")
    remark = codec.encode_call("System", "remark", {"remark": "hi"})
    with pytest.raises(ValueError, match="minimally encoded"):  # a Vec length is a Compact<u32> too
        codec.decode_call(remark[:2] + b"\x09\x00" + remark[3:])


def test_call_decoding_stops_at_its_budget_however_the_batches_nest(node: Node) -> None:
    from etrid_ray.devnet.codec import CallBudgetExceeded, compact_encode

    codec = node.runtime.codec
    remark = codec.encode_call("System", "remark", {"remark": ""})
    inner = codec.encode_call("Utility", "batch", {"calls": []})[:2] + compact_encode(600) + remark * 600
    outer = codec.encode_call("Utility", "batch", {"calls": []})[:2] + compact_encode(2) + inner * 2  # 1,203 calls
    assert len(codec.decode_call(outer, max_calls=1203)["call_args"][0]["value"]) == 2
    with pytest.raises(CallBudgetExceeded):
        codec.decode_call(outer, max_calls=1202)
    assert codec.decode_call(remark, max_calls=1)  # the budget is per decode, not left over from the last one
