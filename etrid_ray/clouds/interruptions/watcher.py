"""The node-side watcher: poll this instance's notice endpoint and act when a notice comes.

`SpotWatcher` is the loop (interval, errors counted and logged, never fatal); what it does on a notice
is a callable. The one used on the nodes, `kuberay.spot_watch.RayNodeDrain`, drains this node's Ray node
through the GCS (the same `Drainer` and `drain_and_wait` as the pods' preStop hook) with the notice's time as
Ray's drain deadline, so no new task lands on it while the running ones go on. Tasks that end before
the instance goes finish there; a handler with a checkpoint hook that would not leaves early with its
progress saved; the others die with the node, and the provider head runs them again elsewhere without
spending their retry budget (provider/preemption.py). The head reports each job once, from the run that
finishes, so nothing is reported twice. The drain and
the `etrid-ray spot-watch` process live with the preStop hook in `kuberay`, above the clouds: a cloud knows
its notices, the KubeRay pods know their Ray node.

Which notices drain (`drain_kinds`, default terminate, maintenance, rebalance): a rebalance
recommendation or a maintenance event without a time drains with no deadline and the watch goes on,
so a later termination notice sets the deadline; a termination notice drains with its deadline,
waits for the node to empty or the deadline to pass, and ends the watch. When a cloud gives no time,
its documented notice length counts from the first poll that saw the notice (`Cloud.notice_s`, in the
cloud registry).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from etrid_ray.clouds.interruptions.notice import DRAIN_KINDS, MalformedAnswer, Notice
from etrid_ray.clouds.interruptions.sources import EndpointError, NoticeSource
from etrid_ray.clouds.registry import notice_period

log = logging.getLogger(__name__)

Outcome = Literal["failed", "draining", "done"]
Echo = Callable[[str], Any]
DEFAULT_INTERVAL_S = 2.0


@dataclass
class WatchStats:
    polls: int = 0
    errors: int = 0
    last_error: str = ""
    seen: list[Notice] = field(default_factory=list)   # each announcement once, deadline filled in
    acted: list[Notice] = field(default_factory=list)  # the notices a drain was asked for


class SpotWatcher:
    def __init__(self, source: NoticeSource, on_notice: Callable[[Notice], Outcome], *,
                 interval_s: float = DEFAULT_INTERVAL_S, drain_kinds: Iterable[str] = DRAIN_KINDS,
                 notice_s: float | None = None, clock: Callable[[], float] = time.time,
                 echo: Echo | None = None) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.source = source
        self.on_notice = on_notice
        self.interval_s = interval_s
        self.drain_kinds = frozenset(drain_kinds)
        self.notice_s = notice_period(source.cloud) if notice_s is None else notice_s
        self.clock = clock
        self.echo: Echo = echo or log.info
        self.stats = WatchStats()
        self._first_seen: dict[tuple[str, str, str], float] = {}
        self._drain_deadline: float | None = None  # deadline of the drain in force; inf: drained without one
        self._error_streak = 0

    def _complete(self, notice: Notice) -> Notice:
        """Remembers when each announcement was first seen; gives a `terminate` without a time the cloud's
        documented notice length from then."""
        first = self._first_seen.get(notice.key)
        if first is None:
            first = self._first_seen[notice.key] = self.clock()
            filled = notice if notice.deadline is not None or notice.kind != "terminate" else \
                replace(notice, deadline=first + self.notice_s)
            self.stats.seen.append(filled)
            if notice.kind not in self.drain_kinds:
                self.echo(f"spot-watch: {filled.describe()}: advisory, not draining")
        if notice.deadline is None and notice.kind == "terminate":
            return replace(notice, deadline=first + self.notice_s)
        return notice

    def _needs_drain(self, notice: Notice) -> bool:
        if notice.kind not in self.drain_kinds:
            return False
        if self._drain_deadline is None:
            return True
        # drain again only to bring the deadline forward (a firmer notice after a recommendation)
        return notice.deadline is not None and notice.deadline < self._drain_deadline - 0.5

    def poll_once(self) -> tuple[Notice | None, Outcome | None]:
        """One poll: (the notice acted on, what the action said), or (None, None)."""
        self.stats.polls += 1
        try:
            notices = [self._complete(n) for n in self.source.poll()]
        except (EndpointError, MalformedAnswer, OSError) as err:
            self.stats.errors += 1
            message = f"{type(err).__name__}: {err}"
            if self._error_streak == 0 or message != self.stats.last_error or self._error_streak % 30 == 0:
                self.echo(f"spot-watch: {self.source.cloud} endpoint {self.source.endpoint}: {message}")
            self.stats.last_error = message
            self._error_streak += 1
            return None, None
        if self._error_streak:
            self.echo(f"spot-watch: {self.source.cloud} endpoint answering again")
            self._error_streak = 0
        due = sorted((n for n in notices if self._needs_drain(n)),
                     key=lambda n: (n.deadline is None, n.deadline or 0.0, n.kind != "terminate"))
        if not due:
            return None, None
        notice = due[0]
        self.echo(f"spot-watch: notice: {notice.describe()}")
        outcome = self.on_notice(notice)
        if outcome != "failed":
            self.stats.acted.append(notice)
            self._drain_deadline = notice.deadline if notice.deadline is not None else math.inf
        return notice, outcome

    def run(self, stop: threading.Event | None = None) -> Notice | None:
        """Polls every `interval_s` until a notice's action says "done" (returned) or `stop` is set (None)."""
        stop = stop or threading.Event()
        while not stop.is_set():
            started = time.monotonic()
            notice, outcome = self.poll_once()
            if outcome == "done":
                return notice
            stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))
        return None
