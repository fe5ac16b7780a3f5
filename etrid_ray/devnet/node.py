"""The node around the runtime: transaction pool, block authoring, block store, recent state history
and subscriptions. Single-threaded on the asyncio loop, like a node's authorship task.

Finality is instant (every sealed block is final), as with `substrate --dev --sealing instant`.
The header's state and extrinsics roots are blake2 commitments, not Merkle-Patricia trie roots:
clients read them but nothing here proves storage against them.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from etrid_ray.devnet.codec import blake2_256, compact_encode
from etrid_ray.devnet.common_types import hexstr
from etrid_ray.devnet.extrinsic import Extrinsic
from etrid_ray.devnet.runtime import (
    MAX_EXTRINSICS_PER_BLOCK,
    CheckedExtrinsic,
    InvalidTransaction,
    Runtime,
    RuntimeConfig,
    invalid,
)
from etrid_ray.devnet.storage import MISSING, StorageItem

HISTORY_BLOCKS = 256  # like a pruned node: storage at older blocks is not kept (events always are)
# Substrate's pool defaults (--pool-limit 8192, --pool-kbytes 20480): a full pool drops new transactions.
MAX_POOL_TRANSACTIONS = 8192
MAX_POOL_BYTES = 20 * 1024 * 1024
# Calls this short decode on the loop (well under a millisecond); longer ones go to the decoder thread.
INLINE_DECODE_BYTES = 2048


@dataclass
class Block:
    number: int
    parent_hash: bytes
    state_root: bytes
    extrinsics_root: bytes
    extrinsics: list[bytes]
    events_raw: bytes
    hash: bytes = b""

    def header_bytes(self) -> bytes:
        return (self.parent_hash + compact_encode(self.number) + self.state_root + self.extrinsics_root
                + compact_encode(0))

    def seal(self) -> Block:
        self.hash = blake2_256(self.header_bytes())
        return self

    def header_json(self) -> dict[str, Any]:
        return {"parentHash": hexstr(self.parent_hash), "number": hex(self.number),
                "stateRoot": hexstr(self.state_root), "extrinsicsRoot": hexstr(self.extrinsics_root),
                "digest": {"logs": []}}

    def json(self) -> dict[str, Any]:
        return {"block": {"header": self.header_json(), "extrinsics": [hexstr(e) for e in self.extrinsics]},
                "justifications": None}


@dataclass
class PoolEntry:
    checked: CheckedExtrinsic
    watchers: list[Callable[[Any], None]] = field(default_factory=list)


class Node:
    def __init__(self, block_time: float = 6.0, config: RuntimeConfig | None = None,
                 store: Any | None = None) -> None:
        self.runtime = Runtime(config or RuntimeConfig())
        self.block_time = block_time
        self.store = store
        self.blocks: list[Block] = []
        self.by_hash: dict[bytes, Block] = {}
        self.history: OrderedDict[int, dict[bytes, tuple[StorageItem, Any]]] = OrderedDict()
        self.pool: OrderedDict[bytes, PoolEntry] = OrderedDict()
        self.pool_nonces: dict[str, int] = {}
        self.head_listeners: list[Callable[[Block], None]] = []
        self._seal_scheduled = False
        self._last_timestamp = 0
        self._loop_task: asyncio.Task[None] | None = None
        # State at an older block as one overlay {raw key: encoded value or None}, built once per (block, best):
        # walking the history per key made `state_queryStorageAt` 250 blocks back O(keys x blocks).
        self._overlay: tuple[bytes, bytes, dict[bytes, tuple[StorageItem, Any]]] | None = None
        if store is not None and store.has_chain():
            store.load(self)
        else:
            self._genesis()

    # chain ----------------------------------------------------------------------------------------

    def _genesis(self) -> None:
        rt = self.runtime
        rt.build_genesis()
        rt.state.put(rt.system.Number, None, 0)
        rt.state.put(rt.system.Events, None, [])
        changes = rt.state.take_block_changes()
        block = Block(0, b"\x00" * 32, blake2_256(b"etrid-ray devnet genesis"), blake2_256(b""), [],
                      rt.state.encode_value(rt.system.Events, [])).seal()
        rt.genesis_hash = block.hash
        self._append(block, changes, genesis=True)

    @property
    def best(self) -> Block:
        return self.blocks[-1]

    def block_hash_at(self, number: int) -> bytes | None:
        return self.blocks[number].hash if 0 <= number < len(self.blocks) else None

    def _append(self, block: Block, changes: dict[Any, tuple[StorageItem, Any, Any]], genesis: bool = False) -> None:
        self.blocks.append(block)
        self.by_hash[block.hash] = block
        state = self.runtime.state
        raw_changes = {state.raw_key(item, key): (item, old) for item, key, old in changes.values()}
        if not genesis:
            self.history[block.number] = raw_changes
            while len(self.history) > HISTORY_BLOCKS:
                self.history.popitem(last=False)
        if self.store is not None:
            self.store.save_block(self, block, changes, genesis)
        for listener in list(self.head_listeners):
            listener(block)

    # storage reads (optionally at an older block) -------------------------------------------------

    def read_storage(self, raw_key: bytes, at: bytes | None = None) -> bytes | None:
        state = self.runtime.state
        if at is None or at == self.best.hash:
            return state.read_raw(raw_key)
        block = self.by_hash.get(at)
        if block is None:
            raise KeyError("unknown block")
        if raw_key == self.runtime.system.Events.prefix:
            return block.events_raw
        found = self._overlay_at(block).get(raw_key)
        if found is not None:
            item, old = found
            return None if old is MISSING else state.encode_value(item, old)
        return state.read_raw(raw_key)

    def _overlay_at(self, block: Block) -> dict[bytes, tuple[StorageItem, Any]]:
        """(item, value at `block`) of every key changed since: the oldest change after it wins."""
        cached = self._overlay
        if cached is not None and cached[0] == block.hash and cached[1] == self.best.hash:
            return cached[2]
        overlay: dict[bytes, tuple[StorageItem, Any]] = {}
        for number in range(self.best.number, block.number, -1):  # newest first: older changes overwrite
            changes = self.history.get(number)
            if changes is None:
                raise KeyError("state already discarded for this block")
            overlay.update(changes)
        self._overlay = (block.hash, self.best.hash, overlay)
        return overlay

    # transaction pool -----------------------------------------------------------------------------

    def submit(self, raw: bytes, watcher: Callable[[Any], None] | None = None) -> bytes:
        """Validates and queues a transaction; raises InvalidTransaction with Substrate's codes."""
        ext_hash = self._precheck_pool(raw)
        return self._admit(ext_hash, self.runtime.check(raw, self.block_hash_at), watcher)

    async def submit_async(self, raw: bytes, watcher: Callable[[Any], None] | None = None,
                           decoder: Executor | None = None) -> bytes:
        """`submit` for the RPC server: envelope, batch prefix and signature on the loop (cheap), the
        call's decoding on `decoder` when it is long, so one big extrinsic never stalls other clients."""
        ext_hash = self._precheck_pool(raw)
        ext: Extrinsic = self.runtime.check_envelope(raw, self.block_hash_at)
        if decoder is None or len(ext.call) <= INLINE_DECODE_BYTES:
            call = self.runtime.decode_checked_call(ext)
        else:
            call = await asyncio.get_running_loop().run_in_executor(decoder, self.runtime.decode_checked_call, ext)
            ext_hash = self._precheck_pool(raw)  # the pool may have changed meanwhile
        return self._admit(ext_hash, self.runtime.finish_check(ext, call), watcher)

    def _precheck_pool(self, raw: bytes) -> bytes:
        ext_hash = blake2_256(raw)
        if ext_hash in self.pool:
            raise InvalidTransaction(1013, "Transaction Already Imported", "Transaction is already in the pool")
        if (len(self.pool) >= MAX_POOL_TRANSACTIONS
                or sum(len(e.checked.ext.raw) for e in self.pool.values()) + len(raw) > MAX_POOL_BYTES):
            raise InvalidTransaction(1016, "Immediately Dropped",
                                     "The transaction couldn't enter the pool because of the limit")
        return ext_hash

    def _admit(self, ext_hash: bytes, checked: CheckedExtrinsic, watcher: Callable[[Any], None] | None) -> bytes:
        sender = checked.sender
        assert sender is not None
        account_nonce = self.runtime.system.nonce(sender)
        expected = self.pool_nonces.get(sender, account_nonce)
        nonce = checked.ext.nonce
        if nonce < account_nonce:
            raise invalid("Transaction is outdated")
        if nonce < expected:
            raise InvalidTransaction(1014, "Priority is too low", f"Priority is too low: ({nonce} vs {expected})")
        if nonce > expected:
            raise invalid("Transaction will be valid in the future")
        self.pool_nonces[sender] = nonce + 1
        entry = PoolEntry(checked)
        if watcher is not None:
            entry.watchers.append(watcher)
            watcher("ready")
        self.pool[ext_hash] = entry
        self._schedule_instant_seal()
        return ext_hash

    def _schedule_instant_seal(self) -> None:
        if self.block_time == 0 and not self._seal_scheduled:
            self._seal_scheduled = True
            try:
                asyncio.get_running_loop().call_soon(self._instant_seal)
            except RuntimeError:  # no loop (tests driving the node directly): seal now
                self._instant_seal()

    def _instant_seal(self) -> None:
        self._seal_scheduled = False
        if self.pool:
            self.seal_block()
            if self.pool:
                self._schedule_instant_seal()

    async def run(self) -> None:
        """Authors blocks on an interval (block_time > 0); instant sealing needs no loop."""
        if self.block_time <= 0:
            return
        while True:
            await asyncio.sleep(self.block_time)
            self.seal_block()

    # block authoring ------------------------------------------------------------------------------

    def seal_block(self) -> Block:
        rt, parent = self.runtime, self.best
        number = parent.number + 1
        now_ms = max(int(time.time() * 1000), self._last_timestamp + 1)
        self._last_timestamp = now_ms
        extrinsics = [rt.initialize_block(number, parent.hash, now_ms)]
        included: list[tuple[bytes, PoolEntry]] = []
        dropped: list[tuple[bytes, PoolEntry]] = []
        while self.pool and len(included) < MAX_EXTRINSICS_PER_BLOCK:
            ext_hash, entry = self.pool.popitem(last=False)
            checked = entry.checked
            sender = checked.sender
            assert sender is not None
            if rt.system.nonce(sender) != checked.ext.nonce or rt.balances.free(sender) < checked.fee:
                dropped.append((ext_hash, entry))
                continue
            rt.apply(checked, len(extrinsics))
            extrinsics.append(checked.ext.raw)
            included.append((ext_hash, entry))
        events = rt.finalize_block()
        self._resync_pool_nonces()
        changes = rt.state.take_block_changes()
        extrinsics_root = blake2_256(b"".join(blake2_256(e) for e in extrinsics))
        state_root = blake2_256(parent.state_root + compact_encode(number) + extrinsics_root)
        events_raw = rt.state.encode_value(rt.system.Events, events)
        block = Block(number, parent.hash, state_root, extrinsics_root, extrinsics, events_raw).seal()
        self._append(block, changes)
        for _, entry in included:
            for watcher in entry.watchers:
                watcher({"inBlock": hexstr(block.hash)})
                watcher({"finalized": hexstr(block.hash)})
        for _, entry in dropped:
            for watcher in entry.watchers:
                watcher("invalid")
        return block

    def _resync_pool_nonces(self) -> None:
        """After a block, the pool's expected nonces are the account nonces plus what is still queued."""
        self.pool_nonces = {}
        for entry in self.pool.values():
            sender = entry.checked.sender
            assert sender is not None
            self.pool_nonces[sender] = max(self.pool_nonces.get(sender, 0), entry.checked.ext.nonce + 1)
