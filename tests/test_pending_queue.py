"""The pending queue kept from events equals the pallet's `PendingJobs`, in order, whatever the sequence of calls.

The model below is `pallet_job_marketplace` reduced to what touches the queue and the events it emits: a call that
the pallet refuses emits nothing (its writes and events are reverted), every call that stands emits its event.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from etrid_ray.chain.events import ChainEvent
from etrid_ray.chain.pending import PendingQueue, QueueDelta

MARKET = "JobMarketplace"


def ev(name: str, job_id: int, **more: object) -> ChainEvent:
    return ChainEvent(MARKET, name, {"job_id": job_id, **more}, 1)


@dataclass
class Market:
    """`PendingJobs` as the pallet writes it, and the events it emits."""

    status: dict[int, str] = field(default_factory=dict)
    pending: list[int] = field(default_factory=list)
    next_id: int = 0

    def call(self, op: str, pick: int) -> list[ChainEvent]:
        if op == "submit":
            job_id, self.next_id = self.next_id, self.next_id + 1
            self.status[job_id] = "Pending"
            self.pending.append(job_id)
            return [ChainEvent("Balances", "Reserved", {"amount": 1}, 1), ev("JobSubmitted", job_id, payment=1)]
        ids = sorted(self.status)
        job_id = ids[pick % len(ids)] if ids and pick >= 0 else 10_000 + pick  # negative: an id that never existed
        status = self.status.get(job_id)
        if op in ("assign", "claim") and status == "Pending":
            self.status[job_id] = "Processing"
            self.pending.remove(job_id)
            return [ev("JobAssigned", job_id, gpu_id=pick % 3)]
        if op == "cancel" and status == "Pending":
            self.status[job_id] = "Cancelled"
            self.pending.remove(job_id)
            return [ev("JobCancelled", job_id)]
        if op == "result" and status == "Processing":
            self.status[job_id] = "Completed"
            return [ev("JobCompleted", job_id, result_hash="0x" + "00" * 32)]
        if op in ("fail", "timeout") and status == "Processing":
            self.status[job_id] = "Failed"
            return [ev("JobFailed", job_id, reason=b"timeout")]
        if op == "confirm" and status == "Completed":
            self.status[job_id] = "Confirmed"
            return [ev("PaymentReleased", job_id, provider="5Gpu", amount=1)]
        if op == "dispute" and status == "Completed":
            self.status[job_id] = "Disputed"
            return [ev("JobDisputed", job_id)]
        return [ChainEvent("System", "ExtrinsicFailed", {"dispatch_error": "InvalidJobStatus"}, 1)]


OPS = st.sampled_from(["submit", "submit", "assign", "claim", "cancel", "result", "fail", "timeout", "confirm",
                       "dispute"])
CALL = st.tuples(OPS, st.integers(min_value=-3, max_value=50))
#: blocks of calls; a block may be replayed alone or a few at once (the watcher catching up), or read in full
BLOCKS = st.lists(st.tuples(st.lists(CALL, max_size=8), st.sampled_from(["replay", "replay", "hold", "full"])),
                  max_size=40)


@settings(max_examples=300, deadline=None)
@given(BLOCKS)
def test_replaying_events_gives_the_queue_a_full_read_gives(blocks) -> None:
    market, queue = Market(), PendingQueue()
    seen = list(market.pending)
    held: list[ChainEvent] = []
    for calls, how in blocks:
        for op, pick in calls:
            held.extend(market.call(op, pick))
        if how == "hold":  # the watcher has not woken yet: the next replay covers several blocks
            continue
        if how == "full":
            delta = queue.reset(list(market.pending))
        else:
            delta = queue.apply(held)
            assert delta.anomalies == 0
        held = []
        assert queue.ids() == market.pending  # same ids, same (chain) order
        assert delta.entered == [i for i in market.pending if i not in seen]
        assert sorted(delta.left) == sorted(set(seen) - set(market.pending))
        seen = list(market.pending)


def test_a_job_that_enters_and_leaves_within_one_replay_is_neither_entered_nor_left() -> None:
    queue = PendingQueue([1])
    delta = queue.apply([ev("JobSubmitted", 2), ev("JobAssigned", 2, gpu_id=0), ev("JobCancelled", 1)])
    assert (delta.entered, delta.left, delta.anomalies) == ([], [1], 0)
    assert queue.ids() == []


def test_events_that_cannot_follow_from_the_queue_are_anomalies() -> None:
    """An id entering twice or one leaving that was never queued means the replay went wrong somewhere (a
    missed block, a write without an event): the watcher reads the queue in full when it sees one."""
    queue = PendingQueue([1, 2])
    assert queue.apply([ev("JobSubmitted", 2)]).anomalies == 1
    assert queue.apply([ev("JobAssigned", 7, gpu_id=0), ev("JobCancelled", 8)]).anomalies == 2
    assert queue.ids() == [1, 2]


def test_other_pallets_events_of_the_same_name_are_ignored() -> None:
    queue = PendingQueue([1])
    assert not queue.apply([ChainEvent("OtherMarket", "JobAssigned", {"job_id": 1}, 0)])
    assert queue.ids() == [1]


def test_a_full_read_says_how_far_the_kept_queue_was() -> None:
    queue = PendingQueue([1, 2, 3])
    assert queue.reset([2, 3, 4, 5]) == QueueDelta([4, 5], [1])
    assert queue.ids() == [2, 3, 4, 5]
    assert not queue.reset([2, 3, 4, 5])
