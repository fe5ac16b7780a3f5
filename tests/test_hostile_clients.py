"""One misbehaving client must not stop the devnet serving everyone else (issue 12, items 4, 5, 7).

Each test runs one attack from the issue on loopback against a real devnet process while a
well-behaved client keeps asking `chain_getHeader` over its own WebSocket, and asserts:
- the well-behaved client is answered within 1 s, all through the attack;
- the devnet's RSS (psutil, sampled every 20 ms) stays under a ceiling far below what the attack
  cost before the limits (hundreds of MB);
- the state every client can see is unchanged (unless the test's own well-behaved client changed it).
Attacks keep their real size where it is small (the 100,000-call batch is 300 KB) and are scaled
down where the limit is proven at a smaller size (blob uploads, timeouts, queued output).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil
import pytest
import websocket
from prometheus_client import CollectorRegistry, Counter
from substrateinterface import Keypair, SubstrateInterface

from etrid_ray.devnet.process import DevnetProcess
from etrid_ray.processes import terminate
from etrid_ray.telemetry.server import MetricsServer
from tests.devnet_support import EDSC, connect, key
from tests.test_devnet_rpc import Ws, assert_error, state_fingerprint

ANSWER_WITHIN_S = 1.0
MIB = 1024 * 1024
BATCHED_CALLS_LIMIT = 10_922                  # pallet_utility's batched_calls_limit in the devnet runtime
DEVNET_ARGS = ["--idle-timeout", "2", "--request-timeout", "2",   # timeouts scaled down from 15 s / 30 s
               "--max-queued-mb", "2",                            # from 16 MB: a non-reader is dropped sooner
               "--blob-store-mb", "64"]                           # from 256 MB: the uploads fill it


# the attacker's tools: raw SCALE, written here independently of the devnet's codec ---------------------

def compact(n: int) -> bytes:
    """Canonical SCALE Compact encoding."""
    if n < 1 << 6:
        return bytes([n << 2])
    if n < 1 << 14:
        return ((n << 2) | 1).to_bytes(2, "little")
    if n < 1 << 30:
        return ((n << 2) | 2).to_bytes(4, "little")
    raw = n.to_bytes((n.bit_length() + 7) // 8, "little")
    return bytes([((len(raw) - 4) << 2) | 3]) + raw


def call_bytes(s: SubstrateInterface, module: str, function: str, params: dict[str, Any]) -> bytes:
    return bytes(s.compose_call(module, function, params).data.data)


class Chain:
    """What a signer needs: genesis hash and versions, read once from the devnet."""

    def __init__(self, s: SubstrateInterface) -> None:
        self.genesis = bytes.fromhex(s.get_block_hash(0)[2:])
        version = s.rpc_request("state_getRuntimeVersion", [])["result"]
        self.spec, self.tx = version["specVersion"], version["transactionVersion"]

    def extrinsic(self, signer: Keypair, call: bytes, *, nonce: bytes = b"\x00", tip: bytes = b"\x00",
                  sign: bool = True, length: bytes | None = None) -> str:
        """A V4 signed extrinsic (immortal era) from raw parts: nonce and tip as given, a zero signature
        when `sign` is False, and the length prefix as given (the canonical one by default)."""
        extra = b"\x00" + nonce + tip
        payload = call + extra + self.spec.to_bytes(4, "little") + self.tx.to_bytes(4, "little") \
            + self.genesis + self.genesis
        if len(payload) > 256:
            payload = hashlib.blake2b(payload, digest_size=32).digest()
        signature = signer.sign(payload) if sign else bytes(64)
        body = b"\x84" + b"\x00" + signer.public_key + b"\x01" + signature + extra + call
        return "0x" + ((length if length is not None else compact(len(body))) + body).hex()


# the well-behaved client and the memory watch ---------------------------------------------------------

class Watch:
    """While an attack runs: a client asking chain_getHeader every 20 ms over its own WebSocket
    (answer times recorded), and the devnet's RSS sampled every 20 ms."""

    def __init__(self, devnet: DevnetProcess) -> None:
        self.devnet = devnet
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.peak_rss = 0
        self.baseline_rss = psutil.Process(devnet.pid).memory_info().rss
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._probe, daemon=True),
                         threading.Thread(target=self._sample, daemon=True)]

    def _probe(self) -> None:
        conn = websocket.create_connection(self.devnet.url, timeout=10)
        try:
            n = 0
            while not self._stop.is_set():
                n += 1
                started = time.monotonic()
                try:
                    conn.send(json.dumps({"jsonrpc": "2.0", "id": n, "method": "chain_getHeader", "params": []}))
                    reply = json.loads(conn.recv())
                except (websocket.WebSocketException, OSError) as err:
                    self.failures.append(f"{type(err).__name__}: {err}")
                    return
                self.latencies.append(time.monotonic() - started)
                if reply.get("id") != n or "number" not in reply.get("result", {}):
                    self.failures.append(f"unexpected answer {reply}")
                self._stop.wait(0.02)
        finally:
            conn.close()

    def _sample(self) -> None:
        process = psutil.Process(self.devnet.pid)
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, process.memory_info().rss)
            self._stop.wait(0.02)

    def __enter__(self) -> Watch:
        for thread in self._threads:
            thread.start()
        time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.1)
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    @property
    def worst(self) -> float:
        return max(self.latencies)

    def report(self, what: str) -> str:
        return (f"{what}: {len(self.latencies)} chain_getHeader answers, worst {self.worst * 1000:.0f} ms, "
                f"p50 {statistics.median(self.latencies) * 1000:.1f} ms; devnet RSS {self.baseline_rss / MIB:.0f} "
                f"-> peak {self.peak_rss / MIB:.0f} MB")

    def assert_served(self, what: str, rss_growth_mb: float) -> None:
        """The well-behaved client was answered within 1 s throughout, and RSS grew by less than the budget."""
        print(self.report(what))
        assert not self.failures, self.failures
        assert len(self.latencies) >= 5, f"{what}: the well-behaved client got too few answers"
        assert self.worst < ANSWER_WITHIN_S, self.report(what)
        assert self.peak_rss - self.baseline_rss < rss_growth_mb * MIB, self.report(what)


