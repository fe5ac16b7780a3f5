"""Substrate's JSON-RPC methods over the node: what substrate-interface and polkadot.js call.

Handlers take decoded params and return JSON results; failures raise RpcError
with Substrate's codes so a bad request never reaches the loop as an exception.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from etrid_ray.devnet.codec import blake2_256, compact_encode
from etrid_ray.devnet.common_types import hexstr, to_account
from etrid_ray.devnet.extrinsic import Extrinsic
from etrid_ray.devnet.node import INLINE_DECODE_BYTES, Block, Node
from etrid_ray.devnet.pallets.system import SS58_PREFIX
from etrid_ray.devnet.runtime import (
    MAX_CALLS_PER_EXTRINSIC,
    MAX_EXTRINSIC_BYTES,
    TOKEN_DECIMALS,
    InvalidTransaction,
    invalid,
)

MAX_KEYS_PAGE = 1000
MAX_QUERY_KEYS = 20_000
MAX_SUBSCRIPTIONS = 1024          # per connection, Substrate's --rpc-max-subscriptions-per-connection default
MAX_WATCHED_KEYS = 4096           # storage keys watched per connection: each is read again at every block
TOO_MANY_SUBSCRIPTIONS = -32006   # jsonrpsee's code and message for the same refusal


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data

    def json(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


def invalid_params(why: str) -> RpcError:
    return RpcError(-32602, "Invalid params", why)


def parse_hex(value: Any, what: str, length: int | None = None) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise invalid_params(f"{what}: expected 0x-prefixed hex")
    try:
        data = bytes.fromhex(value[2:])
    except ValueError as err:
        raise invalid_params(f"{what}: invalid hex") from err
    if length is not None and len(data) != length:
        raise invalid_params(f"{what}: expected {length} bytes")
    return data


def _param(params: list[Any], idx: int, default: Any = None) -> Any:
    return params[idx] if len(params) > idx and params[idx] is not None else default


@dataclass
class Session:
    """One client connection: its subscriptions, how to push notifications to it, and its limits
    (a connection may not make the node do per-block work without bound)."""

    send: Callable[[dict[str, Any]], Awaitable[None] | None] | None
    subscriptions: dict[str, Callable[[], None]] = field(default_factory=dict)
    max_subscriptions: int = MAX_SUBSCRIPTIONS
    watched_keys: int = 0

    def close(self) -> None:
        for cancel in self.subscriptions.values():
            cancel()
        self.subscriptions.clear()
        self.send = None  # a closed connection receives nothing more, whatever still holds a reference

    def reserve(self) -> None:
        """Raises jsonrpsee's "too many subscriptions" once the connection holds its limit."""
        if len(self.subscriptions) >= self.max_subscriptions:
            raise RpcError(TOO_MANY_SUBSCRIPTIONS, "Too many subscriptions on the connection",
                           f"Exceeded max limit of {self.max_subscriptions}")


