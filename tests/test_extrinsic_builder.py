"""Composing and signing extrinsics without scalecodec: the bytes are substrate-interface's, the devnet takes them.

The reference is substrate-interface itself (`compose_call`, `create_signed_extrinsic`, `generate_signature_payload`)
over the metadata a real devnet serves, for both runtimes (`--runtime etrid-ray` and `--runtime upstream`). sr25519
signatures are randomized, so signed extrinsics are compared outside their signature, and the signature is checked
against the signer's public key over the payload substrate-interface would sign.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scalecodec.utils.ss58 import ss58_encode
from substrateinterface import Keypair, KeypairType, SubstrateInterface

from etrid_ray.chain import Call, ChainClient, Submitter
from etrid_ray.chain.keys import Signer, dev_signer
from etrid_ray.devnet.process import DevnetProcess
from etrid_ray.extrinsic_builder import ChainContext, ExtrinsicBuilder, UnsupportedExtrinsic
from etrid_ray.scale_codec import decode_compact, encode_compact
from etrid_ray.scale_encoder import ComposedCall

EDSC = 10**18
SR_ALICE = Keypair.create_from_uri("//Alice")
ED_KEY = Keypair.create_from_seed("0x" + "42" * 32, crypto_type=KeypairType.ED25519)


@pytest.fixture(scope="module")
def upstream_devnet() -> Iterator[DevnetProcess]:
    with DevnetProcess(block_time=0, extra_args=["--runtime", "upstream"]) as proc:
        yield proc


@pytest.fixture(scope="module", params=["etrid-ray", "upstream"])
def chain(request, devnet, upstream_devnet) -> Iterator[ChainClient]:
    """A client of each runtime; its substrate-interface instance is the reference."""
    with ChainClient((devnet if request.param == "etrid-ray" else upstream_devnet).url) as client:
        yield client


def reference(chain: ChainClient) -> SubstrateInterface:
    sub = chain.conn.substrate
    sub.init_runtime()
    return sub


def builder_of(sub: SubstrateInterface) -> ExtrinsicBuilder:
    return ExtrinsicBuilder(sub.metadata.value[1]["V14"], sub.runtime_config)


def context_of(sub: SubstrateInterface) -> ChainContext:
    return ChainContext(bytes.fromhex(sub.get_block_hash(0)[2:]), sub.runtime_version, sub.transaction_version)


# values in the shapes substrate-interface takes, drawn from the metadata's own types -----------------------------
_BITS = {"u8": 8, "u16": 16, "u32": 32, "u64": 64, "u128": 128}
_accounts = st.binary(min_size=32, max_size=32).flatmap(
    lambda raw: st.sampled_from([ss58_encode(raw, 42), "0x" + raw.hex()]))


def values(types: dict[int, dict[str, Any]], type_id: int, depth: int = 0) -> st.SearchStrategy[Any]:
    """A strategy for the values of `type_id` (nested calls are a `System.remark` as a call dict)."""
    entry = types[type_id]
    d, name = entry["def"], (entry.get("path") or [""])[-1]
    if name in ("AccountId32", "MultiAddress"):
        return _accounts
    if name in ("RuntimeCall", "Call") and "variant" in d:
        return st.binary(max_size=40).map(
            lambda b: {"call_module": "System", "call_function": "remark", "call_args": {"remark": b}})
    if name == "H256":
        return st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex())
    if "primitive" in d:
        prim = d["primitive"]
        return st.booleans() if prim == "bool" else st.integers(0, 2 ** _BITS[prim] - 1)
    if "compact" in d:
        return st.integers(0, 2 ** _BITS[types[int(d["compact"]["type"])]["def"]["primitive"]] - 1)
    if "sequence" in d or "array" in d:
        inner = int((d.get("sequence") or d["array"])["type"])
        if types[inner]["def"].get("primitive") == "u8":
            if "array" in d:
                n = int(d["array"]["len"])
                return st.binary(min_size=n, max_size=n).map(lambda b: "0x" + b.hex())
            return st.one_of(st.binary(max_size=48), st.binary(max_size=48).map(lambda b: "0x" + b.hex()),
                             st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=24)
                             .filter(lambda s: not s.startswith("0x")))
        return st.lists(values(types, inner, depth + 1), max_size=0 if depth > 2 else 3)
    if "composite" in d:
        fields = d["composite"].get("fields") or []
        if len(fields) == 1 and not fields[0].get("name"):
            return values(types, int(fields[0]["type"]), depth + 1)
        return st.fixed_dictionaries({f["name"]: values(types, int(f["type"]), depth + 1) for f in fields})
    if "variant" in d:
        variants = d["variant"]["variants"]
        if name == "Option":
            return st.one_of(st.none(), values(types, int(variants[1]["fields"][0]["type"]), depth + 1))
        options = []
        for v in variants:
            fields = v.get("fields") or []
            if not fields:
                options.append(st.just(v["name"]))
            elif all(f.get("name") for f in fields):
                options.append(st.fixed_dictionaries(
                    {f["name"]: values(types, int(f["type"]), depth + 1) for f in fields}).map(
                    lambda inner, n=v["name"]: {n: inner}))
            elif len(fields) == 1:
                inner_values = values(types, int(fields[0]["type"]), depth + 1)
                options.append(inner_values.map(lambda inner, n=v["name"]: {n: inner}))
        return st.one_of(options)
    raise AssertionError(f"no strategy for type {type_id}: {d}")


def every_call(sub: SubstrateInterface) -> list[tuple[str, str, list[tuple[str, int]]]]:
    v14 = sub.metadata.value[1]["V14"]
    types = {int(t["id"]): t["type"] for t in v14["types"]["types"]}
    out = []
    for pallet in v14["pallets"]:
        if pallet.get("calls") is None:
            continue
        for variant in types[int(pallet["calls"]["ty"])]["def"]["variant"]["variants"]:
            out.append((pallet["name"], variant["name"], [(f["name"], int(f["type"])) for f in variant["fields"]]))
    return out


# composing ---------------------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_every_call_of_the_runtime_composes_to_substrate_interfaces_bytes(chain, data) -> None:
    sub = reference(chain)
    builder = builder_of(sub)
    types = {int(t["id"]): t["type"] for t in sub.metadata.value[1]["V14"]["types"]["types"]}
    calls = every_call(sub)
    assert len(calls) > 30  # the market, registry, TEE, compliance, balances, sudo … calls
    for pallet, function, fields in calls:
        args = {name: data.draw(values(types, ty), label=f"{pallet}.{function}.{name}") for name, ty in fields}
        ours = builder.compose(pallet, function, args)  # raises EncodeFallback if the compiled path cannot
        assert ours.data == bytes(sub.compose_call(pallet, function, copy.deepcopy(args)).data.data), \
            (pallet, function, args)


def test_a_batch_is_its_call_index_a_compact_count_and_the_inner_calls_bytes(chain) -> None:
    sub = reference(chain)
    if not chain.conn.metadata.has_call("Utility", "batch_all"):
        pytest.skip("this runtime has no Utility pallet")
    builder = builder_of(sub)
    inner = [builder.compose("JobMarketplace", "submit_result", {"job_id": i, "result_hash": "0x" + "22" * 32})
             for i in range(1000)]
    for function in ("batch_all", "batch", "force_batch"):
        batch = builder.compose("Utility", function, {"calls": inner})
        index = bytes(sub.compose_call("Utility", function, {"calls": []}).data.data)[:2]
        assert batch.data == index + encode_compact(1000) + b"".join(c.data for c in inner)
        as_values = [sub.compose_call("JobMarketplace", "submit_result", {"job_id": i, "result_hash": "0x" + "22" * 32})
                     for i in range(1000)]
        assert batch.data == bytes(sub.compose_call("Utility", function, {"calls": as_values}).data.data)


# signing -----------------------------------------------------------------------------------------------------
def as_scalecodec(sub: SubstrateInterface, call: ComposedCall) -> Any:
    """The call composed by substrate-interface from the same values (inner calls too)."""
    args = {k: [as_scalecodec(sub, c) for c in v] if isinstance(v, list) and v and isinstance(v[0], ComposedCall)
            else as_scalecodec(sub, v) if isinstance(v, ComposedCall) else v for k, v in call.args.items()}
    return sub.compose_call(call.module, call.function, args)


def assert_signed_like_substrate_interface(sub: SubstrateInterface, builder: ExtrinsicBuilder, call: ComposedCall,
                                           key: Keypair, nonce: int) -> None:
    ours = builder.sign(call, key, nonce, context_of(sub))
    reference_ext = sub.create_signed_extrinsic(as_scalecodec(sub, call), key, nonce=nonce)
    theirs = bytes(reference_ext.data.data)
    assert len(ours.data) == len(theirs)
    # Compact(len) ‖ 0x84 ‖ MultiAddress::Id (1 + 32) ‖ MultiSignature variant (1) ‖ signature (64) ‖ extra ‖ call
    _, body_at = decode_compact(theirs)
    sig_at = body_at + 1 + 33 + 1
    assert ours.data[:sig_at] == theirs[:sig_at]
    assert ours.data[sig_at + 64:] == theirs[sig_at + 64:]
    payload = bytes(sub.generate_signature_payload(as_scalecodec(sub, call), nonce=nonce).data)
    assert ours.payload == payload
    assert key.verify(payload, ours.data[sig_at:sig_at + 64])
    assert key.verify(payload, theirs[sig_at:sig_at + 64])  # both sign the same payload
    if key.crypto_type == KeypairType.ED25519:  # deterministic signatures: the very same extrinsic
        assert ours.data == theirs and ours.hash == reference_ext.extrinsic_hash


@pytest.mark.parametrize("key", [SR_ALICE, ED_KEY], ids=["sr25519", "ed25519"])
def test_a_signed_call_is_substrate_interfaces_extrinsic_outside_the_signature(chain, key) -> None:
    sub = reference(chain)
    builder = builder_of(sub)
    remark = builder.compose("System", "remark", {"remark": b"short: the payload is signed as it is"})
    transfer = builder.compose("Balances", "transfer_keep_alive", {"dest": ED_KEY.ss58_address, "value": 3 * EDSC})
    for call, nonce in ((remark, 0), (transfer, 63), (transfer, 64), (remark, 2**32 - 1)):
        assert_signed_like_substrate_interface(sub, builder, call, key, nonce)


def test_a_1000_call_batch_is_signed_over_its_hashed_payload(chain) -> None:
    sub = reference(chain)
    builder = builder_of(sub)
    inner = [builder.compose("JobMarketplace", "submit_result", {"job_id": i, "result_hash": "0x" + "33" * 32})
             for i in range(1000)]
    pallet = "Utility" if chain.conn.metadata.has_call("Utility", "batch_all") else None
    call = builder.compose(pallet, "batch_all", {"calls": inner}) if pallet else \
        builder.compose("Sudo", "sudo", {"call": inner[0]})
    assert_signed_like_substrate_interface(sub, builder, call, SR_ALICE, 7)
    big = builder.compose("System", "remark", {"remark": b"x" * 300})  # > 256 bytes: blake2_256 is signed
    signed = builder.sign(big, SR_ALICE, 1, context_of(sub))
    assert len(signed.payload) == 32
    assert_signed_like_substrate_interface(sub, builder, big, SR_ALICE, 1)


# the devnet takes them, and the fallback ----------------------------------------------------------------------
def funded(chain: ChainClient, seed: int, crypto_type: int = KeypairType.SR25519) -> Signer:
    key = Keypair.create_from_seed("0x" + f"{seed:064x}", crypto_type=crypto_type)
    chain.fund(dev_signer("Alice"), [key.ss58_address], 10 * EDSC)
    return Signer(key, source=f"test seed {seed}")


class SubstrateInterfaceCalls:
    """Counts what goes through substrate-interface's composing and signing (and lets it through)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, sub: SubstrateInterface) -> None:
        self.count = 0
        for name in ("compose_call", "create_signed_extrinsic"):
            real = getattr(sub, name)

            def counted(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
                self.count += 1
                return _real(*args, **kwargs)
            monkeypatch.setattr(sub, name, counted)


def test_the_devnet_accepts_what_the_builder_signs_single_and_batched(chain, monkeypatch) -> None:
    signer = funded(chain, 0xB0)
    submitter = Submitter(chain.conn, signer)
    through_substrate_interface = SubstrateInterfaceCalls(monkeypatch, chain.conn.substrate)
    receipt = submitter.submit(Call("System", "remark", {"remark": b"built, not composed by scalecodec"}))
    assert receipt.success
    receipts = submitter.submit_many([Call("Balances", "transfer_keep_alive",
                                           {"dest": SR_ALICE.ss58_address, "value": EDSC // 10 + i})
                                      for i in range(5)])
    assert all(r.success for r in receipts) and len({r.extrinsic_hash for r in receipts}) == 5
    if chain.conn.metadata.has_call("Utility", "batch_all"):
        batch = submitter.batch([Call("System", "remark", {"remark": f"item {i}".encode()}) for i in range(300)])
        assert len(batch) == 2 and all(r.success for r in batch)  # max_batch 256: two extrinsics
    ed = Submitter(chain.conn, funded(chain, 0xED, KeypairType.ED25519))  # MultiSignature::Ed25519
    assert ed.submit(Call("System", "remark", {"remark": b"an ed25519 signer"})).success
    assert through_substrate_interface.count == 0
    assert chain.balance(signer.address).nonce == submitter.nonces.peek()


def test_an_unknown_signed_extension_signs_through_substrate_interface(chain, monkeypatch) -> None:
    sub = reference(chain)
    v14 = sub.metadata.value[1]["V14"]
    empty = next(int(e["ty"]) for e in v14["extrinsic"]["signed_extensions"] if e["identifier"] == "CheckWeight")
    unknown = {"identifier": "CheckSomethingNew", "ty": empty, "additional_signed": empty}
    changed = copy.deepcopy(v14)
    changed["extrinsic"]["signed_extensions"].append(unknown)
    with pytest.raises(UnsupportedExtrinsic, match="CheckSomethingNew"):
        ExtrinsicBuilder(changed, sub.runtime_config)
    version_5 = copy.deepcopy(v14)
    version_5["extrinsic"]["version"] = 5
    with pytest.raises(UnsupportedExtrinsic, match="version 5"):
        ExtrinsicBuilder(version_5, sub.runtime_config)

    # The Submitter reads the metadata the connection holds: there, the extension is unknown to the builder only
    # (substrate-interface reads its own copy), so the node still takes what substrate-interface signs.
    monkeypatch.setitem(v14["extrinsic"], "signed_extensions", [*v14["extrinsic"]["signed_extensions"], unknown])
    submitter = Submitter(chain.conn, funded(chain, 0xB1))
    through_substrate_interface = SubstrateInterfaceCalls(monkeypatch, chain.conn.substrate)
    assert submitter.builder(chain.conn.substrate) is None
    assert submitter.submit(Call("System", "remark", {"remark": b"signed by substrate-interface"})).success
    assert through_substrate_interface.count == 2  # compose_call and create_signed_extrinsic


def test_a_value_shape_the_encoders_do_not_mirror_is_composed_by_substrate_interface(chain, monkeypatch) -> None:
    """scalecodec takes a `Vec<u8>` as a list of ints too; the compiled encoders leave that shape to it, and the
    builder still signs what substrate-interface composed."""
    submitter = Submitter(chain.conn, funded(chain, 0xB2))
    calls = SubstrateInterfaceCalls(monkeypatch, chain.conn.substrate)
    receipt = submitter.submit(Call("System", "remark", {"remark": [104, 105]}))
    assert receipt.success and calls.count == 1  # compose_call only: signed by the builder
    included = chain.conn.rpc("chain_getBlock", [receipt.block_hash])["block"]["extrinsics"][receipt.extrinsic_index]
    remark = chain.conn.substrate.compose_call("System", "remark", {"remark": "hi"})
    assert included.endswith(bytes(remark.data.data).hex())