def post(url: str, body: bytes, timeout: float = 60.0) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


# fixtures -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def devnet() -> Iterator[DevnetProcess]:
    with DevnetProcess(block_time=0, extra_args=DEVNET_ARGS) as proc:
        yield proc


@pytest.fixture(scope="module")
def s(devnet: DevnetProcess) -> Iterator[SubstrateInterface]:
    substrate = connect(devnet.url)
    yield substrate
    substrate.close()


@pytest.fixture(scope="module")
def chain(s: SubstrateInterface) -> Chain:
    return Chain(s)


@pytest.fixture()
def ws(devnet: DevnetProcess) -> Iterator[Ws]:
    conn = Ws(devnet.url)
    yield conn
    conn.close()


# item 4: bounded work before authentication -------------------------------------------------------------

def test_a_100k_call_batch_with_a_zero_signature_is_refused_from_its_length_prefix(
        devnet: DevnetProcess, s: SubstrateInterface, chain: Chain, ws: Ws) -> None:
    remark = call_bytes(s, "System", "remark", {"remark": ""})
    batch = call_bytes(s, "Utility", "batch", {"calls": []})[:2]
    hostile = chain.extrinsic(key("Alice"), batch + compact(100_000) + remark * 100_000, sign=False)
    assert 290_000 < len(hostile) / 2 < 310_000  # the 300 KB request, at full size
    before = state_fingerprint(ws)
    with Watch(devnet) as watch:
        started = time.monotonic()
        for _ in range(5):
            status, reply = post(devnet.http_url, json.dumps(
                {"jsonrpc": "2.0", "id": 1, "method": "author_submitExtrinsic", "params": [hostile]}).encode())
            assert status == 200
            assert_error(reply, 1010, "batched_calls_limit")
            status, reply = post(devnet.http_url, json.dumps(
                {"jsonrpc": "2.0", "id": 2, "method": "payment_queryInfo", "params": [hostile]}).encode())
            assert_error(reply, 1010, "batched_calls_limit")
        refused_in = (time.monotonic() - started) / 10
    watch.assert_served("100k-call batch x10", rss_growth_mb=60)
    print(f"100k-call batch refused in {refused_in * 1000:.0f} ms each")
    assert refused_in < 0.5
    assert state_fingerprint(ws) == before


