"""The devnet's RPC surface: HTTP and WebSocket JSON-RPC, paging, the blob store, persistence,
shutdown, and hostile input (target R6: errors with Substrate's codes, the node keeps serving,
its state does not change).

Raw JSON-RPC goes over plain urllib and websocket-client; substrate-interface is only used to
sign the extrinsics that the hostile tests then corrupt.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import websocket
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from substrateinterface import Keypair, SubstrateInterface

from etrid_ray.devnet.process import DevnetProcess
from tests.devnet_support import (
    EDSC,
    RESULT_HASH,
    TREASURY,
    balance,
    connect,
    fund,
    http_rpc,
    job,
    key,
    register_gpu,
    submit,
    submit_job,
)

BLOB_LIMIT_BYTES = int(0.001 * 1024 * 1024)  # --blob-limit-mb 0.001
MAX_FRAME = 16 * 1024 * 1024
FUZZ_MESSAGES = 10_000


def twox128(data: bytes) -> bytes:
    return b"".join(xxhash.xxh64(data, seed=seed).intdigest().to_bytes(8, "little") for seed in (0, 1))


def blake2_256(data: bytes) -> str:
    import hashlib

    return "0x" + hashlib.blake2b(data, digest_size=32).hexdigest()


class Ws:
    """One raw JSON-RPC websocket; answers are read in order, subscription notifications skipped."""

    def __init__(self, url: str) -> None:
        self.conn = websocket.create_connection(url, timeout=30)
        self._ids = 0
        self.notifications = 0

    def send(self, payload: Any) -> None:
        self.conn.send(payload if isinstance(payload, str) else json.dumps(payload))

    def answer(self) -> Any:
        while True:
            frame = json.loads(self.conn.recv())
            if isinstance(frame, dict) and "method" in frame and "id" not in frame:
                self.notifications += 1
                continue
            return frame

    def call(self, method: str, params: list[Any] | None = None) -> dict[str, Any]:
        self._ids += 1
        self.send({"jsonrpc": "2.0", "id": self._ids, "method": method, "params": params or []})
        reply = self.answer()
        assert reply["id"] == self._ids
        return reply

    def result(self, method: str, params: list[Any] | None = None) -> Any:
        reply = self.call(method, params)
        assert "error" not in reply, reply
        return reply["result"]

    def close(self) -> None:
        self.conn.close()


def state_fingerprint(ws: Ws) -> dict[str, Any]:
    """Everything a client can see of the state: best block, its header, and every storage pair."""
    best = ws.result("chain_getBlockHash", [])
    keys: list[str] = []
    start = None
    while True:
        page = ws.result("state_getKeysPaged", ["0x", 1000, start, best])
        keys += page
        if len(page) < 1000:
            break
        start = page[-1]
    values = ws.result("state_queryStorageAt", [keys, best])[0]["changes"]
    return {"best": best, "header": ws.result("chain_getHeader", [best]), "storage": dict(values),
            "pending": ws.result("author_pendingExtrinsics", [])}


def assert_error(reply: dict[str, Any], code: int, data_contains: str | None = None) -> None:
    assert "result" not in reply, reply
    assert reply["error"]["code"] == code, reply
    assert isinstance(reply["error"]["message"], str) and reply["error"]["message"]
    if data_contains is not None:
        assert data_contains in str(reply["error"].get("data", "")), reply


def assert_well_formed(reply: Any) -> None:
    """A JSON-RPC 2.0 response: exactly one of result / error, and errors carry an int code."""
    assert isinstance(reply, dict) and reply.get("jsonrpc") == "2.0", reply
    assert ("result" in reply) != ("error" in reply), reply
    if "error" in reply:
        assert isinstance(reply["error"]["code"], int) and isinstance(reply["error"]["message"], str)


# fixtures -------------------------------------------------------------------------------------------

EVE = key("Eve")


@pytest.fixture(scope="module")
def node() -> Iterator[DevnetProcess]:
    with DevnetProcess(block_time=0, extra_args=["--blob-limit-mb", "0.001"]) as proc:
        yield proc


@pytest.fixture(scope="module")
def s(node: DevnetProcess) -> Iterator[SubstrateInterface]:
    substrate = connect(node.url)
    yield substrate
    substrate.close()


@pytest.fixture()
def ws(node: DevnetProcess) -> Iterator[Ws]:
    conn = Ws(node.url)
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def signed(s: SubstrateInterface) -> dict[str, str]:
    """Eve's transfer signed for her current nonce, the next one, and one far in the future (which
    stays invalid whatever else happens, so every corruption of it must be refused)."""
    call = s.compose_call("Balances", "transfer_keep_alive", {"dest": key("Ferdie").ss58_address, "value": EDSC})
    nonce = s.get_account_nonce(EVE.ss58_address)
    return {"now": str(s.create_signed_extrinsic(call, EVE, nonce=nonce).data),
            "next": str(s.create_signed_extrinsic(call, EVE, nonce=nonce + 1).data),
            "far": str(s.create_signed_extrinsic(call, EVE, nonce=nonce + 1000).data)}


# HTTP and the method list ---------------------------------------------------------------------------

def test_http_post_system_health_answers_as_a_substrate_node(node: DevnetProcess) -> None:
    body = b'{"id":1,"jsonrpc":"2.0","method":"system_health"}'  # the seed README's curl, byte for byte
    assert http_rpc(node.http_url, body) == {
        "jsonrpc": "2.0", "id": 1, "result": {"peers": 0, "isSyncing": False, "shouldHavePeers": False}}
    assert http_rpc(node.http_url, {"jsonrpc": "2.0", "id": "x", "method": "system_chain"})["result"]
    batch = http_rpc(node.http_url, [{"jsonrpc": "2.0", "id": i, "method": "system_health"} for i in range(3)])
    assert [r["id"] for r in batch] == [0, 1, 2]
    subscription = http_rpc(node.http_url, {"jsonrpc": "2.0", "id": 9, "method": "chain_subscribeNewHeads"})
    assert "error" in subscription  # subscriptions need a websocket


REQUIRED_METHODS = {
    # substrate-interface 1.8: connect, init_runtime, query/query_map, submit and watch, receipts, fees
    "system_chain", "system_name", "system_version", "system_properties", "system_health", "system_accountNextIndex",
    "chain_getBlockHash", "chain_getHead", "chain_getFinalizedHead", "chain_getFinalisedHead", "chain_getHeader",
    "chain_getBlock", "chain_getRuntimeVersion", "state_getRuntimeVersion", "state_getMetadata", "state_getStorage",
    "state_getStorageAt", "state_getKeysPaged", "state_getKeysPagedAt", "state_queryStorageAt", "state_call",
    "author_submitExtrinsic", "author_submitAndWatchExtrinsic", "author_unwatchExtrinsic",
    "author_pendingExtrinsics", "payment_queryInfo", "chain_subscribeNewHeads", "chain_unsubscribeNewHeads",
    "chain_subscribeFinalizedHeads", "chain_unsubscribeFinalizedHeads", "rpc_methods",
    # polkadot.js on connect
    "state_subscribeRuntimeVersion", "state_unsubscribeRuntimeVersion", "chain_subscribeAllHeads",
    "state_subscribeStorage", "state_unsubscribeStorage", "system_chainType",
}


def test_rpc_methods_lists_every_method_and_each_one_answers(ws: Ws) -> None:
    listed = ws.result("rpc_methods")["methods"]
    assert REQUIRED_METHODS <= set(listed), REQUIRED_METHODS - set(listed)
    for method in listed:  # listed means served: never "Method not found"
        reply = ws.call(method, [])
        assert_well_formed(reply)
        assert reply.get("error", {}).get("code") != -32601, (method, reply)


# storage paging -------------------------------------------------------------------------------------

def test_state_get_keys_paged_walks_a_prefix_in_order(s: SubstrateInterface, ws: Ws) -> None:
    prefix = "0x" + (twox128(b"System") + twox128(b"Account")).hex()
    everything = ws.result("state_getKeysPaged", [prefix, 1000])
    assert len(everything) >= 7  # six dev accounts and the treasury
    assert everything == sorted(everything) and all(k.startswith(prefix) for k in everything)

    paged, start = [], None
    while True:
        page = ws.result("state_getKeysPaged", [prefix, 2, start])
        assert len(page) <= 2
        paged += page
        if len(page) < 2:
            break
        start = page[-1]
    assert paged == everything

    best = ws.result("chain_getBlockHash", [])
    assert ws.result("state_getKeysPagedAt", [prefix, 1000, None, best]) == everything
    assert ws.result("state_getKeysPaged", [prefix, 1000, everything[-1]]) == []
    assert_error(ws.call("state_getKeysPaged", [prefix, 1001]), -32602, "count")

    accounts = {str(k.value) for k, _ in s.query_map("System", "Account", page_size=2)}
    assert {key(n).ss58_address for n in ("Alice", "Bob", "Charlie", "Dave", "Eve", "Ferdie")} <= accounts
    assert len(accounts) == len(everything)


# blob store -----------------------------------------------------------------------------------------

def http(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_blob_store_is_content_addressed_and_size_limited(node: DevnetProcess) -> None:
    manifest = json.dumps({"handler": "echo", "args": {"text": "hello"}}).encode()
    name = blake2_256(manifest)
    url = f"{node.http_url}/blobs/{name}"
    assert http("GET", url)[0] == 404
    assert http("PUT", url, manifest)[0] == 201
    assert http("PUT", url, manifest)[0] == 200  # already there
    assert http("GET", url) == (200, manifest)

    tampered = manifest.replace(b"hello", b"HELLO")
    status, body = http("PUT", url, tampered)
    assert status == 400 and b"hashes to" in body
    assert http("GET", url) == (200, manifest)  # the stored blob is untouched

    big = os.urandom(BLOB_LIMIT_BYTES + 1)
    assert http("PUT", f"{node.http_url}/blobs/{blake2_256(big)}", big)[0] == 413
    assert http("GET", f"{node.http_url}/blobs/{blake2_256(big)}")[0] == 404
    fits = os.urandom(BLOB_LIMIT_BYTES)
    assert http("PUT", f"{node.http_url}/blobs/{blake2_256(fits)}", fits)[0] == 201
    assert http("GET", f"{node.http_url}/blobs/not-a-hash")[0] == 400


# persistence and shutdown ---------------------------------------------------------------------------

def visible_state(s: SubstrateInterface, ws: Ws, accounts: list[str]) -> dict[str, Any]:
    best = s.get_block_number(None)
    blocks = {n: s.get_block_hash(n) for n in range(best + 1)}
    return {
        "fingerprint": state_fingerprint(ws),
        "balances": {a: balance(s, a) for a in accounts},
        "jobs": {int(k.value): v.value for k, v in s.query_map("JobMarketplace", "Jobs")},
        "gpus": {int(k.value): v.value for k, v in s.query_map("GpuRegistry", "GpuNodes")},
        "pending": s.query("JobMarketplace", "PendingJobs").value,
        "blocks": blocks,
        "events": {n: [e.value for e in s.get_events(h)] for n, h in blocks.items()},
    }


def test_restart_with_data_dir_keeps_every_balance_job_and_event(tmp_path) -> None:
    proc = DevnetProcess(block_time=0, data_dir=tmp_path / "chain").start()
    try:
        s, ws = connect(proc.url), Ws(proc.url)
        bob, charlie, newcomer = key("Bob"), key("Charlie"), key("Newcomer")
        gpu_id, _ = register_gpu(s, bob)
        done, _ = submit_job(s, charlie, 7 * EDSC)
        waiting, _ = submit_job(s, charlie, 3 * EDSC)
        submit(s, bob, "JobMarketplace", "claim_job", {"job_id": done, "gpu_id": gpu_id})
        submit(s, bob, "JobMarketplace", "submit_result", {"job_id": done, "result_hash": RESULT_HASH})
        submit(s, charlie, "JobMarketplace", "confirm_job", {"job_id": done})
        fund(s, [newcomer], 5 * EDSC)
        blob = b'{"handler":"echo"}'
        assert http("PUT", f"{proc.http_url}/blobs/{blake2_256(blob)}", blob)[0] == 201
        accounts = [key(n).ss58_address for n in ("Alice", "Bob", "Charlie", "Dave", "Eve", "Ferdie", "Newcomer")]
        accounts.append(TREASURY)
        before = visible_state(s, ws, accounts)
        assert any(e["event_id"] == "PaymentReleased" for evs in before["events"].values() for e in evs)
        s.close()
        ws.close()

        assert proc.stop() == 0
        proc.start()
        s, ws = connect(proc.url), Ws(proc.url)
        after = visible_state(s, ws, accounts)
        for part in before:
            assert after[part] == before[part], f"{part} changed across the restart"
        assert http("GET", f"{proc.http_url}/blobs/{blake2_256(blob)}") == (200, blob)

        # the chain goes on where it stopped: nonces, ids and escrow carry over
        receipt = submit(s, bob, "JobMarketplace", "claim_job", {"job_id": waiting, "gpu_id": gpu_id})
        assert receipt.is_success, receipt.error_message
        assert s.get_block_number(receipt.block_hash) == len(before["blocks"])
        assert job(s, waiting)["status"] == "Processing"
        assert submit_job(s, charlie, EDSC)[0] == waiting + 1
        s.close()
        ws.close()
    finally:
        proc.stop()


def test_sigterm_stops_the_devnet_cleanly_while_clients_are_connected() -> None:
    proc = DevnetProcess(block_time=0).start()
    ws = Ws(proc.url)
    ws.result("chain_subscribeNewHeads")
    idle = socket.create_connection(("127.0.0.1", proc.port))  # a client that never says anything
    try:
        assert proc.stop(signal.SIGTERM, timeout=10) == 0
        try:  # the subscriber is told goodbye (a close frame), not left hanging
            while ws.conn.recv():
                pass
        except (websocket.WebSocketException, ConnectionError):
            pass
        assert not ws.conn.connected
    finally:
        idle.close()
        ws.conn.close()


# hostile input (R6) ---------------------------------------------------------------------------------

GARBAGE = [
    ("{", -32700), ("not json at all", -32700), ("\x00\xff", -32700), ("[" * 100_000, -32700),
    ("[]", -32600), ("42", -32600), ('"system_health"', -32600), ("null", -32600),
    ('{"id":1,"method":"system_health"}', -32600),                                 # no jsonrpc
    ('{"jsonrpc":"1.0","id":1,"method":"system_health"}', -32600),
    ('{"jsonrpc":"2.0","id":1}', -32600),                                          # no method
    ('{"jsonrpc":"2.0","id":[1],"method":"system_health"}', -32600),               # id of a bad type
    ('{"jsonrpc":"2.0","id":1,"method":"system_health","params":"x"}', -32602),
    ('{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":[]}', -32601),
    ('{"jsonrpc":"2.0","id":1,"method":"","params":[]}', -32601),
    ('{"jsonrpc":"2.0","id":1,"method":"chain_getBlockHash","params":["abc"]}', -32602),
    ('{"jsonrpc":"2.0","id":1,"method":"chain_getBlockHash","params":[-1]}', -32602),
    ('{"jsonrpc":"2.0","id":1,"method":"state_getStorage","params":[123]}', -32602),
    ('{"jsonrpc":"2.0","id":1,"method":"state_getStorage","params":["0xzz"]}', -32602),
    ('{"jsonrpc":"2.0","id":1,"method":"state_getKeysPaged","params":["0x", -5]}', -32602),
    ('{"jsonrpc":"2.0","id":1,"method":"chain_getBlock","params":["0x' + "00" * 32 + '"]}', 4003),
    ('{"jsonrpc":"2.0","id":1,"method":"system_accountNextIndex","params":["nobody"]}', -32602),
    ('{"jsonrpc":"2.0","id":1,"method":"author_submitExtrinsic","params":[]}', -32602),
    ('{"jsonrpc":"2.0","id":1,"method":"author_submitExtrinsic","params":["0xqq"]}', -32602),
    ('{"jsonrpc":"2.0","id":1,"method":"state_call","params":["Nope_nothing","0x"]}', -32000),
]


def test_garbage_unknown_methods_and_invalid_params_get_json_rpc_errors(node: DevnetProcess, ws: Ws) -> None:
    before = state_fingerprint(ws)
    for text, code in GARBAGE:
        ws.send(text)
        assert_error(ws.answer(), code)
        over_http = http_rpc(node.http_url, text.encode("utf-8", "surrogatepass"))
        assert_error(over_http, code)
    assert ws.result("system_health")["isSyncing"] is False
    assert state_fingerprint(ws) == before


def test_batches_are_answered_in_order_and_bounded(ws: Ws) -> None:
    ws.send([{"jsonrpc": "2.0", "id": i, "method": m} for i, m in enumerate(["system_health", "nope", "system_chain"])])
    answers = ws.answer()
    assert [a["id"] for a in answers] == [0, 1, 2]
    assert "result" in answers[0] and answers[1]["error"]["code"] == -32601 and "result" in answers[2]
    ws.send([{"jsonrpc": "2.0", "id": i, "method": "system_health"} for i in range(1001)])
    assert_error(ws.answer(), -32600)
    ws.send([1, "x", None])
    assert [a["error"]["code"] for a in ws.answer()] == [-32600] * 3


def test_oversized_frames_are_refused_and_the_node_keeps_serving(node: DevnetProcess, ws: Ws) -> None:
    huge = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "state_getStorage", "params": ["0x" + "0" * MAX_FRAME]})
    try:  # the server drops the frame and the connection (close 1009, or a reset while we still send)
        ws.send(huge)
        reply = ws.conn.recv()
    except (websocket.WebSocketException, ConnectionError):
        reply = ""
    assert reply == ""
    with pytest.raises(urllib.error.HTTPError) as refused:
        http_rpc(node.http_url, huge.encode())
    assert refused.value.code == 413
    fresh = Ws(node.url)
    assert fresh.result("system_health")["peers"] == 0
    fresh.close()


def test_malformed_extrinsic_bytes_are_1002(s: SubstrateInterface, ws: Ws, signed: dict[str, str]) -> None:
    before = state_fingerprint(ws)
    envelope_of = bytes.fromhex(signed["now"][2:])
    body = b"\x04\xee\x00"  # unsigned, pallet 0xEE: no such pallet
    cases = ["0x", "0x00", "0x04", "0x0804ff", "0x" + os.urandom(64).hex(),
             "0x" + envelope_of[:-3].hex(),                                # truncated: length prefix disagrees
             "0x" + (bytes([len(body) << 2]) + body).hex(),                # unsigned, unknown pallet
             "0x" + (bytes([4 << 2]) + b"\x05\x00\x00\x00").hex()]         # extrinsic version 5
    for hex_bytes in cases:
        assert_error(ws.call("author_submitExtrinsic", [hex_bytes]), 1002)
    # a signed envelope whose BoundedVec overflows its bound cannot be decoded either
    too_long = s.compose_call("Compliance", "enable_compliance", {"template": "GDPR", "data_residency": "x" * 40})
    assert_error(ws.call("author_submitExtrinsic", [str(s.create_signed_extrinsic(too_long, EVE).data)]), 1002)
    assert_error(ws.call("payment_queryInfo", ["0x0badc0de"]), 1002)
    assert state_fingerprint(ws) == before


def test_bad_signatures_and_stale_or_future_nonces_are_1010_with_the_reason(
        s: SubstrateInterface, ws: Ws, signed: dict[str, str]) -> None:
    raw = bytearray(bytes.fromhex(signed["now"][2:]))
    prefix_len = {0: 1, 1: 2, 2: 4}[raw[0] & 3]
    sig_start = prefix_len + 1 + 33 + 1  # length, version, MultiAddress::Id(account), signature kind
    forged = bytearray(raw)
    forged[sig_start + 5] ^= 0x01
    before = state_fingerprint(ws)
    assert_error(ws.call("author_submitExtrinsic", ["0x" + forged.hex()]), 1010, "bad signature")
    assert_error(ws.call("author_submitExtrinsic", [signed["next"]]), 1010, "future")
    poor = Keypair.create_from_uri("//NobodyHasFunds")
    call = s.compose_call("System", "remark", {"remark": "hi"})
    broke = str(s.create_signed_extrinsic(call, poor, nonce=0).data)
    assert_error(ws.call("author_submitExtrinsic", [broke]), 1010, "Inability to pay")
    assert state_fingerprint(ws) == before

    eve_before = balance(s, EVE.ss58_address)
    assert ws.call("author_submitExtrinsic", [signed["now"]])["result"].startswith("0x")
    eve_after = balance(s, EVE.ss58_address)
    assert eve_after.free < eve_before.free - EDSC  # applied once: the amount plus its fee
    # replaying the very same bytes, and reusing a spent nonce, are both stale
    assert_error(ws.call("author_submitExtrinsic", [signed["now"]]), 1010, "outdated")
    stale = str(s.create_signed_extrinsic(call, EVE, nonce=0).data)
    assert_error(ws.call("author_submitExtrinsic", [stale]), 1010, "outdated")
    assert balance(s, EVE.ss58_address) == eve_after


# fuzzing --------------------------------------------------------------------------------------------

JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                        st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
                        st.sampled_from(["0x", "0x00", "0x" + "ff" * 32, "Metadata_metadata_versions",
                                         "AccountNonceApi_account_nonce", "Core_version"]))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=12)


@pytest.fixture(scope="module")
def methods(node: DevnetProcess) -> list[str]:
    conn = Ws(node.url)
    listed = conn.result("rpc_methods")["methods"]
    conn.close()
    return listed


def test_fuzzed_rpc_requests_get_well_formed_answers(ws: Ws, methods: list[str]) -> None:
    before = state_fingerprint(ws)
    requests = st.fixed_dictionaries({
        "jsonrpc": st.just("2.0"), "id": st.integers(min_value=0, max_value=2**31),
        "method": st.one_of(st.sampled_from(methods), st.text(max_size=30)),
        "params": st.one_of(st.lists(JSON_VALUES, max_size=4), JSON_VALUES)})

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(requests)
    def check(request: dict[str, Any]) -> None:
        ws.send(request)
        reply = ws.answer()
        assert_well_formed(reply)
        assert reply["id"] == request["id"]
        if request["method"] not in methods:
            assert reply["error"]["code"] == -32601
        if "error" in reply:
            assert reply["error"]["code"] != -32603, reply  # a bad request is the client's error, not ours

    check()
    assert state_fingerprint(ws) == before


def compact(n: int) -> bytes:
    if n < 1 << 6:
        return bytes([n << 2])
    if n < 1 << 14:
        return ((n << 2) | 1).to_bytes(2, "little")
    return ((n << 2) | 2).to_bytes(4, "little")


def mutate(data: bytes, rnd: random.Random) -> bytes:
    """One corruption of a signed extrinsic: flip, drop, insert, truncate or splice bytes — half of the
    time inside the envelope with a length prefix that agrees, so the signature, era and call decoders
    see the damage rather than the length check."""
    if rnd.random() < 0.5:
        prefix = {0: 1, 1: 2, 2: 4}[data[0] & 3]
        body = _mutate(data[prefix:], rnd)
        return compact(len(body)) + body
    return _mutate(data, rnd)


def _mutate(data: bytes, rnd: random.Random) -> bytes:
    out = bytearray(data)
    kind = rnd.randrange(5)
    pos = rnd.randrange(len(out))
    if kind == 0:
        out[pos] ^= rnd.randrange(1, 256)
    elif kind == 1:
        del out[pos:pos + rnd.randrange(1, 8)]
    elif kind == 2:
        out[pos:pos] = os.urandom(rnd.randrange(1, 8))
    elif kind == 3:
        out = out[:pos]
    else:
        out[pos:pos + 4] = os.urandom(4)
    return bytes(out) if bytes(out) != data else data + b"\x00"


def test_fuzzed_extrinsic_bytes_are_rejected_with_1002_or_1010(ws: Ws, signed: dict[str, str]) -> None:
    before = state_fingerprint(ws)
    original = bytes.fromhex(signed["far"][2:])

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.randoms(use_true_random=False), st.binary(max_size=300))
    def check(rnd: random.Random, noise: bytes) -> None:
        for candidate in (mutate(original, rnd), noise):
            reply = ws.call("author_submitExtrinsic", ["0x" + candidate.hex()])
            assert "result" not in reply, f"accepted corrupted bytes {candidate.hex()}"
            assert reply["error"]["code"] in (1002, 1010), reply

    check()
    assert state_fingerprint(ws) == before


def fuzz_message(rnd: random.Random, methods: list[str], extrinsic: bytes, i: int) -> tuple[str, set[int] | None]:
    """One hostile message and the error codes it must get (None: any well-formed answer)."""
    kind = rnd.randrange(8)
    if kind == 0:  # noise
        return "".join(chr(rnd.randrange(1, 0x2FF)) for _ in range(rnd.randrange(1, 60))), {-32700, -32600}
    if kind == 1:  # valid JSON, not a request
        return json.dumps(rnd.choice([1, "x", None, True, [], {"a": 1}, 3.5])), {-32600}
    if kind == 2:  # unknown method
        return json.dumps({"jsonrpc": "2.0", "id": i, "method": f"fuzz_{rnd.getrandbits(32):x}", "params": []}), \
            {-32601}
    if kind == 3:  # corrupted extrinsic
        return json.dumps({"jsonrpc": "2.0", "id": i, "method": rnd.choice(["author_submitExtrinsic",
                                                                            "author_submitAndWatchExtrinsic"]),
                           "params": ["0x" + mutate(extrinsic, rnd).hex()]}), {1002, 1010}
    if kind == 4:  # a broken envelope
        request = {"jsonrpc": rnd.choice(["1.0", 2, None]), "id": rnd.choice([i, [i], {"i": i}]),
                   "method": rnd.choice([*methods, 5, None])}
        return json.dumps(request), {-32600}
    params = [rnd.choice([None, -1, 0, 2**64, "0x", "0x" + os.urandom(rnd.randrange(0, 40)).hex(), "zz", [], {},
                          [rnd.random()], "0x" + "ff" * 32]) for _ in range(rnd.randrange(0, 4))]
    request = {"jsonrpc": "2.0", "id": i, "method": rnd.choice(methods), "params": params}
    return json.dumps(request), None  # kinds 5-7: known methods, junk params


def test_ten_thousand_fuzzed_messages_over_one_websocket_leave_the_node_serving_and_unchanged(
        ws: Ws, methods: list[str], signed: dict[str, str], s: SubstrateInterface) -> None:
    rnd = random.Random(20_240_601)
    extrinsic = bytes.fromhex(signed["far"][2:])
    before = state_fingerprint(ws)
    balances_before = {n: balance(s, key(n).ss58_address) for n in ("Alice", "Eve", "Ferdie")}
    sent = answered = 0
    while sent < FUZZ_MESSAGES:
        chunk = [fuzz_message(rnd, methods, extrinsic, sent + j) for j in range(min(250, FUZZ_MESSAGES - sent))]
        for text, _ in chunk:
            ws.send(text)
        for text, codes in chunk:
            reply = ws.answer()
            assert_well_formed(reply)
            if "error" in reply:
                assert reply["error"]["code"] != -32603, (text[:200], reply)
            if codes is not None:
                assert "error" in reply and reply["error"]["code"] in codes, (text[:200], reply)
            answered += 1
        sent += len(chunk)
    assert answered == sent == FUZZ_MESSAGES
    assert ws.result("system_health") == {"peers": 0, "isSyncing": False, "shouldHavePeers": False}
    assert state_fingerprint(ws) == before
    assert {n: balance(s, key(n).ss58_address) for n in ("Alice", "Eve", "Ferdie")} == balances_before
