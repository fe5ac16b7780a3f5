"""Watching the job queue: new-head subscription, polling fallback, one update per new best block.

Why its own socket: a head subscription waits on ``recv`` indefinitely, which
would block every other call on a shared substrate-interface socket. The
subscription here (``chain_subscribeNewHeads`` over websocket-client, the
library substrate-interface itself uses) only *wakes* the watcher; reads go
through the regular :class:`Connection`. When the subscription is refused, the
URL is HTTP, or the socket drops, the watcher polls ``chain_getHeader`` every
``poll_interval`` seconds and retries the subscription with backoff, so a
flaky node slows updates down but never stops them.

Each :class:`QueueUpdate` carries the pending ids at the new best block, the
``Job`` of every id not seen before, and the events of every block since the
last update (``JobSubmitted``, ``JobAssigned``, ``PaymentReleased`` …).

Why the cost per block is what changed, not the queue's length: ``PendingJobs``
holds up to 10,000 ids, and reading it on every block was most of the watcher's
work. The queue is read in full only when the watcher cannot vouch for a replay
(at start, after skipped blocks, a reconnect, a reorg, another chain behind the
same URL, an error, or an event that contradicts the kept queue) and every ``full_read_every_s`` as a safety net; in
between it is kept from the block events (:mod:`etrid_ray.chain.pending` says
why that is exact). A new best block costs one request (its hash, number,
parent hash and events in one ``state_queryStorageAt``), one more for the hashes
of blocks it skipped and one per skipped block's events, and one for the jobs
that entered the queue.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import websocket

from etrid_ray.chain.connection import Connection
from etrid_ray.chain.errors import RpcError
from etrid_ray.chain.events import ChainEvent, block_events, remember_block_events
from etrid_ray.chain.models import Job, JobStatus
from etrid_ray.chain.pending import PendingQueue
from etrid_ray.chain.reader import ChainReader

log = logging.getLogger(__name__)

#: why the queue is read in full at the next block when no other reason stands (see `QueueWatcher.full_reads`)
PERIODIC = "periodic check"


@dataclass
class QueueUpdate:
    block_number: int
    block_hash: str
    pending_ids: list[int]
    new_jobs: dict[int, Job]
    events: list[ChainEvent] = field(default_factory=list)
    #: ids that left the queue since the previous update, when the watcher knows from the events alone; None after
    #: a full read of ``PendingJobs`` (compare ``pending_ids`` with the last ones seen instead)
    left: list[int] | None = None

    @property
    def submitted(self) -> list[ChainEvent]:
        """``JobSubmitted`` events since the previous update."""
        return [e for e in self.events if e.is_("JobMarketplace", "JobSubmitted")]


@dataclass(frozen=True)
class BestBlock:
    """The best block as one ``state_queryStorageAt`` sees it: ``System.Number``, ``System.ParentHash`` and the
    bytes of ``System.Events`` at the block the node resolved as best."""

    number: int
    hash: str
    parent_hash: str
    events_raw: bytes | None


def _bytes(value: str | None) -> bytes | None:
    """A storage value as the RPC gives it (``0x…`` or ``None``) as bytes."""
    return None if value is None else bytes.fromhex(value[2:])


class QueueWatcher:
    """Calls ``callback(QueueUpdate)`` for each new best block, from a background thread."""

    def __init__(
        self,
        conn: Connection,
        callback: Callable[[QueueUpdate], None],
        *,
        poll_interval: float = 1.0,
        use_subscription: bool = True,
        max_catch_up: int = 256,
        full_read_every_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.conn = conn
        self.reader = ChainReader(conn)
        self.callback = callback
        self.poll_interval = poll_interval
        self.use_subscription = use_subscription and conn.url.startswith(("ws://", "wss://"))
        self.max_catch_up = max_catch_up
        #: the safety net: a replay is checked against a full read at least this often (a full read of 10,000
        #: ids costs a few ms, so every 10 s is noise next to the per-block work, and a queue gone wrong for a
        #: reason no event shows — a runtime upgrade, a pallet this module does not know — heals within it)
        self.full_read_every_s = full_read_every_s
        self.clock = clock
        self.mode = "idle"  # "subscription" | "polling"
        self.updates = 0
        self.errors = 0
        self.queue = PendingQueue()
        #: full reads of the queue, by reason (``start``, ``skipped blocks``, ``reconnected``, ``periodic check`` …)
        self.full_reads: dict[str, int] = {}
        #: full reads that found the queue kept from events wrong (0 unless a pallet writes it without an event)
        self.mismatches = 0
        self._last: int | None = None
        self._last_hash: str | None = None
        self._full_read_reason: str | None = "start"
        self._next_full_read = 0.0
        self._keys: tuple[str, str, str] | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._ws: websocket.WebSocket | None = None
        conn.on_reconnect(lambda: self.request_full_read("reconnected"))

    def request_full_read(self, reason: str) -> None:
        """Reads ``PendingJobs`` in full at the next block instead of trusting the replay (any thread)."""
        if self._full_read_reason is None:
            self._full_read_reason = reason

    # one step (also usable without threads) ------------------------------------------------------
    def best_block(self) -> BestBlock:
        """Hash, number, parent and events of the best block in one request."""
        meta = self.conn.metadata
        if self._keys is None:
            self._keys = tuple(meta.storage("System", n).key_hex() for n in ("Events", "Number", "ParentHash"))
        events_key, number_key, parent_key = self._keys
        (snapshot,) = self.conn.rpc("state_queryStorageAt", [list(self._keys)])
        values = {k: v for k, v in snapshot["changes"]}
        number_raw, parent_raw, events_raw = (values.get(k) for k in (number_key, parent_key, events_key))
        number = meta.storage("System", "Number").decode(_bytes(number_raw))
        return BestBlock(int(number or 0), snapshot["block"], parent_raw or "", _bytes(events_raw))

    def poll_once(self) -> QueueUpdate | None:
        """Processes blocks since the last call; ``None`` when the best block has not moved."""
        try:
            return self._poll()
        except Exception:
            # the kept queue may hold part of a replay whose block was not recorded as processed
            self.request_full_read("after an error")
            raise

    def _poll(self) -> QueueUpdate | None:
        best = self.best_block()
        last = self._last
        if last is not None and best.number <= last:
            if best.hash == self._last_hash:
                return None
            self._left_our_chain()  # another block at our height or below is best
            last = None
        first = best.number if last is None else max(last + 1, best.number - self.max_catch_up + 1)
        if last is not None and first > last + 1:
            self.request_full_read("skipped blocks")
        numbers = list(range(first, best.number))
        events = self._events_before(best, last, numbers)
        events.extend(remember_block_events(self.conn, best.hash, best.number, best.events_raw))
        update = self._update_queue(best, events)
        self._last, self._last_hash = best.number, best.hash
        self.updates += 1
        return update

    def _events_before(self, best: BestBlock, last: int | None, numbers: list[int]) -> list[ChainEvent]:
        """Events of the blocks between the last one processed and ``best``; asks for a full read when the chain
        they make does not join the last block to ``best``."""
        if not numbers:
            if last is not None and best.parent_hash != self._last_hash:
                self._left_our_chain()
            return []
        asked = ([last] if last is not None and numbers[0] == last + 1 else []) + numbers
        hashes = self.conn.rpc("chain_getBlockHash", [asked])
        if asked[0] == last and hashes[0] != self._last_hash:
            self._left_our_chain()
        elif hashes[-1] != best.parent_hash:  # the best chain moved between the two requests
            self.request_full_read("reorg")
        events: list[ChainEvent] = []
        for number, block_hash in zip(asked[-len(numbers):], hashes[-len(numbers):], strict=True):
            if block_hash is None:  # pruned or gone: its events are lost to the replay
                self.request_full_read("block unavailable")
                continue
            events.extend(block_events(self.conn, block_hash, number))
        return events

    def _left_our_chain(self) -> None:
        """The last block processed is not on the best chain any more. When the node still knows it, that is a
        reorg: the queue is read in full. When it does not, this is another chain (a node back without its
        state), where the same job ids name other jobs: the watcher starts over as if new, so every pending job
        is handed over again."""
        try:
            known = self.conn.rpc("chain_getHeader", [self._last_hash]) is not None
        except RpcError:  # the devnet answers "Unknown block"; Substrate answers null
            known = False
        if known:
            self.request_full_read("reorg")
        else:
            self.queue = PendingQueue()
            self._full_read_reason = "another chain"

    def _update_queue(self, best: BestBlock, events: list[ChainEvent]) -> QueueUpdate:
        """Replays ``events`` into the kept queue or reads it in full, then reads the jobs that entered."""
        reason, self._full_read_reason = self._full_read_reason, None
        if reason is None and self.clock() >= self._next_full_read:
            reason = PERIODIC
        entered: list[int] = []
        left: list[int] | None = None
        if reason is None or reason == PERIODIC:
            delta = self.queue.apply(events)
            entered, left = delta.entered, delta.left
            if delta.anomalies:
                reason = "events contradict the queue"
                self.mismatches += 1
        full = reason is not None
        if full:
            entered, left = self._full_read(best.hash, reason, entered), None
        jobs = self.reader.jobs(entered, best.hash) if entered else {}
        stale = [i for i in entered if i not in jobs or jobs[i].status != JobStatus.PENDING]
        if stale and not full:  # a job entered by the events is not pending at the block: trust a full read
            self.mismatches += 1
            entered, left = self._full_read(best.hash, "entered job not pending", entered), None
            jobs.update(self.reader.jobs([i for i in entered if i not in jobs], best.hash))
        new_jobs = {i: jobs[i] for i in entered if i in jobs}
        return QueueUpdate(best.number, best.hash, self.queue.ids(), new_jobs, events, left)

    def _full_read(self, at: str, reason: str, entered: list[int]) -> list[int]:
        """Replaces the kept queue with ``PendingJobs`` at ``at``; returns the ids new since the last update
        (``entered`` by a replay this block, still queued, and those the full read adds)."""
        check = self.queue.reset(self.reader.pending_job_ids(at))
        self.full_reads[reason] = self.full_reads.get(reason, 0) + 1
        if reason == PERIODIC and check:
            self.mismatches += 1
            log.warning("queue kept from events differed from PendingJobs at %s: %d missing, %d extra",
                        at, len(check.entered), len(check.left))
        elif reason not in ("start", PERIODIC):
            log.info("read PendingJobs in full at %s (%s)", at, reason)
        self._next_full_read = self.clock() + self.full_read_every_s
        return [i for i in entered if i in self.queue] + check.entered

    # threads --------------------------------------------------------------------------------------
    def start(self) -> QueueWatcher:
        self._stop.clear()
        worker = threading.Thread(target=self._run, name="etrid-queue-watch", daemon=True)
        self._threads = [worker]
        if self.use_subscription:
            sub = threading.Thread(target=self._subscribe_loop, name="etrid-head-sub", daemon=True)
            self._threads.append(sub)
            sub.start()
        else:
            self.mode = "polling"
        worker.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        ws = self._ws
        if ws is not None:
            try:
                ws.close()
            except Exception:  # noqa: BLE001 - closing a dead socket may fail; the thread exits anyway
                pass
        for t in self._threads:
            t.join(timeout)

    def __enter__(self) -> QueueWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                update = self.poll_once()
                if update is not None:
                    self.callback(update)
            except Exception:  # noqa: BLE001 - the watcher must outlive one bad block or callback
                self.errors += 1
                log.exception("queue watcher step failed")
            # with a live subscription we sleep until a head arrives (and re-check now and then)
            wait = self.poll_interval * (10 if self.mode == "subscription" else 1)
            self._wake.wait(wait)
            self._wake.clear()

    def _subscribe_loop(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                self._subscribe_once()
                delay = 0.5
            except Exception as exc:  # noqa: BLE001 - any failure means: poll, then try again
                if self._stop.is_set():
                    break
                log.info("head subscription unavailable (%s); polling every %.1fs", exc, self.poll_interval)
            self.mode = "polling"
            self._stop.wait(delay)
            delay = min(delay * 2, 30.0)

    def _subscribe_once(self) -> None:
        ws = websocket.create_connection(self.conn.url, timeout=10)
        self._ws = ws
        try:
            ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "chain_subscribeNewHeads", "params": []}))
            ws.settimeout(1.0)
            sub_id = None
            while not self._stop.is_set():
                try:
                    msg = json.loads(ws.recv())
                except websocket.WebSocketTimeoutException:
                    continue
                if msg.get("id") == 1:
                    if "error" in msg:
                        raise RuntimeError(f"subscription refused: {msg['error']}")
                    sub_id = msg.get("result")
                    self.mode = "subscription"
                    self._wake.set()
                elif msg.get("params", {}).get("subscription") == sub_id:
                    self._wake.set()
        finally:
            self._ws = None
            try:
                ws.close()
            except Exception:  # noqa: BLE001
                pass