def test_a_batch_at_the_limit_is_refused_on_its_signature_before_its_calls_are_decoded(
        devnet: DevnetProcess, s: SubstrateInterface, chain: Chain, ws: Ws) -> None:
    remark = call_bytes(s, "System", "remark", {"remark": ""})
    batch = call_bytes(s, "Utility", "batch_all", {"calls": []})[:2]
    at_limit = batch + compact(BATCHED_CALLS_LIMIT) + remark * BATCHED_CALLS_LIMIT
    forged = chain.extrinsic(key("Alice"), at_limit, sign=False)
    before = state_fingerprint(ws)
    with Watch(devnet) as watch:
        started = time.monotonic()
        assert_error(ws.call("author_submitExtrinsic", [forged]), 1010, "bad signature")
        forged_in = time.monotonic() - started
        # payment_queryInfo has no signature to check: the calls are decoded, on the decoder thread
        started = time.monotonic()
        info = ws.result("payment_queryInfo", [forged])
        estimated_in = time.monotonic() - started
    watch.assert_served("10,922-call batch: forged submit + fee estimate", rss_growth_mb=120)
    print(f"forged 10,922-call batch refused in {forged_in * 1000:.0f} ms; "
          f"its fee estimated in {estimated_in * 1000:.0f} ms off the loop")
    assert forged_in < 0.2
    assert int(info["partialFee"]) > 0 and info["weight"]["ref_time"] > BATCHED_CALLS_LIMIT
    assert state_fingerprint(ws) == before


