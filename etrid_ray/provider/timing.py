"""When would a job start and end here? The head's estimates, learnt from what it observes, and the pure check
that decides whether a claim can be kept.

A claim starts the chain's clock: a job claimed for capacity that is busy, still booting, or that Ray is slow
to hand out fails as a timeout — lost pay and a mark against our GPUs — while another provider could have run
it. So the head claims a job only when `start + expected run + margin ≤ claim time + limit`, where:

- start: the earliest moment its pool has the GPUs (free now; freed when running jobs end, by their expected
  end and never later than their deadline; or added by nodes on their way, at their request time plus the
  pool's observed startup), plus the observed delay from dispatch to the task actually starting in Ray;
- expected run: the handler's learnt ratio of actual to declared run time, times what the job declares
  (a handler may declare its own duration, e.g. `sleep`; otherwise the job's time limit).

Every estimate is an EWMA of observations (mean and mean deviation, as TCP estimates round trips) seeded
with a prior, and the head uses `mean + K·deviation`: no constant fitted to one machine or trace.
Nothing here reads a clock or Ray; the head feeds observations in and asks questions with its own `now`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from hashlib import blake2b
from itertools import accumulate

from etrid_ray.chain.models import Job
from etrid_ray.manifest import Manifest
from etrid_ray.workloads.registry import REGISTRY, declared_seconds

#: while the head is bound by chain slots, claims and settlements wait for each other at most this long (one
#: extrinsic — a fee, a signature, a block of events — for several jobs); see `Claimer._coalesce`, `Settler.settle`
COALESCE_S = 0.05
EWMA_ALPHA = 0.25  # weight of a new observation (mean); the deviation uses the same
DEV_K = 2.0  # how many mean deviations of pessimism the head adds to a learnt estimate
SAFETY_S = 1.0  # a claim must fit with this much to spare …
SAFETY_FRACTION = 0.1  # … plus this share of the job's limit (chain block time, settlement, clock skew)
PRIOR_DISPATCH_S = 1.0  # dispatch → task start before anything was observed (a warm Ray worker takes ~ms)
PRIOR_RATIO_DECLARED = 1.0  # a handler that declares its duration is believed until observed otherwise
PRIOR_RATIO_UNDECLARED = 0.5  # otherwise, half its limit: a job is not expected to use all of it
PRIOR_DEV_FRACTION = 0.25  # the prior's deviation, as a share of its mean


@dataclass
class Ewma:
    """A running mean and mean absolute deviation; `upper()` is the pessimistic estimate the head plans with."""

    mean: float
    dev: float
    count: int = 0

    def observe(self, x: float) -> None:
        if not math.isfinite(x):
            return
        if self.count == 0:  # the first observation replaces the prior outright: it is about this machine
            self.mean, self.dev = x, abs(x) * PRIOR_DEV_FRACTION
        else:
            self.dev += EWMA_ALPHA * (abs(x - self.mean) - self.dev)
            self.mean += EWMA_ALPHA * (x - self.mean)
        self.count += 1

    def upper(self) -> float:
        return self.mean + DEV_K * self.dev


CLAIM_WINDOW_BLOCKS = 2  # jobs submitted this many blocks apart count as equally old when choosing what to claim


@dataclass
class BlockPace:
    """How often the chain makes blocks, as this head sees new best blocks arrive. Competing providers all see
    the same queue; if each took the oldest job first they would all claim the same ones in the same block and
    all but one would lose. Within a couple of blocks of age, who waited longest is noise anyway, so each head
    takes those jobs in its own order (`spread_key`); a chain of 6 s blocks gets 12 s windows, an instant-seal
    devnet whole seconds (the resolution of a job's `submitted_at`)."""

    interval: Ewma = field(default_factory=lambda: Ewma(0.0, 0.0))
    _last: tuple[int, float] | None = None

    def observe(self, number: int, now: float) -> None:
        last = self._last
        if last is not None and number > last[0]:
            self.interval.observe((now - last[1]) / (number - last[0]))
        if last is None or number > last[0]:
            self._last = (number, now)

    def window_s(self) -> float:
        return max(1.0, CLAIM_WINDOW_BLOCKS * self.interval.mean)


LOSS_TARGET = 0.05  # share of claim attempts lost to other providers the deferral aims under
MAX_DEFER_BLOCKS = 4.0


@dataclass
class ClaimDeferral:
    """How long this head waits before claiming a job it has just seen, learnt from the claims it loses.

    Competing heads that see a job in the same block and claim it at once collide; all but one lose (a failed
    batch item: cheap, but repeated on every burst). Waiting a different, hashed, share of a few blocks per head
    and job spreads their claims over blocks: the first claims, the others see the job gone before they try.
    Alone on a chain nothing is ever lost and the wait decays to nothing; the more competitors collide, the longer
    it grows (doubling while the share of claims lost is above LOSS_TARGET, up to MAX_DEFER_BLOCKS) — adapting to
    however many providers there are without knowing them."""

    blocks: float = 0.0

    def observe(self, won: int, lost: int) -> None:
        if won + lost == 0:
            return
        if lost / (won + lost) > LOSS_TARGET:
            self.blocks = min(MAX_DEFER_BLOCKS, max(2 * self.blocks, 0.5))
        else:
            self.blocks = self.blocks * 0.8 if self.blocks > 0.05 else 0.0

    def delay_s(self, spread: int, block_s: float) -> float:
        """This head's wait for the job of `spread` (its `spread_key`): a uniform share of the current window."""
        return (spread % 1_000_003) / 1_000_003 * self.blocks * block_s


def spread_key(address: str, job_id: int) -> int:
    """A job's place among equally old jobs for the head of `address`: a hash, so each provider's order differs
    and none is favoured, and stable, so a head's own order does not change from pass to pass."""
    return int.from_bytes(blake2b(f"{address}:{job_id}".encode(), digest_size=8).digest(), "big")


@dataclass
class Estimates:
    """What the head has learnt about this cluster: Ray's dispatch delay, node startup per pool, and the ratio
    of actual to declared run time per handler."""

    dispatch: Ewma = field(default_factory=lambda: Ewma(PRIOR_DISPATCH_S, PRIOR_DISPATCH_S * PRIOR_DEV_FRACTION))
    # a task no warm worker is free for waits for a new worker process (and its imports): on a loaded machine,
    # and with many starting at once, seconds to tens of seconds — learnt apart from the warm delay
    cold: Ewma = field(default_factory=lambda: Ewma(PRIOR_DISPATCH_S, PRIOR_DISPATCH_S * PRIOR_DEV_FRACTION))
    node_startup: dict[str, Ewma] = field(default_factory=dict)
    run_ratio: dict[tuple[str, bool], Ewma] = field(default_factory=dict)

    def observe_dispatch(self, seconds: float) -> None:
        """A task started `seconds` after the GPUs it was planned on were expected free (or its dispatch)."""
        self.dispatch.observe(max(0.0, seconds))

    def observe_cold(self, seconds: float) -> None:
        """A task that needed a new worker started `seconds` after its GPUs were expected free."""
        self.cold.observe(max(0.0, seconds))

    def cold_s(self) -> float:
        return max(self.dispatch_s(), self.cold.upper())

    def observe_node(self, pool: str, seconds: float, prior_s: float) -> None:
        self._node(pool, prior_s).observe(max(0.0, seconds))

    def observe_run(self, handler: str, actual_s: float, declared_s: float, declares: bool) -> None:
        if declared_s > 0:
            self._ratio(handler, declares).observe(max(0.0, actual_s) / declared_s)

    def dispatch_s(self) -> float:
        return max(0.0, self.dispatch.upper())

    def observed_dispatch_s(self) -> float:
        """The warm dispatch delay as observed (pessimistic); 0 before any task was seen starting on a warm worker
        (what may share a task is decided on observations only: provider/packing.py)."""
        return self.dispatch_s() if self.dispatch.count else 0.0

    def node_startup_s(self, pool: str, prior_s: float) -> float:
        return max(0.0, self._node(pool, prior_s).upper())

    def learnt_node_startup_s(self, pool: str) -> float | None:
        """The pool's node startup as observed (pessimistic), or None before a node of it was seen to join: the
        capacity rule (scaling.capacity) then waits the pool's declared startup."""
        e = self.node_startup.get(pool)
        return max(0.0, e.upper()) if e is not None and e.count else None

    def run_s(self, handler: str, declared_s: float, limit_s: float, declares: bool) -> float:
        """Expected run time: the learnt ratio (pessimistic) times the declared time, never beyond the limit
        (the head cancels a job there)."""
        return min(limit_s, max(0.0, self._ratio(handler, declares).upper() * declared_s))

    def _node(self, pool: str, prior_s: float) -> Ewma:
        e = self.node_startup.get(pool)
        if e is None:
            e = self.node_startup[pool] = Ewma(prior_s, prior_s * PRIOR_DEV_FRACTION)
        return e

    def _ratio(self, handler: str, declares: bool) -> Ewma:
        key = (handler, declares)
        e = self.run_ratio.get(key)
        if e is None:
            prior = PRIOR_RATIO_DECLARED if declares else PRIOR_RATIO_UNDECLARED
            e = self.run_ratio[key] = Ewma(prior, prior * PRIOR_DEV_FRACTION)
        return e

    def summary(self) -> dict[str, float]:
        """Figures for `status()`: what the head currently believes."""
        out = {"dispatch_s": round(self.dispatch_s(), 3), "cold_start_s": round(self.cold_s(), 3)}
        out.update({f"node_startup_s:{p}": round(e.upper(), 1) for p, e in self.node_startup.items() if e.count})
        out.update({f"run_ratio:{h}": round(e.upper(), 3) for (h, _d), e in self.run_ratio.items() if e.count})
        return out


def safety_margin(limit_s: float) -> float:
    return SAFETY_S + SAFETY_FRACTION * limit_s


def finishes_in_time(now: float, start: float, run_s: float, limit_s: float) -> bool:
    """The claim rule: a job claimed `now` with `limit_s` to run must start and end before `now + limit_s`,
    with a margin to spare."""
    return start + run_s + safety_margin(limit_s) <= now + limit_s


class GpuTimeline:
    """A pool's GPUs over the near future, for planning one claim batch: free now, plus (time, GPUs) that
    become free later (running jobs ending, nodes arriving), less what this batch already reserved.

    `earliest(gpus)` is the first moment from which at least `gpus` stay free for good (so a job planned now
    never takes GPUs a job planned earlier in the batch counts on); `reserve` books them until the job's end.
    """

    def __init__(self, now: float, free_now: float,
                 later: Iterable[tuple[float, float]] | Callable[[], Iterable[tuple[float, float]]] = ()) -> None:
        self.now = now
        self._times: list[float] = [now]
        self._deltas: list[float] = [free_now]
        self._future = False  # any reservation starting after `now`: the fast path no longer holds
        self._free_now = free_now
        # what frees up later, read only when a question needs it: while GPUs are free now (the common case at
        # hundreds of jobs a second) nobody asks, and computing every running job's end is the costly part
        self._later: Callable[[], Iterable[tuple[float, float]]] | None = later if callable(later) else (
            lambda: later)

    def _events(self) -> None:
        if self._later is not None:
            later, self._later = self._later, None
            for t, gpus in later():
                self._add(max(self.now, t), gpus)

    def _add(self, t: float, delta: float) -> None:
        i = bisect.bisect_right(self._times, t)
        self._times.insert(i, t)
        self._deltas.insert(i, delta)

    def earliest(self, gpus: float) -> float | None:
        """The earliest start for a job needing `gpus`, or None when the pool never has that many."""
        eps = 1e-9
        if not self._future and self._free_now + eps >= gpus:
            return self.now  # nothing reserved ahead: free now is the minimum of every later moment too
        self._events()
        # free after each event, then the minimum of every later moment (suffix minimum): both in C through
        # accumulate, since a claim batch asks once per job over every running job's end
        free = list(accumulate(self._deltas))
        suffix = list(accumulate(reversed(free), min))
        suffix.reverse()
        i = bisect.bisect_left(suffix, gpus - eps)  # the suffix minimum never decreases
        times, last = self._times, len(self._times) - 1
        while i < last and times[i + 1] <= times[i]:
            i += 1  # several events at one moment: what is free after all of them counts
        return times[i] if i <= last else None

    def reserve(self, start: float, end: float, gpus: float) -> None:
        if start <= self.now and not self._future:
            self._free_now -= gpus
        else:
            self._future = True
        self._add(start, -gpus)
        self._add(max(end, start), gpus)


def job_timing(job: Job, manifest: Manifest) -> tuple[str, float, bool, float]:
    """(handler, declared run time, whether the handler declared it, limit): the limit is what the head gives
    the task (the manifest's timeout_s, capped by the chain's max_compute_time)."""
    limit = float(min(manifest.timeout_s or job.max_compute_time, job.max_compute_time))
    workload = REGISTRY.get(manifest.handler)
    declared = declared_seconds(workload, manifest.args) if workload is not None else None
    if declared is None:
        return manifest.handler, limit, False, limit
    return manifest.handler, declared, True, limit
