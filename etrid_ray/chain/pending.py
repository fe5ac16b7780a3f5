"""The chain's ``PendingJobs`` queue kept from block events, so watching it costs what changed, not its length.

Why: ``PendingJobs`` holds up to 10,000 ids, and reading and decoding it on every block made the queue watcher
O(queue) per block — on an instant-seal devnet, where every extrinsic makes a block, that was most of the
provider head's CPU. Every write to ``PendingJobs`` in the Etrid ``pallet_job_marketplace`` (upstream's and both
devnet runtimes) comes with exactly one event, emitted only when the write stands:

* ``submit_job`` appends the new id and emits ``JobSubmitted`` (the only way in);
* ``assign_job`` (root, and the devnet's ``--assigner`` in ``on_initialize``) and the devnet's ``claim_job`` remove
  the id and emit ``JobAssigned``;
* ``cancel_job`` removes it and emits ``JobCancelled``.

Nothing else touches the queue: timeouts, failures, results, confirmations and disputes concern jobs that already
left it. Removal keeps the order of the rest, and ids only ever enter at the end, so an insertion-ordered dict
replaying the events in block order holds the queue in chain order (the devnet assigner and upstream's
first-come rule read it in that order).

This module is the pure half: a :class:`PendingQueue` that replays events and says what changed, and flags an
event that cannot be right (an id added twice, one removed that was never there) so the watcher reads the
queue in full instead of trusting a replay that has gone wrong. When to read in full is the watcher's choice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

PALLET = "JobMarketplace"
#: events that put an id at the end of ``PendingJobs``
ENTERS = frozenset({"JobSubmitted"})
#: events that take an id out of ``PendingJobs``
LEAVES = frozenset({"JobAssigned", "JobCancelled"})


@dataclass
class QueueDelta:
    """What a replay or a full read changed: ids that entered (in queue order) and ids that left."""

    entered: list[int] = field(default_factory=list)
    left: list[int] = field(default_factory=list)
    #: events that contradict the queue as kept (the replay cannot be trusted: read the queue in full)
    anomalies: int = 0

    def __bool__(self) -> bool:
        return bool(self.entered or self.left or self.anomalies)


def queue_change(event: Any) -> tuple[str, int] | None:
    """``("enter" | "leave", job_id)`` for an event that changes ``PendingJobs``; ``None`` for any other event.
    Takes anything with ``pallet``, ``name`` and ``get`` (a :class:`~etrid_ray.chain.events.ChainEvent`)."""
    if event.pallet != PALLET:
        return None
    if event.name in ENTERS:
        return "enter", int(event.get("job_id"))
    if event.name in LEAVES:
        return "leave", int(event.get("job_id"))
    return None


class PendingQueue:
    """``PendingJobs`` as of the last block replayed, in chain order."""

    def __init__(self, ids: Iterable[int] = ()) -> None:
        self._ids: dict[int, None] = dict.fromkeys(int(i) for i in ids)

    def ids(self) -> list[int]:
        """The queue in chain order (a copy: a consumer may keep it while the queue moves on)."""
        return list(self._ids)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def apply(self, events: Iterable[Any]) -> QueueDelta:
        """Replays events in block order. ``entered`` holds the ids that entered and are still queued at the end
        (in queue order); ``left``, those queued before that are gone at the end."""
        ids = self._ids
        entered: dict[int, None] = {}
        left: list[int] = []
        anomalies = 0
        for event in events:
            change = queue_change(event)
            if change is None:
                continue
            kind, job_id = change
            if kind == "enter":
                if job_id in ids:
                    anomalies += 1
                    continue
                ids[job_id] = None
                entered[job_id] = None
            elif job_id in ids:
                del ids[job_id]
                if job_id in entered:  # entered and left within the replay: neither, for the caller
                    del entered[job_id]
                else:
                    left.append(job_id)
            else:
                anomalies += 1
        return QueueDelta(list(entered), left, anomalies)

    def reset(self, ids: Iterable[int]) -> QueueDelta:
        """Replaces the queue with a full read; the delta says how far the kept queue had been from it."""
        fresh = dict.fromkeys(int(i) for i in ids)
        old = self._ids
        self._ids = fresh
        return QueueDelta([i for i in fresh if i not in old], [i for i in old if i not in fresh])