def test_a_13_mb_batch_of_old_state_queries_does_not_stop_other_clients(
        devnet: DevnetProcess, s: SubstrateInterface, ws: Ws) -> None:
    ferdie, dave = key("Ferdie"), key("Dave").ss58_address
    call = s.compose_call("Balances", "transfer_keep_alive", {"dest": dave, "value": EDSC // 1000})
    nonce = s.get_account_nonce(ferdie.ss58_address)
    start_block = s.get_block_number(None)
    for i in range(252):  # 252 instant-seal blocks of history: the query reads 250 blocks back
        ws.result("author_submitExtrinsic", [str(s.create_signed_extrinsic(call, ferdie, nonce=nonce + i).data)])
    deadline = time.monotonic() + 30
    while s.get_block_number(None) < start_block + 252 and time.monotonic() < deadline:
        time.sleep(0.1)
    best = s.get_block_number(None)
    old = s.get_block_hash(best - 250)
    keys = ws.result("state_getKeysPaged", ["0x", 1000])
    per_key = sum(len(k) + 4 for k in keys) / len(keys)
    per_request = (keys * 1000)[:int(13.5 * MIB / 1000 / per_key)]
    batch = [{"jsonrpc": "2.0", "id": i, "method": "state_queryStorageAt", "params": [per_request, old]}
             for i in range(1000)]
    body = json.dumps(batch).encode()
    assert 12 * MIB < len(body) < 16 * MIB  # the 13 MB batch
    before = state_fingerprint(ws)
    with Watch(devnet) as watch:
        started = time.monotonic()
        status, reply = post(devnet.http_url, body)
        took = time.monotonic() - started
    watch.assert_served("13 MB batch of state_queryStorageAt 250 blocks back", rss_growth_mb=150)
    print(f"13 MB old-state batch answered in {took:.2f} s")
    assert status == 200
    if isinstance(reply, dict):  # the answer (~25 MB) is over --max-response-mb: refused as a whole
        assert_error(reply, -32008)
    else:
        assert len(reply) == 1000 and all(r["result"][0]["block"] == old for r in reply)
    one = ws.result("state_queryStorageAt", [per_request, old])[0]
    assert one["block"] == old and len(one["changes"]) == len(per_request)
    assert state_fingerprint(ws) == before


def test_a_15_mb_array_of_empty_objects_is_refused_before_it_is_parsed(devnet: DevnetProcess, ws: Ws) -> None:
    body = b"[" + b"{}," * 5_000_000 + b"{}]"  # 15 MB: 5M objects (the issue sent 5.6M)
    assert len(body) > 15_000_000
    before = state_fingerprint(ws)
    with Watch(devnet) as watch:
        for _ in range(3):
            status, reply = post(devnet.http_url, body)
            assert status == 200
            assert_error(reply, -32600)
        ws.send(body.decode())
        assert_error(ws.answer(), -32600)
    watch.assert_served("15 MB array of 5M {} x4", rss_growth_mb=100)
    assert state_fingerprint(ws) == before


def test_metadata_amplification_is_capped_per_answer(devnet: DevnetProcess, ws: Ws) -> None:
    batch = json.dumps([{"jsonrpc": "2.0", "id": i, "method": "state_getMetadata", "params": []}
                        for i in range(1000)], separators=(",", ":"))
    assert len(batch) < 70_000  # 62 KB asking for 41 MB
    before = state_fingerprint(ws)
    attackers = [Ws(devnet.url) for _ in range(4)]
    try:
        with Watch(devnet) as watch:
            for _ in range(3):
                for conn in attackers:
                    conn.send(batch)
                for conn in attackers:
                    assert_error(conn.answer(), -32008)
    finally:
        for conn in attackers:
            conn.close()
    watch.assert_served("4 clients x 3 batches of 1,000 state_getMetadata", rss_growth_mb=120)
    ok = ws.result("state_getMetadata")  # one metadata answer is still served
    assert ok.startswith("0x6d657461")
    assert state_fingerprint(ws) == before


def test_a_huge_state_call_fee_query_is_bounded_too(devnet: DevnetProcess, s: SubstrateInterface, chain: Chain,
                                                    ws: Ws) -> None:
    remark = call_bytes(s, "System", "remark", {"remark": ""})
    batch = call_bytes(s, "Utility", "force_batch", {"calls": []})[:2]
    hostile = bytes.fromhex(chain.extrinsic(key("Bob"), batch + compact(20_000) + remark * 20_000, sign=False)[2:])
    data = "0x" + (hostile + len(hostile).to_bytes(4, "little")).hex()
    with Watch(devnet) as watch:
        assert_error(ws.call("state_call", ["TransactionPaymentApi_query_info", data]), 1010, "batched_calls_limit")
        assert_error(ws.call("payment_queryInfo", ["0x" + hostile.hex()]), 1010, "batched_calls_limit")
    watch.assert_served("20k-call fee queries", rss_growth_mb=60)


# item 5: memory bounded by limits, not by what clients send or fail to read -----------------------------

def test_subscriptions_are_capped_per_connection(devnet: DevnetProcess, ws: Ws) -> None:
    subscribe = [{"jsonrpc": "2.0", "id": i, "method": "chain_subscribeNewHeads", "params": []} for i in range(1000)]
    granted = refused = 0
    for round_ in range(3):  # 3,000 asked for
        ws.send([dict(r, id=r["id"] + 1000 * round_) for r in subscribe])
        for answer in ws.answer():
            if "result" in answer:
                granted += 1
            else:
                assert answer["error"]["code"] == -32006, answer
                refused += 1
    assert (granted, refused) == (1024, 3000 - 1024)
    storage = ws.call("state_subscribeStorage", [["0x" + "00" * 32]])
    assert_error(storage, -32006)


def test_a_subscriber_that_never_reads_is_dropped_and_its_memory_freed(
        devnet: DevnetProcess, s: SubstrateInterface) -> None:
    # The attacker's socket takes almost nothing from the kernel, subscribes 10,000 times, never reads.
    attacker = websocket.create_connection(devnet.url, timeout=10,
                                           sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),))
    for round_ in range(10):
        attacker.send(json.dumps([{"jsonrpc": "2.0", "id": round_ * 1000 + i, "method": "chain_subscribeNewHeads",
                                   "params": []} for i in range(1000)]))
    alice, bob = key("Alice"), key("Bob").ss58_address
    call = s.compose_call("Balances", "transfer_keep_alive", {"dest": bob, "value": EDSC // 1000})
    nonce = s.get_account_nonce(alice.ss58_address)
    conn = Ws(devnet.url)
    try:
        with Watch(devnet) as watch:
            # every block sends 1,024 notifications (~350 KB) the attacker never reads: --max-queued-mb 2 ends it
            for i in range(40):
                conn.result("author_submitExtrinsic",
                            [str(s.create_signed_extrinsic(call, alice, nonce=nonce + i).data)])
                time.sleep(0.02)
        dropped = False
        attacker.settimeout(5)
        try:
            while attacker.recv():  # what the kernel already held, then the end of the connection
                pass
            dropped = True
        except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
            dropped = True
        except websocket.WebSocketTimeoutException:
            dropped = False
        assert dropped, "the devnet kept a connection that reads nothing"
    finally:
        attacker.close()
        conn.close()
    watch.assert_served("10,000 subscriptions, never read, 40 blocks", rss_growth_mb=80)


def test_a_client_that_floods_requests_without_reading_holds_bounded_memory(devnet: DevnetProcess, ws: Ws) -> None:
    attacker = websocket.create_connection(devnet.url, timeout=10,
                                           sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),))
    request = json.dumps([{"jsonrpc": "2.0", "id": i, "method": "state_getMetadata", "params": []}
                          for i in range(150)])  # ~6 MB of answers each
    attacker.settimeout(0.5)
    before = state_fingerprint(ws)
    sent = 0
    with Watch(devnet) as watch:
        try:
            for _ in range(60):  # up to ~360 MB of answers asked for, none read
                attacker.send(request)
                sent += 1
        except (websocket.WebSocketException, OSError):
            pass  # the devnet stopped reading from us (backpressure): our send buffer is full
        time.sleep(1)
    attacker.close()
    watch.assert_served(f"{sent} x 150 state_getMetadata never read", rss_growth_mb=80)
    assert state_fingerprint(ws) == before


