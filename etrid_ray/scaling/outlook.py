"""What the head learns from the queue it watches: how long consumers wait, how fast local GPUs free up,
and how much work overflows them.

Why learn instead of assume: whether a cloud node pays depends on three facts no config can know for
every market — how long a consumer's job waits before another provider takes it (patience), how fast
this provider's own GPUs reach the jobs queued for them, and how much work keeps arriving that they
cannot reach in time. All three are observable from the queue alone, live and in the simulator alike:

- **patience**: a job that leaves the queue without being ours (`Snapshot.departed`) waited that long
  before someone else took it. Once any is seen, the estimate is the lower quartile of the recent ones
  (most consumers wait at least that long). Before, it is the time jobs have spent at risk in the queue
  without one leaving (job-seconds, the quantity a survival estimate with no event rests on): a queue
  that held 50 jobs for an hour and lost none says consumers here wait far longer than an hour, and
  buying cloud to spare them the wait would earn nothing. `PATIENCE_PRIOR_S` is only where it starts,
  before the queue has shown anything. (The longest wait seen is no estimate: the oldest job always looks
  about to leave.) The first departures are how it learns that consumers leave at all;
- **local reach** (GPUs per second the local pools start, measured only while jobs wait for them, so
  a quiet queue does not read as a slow cluster): a job with `A` GPUs of waiting work ahead of it in
  claim order starts locally in about `A / rate`. The same is measured per job size (1, 2, 3–4, 5–8,
  more GPUs), because GPUs that free one at a time are taken by the small jobs that fit them: a job that
  needs a whole node may wait far longer than the GPUs ahead of it say, or never start while smaller
  work keeps arriving. A job's reach is the slower of the two;
- **overflow**: work (GPU-seconds) of jobs the local pools will not reach before their consumers
  leave, per second: the demand a cloud node bought now can expect to keep serving.

Rates are exponentially decayed sums (time constant `MEMORY_S`): every observation counts, recent ones
more, and a burst that has passed fades in about an hour. Observations are gathered every tick but the
estimates move only at fixed instants (every `LEARN_EVERY_S` on the policy clock): between them the
policy's answer depends on the snapshot alone, so a head re-planning every second and a simulator that
ticks only when something happens (and at those instants) decide exactly alike. Pure values: the
policy's memory carries an `Outlook` from tick to tick.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from operator import add

from etrid_ray.percentiles import percentile
from etrid_ray.scaling.state import SIZES, QueuedJob, Snapshot, size_class

MEMORY_S = 3600.0  # how fast old observations fade
LEARN_EVERY_S = 300.0  # the estimates move at multiples of this (policy clock)
PATIENCE_PRIOR_S = 3600.0  # where the patience estimate starts before the queue has shown anything
PATIENCE_QUANTILE = 25  # of recent departures' waits: most consumers wait at least this long
KEPT_DEPARTURES = 128  # recent departures remembered
_ZEROS = (0.0,) * SIZES


def _plus(a: tuple[float, ...], b: tuple[float, ...], scale: float = 1.0) -> tuple[float, ...]:
    """a × scale + b, per size class (runs on every tick: the common cases cost nothing)."""
    if scale == 1.0:
        if b is _ZEROS:
            return a
        if a is _ZEROS:
            return b
        return tuple(map(add, a, b))
    return tuple(x * scale + y for x, y in zip(a, b, strict=True))


@dataclass(frozen=True)
class Seen:
    """Observations since the estimates last moved (or, folded, the decayed totals)."""

    local_started: float = 0.0  # GPUs started on local pools after a tick that left jobs waiting for them
    local_waited_s: float = 0.0  # seconds during which jobs waited for local GPUs
    overflow_work: float = 0.0  # GPU-seconds of work that overflowed the local pools (counted on arrival)
    overflow_value: float = 0.0  # planck those overflowing jobs offered
    departures: tuple[float, ...] = ()  # waits of jobs that left without being ours
    exposure_s: float = 0.0  # job-seconds jobs waited in the queue (read only while nobody has left)
    size_started: tuple[float, ...] = _ZEROS  # local_started, per size class of the jobs started …
    size_waited_s: tuple[float, ...] = _ZEROS  # … after ticks that left jobs of that class waiting, and how long

    # what the estimates read, computed once per learning instant (`Outlook.learned` is one value between them)
    @cached_property
    def patience_s(self) -> float:
        if self.departures:
            return percentile(list(self.departures), PATIENCE_QUANTILE)
        return max(PATIENCE_PRIOR_S, self.exposure_s)

    @cached_property
    def size_rates(self) -> tuple[float | None, ...]:
        return tuple(started / waited if waited > 0 else None
                     for started, waited in zip(self.size_started, self.size_waited_s, strict=True))

    def add(self, other: Seen) -> Seen:
        return Seen(self.local_started + other.local_started, self.local_waited_s + other.local_waited_s,
                    self.overflow_work + other.overflow_work, self.overflow_value + other.overflow_value,
                    (self.departures + other.departures)[-KEPT_DEPARTURES:],
                    self.exposure_s + other.exposure_s,
                    _plus(self.size_started, other.size_started), _plus(self.size_waited_s, other.size_waited_s))


_NOTHING = Seen()


@dataclass(frozen=True)
class Outlook:
    """What the queue has taught: `learned` (decayed, as of `learned_at`) is what the estimates read;
    `pending` gathers what was seen since."""

    learned: Seen = _NOTHING
    learned_at: float | None = None
    pending: Seen = _NOTHING
    at: float | None = None  # the last tick
    placed_local: frozenset[int] = frozenset()  # jobs the last tick placed on local pools
    sizes_waiting: int = 0  # the size classes of jobs left waiting for local GPUs at the last tick (bits)

    @property
    def local_waiting(self) -> bool:
        """Did jobs wait for local GPUs at the last tick."""
        return self.sizes_waiting != 0

    # --- estimates ---------------------------------------------------------------------------------

    @property
    def patience_s(self) -> float:
        """How long a queued job can be expected to wait before another provider takes it."""
        return self.learned.patience_s

    @property
    def patience_observed(self) -> bool:
        """The estimate comes from consumers seen leaving (else it is a floor: nobody left yet)."""
        return bool(self.learned.departures)

    @property
    def local_rate(self) -> float | None:
        """GPUs the local pools start per second while jobs wait for them; None until measured (jobs waited and
        some started)."""
        if self.learned.local_waited_s <= 0 or self.learned.local_started <= 0:
            return None
        return self.learned.local_started / self.learned.local_waited_s

    @property
    def size_rates(self) -> tuple[float | None, ...]:
        """Per size class, GPUs of that class the local pools start per second while such jobs wait: None
        until jobs of the class have waited, 0 when they waited and none started."""
        return self.learned.size_rates

    @property
    def overflow_gpus(self) -> float:
        """GPUs the overflow keeps busy on average (work per second)."""
        return self.learned.overflow_work / MEMORY_S

    @property
    def overflow_price(self) -> float:
        """Planck per GPU-second the overflow offers on average (0: none seen)."""
        work = self.learned.overflow_work
        return self.learned.overflow_value / work if work > 0 else 0.0

    def local_start_in(self, gpus_ahead: float) -> float:
        """Seconds until local GPUs reach a job with `gpus_ahead` GPUs of waiting work ahead of it."""
        rate = self.local_rate
        if gpus_ahead <= 0:
            return 0.0
        return math.inf if rate is None else gpus_ahead / rate

    @property
    def has_pending(self) -> bool:
        """Observations wait to be learned."""
        return self.pending != _NOTHING

    def next_learning(self, now: float) -> float:
        """The next instant the estimates move."""
        return (math.floor(now / LEARN_EVERY_S + 1e-9) + 1) * LEARN_EVERY_S

    # --- learning ----------------------------------------------------------------------------------

    def observe(self, snapshot: Snapshot, local_now: Mapping[int, float], sizes_waiting: int,
                new_overflow: Iterable[QueuedJob]) -> Outlook:
        """The outlook after a tick: `snapshot` is what it saw; of its plan, `local_now` are the jobs it
        placed on local pools (job → GPUs), `sizes_waiting` the size classes of the jobs left waiting for
        local GPUs (bits; 0: none), `new_overflow` the jobs that arrived since the last tick and that it
        judged the local pools would not reach in time.

        Each job counts once: overflow when first seen (on arrival), a local start when first placed
        there (a live head may place the same job on two ticks before it runs)."""
        now = snapshot.now
        base = self.current(now)  # learn first (nothing to do when placement already did)
        dt = 0.0 if base.at is None else max(0.0, now - base.at)
        # local reach: GPUs started locally after a tick that left jobs waiting (the pools were full, so
        # whatever started was freed meanwhile), over the time jobs waited
        started = 0.0
        by_size = [0.0] * SIZES
        for job_id, g in local_now.items():
            if job_id not in base.placed_local:
                started += g
                by_size[size_class(g)] += g
        waited = base.sizes_waiting
        size_started = tuple(x if waited >> k & 1 else 0.0 for k, x in enumerate(by_size)) if waited else _ZEROS
        size_waited = tuple(dt if waited >> k & 1 else 0.0 for k in range(SIZES)) if waited else _ZEROS
        new_work = new_value = 0.0
        for job in new_overflow:
            work = job.work
            new_work += work
            new_value += work * job.price_per_gpu_s
        seen = Seen(local_started=started if base.local_waiting else 0.0,
                    local_waited_s=dt if base.local_waiting else 0.0,
                    overflow_work=new_work, overflow_value=new_value,
                    departures=tuple(d.waited_s for d in snapshot.departed),
                    exposure_s=len(snapshot.queue) * dt, size_started=size_started, size_waited_s=size_waited)
        return Outlook(base.learned, base.learned_at, base.pending.add(seen), now, frozenset(local_now), sizes_waiting)

    def current(self, now: float) -> Outlook:
        """The outlook a tick at `now` decides with: at or past a learning instant, what was seen before it
        is learned first. Placement and learning both start here, so a tick at an instant places with the
        new estimates, whether it is one of a live head's every second or one of a simulator's."""
        if self.learned_at is not None and now < self.next_learning(self.learned_at) - 1e-9:
            return self
        return self._fold(math.floor(now / LEARN_EVERY_S + 1e-9) * LEARN_EVERY_S)

    def _fold(self, at: float) -> Outlook:
        """The estimates move to `at`: the decayed totals plus what was seen since."""
        dt = 0.0 if self.learned_at is None else max(0.0, at - self.learned_at)
        decay = math.exp(-dt / MEMORY_S)
        old, new = self.learned, self.pending
        learned = Seen(old.local_started * decay + new.local_started, old.local_waited_s * decay + new.local_waited_s,
                       old.overflow_work * decay + new.overflow_work, old.overflow_value * decay + new.overflow_value,
                       (old.departures + new.departures)[-KEPT_DEPARTURES:],
                       old.exposure_s + new.exposure_s, _plus(old.size_started, new.size_started, decay),
                       _plus(old.size_waited_s, new.size_waited_s, decay))
        return Outlook(learned, at, _NOTHING, self.at, self.placed_local, self.sizes_waiting)
