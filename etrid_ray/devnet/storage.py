"""Runtime storage: typed items over a raw key space, with transactions and recent history.

Pallets read and write Python values by item and key; RPC clients read the
same state by raw Substrate keys (twox128(pallet) ++ twox128(item) ++
hasher(key)). Values are treated as immutable: a pallet replaces a value
rather than mutating it, which lets the journal and the per-block history keep
plain references instead of copies.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from etrid_ray.devnet.codec import Codec, twox128
from etrid_ray.scale_codec import HASHERS

MISSING: Any = object()



@dataclass(eq=False)
class StorageItem:
    """One storage entry as it appears in metadata: plain value or single-key map."""

    pallet_prefix: str
    name: str
    value_ty: int
    default: Any
    key_ty: int | None = None
    hasher: str | None = None
    optional: bool = False
    docs: tuple[str, ...] = ()
    prefix: bytes = b""

    def __post_init__(self) -> None:
        self.prefix = twox128(self.pallet_prefix.encode()) + twox128(self.name.encode())

    @property
    def is_map(self) -> bool:
        return self.key_ty is not None


@dataclass
class Storage:
    """The live state. `history` keeps, per recent block, the values that block overwrote."""

    codec: Codec | None = None
    values: dict[int, dict[Any, Any]] = field(default_factory=dict)
    items: dict[int, StorageItem] = field(default_factory=dict)
    raw_index: dict[bytes, tuple[StorageItem, Any]] = field(default_factory=dict)
    _sorted_raw: list[bytes] | None = None
    _encoded: dict[bytes, bytes] = field(default_factory=dict)
    _key_cache: dict[tuple[int, Any], bytes] = field(default_factory=dict)
    journal: list[tuple[StorageItem, Any, Any]] = field(default_factory=list)
    # Changes of the block being built: (item id, key) -> value before the block.
    block_changes: dict[tuple[int, Any], tuple[StorageItem, Any, Any]] = field(default_factory=dict)

    def register(self, item: StorageItem) -> None:
        self.items[id(item)] = item
        self.values.setdefault(id(item), {})

    # keys ---------------------------------------------------------------------------------------

    def raw_key(self, item: StorageItem, key: Any = None) -> bytes:
        if not item.is_map:
            return item.prefix
        cache_key = (id(item), key)
        raw = self._key_cache.get(cache_key)
        if raw is None:
            assert self.codec is not None and item.hasher is not None and item.key_ty is not None
            raw = item.prefix + HASHERS[item.hasher](self.codec.encode(item.key_ty, key))
            if len(self._key_cache) > 500_000:
                self._key_cache.clear()
            self._key_cache[cache_key] = raw
        return raw

    # reads and writes -----------------------------------------------------------------------------

    def get(self, item: StorageItem, key: Any = None) -> Any:
        value = self.values[id(item)].get(key, MISSING)
        if value is MISSING:
            return None if item.optional else item.default
        return value

    def contains(self, item: StorageItem, key: Any = None) -> bool:
        return key in self.values[id(item)]

    def put(self, item: StorageItem, key: Any, value: Any) -> None:
        self._write(item, key, value)

    def remove(self, item: StorageItem, key: Any = None) -> None:
        if key in self.values[id(item)]:
            self._write(item, key, MISSING)

    def iter_map(self, item: StorageItem) -> Iterator[tuple[Any, Any]]:
        return iter(list(self.values[id(item)].items()))

    def _write(self, item: StorageItem, key: Any, value: Any) -> None:
        bucket = self.values[id(item)]
        old = bucket.get(key, MISSING)
        self.journal.append((item, key, old))
        change_key = (id(item), key)
        if change_key not in self.block_changes:
            self.block_changes[change_key] = (item, key, old)
        self._apply(item, key, value)

    def _apply(self, item: StorageItem, key: Any, value: Any) -> None:
        bucket = self.values[id(item)]
        raw = self.raw_key(item, key)
        self._encoded.pop(raw, None)
        if value is MISSING:
            if bucket.pop(key, MISSING) is not MISSING:
                self.raw_index.pop(raw, None)
                self._sorted_raw = None
        else:
            if key not in bucket:
                self.raw_index[raw] = (item, key)
                self._sorted_raw = None
            bucket[key] = value

    # transactions ---------------------------------------------------------------------------------

    def savepoint(self) -> int:
        return len(self.journal)

    def rollback(self, savepoint: int) -> None:
        """Undoes every write since the savepoint: a failed dispatch leaves no trace but its fee."""
        while len(self.journal) > savepoint:
            item, key, old = self.journal.pop()
            self._apply(item, key, old)
        # Changes that no longer differ from the pre-block value stay recorded; harmless for history.

    def take_block_changes(self) -> dict[tuple[int, Any], tuple[StorageItem, Any, Any]]:
        changes = self.block_changes
        self.block_changes = {}
        self.journal.clear()
        return changes

    # raw access for RPC ---------------------------------------------------------------------------

    def encode_value(self, item: StorageItem, value: Any) -> bytes:
        assert self.codec is not None
        return self.codec.encode(item.value_ty, value)

    def read_raw(self, raw_key: bytes) -> bytes | None:
        cached = self._encoded.get(raw_key)
        if cached is not None:
            return cached
        entry = self.raw_index.get(raw_key)
        if entry is None:
            return None
        item, key = entry
        encoded = self.encode_value(item, self.values[id(item)][key])
        self._encoded[raw_key] = encoded
        return encoded

    def sorted_raw_keys(self) -> list[bytes]:
        if self._sorted_raw is None:
            self._sorted_raw = sorted(self.raw_index)
        return self._sorted_raw

    def keys_paged(self, prefix: bytes, count: int, start_key: bytes | None) -> list[bytes]:
        keys = self.sorted_raw_keys()
        start = prefix if start_key is None or start_key < prefix else start_key
        idx = bisect.bisect_left(keys, start)
        if start_key is not None and idx < len(keys) and keys[idx] == start_key:
            idx += 1
        out: list[bytes] = []
        while idx < len(keys) and len(out) < count:
            k = keys[idx]
            if not k.startswith(prefix):
                break
            out.append(k)
            idx += 1
        return out

    def load_raw(self, item: StorageItem, key: Any, value: Any, encoded: bytes | None = None) -> None:
        """Sets a value without journaling: genesis and restoring from disk (with the stored bytes, which
        RPC reads then serve as they were: a decoded `System.Events` is not in a re-encodable shape)."""
        self._apply(item, key, value)
        if encoded is not None:
            self._encoded[self.raw_key(item, key)] = encoded