def blob_name(data: bytes) -> str:
    return "0x" + hashlib.blake2b(data, digest_size=32).hexdigest()


def put_blob(port: int, data: bytes) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("PUT", f"/blobs/{blob_name(data)}", body=data,
                     headers={"Content-Type": "application/octet-stream"})
        return conn.getresponse().status
    except (ConnectionError, OSError):
        return -1  # dropped while sending
    finally:
        conn.close()


def test_concurrent_blob_uploads_are_streamed_and_capped(devnet: DevnetProcess, ws: Ws) -> None:
    blobs = [bytes([i]) * (24 * MIB) for i in range(1, 9)]  # 8 concurrent uploads, 24 MB each (issue: 60 MB)
    with Watch(devnet) as watch, ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda b: put_blob(devnet.port, b), blobs))
    print(f"8 x 24 MB uploads: {statuses}")
    watch.assert_served("8 concurrent 24 MB blob uploads", rss_growth_mb=64 + 60)
    assert set(statuses) <= {201, 503, 507}, statuses
    stored = [b for b, code in zip(blobs, statuses, strict=True) if code == 201]
    assert 1 <= len(stored) <= 2  # --blob-store-mb 64 holds two of them, whatever the order
    assert statuses.count(503) + statuses.count(507) == 8 - len(stored)
    for blob in stored:
        with urllib.request.urlopen(f"{devnet.http_url}/blobs/{blob_name(blob)}", timeout=30) as response:
            assert hashlib.blake2b(response.read(), digest_size=32).digest().hex() == blob_name(blob)[2:]

    # a declared size over the limit is refused before a byte of the body is read
    conn = http.client.HTTPConnection("127.0.0.1", devnet.port, timeout=10)
    conn.putrequest("PUT", f"/blobs/0x{'ab' * 32}")
    conn.putheader("Content-Length", str(65 * MIB))
    conn.endheaders()
    assert conn.getresponse().status == 413
    conn.close()


