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
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import websocket

from etrid_ray.chain.connection import Connection
from etrid_ray.chain.events import ChainEvent, block_events
from etrid_ray.chain.models import Job
from etrid_ray.chain.reader import ChainReader

log = logging.getLogger(__name__)


@dataclass
class QueueUpdate:
    block_number: int
    block_hash: str
    pending_ids: list[int]
    new_jobs: dict[int, Job]
    events: list[ChainEvent] = field(default_factory=list)

    @property
    def submitted(self) -> list[ChainEvent]:
        """``JobSubmitted`` events since the previous update."""
        return [e for e in self.events if e.is_("JobMarketplace", "JobSubmitted")]


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
    ) -> None:
        self.conn = conn
        self.reader = ChainReader(conn)
        self.callback = callback
        self.poll_interval = poll_interval
        self.use_subscription = use_subscription and conn.url.startswith(("ws://", "wss://"))
        self.max_catch_up = max_catch_up
        self.mode = "idle"  # "subscription" | "polling"
        self.updates = 0
        self.errors = 0
        self._last: int | None = None
        self._known: set[int] = set()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._ws: websocket.WebSocket | None = None

    # one step (also usable without threads) ------------------------------------------------------
    def poll_once(self) -> QueueUpdate | None:
        """Processes blocks since the last call; ``None`` when the best block has not moved."""
        best_hash = self.conn.block_hash()
        header = self.conn.rpc("chain_getHeader", [best_hash])
        best = int(header["number"], 16)
        if self._last is not None and best <= self._last:
            return None
        first = best if self._last is None else max(self._last + 1, best - self.max_catch_up + 1)
        events: list[ChainEvent] = []
        for number in range(first, best + 1):
            h = best_hash if number == best else self.conn.block_hash(number)
            events.extend(block_events(self.conn, h, number))
        pending = self.reader.pending_job_ids(best_hash)
        current = set(pending)
        new_ids = sorted(current - self._known)  # set arithmetic: the queue can hold 10,000 ids, read every block
        new_jobs = self.reader.jobs(new_ids, best_hash) if new_ids else {}
        self._known = current
        self._last = best
        update = QueueUpdate(best, best_hash, pending, new_jobs, events)
        self.updates += 1
        return update

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
