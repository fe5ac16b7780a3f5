"""Block events, decoded fast and typed: ``JobSubmitted``, ``PaymentReleased``, ``ExtrinsicFailed`` …

Why not ``substrate.get_events()``: it builds scalecodec objects per event and
is slow on busy blocks. ``System.Events`` is decoded here with the compiled
registry, and each record becomes a :class:`ChainEvent` that names its pallet and
event as the metadata does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from etrid_ray.chain.connection import Connection
from etrid_ray.chain.metadata import ChainMetadata


@dataclass(frozen=True)
class ChainEvent:
    pallet: str
    name: str
    attributes: Any
    extrinsic_index: int | None
    block_number: int | None = None
    block_hash: str | None = None

    def is_(self, pallet: str, name: str) -> bool:
        return self.pallet == pallet and self.name == name

    def get(self, key: str, default: Any = None) -> Any:
        if isinstance(self.attributes, dict):
            return self.attributes.get(key, default)
        return default


def decode_event_records(
    meta: ChainMetadata, raw: bytes | None, *, block_number: int | None = None, block_hash: str | None = None
) -> list[ChainEvent]:
    """Decodes the SCALE bytes of ``System.Events`` into :class:`ChainEvent` s."""
    entry = meta.storage("System", "Events")
    records = entry.decode(raw) if raw is not None else []
    out: list[ChainEvent] = []
    for rec in records or []:
        phase = rec.get("phase")
        idx = phase.get("ApplyExtrinsic") if isinstance(phase, dict) else None
        event = rec["event"]
        ((pallet, inner),) = event.items()
        if isinstance(inner, dict) and len(inner) == 1:
            ((name, attrs),) = inner.items()
        else:  # a unit variant decodes as its name
            name, attrs = str(inner), None
        out.append(ChainEvent(pallet, name, attrs, idx, block_number, block_hash))
    return out


EVENTS_CACHED = 64  # blocks per connection whose decoded events are kept


def block_events(conn: Connection, block_hash: str, block_number: int | None = None) -> list[ChainEvent]:
    """All events of one block. A block's events never change, and the queue watcher and the submitter waiting for
    its extrinsics read the same recent blocks: each is decoded once per connection (the newest few are kept)."""
    events = conn.block_events.get(block_hash)
    if events is None:
        raw = conn.storage(conn.metadata.storage("System", "Events").key_hex(), block_hash)
        return remember_block_events(conn, block_hash, block_number, raw)
    return list(events)


def remember_block_events(
    conn: Connection, block_hash: str, block_number: int | None, raw: bytes | None
) -> list[ChainEvent]:
    """The events of one block from ``System.Events`` bytes read elsewhere (the queue watcher reads them with the
    block's number in one request), kept in the same per-connection cache as :func:`block_events`: a block
    another reader already decoded is not decoded again."""
    cache = conn.block_events
    events = cache.get(block_hash)
    if events is None:
        events = decode_event_records(conn.metadata, raw, block_number=block_number, block_hash=block_hash)
        cache[block_hash] = events
        while len(cache) > EVENTS_CACHED:
            cache.popitem(last=False)
    return list(events)


def events_in_range(conn: Connection, first: int, last: int) -> list[ChainEvent]:
    """Events of blocks ``first..=last``, in order; the keys are read in one batched request per block."""
    meta = conn.metadata
    key = meta.storage("System", "Events").key_hex()
    out: list[ChainEvent] = []
    for number in range(max(first, 0), last + 1):
        h = conn.block_hash(number)
        if h is None:
            break
        out.extend(decode_event_records(meta, conn.storage(key, h), block_number=number, block_hash=h))
    return out