def test_rpc_bodies_are_limited_while_they_are_read(devnet: DevnetProcess, ws: Ws) -> None:
    with Watch(devnet) as watch:
        # declared too large: refused at once, nothing read
        conn = http.client.HTTPConnection("127.0.0.1", devnet.port, timeout=10)
        conn.putrequest("POST", "/")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(64 * MIB))
        conn.endheaders()
        started = time.monotonic()
        assert conn.getresponse().status == 413
        assert time.monotonic() - started < 0.5
        conn.close()
        # undeclared (chunked): refused once past 16 MB, not after 64 MB were buffered
        conn = http.client.HTTPConnection("127.0.0.1", devnet.port, timeout=10)
        conn.putrequest("POST", "/")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        chunk = b"x" * MIB
        sent = 0
        try:
            for _ in range(64):
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += 1
            conn.send(b"0\r\n\r\n")
        except (ConnectionError, OSError):
            pass
        status = conn.getresponse().status
        conn.close()
    watch.assert_served("64 MB RPC bodies, declared and chunked", rss_growth_mb=60)
    assert status == 413


def test_half_sent_requests_are_timed_out(devnet: DevnetProcess) -> None:
    """--idle-timeout 2 / --request-timeout 2 here (15 s / 30 s by default)."""
    half_headers = [socket.create_connection(("127.0.0.1", devnet.port)) for _ in range(100)]
    for sock in half_headers:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n")
    half_bodies = [socket.create_connection(("127.0.0.1", devnet.port)) for _ in range(100)]
    for sock in half_bodies:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n{\"jsonrpc\":")
    silent = [socket.create_connection(("127.0.0.1", devnet.port)) for _ in range(50)]
    started = time.monotonic()
    with Watch(devnet) as watch:
        closed_after = []
        for sock in half_headers + half_bodies + silent:
            sock.settimeout(max(0.1, 8 - (time.monotonic() - started)))
            try:
                while sock.recv(65536):  # a 408 for a half-sent body, then the end of the connection
                    pass
                closed_after.append(time.monotonic() - started)
            except (ConnectionError, TimeoutError, OSError):
                closed_after.append(time.monotonic() - started)
            finally:
                sock.close()
    watch.assert_served("250 half-sent and silent connections", rss_growth_mb=60)
    print(f"half-sent connections closed after {max(closed_after):.1f} s at most")
    assert len(closed_after) == 250 and max(closed_after) < 6


# item 7: canonical SCALE only ---------------------------------------------------------------------------

def test_non_canonical_compacts_are_refused_as_a_runtime_would(
        devnet: DevnetProcess, s: SubstrateInterface, chain: Chain, ws: Ws) -> None:
    eve = key("Eve")
    transfer = call_bytes(s, "Balances", "transfer_keep_alive", {"dest": key("Ferdie").ss58_address, "value": 1})
    assert transfer[-1:] == compact(1)
    head = transfer[:-1]
    eve_nonce = s.get_account_nonce(eve.ss58_address)
    assert eve_nonce < 64  # so that its 2-byte form below is non-minimal
    nonce = compact(eve_nonce)
    canonical = chain.extrinsic(eve, transfer, nonce=nonce)
    assert "error" not in ws.call("payment_queryInfo", [canonical])  # the well-formed one is fine
    body_len = len(bytes.fromhex(canonical[2:])) - 2  # its length prefix is 2 bytes
    hostile = {
        "tip as a 67-byte Compact<u128> (2^536-1)": chain.extrinsic(eve, transfer, nonce=nonce,
                                                                    tip=b"\xff" + b"\xff" * 67),
        "tip 1 in the 4-byte mode": chain.extrinsic(eve, transfer, nonce=nonce, tip=b"\x06\x00\x00\x00"),
        "tip 2^128 in 17 bytes": chain.extrinsic(eve, transfer, nonce=nonce,
                                                 tip=bytes([(13 << 2) | 3]) + (1 << 128).to_bytes(17, "little")),
        "nonce in the 2-byte mode": chain.extrinsic(eve, transfer, nonce=((eve_nonce << 2) | 1).to_bytes(2, "little")),
        "value 1 in the 4-byte mode": chain.extrinsic(eve, head + b"\x06\x00\x00\x00", nonce=nonce),
        "value as a 67-byte Compact<u128>": chain.extrinsic(eve, head + bytes([(63 << 2) | 3]) + b"\xff" * 67,
                                                            nonce=nonce),
        "length prefix in the 4-byte mode": chain.extrinsic(eve, transfer, nonce=nonce,
                                                            length=((body_len << 2) | 2).to_bytes(4, "little")),
    }
    before = state_fingerprint(ws)
    for what, extrinsic in hostile.items():
        reply = ws.call("author_submitExtrinsic", [extrinsic])
        assert "result" not in reply, f"{what}: accepted {reply}"
        assert reply["error"]["code"] == 1002, (what, reply)
        assert "minimally encoded" in reply["error"]["data"] or "overflows" in reply["error"]["data"], (what, reply)
        assert "error" in ws.call("payment_queryInfo", [extrinsic]), what
    assert ws.result("author_pendingExtrinsics") == []
    assert state_fingerprint(ws) == before