class RpcHandler:
    def __init__(self, node: Node, chain_name: str = "Etrid AI-Compute Devnet",
                 decoder: Executor | None = None) -> None:
        self.node = node
        self.chain_name = chain_name
        # One worker decodes long calls (scalecodec holds the GIL in slices, so the loop keeps its turns).
        self.decoder = decoder or ThreadPoolExecutor(max_workers=1, thread_name_prefix="devnet-decode")
        self._metadata_hex = hexstr(node.runtime.metadata_bytes)
        self._sub_ids = itertools.count(1)
        self.methods: dict[str, Callable[[Session, list[Any]], Any]] = {
            "rpc_methods": self.rpc_methods,
            "system_name": lambda s, p: "etrid-ray devnet",
            "system_version": lambda s, p: "0.1.0",
            "system_chain": lambda s, p: self.chain_name,
            "system_chainType": lambda s, p: "Development",
            "system_properties": lambda s, p: {"ss58Format": SS58_PREFIX, "tokenDecimals": TOKEN_DECIMALS,
                                               "tokenSymbol": "ËDSC"},
            "system_health": lambda s, p: {"peers": 0, "isSyncing": False, "shouldHavePeers": False},
            "system_peers": lambda s, p: [],
            "system_nodeRoles": lambda s, p: ["Authority"],
            "system_localPeerId": lambda s, p: "12D3KooWEtridRayDevnet",
            "system_localListenAddresses": lambda s, p: [],
            "system_syncState": lambda s, p: {"startingBlock": 0, "currentBlock": self.node.best.number,
                                              "highestBlock": self.node.best.number},
            "system_accountNextIndex": self.account_next_index,
            "chain_getBlockHash": self.get_block_hash,
            "chain_getHead": lambda s, p: hexstr(self.node.best.hash),
            "chain_getFinalizedHead": lambda s, p: hexstr(self.node.best.hash),
            "chain_getFinalisedHead": lambda s, p: hexstr(self.node.best.hash),
            "chain_getHeader": self.get_header,
            "chain_getBlock": self.get_block,
            "chain_getRuntimeVersion": self.runtime_version,
            "state_getRuntimeVersion": self.runtime_version,
            "state_getMetadata": self.get_metadata,
            "state_getStorage": self.get_storage,
            "state_getStorageAt": self.get_storage,
            "state_getStorageHash": self.get_storage_hash,
            "state_getStorageSize": self.get_storage_size,
            "state_getKeysPaged": self.get_keys_paged,
            "state_getKeysPagedAt": self.get_keys_paged,
            "state_queryStorageAt": self.query_storage_at,
            "state_call": self.state_call,
            "author_submitExtrinsic": self.submit_extrinsic,
            "author_submitAndWatchExtrinsic": self.submit_and_watch,
            "author_unwatchExtrinsic": self.unsubscribe,
            "author_pendingExtrinsics": lambda s, p: [hexstr(e.checked.ext.raw) for e in self.node.pool.values()],
            "payment_queryInfo": self.payment_query_info,
            "payment_queryFeeDetails": self.payment_fee_details,
            "chain_subscribeNewHeads": self.subscribe_heads,
            "chain_subscribeNewHead": self.subscribe_heads,
            "subscribe_newHead": self.subscribe_heads,
            "chain_subscribeAllHeads": self.subscribe_heads,
            "chain_subscribeFinalizedHeads": self.subscribe_heads,
            "chain_subscribeFinalisedHeads": self.subscribe_heads,
            "chain_unsubscribeNewHeads": self.unsubscribe,
            "chain_unsubscribeNewHead": self.unsubscribe,
            "unsubscribe_newHead": self.unsubscribe,
            "chain_unsubscribeAllHeads": self.unsubscribe,
            "chain_unsubscribeFinalizedHeads": self.unsubscribe,
            "chain_unsubscribeFinalisedHeads": self.unsubscribe,
            "state_subscribeRuntimeVersion": self.subscribe_runtime_version,
            "state_unsubscribeRuntimeVersion": self.unsubscribe,
            "chain_subscribeRuntimeVersion": self.subscribe_runtime_version,
            "chain_unsubscribeRuntimeVersion": self.unsubscribe,
            "state_subscribeStorage": self.subscribe_storage,
            "state_unsubscribeStorage": self.unsubscribe,
        }
        # Notification method names per subscribe method, as Substrate names them.
        self.notification_names = {
            "chain_subscribeNewHeads": "chain_newHead", "chain_subscribeNewHead": "chain_newHead",
            "subscribe_newHead": "chain_newHead", "chain_subscribeAllHeads": "chain_allHead",
            "chain_subscribeFinalizedHeads": "chain_finalizedHead",
            "chain_subscribeFinalisedHeads": "chain_finalizedHead",
            "state_subscribeRuntimeVersion": "state_runtimeVersion",
            "chain_subscribeRuntimeVersion": "state_runtimeVersion",
            "state_subscribeStorage": "state_storage",
            "author_submitAndWatchExtrinsic": "author_extrinsicUpdate",
        }
        self._current_method = ""

    # dispatch -------------------------------------------------------------------------------------

    async def handle(self, session: Session, request: Any) -> dict[str, Any] | None:
        """Answers one JSON-RPC request object. Handlers that need the decoder thread return awaitables."""
        if not isinstance(request, dict) or request.get("jsonrpc") != "2.0" or not isinstance(
                request.get("method"), str):
            return {"jsonrpc": "2.0", "id": request.get("id") if isinstance(request, dict) else None,
                    "error": RpcError(-32600, "Invalid request").json()}
        req_id = request.get("id")
        if req_id is not None and not isinstance(req_id, int | str):
            return {"jsonrpc": "2.0", "id": None, "error": RpcError(-32600, "Invalid request").json()}
        method = request["method"]
        fn = self.methods.get(method)
        if fn is None:  # as jsonrpsee: an unknown method is "not found" whatever its params
            return {"jsonrpc": "2.0", "id": req_id, "error": RpcError(-32601, "Method not found").json()}
        params = request.get("params", [])
        if params is None:
            params = []
        if isinstance(params, dict):
            params = list(params.values())
        if not isinstance(params, list):
            return {"jsonrpc": "2.0", "id": req_id, "error": invalid_params("params must be an array").json()}
        self._current_method = method
        try:
            result = fn(session, params)
            if inspect.isawaitable(result):
                result = await result
        except RpcError as err:
            return {"jsonrpc": "2.0", "id": req_id, "error": err.json()}
        except InvalidTransaction as err:
            return {"jsonrpc": "2.0", "id": req_id,
                    "error": RpcError(err.code, err.message, err.data).json()}
        except Exception as err:  # never let a request take the node down
            return {"jsonrpc": "2.0", "id": req_id,
                    "error": RpcError(-32603, "Internal error", f"{type(err).__name__}: {err}").json()}
        return {"jsonrpc": "2.0", "id": req_id, "result": result}

    def rpc_methods(self, session: Session, params: list[Any]) -> dict[str, Any]:
        return {"version": 1, "methods": sorted(self.methods)}

    # helpers --------------------------------------------------------------------------------------

    def _block(self, value: Any) -> Block:
        if value is None:
            return self.node.best
        block = self.node.by_hash.get(parse_hex(value, "block hash", 32))
        if block is None:
            raise RpcError(4003, "Client error: Unknown block", str(value))
        return block

    def _at(self, value: Any) -> bytes | None:
        return None if value is None else self._block(value).hash

    def _read(self, key: bytes, at: Any) -> bytes | None:
        try:
            return self.node.read_storage(key, self._at(at))
        except KeyError as err:
            raise RpcError(4003, "Client error: State already discarded", str(err)) from err

    # system / chain -------------------------------------------------------------------------------

    def account_next_index(self, session: Session, params: list[Any]) -> int:
        try:
            who = to_account(_param(params, 0))
        except Exception as err:
            raise invalid_params("expected an SS58 address or 0x account id") from err
        account_nonce = self.node.runtime.system.nonce(who)
        return max(account_nonce, self.node.pool_nonces.get(who, account_nonce))

    def get_block_hash(self, session: Session, params: list[Any]) -> Any:
        value = _param(params, 0)

        def one(v: Any) -> str | None:
            if v is None:
                return hexstr(self.node.best.hash)
            if isinstance(v, str):
                try:
                    v = int(v, 16) if v.startswith("0x") else int(v)
                except ValueError as err:
                    raise invalid_params("block number") from err
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise invalid_params("block number")
            h = self.node.block_hash_at(v)
            return hexstr(h) if h else None

        if isinstance(value, list):
            return [one(v) for v in value[:MAX_KEYS_PAGE]]
        return one(value)

    def get_header(self, session: Session, params: list[Any]) -> Any:
        return self._block(_param(params, 0)).header_json()

    def get_block(self, session: Session, params: list[Any]) -> Any:
        return self._block(_param(params, 0)).json()

    def runtime_version(self, session: Session, params: list[Any]) -> Any:
        self._block(_param(params, 0))
        return self.node.runtime.version

    def get_metadata(self, session: Session, params: list[Any]) -> str:
        self._block(_param(params, 0))
        return self._metadata_hex

    # storage --------------------------------------------------------------------------------------

    def get_storage(self, session: Session, params: list[Any]) -> Any:
        value = self._read(parse_hex(_param(params, 0), "storage key"), _param(params, 1))
        return hexstr(value) if value is not None else None

    def get_storage_hash(self, session: Session, params: list[Any]) -> Any:
        value = self._read(parse_hex(_param(params, 0), "storage key"), _param(params, 1))
        return hexstr(blake2_256(value)) if value is not None else None

    def get_storage_size(self, session: Session, params: list[Any]) -> Any:
        value = self._read(parse_hex(_param(params, 0), "storage key"), _param(params, 1))
        return len(value) if value is not None else None

    def get_keys_paged(self, session: Session, params: list[Any]) -> list[str]:
        prefix = parse_hex(_param(params, 0, "0x"), "prefix")
        count = _param(params, 1, MAX_KEYS_PAGE)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise invalid_params("count")
        if count > MAX_KEYS_PAGE:
            raise invalid_params(f"count exceeds maximum value. value: {count}, max: {MAX_KEYS_PAGE}")
        start = _param(params, 2)
        start_key = parse_hex(start, "start key") if start else None
        self._at(_param(params, 3))
        return [hexstr(k) for k in self.node.runtime.state.keys_paged(prefix, count, start_key)]

    def query_storage_at(self, session: Session, params: list[Any]) -> list[dict[str, Any]]:
        keys = _param(params, 0, [])
        if not isinstance(keys, list) or len(keys) > MAX_QUERY_KEYS:
            raise invalid_params(f"keys must be a list of at most {MAX_QUERY_KEYS}")
        at = _param(params, 1)
        block = self._block(at)
        changes = []
        for key in keys:
            value = self._read(parse_hex(key, "storage key"), at)
            changes.append([key, hexstr(value) if value is not None else None])
        return [{"block": hexstr(block.hash), "changes": changes}]

    # runtime calls --------------------------------------------------------------------------------

    async def state_call(self, session: Session, params: list[Any]) -> str:
        method = _param(params, 0)
        data = parse_hex(_param(params, 1, "0x"), "call data")
        rt = self.node.runtime
        if method == "Core_version":
            return hexstr(self._encode_version())
        if method == "Metadata_metadata":
            return hexstr(compact_encode(len(rt.metadata_bytes)) + rt.metadata_bytes)
        if method == "Metadata_metadata_versions":
            return hexstr(compact_encode(1) + (14).to_bytes(4, "little"))
        if method == "Metadata_metadata_at_version":
            if len(data) != 4:
                raise invalid_params("expected a u32 version")
            if int.from_bytes(data, "little") != 14:
                return "0x00"
            return hexstr(b"\x01" + compact_encode(len(rt.metadata_bytes)) + rt.metadata_bytes)
        if method == "AccountNonceApi_account_nonce":
            if len(data) != 32:
                raise invalid_params("expected a 32-byte account id")
            return hexstr(rt.system.nonce(hexstr(data)).to_bytes(4, "little"))
        if method in ("TransactionPaymentApi_query_info", "TransactionPaymentApi_query_fee_details"):
            if len(data) < 4:
                raise invalid_params("expected (extrinsic, u32 length)")
            info = await self._fee_info(data[:-4])
            if method.endswith("query_info"):
                return hexstr(compact_encode(info["weight"]["ref_time"]) + compact_encode(0) + b"\x00"
                              + info["partialFee"].to_bytes(16, "little"))
            return hexstr(b"\x01" + info["partialFee"].to_bytes(16, "little") + b"\x00" * 32 + b"\x00" * 16)
        raise RpcError(-32000, "Client error: Execution failed", f"Exported method {method} is not found")

    def _encode_version(self) -> bytes:
        v = self.node.runtime.version

        def text(s: str) -> bytes:
            return compact_encode(len(s.encode())) + s.encode()

        apis = b"".join(bytes.fromhex(h[2:]) + ver.to_bytes(4, "little") for h, ver in v["apis"])
        return (text(v["specName"]) + text(v["implName"]) + v["authoringVersion"].to_bytes(4, "little")
                + v["specVersion"].to_bytes(4, "little") + v["implVersion"].to_bytes(4, "little")
                + compact_encode(len(v["apis"])) + apis + v["transactionVersion"].to_bytes(4, "little")
                + bytes([v["stateVersion"]]))

    async def _fee_info(self, raw: bytes) -> dict[str, Any]:
        """Fee of an extrinsic without checking its signature (clients estimate with a dummy one).

        Unauthenticated, so bounded like a submission: size and batch prefix first, and a long call is
        decoded on the decoder thread with the same call budget."""
        import asyncio

        rt = self.node.runtime
        if len(raw) > MAX_EXTRINSIC_BYTES:
            raise invalid(f"Transaction would exhaust the block limits ({len(raw)} bytes)")
        try:
            ext = Extrinsic.decode(raw)
            rt.precheck_call(ext.call)
            if len(ext.call) <= INLINE_DECODE_BYTES:
                call = rt.codec.decode_call(ext.call, MAX_CALLS_PER_EXTRINSIC)
            else:
                call = await asyncio.get_running_loop().run_in_executor(
                    self.decoder, rt.codec.decode_call, ext.call, MAX_CALLS_PER_EXTRINSIC)
        except InvalidTransaction:
            raise
        except Exception as err:
            raise RpcError(1002, "Verification Error: Runtime error: Execution failed",
                           f"Could not decode extrinsic: {err}") from err
        weight = rt.call_weight(call)
        fee = rt.transaction_payment.fee(len(raw), weight)
        return {"weight": {"ref_time": weight, "proof_size": 0}, "class": "normal", "partialFee": fee}

    async def payment_query_info(self, session: Session, params: list[Any]) -> dict[str, Any]:
        info = await self._fee_info(parse_hex(_param(params, 0), "extrinsic"))
        return {**info, "partialFee": str(info["partialFee"])}

    async def payment_fee_details(self, session: Session, params: list[Any]) -> dict[str, Any]:
        info = await self._fee_info(parse_hex(_param(params, 0), "extrinsic"))
        return {"inclusionFee": {"baseFee": hex(info["partialFee"]), "lenFee": "0x0", "adjustedWeightFee": "0x0"},
                "tip": "0x0"}

    # transactions ---------------------------------------------------------------------------------

    async def submit_extrinsic(self, session: Session, params: list[Any]) -> str:
        return hexstr(await self.node.submit_async(parse_hex(_param(params, 0), "extrinsic"), None, self.decoder))

    async def submit_and_watch(self, session: Session, params: list[Any]) -> str:
        raw = parse_hex(_param(params, 0), "extrinsic")
        if session.send is None:
            raise RpcError(-32603, "Subscriptions are not supported over HTTP")
        session.reserve()
        sub_id = self._new_sub_id()
        done = {"finished": False}

        def watcher(status: Any) -> None:
            if done["finished"] or sub_id not in session.subscriptions:
                return
            self._notify(session, "author_extrinsicUpdate", sub_id, status)
            if isinstance(status, dict) and "finalized" in status or status in ("invalid", "dropped"):
                done["finished"] = True
                session.subscriptions.pop(sub_id, None)

        session.subscriptions[sub_id] = lambda: None
        try:
            await self.node.submit_async(raw, watcher, self.decoder)
        except Exception:
            session.subscriptions.pop(sub_id, None)
            raise
        return sub_id

    # subscriptions --------------------------------------------------------------------------------

    def _new_sub_id(self) -> str:
        return f"etrid{next(self._sub_ids):016x}"

    def _notify(self, session: Session, method: str, sub_id: str, result: Any) -> None:
        if session.send is not None:
            session.send({"jsonrpc": "2.0", "method": method, "params": {"subscription": sub_id, "result": result}})

    def subscribe_heads(self, session: Session, params: list[Any]) -> str:
        if session.send is None:
            raise RpcError(-32603, "Subscriptions are not supported over HTTP")
        method = self.notification_names[self._current_method]
        session.reserve()
        sub_id = self._new_sub_id()

        def on_block(block: Block) -> None:
            self._notify(session, method, sub_id, block.header_json())

        self.node.head_listeners.append(on_block)
        session.subscriptions[sub_id] = lambda: self.node.head_listeners.remove(on_block)
        # Like Substrate, send the current head right away.
        on_block(self.node.best)
        return sub_id

    def subscribe_runtime_version(self, session: Session, params: list[Any]) -> str:
        if session.send is None:
            raise RpcError(-32603, "Subscriptions are not supported over HTTP")
        session.reserve()
        sub_id = self._new_sub_id()
        session.subscriptions[sub_id] = lambda: None
        self._notify(session, "state_runtimeVersion", sub_id, self.node.runtime.version)
        return sub_id

    def subscribe_storage(self, session: Session, params: list[Any]) -> str:
        if session.send is None:
            raise RpcError(-32603, "Subscriptions are not supported over HTTP")
        keys = _param(params, 0, [])
        if not isinstance(keys, list) or not keys or len(keys) > MAX_KEYS_PAGE:
            raise invalid_params("expected a non-empty list of storage keys")
        raw_keys = [parse_hex(k, "storage key") for k in keys]
        session.reserve()
        if session.watched_keys + len(raw_keys) > MAX_WATCHED_KEYS:
            raise RpcError(TOO_MANY_SUBSCRIPTIONS, "Too many subscriptions on the connection",
                           f"Exceeded max limit of {MAX_WATCHED_KEYS} watched storage keys")
        sub_id = self._new_sub_id()
        last: dict[bytes, bytes | None] = {}

        def on_block(block: Block, initial: bool = False) -> None:
            changes = []
            for raw, key in zip(raw_keys, keys, strict=True):
                value = self.node.read_storage(raw)
                if initial or last.get(raw) != value:
                    changes.append([key, hexstr(value) if value is not None else None])
                last[raw] = value
            if changes:
                self._notify(session, "state_storage", sub_id, {"block": hexstr(block.hash), "changes": changes})

        def cancel() -> None:
            self.node.head_listeners.remove(on_block)
            session.watched_keys -= len(raw_keys)

        self.node.head_listeners.append(on_block)
        session.watched_keys += len(raw_keys)
        session.subscriptions[sub_id] = cancel
        on_block(self.node.best, initial=True)
        return sub_id

    def unsubscribe(self, session: Session, params: list[Any]) -> bool:
        sub_id = _param(params, 0)
        cancel = session.subscriptions.pop(sub_id, None) if isinstance(sub_id, str) else None
        if cancel is None:
            return False
        cancel()
        return True
