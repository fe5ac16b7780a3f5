"""`--data-dir`: blocks, their events and the state in SQLite, written at every sealed block.

State is stored as raw Substrate key/value pairs (what `state_getStorage` serves), so a restart
decodes it back through the same metadata the runtime runs on.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from etrid_ray.devnet.common_types import to_account
from etrid_ray.devnet.node import Block, Node
from etrid_ray.devnet.pallet import ETRID_RAY
from etrid_ray.devnet.storage import HASHERS, MISSING, StorageItem

SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (number INTEGER PRIMARY KEY, hash BLOB NOT NULL, parent BLOB NOT NULL,
    state_root BLOB NOT NULL, extrinsics_root BLOB NOT NULL, extrinsics TEXT NOT NULL, events BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS state (key BLOB PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

PREFIX_HASH_LEN = {"Blake2_128Concat": 16, "Twox64Concat": 8, "Identity": 0}


class SqliteStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path))
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def has_chain(self) -> bool:
        return self.db.execute("SELECT 1 FROM blocks WHERE number = 0").fetchone() is not None

    def save_block(self, node: Node, block: Block, changes: dict[Any, tuple[StorageItem, Any, Any]],
                   genesis: bool) -> None:
        state = node.runtime.state
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO blocks VALUES (?,?,?,?,?,?,?)", (
                block.number, block.hash, block.parent_hash, block.state_root, block.extrinsics_root,
                json.dumps([e.hex() for e in block.extrinsics]), block.events_raw))
            for item, key, _old in changes.values():
                raw = state.raw_key(item, key)
                value = state.values[id(item)].get(key, MISSING)
                if value is MISSING:
                    self.db.execute("DELETE FROM state WHERE key = ?", (raw,))
                else:
                    self.db.execute("INSERT OR REPLACE INTO state VALUES (?, ?)",
                                    (raw, state.encode_value(item, value)))
            if genesis:
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('genesis', ?)", (block.hash.hex(),))
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('runtime', ?)", (node.runtime.config.flavour,))

    def load(self, node: Node) -> None:
        """Restores blocks and state; the runtime's timers are rebuilt from the restored storage."""
        rt = node.runtime
        row = self.db.execute("SELECT value FROM meta WHERE key = 'runtime'").fetchone()
        saved = row[0] if row is not None else ETRID_RAY  # chains saved before there were two runtimes
        if saved != rt.config.flavour:
            # its blocks' events and calls are encoded with the other runtime's indices: they would decode wrongly
            raise SystemExit(f"--data-dir holds a chain of the {saved!r} runtime, not {rt.config.flavour!r}: "
                             f"start it with --runtime {saved}, or use another --data-dir")
        by_prefix = {item.prefix: item for p in rt.pallets for item in p.storage_items}
        for raw, value in self.db.execute("SELECT key, value FROM state"):
            raw = bytes(raw)
            item = by_prefix.get(raw[:32])
            if item is None:
                continue  # an item this runtime no longer has
            key = None
            if item.is_map:
                assert item.hasher is not None and item.key_ty is not None
                skip = PREFIX_HASH_LEN.get(item.hasher)
                if skip is None:
                    continue
                key = rt.codec.decode(item.key_ty, raw[32 + skip:])
                key = _normalise_key(rt, item, key)
            rt.state.load_raw(item, key, _normalise_value(rt.codec.decode(item.value_ty, bytes(value))), bytes(value))
        for row in self.db.execute("SELECT number, hash, parent, state_root, extrinsics_root, extrinsics, events "
                                   "FROM blocks ORDER BY number"):
            number, hsh, parent, sroot, xroot, exts, events = row
            block = Block(number, bytes(parent), bytes(sroot), bytes(xroot),
                          [bytes.fromhex(e) for e in json.loads(exts)], bytes(events), bytes(hsh))
            node.blocks.append(block)
            node.by_hash[block.hash] = block
        rt.genesis_hash = node.blocks[0].hash
        rt.block_number = node.best.number
        node._last_timestamp = rt.timestamp.now_ms()
        rt.state.take_block_changes()
        rt.after_load()

    def close(self) -> None:
        self.db.close()


def _normalise_key(rt: Any, item: StorageItem, key: Any) -> Any:
    if item.key_ty == rt.types.account_id:
        return to_account(key)
    return key


def _normalise_value(value: Any) -> Any:
    """Decoded values come back with ss58 account ids; the runtime keeps 0x-hex everywhere."""
    if isinstance(value, dict):
        return {k: _normalise_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise_value(v) for v in value]
    if isinstance(value, str) and len(value) in (47, 48) and not value.startswith("0x"):
        try:
            return to_account(value)
        except Exception:
            return value
    return value


__all__ = ["SqliteStore", "HASHERS"]