# the exporter -------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture()
def exporter(devnet: DevnetProcess) -> Iterator[str]:
    """`etrid-ray exporter` as its own process, reading the module's devnet; stopped by its pid."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "etrid_ray", "exporter", "--url", devnet.url, "--host",
                             "127.0.0.1", "--port", str(port), "--interval", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "the exporter did not become ready"
            time.sleep(0.2)
        yield url
    finally:
        terminate(proc, 15)


def scrape_times(exporter: str, scrapes: int, threads: int = 100) -> list[float]:
    """Seconds each of `scrapes` GETs of /metrics took, `threads` at a time, sorted."""
    def scrape(_: int) -> float:
        started = time.monotonic()
        with urllib.request.urlopen(f"{exporter}/metrics", timeout=30) as response:
            assert b"etrid_chain_best_block" in response.read()
        return time.monotonic() - started

    with ThreadPoolExecutor(threads) as pool:
        return sorted(pool.map(scrape, range(scrapes)))


def p99(times: list[float]) -> float:
    return times[int(len(times) * 0.99)]


def test_the_exporter_serves_2000_scrapes_from_100_threads_while_slow_clients_hang_on(exporter: str) -> None:
    """Fifty half-sent requests cost the other scrapers nothing they would notice.

    Measured against the same exporter without the slow clients, in the same run, because a scrape's
    own cost depends on the machine (p99 0.3 s on a quiet 2-core box, 1.9 s on a loaded CI runner) —
    and in alternating rounds, because the load beside the test changes over its half minute (one
    measurement after the other once gave 0.4 s alone and 2.3 s beside the slow clients, with other work
    starting in between). Before, a listen backlog of 5 made a burst retry its connections (SYN
    retransmits: 1 s, 3 s, 7 s…): p99 8.9 s.
    """
    port = int(exporter.rsplit(":", 1)[1])
    quiet: list[float] = []
    times: list[float] = []
    for _ in range(4):
        quiet += scrape_times(exporter, 250)
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
        for sock in slow:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        try:
            times += scrape_times(exporter, 500)
        finally:
            for sock in slow:
                sock.close()
    quiet.sort()
    times.sort()
    print(f"exporter: 2,000 scrapes from 100 threads beside 50 half-sent requests: p50 "
          f"{statistics.median(times) * 1000:.1f} ms, p99 {p99(times) * 1000:.1f} ms, worst {times[-1] * 1000:.0f} ms"
          f" (alone: p50 {statistics.median(quiet) * 1000:.1f} ms, p99 {p99(quiet) * 1000:.1f} ms)")
    assert p99(times) < max(ANSWER_WITHIN_S, 2.5 * p99(quiet)), "the half-sent requests slowed everyone else"
    assert p99(times) < 5.0, "scrapes queue for seconds: is the listen backlog refusing the burst?"


def test_the_exporter_closes_half_sent_requests_after_its_socket_timeout() -> None:
    registry = CollectorRegistry()
    Counter("etrid_jobs_completed", "jobs completed", registry=registry).inc(3)
    server = MetricsServer(registry, health=lambda: (True, {}), ready=lambda: (True, {}),
                           request_timeout=1.0, max_threads=8).start()
    try:
        started = time.monotonic()
        slow = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(20)]  # more than its threads
        for sock in slow:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        for sock in slow:  # each closed, unanswered, once it has waited out the 1 s timeout (8 at a time)
            sock.settimeout(10)
            assert sock.recv(65536) == b""
            sock.close()
        assert time.monotonic() - started < 6
        with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as response:
            assert b"etrid_jobs_completed_total 3.0" in response.read()
    finally:
        server.stop()
