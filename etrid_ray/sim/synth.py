"""Seeded synthetic GPU job traces: workloads the profit policy was never tuned on.

One trace is three independent choices — when jobs arrive, how long they run, how many GPUs they
take — each a frozen dataclass of parameters, combined in a named `SynthFamily` and drawn by
`generate(family, seed)`, deterministic per seed (NumPy's PCG64). The arrival rate is not a
parameter: it is derived from the family's `mean_demand_gpus` by Little's law (rate = demand /
(mean duration × mean GPUs)), so a family states the load it puts on a cluster rather than a number
of users. That is the *long-run* load: a heavy-tailed trace of a few thousand jobs ramps up for days
while its long jobs pile up, so its realised mean over the arrival window is lower (about two thirds
for `HEAVY_TAIL` over ~8 days). `etrid_ray.sim.demand.rescale` hits a target exactly where that
matters; the suite sizes clusters by each trace's realised median anyway. Times count from the
trace's start (t = 0, a Monday 00:00), not from its first job, so a diurnal trace keeps its clock
and a flood keeps its quiet day.

Why these shapes. Published GPU-cluster traces — Microsoft's Philly (Jeon et al., ATC '19), SenseTime's
Helios (Hu et al., SC '21) and Alibaba's PAI (Weng et al., NSDI '22) — are described in their papers
with the same broad features: most jobs ask for one GPU, durations span seconds to weeks with a heavy
tail that holds most of the GPU-hours, submissions follow the working day and week, and users submit
sweeps of similar jobs together. The figures below are measured on the Philly trace this package ships
(`philly_trace()`), the one trace we can check; for the other two we rely only on those qualitative
features, not on numbers we cannot reproduce here.

- durations, shipped Philly: median 19 min, p90 3.1 h, p99 2.9 days, p99.9 13.7 days; 84 % of the
  GPU-hours are jobs of a day or longer. `HEAVY_TAIL` (lognormal, median 15 min, σ 2.4: p90 5.4 h,
  p99 2.8 days, capped at 14 days) has that shape; `PARETO_TAIL` (Pareto α 0.8 from 5 min, capped at
  14 days) has a fatter tail still — a power law, where one job can outweigh thousands. `SHORT`
  (lognormal, median 2 min, σ 1.2, 5 s–1 h: p1 7 s, p99 33 min) is the other extreme, debugging runs
  and inference batches: a cloud node's startup (minutes) is then longer than most jobs, so bursting
  must be worth a queue, not a job.
- GPU counts, shipped Philly: 93 % of jobs take 1 GPU, 2 % each 2, 4 and 8, 0.3 % more than 8.
  `MOSTLY_ONE` (80 % 1 GPU, 8 % 2, 7 % 4, 5 % 8) is a little less extreme; `EIGHT_HEAVY` (half the jobs
  take a whole 8-GPU node) is a training shop of large models, where packing is trivial and a burst
  node is either fully used or not at all.
- arrivals, shipped Philly: over the whole trace Saturdays and Sundays got 7.2k and 7.0k submissions,
  weekdays 10.1k–17.0k (mean 13.6k): a weekend day about half a weekday; by hour of day (UTC as
  stored) the busiest hour got 3.3× the quietest; after its first two weeks (a few jobs) its weeks
  range from 0.7k to 14.7k jobs. Hence `PoissonArrivals` (the memoryless
  baseline), `DiurnalArrivals` (sinusoidal day/night rate, peak/trough 3, weekend days at half rate),
  `BurstyArrivals` (a Markov-modulated Poisson process — calm and burst states with exponential
  sojourns — whose events are batches of same-shaped jobs, as sweeps are submitted) and
  `FloodArrivals` (a day of nothing, then a flood: what a new customer or a deadline does; it tests a
  policy whose learnt state has gone stale, starting from no nodes at all).

Job counts are a few thousand by default, so that one scenario of every policy runs in seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from etrid_ray.sim.trace import SimJob, Trace

DAY_S = 86400.0
WEEK_S = 7 * DAY_S


def _phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


# --- durations -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LognormalDurations:
    """Run times exp(N(ln median, σ²)), clipped to [min_s, max_s]."""

    median_s: float
    sigma: float
    min_s: float
    max_s: float

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.clip(rng.lognormal(math.log(self.median_s), self.sigma, n), self.min_s, self.max_s)

    def mean_s(self) -> float:
        """The clipped distribution's mean (closed form)."""
        mu, s = math.log(self.median_s), self.sigma
        lo, hi = (math.log(self.min_s) - mu) / s, (math.log(self.max_s) - mu) / s
        body = math.exp(mu + s * s / 2) * (_phi(hi - s) - _phi(lo - s))
        return self.min_s * _phi(lo) + body + self.max_s * (1 - _phi(hi))

    def quantile_s(self, q: float) -> float:
        from statistics import NormalDist

        return min(self.max_s, max(self.min_s, self.median_s * math.exp(self.sigma * NormalDist().inv_cdf(q))))


@dataclass(frozen=True)
class ParetoDurations:
    """Run times from a Pareto law P(X > x) = (min_s / x)^α for x ≥ min_s, clipped at max_s (α ≤ 1 has no
    mean unclipped: the cap is what keeps a trace finite)."""

    min_s: float
    alpha: float
    max_s: float

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.minimum(self.min_s * (1 + rng.pareto(self.alpha, n)), self.max_s)

    def mean_s(self) -> float:
        a, xm, b = self.alpha, self.min_s, self.max_s
        body = a * xm * math.log(b / xm) if a == 1 else a * xm / (a - 1) * (1 - (xm / b) ** (a - 1))
        return body + b * (xm / b) ** a

    def quantile_s(self, q: float) -> float:
        return min(self.max_s, self.min_s * (1 - q) ** (-1 / self.alpha))


Durations = LognormalDurations | ParetoDurations

HEAVY_TAIL = LognormalDurations(median_s=15 * 60, sigma=2.4, min_s=10, max_s=14 * DAY_S)
PARETO_TAIL = ParetoDurations(min_s=5 * 60, alpha=0.8, max_s=14 * DAY_S)
SHORT = LognormalDurations(median_s=120, sigma=1.2, min_s=5, max_s=3600)


# --- GPU counts ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GpuMix:
    """GPUs per job: `sizes[i]` with probability `weights[i]`."""

    sizes: tuple[int, ...]
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.sizes) != len(self.weights) or abs(sum(self.weights) - 1) > 1e-9:
            raise ValueError("GpuMix: one weight per size, summing to 1")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.choice(np.asarray(self.sizes, dtype=float), size=n, p=np.asarray(self.weights))

    def mean(self) -> float:
        return sum(s * w for s, w in zip(self.sizes, self.weights, strict=True))


MOSTLY_ONE = GpuMix((1, 2, 4, 8), (0.80, 0.08, 0.07, 0.05))
EIGHT_HEAVY = GpuMix((1, 2, 4, 8), (0.25, 0.10, 0.15, 0.50))


# --- arrivals --------------------------------------------------------------------------------------
# Each process draws `n` arrival times (sorted, seconds) at a long-run mean of `rate` jobs per second,
# and a batch label per job: jobs with one label were submitted together and share a GPU count.

Arrivals = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class PoissonArrivals:
    """Independent arrivals at a constant rate: the memoryless baseline."""

    def draw(self, rng: np.random.Generator, n: int, rate: float) -> Arrivals:
        return np.cumsum(rng.exponential(1 / rate, n)), np.arange(n)


@dataclass(frozen=True)
class DiurnalArrivals:
    """A sinusoidal day (busiest at `peak_hour`, `peak_to_trough` times the quietest hour's rate) and, from
    day 5 of each week (the trace starts on a Monday at 00:00), weekend days at `weekend_factor` of a
    weekday's rate. Drawn by thinning a Poisson process at the peak rate."""

    peak_to_trough: float = 3.0
    peak_hour: float = 14.0
    weekend_factor: float = 0.5

    def intensity(self, t: np.ndarray) -> np.ndarray:
        """The relative rate at times t (mean 1 over a whole week)."""
        amp = (self.peak_to_trough - 1) / (self.peak_to_trough + 1)
        day = 1 + amp * np.cos(2 * np.pi * ((t % DAY_S) / 3600 - self.peak_hour) / 24)
        weekend = (t % WEEK_S) >= 5 * DAY_S
        week = np.where(weekend, self.weekend_factor, 1.0)
        return day * week / ((5 + 2 * self.weekend_factor) / 7)

    def draw(self, rng: np.random.Generator, n: int, rate: float) -> Arrivals:
        amp = (self.peak_to_trough - 1) / (self.peak_to_trough + 1)
        top = (1 + amp) * max(1.0, self.weekend_factor) / ((5 + 2 * self.weekend_factor) / 7)
        out: list[np.ndarray] = []
        t, have = 0.0, 0
        while have < n:
            chunk = max(1024, 2 * (n - have))
            cand = t + np.cumsum(rng.exponential(1 / (rate * top), chunk))
            keep = cand[rng.random(chunk) * top < self.intensity(cand)]
            out.append(keep)
            have += len(keep)
            t = float(cand[-1])
        return np.concatenate(out)[:n], np.arange(n)


@dataclass(frozen=True)
class BurstyArrivals:
    """A two-state Markov-modulated Poisson process: calm and burst states with exponential sojourns
    (means `mean_calm_s`, `mean_burst_s`); in a burst, submissions come `burst_x` times as often. Each
    submission is a batch of jobs (geometric size, mean `mean_batch`) arriving together — a sweep."""

    burst_x: float = 10.0
    mean_calm_s: float = 12 * 3600.0
    mean_burst_s: float = 3600.0
    mean_batch: float = 4.0

    def draw(self, rng: np.random.Generator, n: int, rate: float) -> Arrivals:
        p_burst = self.mean_burst_s / (self.mean_burst_s + self.mean_calm_s)
        calm = rate / self.mean_batch / (1 - p_burst + p_burst * self.burst_x)  # submissions per second
        times: list[float] = []
        sizes: list[int] = []
        t, burst, have = 0.0, False, 0
        while have < n:
            stay = rng.exponential(self.mean_burst_s if burst else self.mean_calm_s)
            r = calm * (self.burst_x if burst else 1.0)
            k = rng.poisson(r * stay)
            for at in np.sort(t + rng.random(k) * stay):
                size = int(rng.geometric(1 / self.mean_batch))
                times.append(float(at))
                sizes.append(size)
                have += size
            t += stay
            burst = not burst
        label = np.repeat(np.arange(len(sizes)), sizes)[:n]
        return np.repeat(np.asarray(times), sizes)[:n], label


@dataclass(frozen=True)
class FloodArrivals:
    """Nothing for `quiet_s`, then a flood at `flood_x` times the base rate for `flood_s`, then Poisson at
    the base rate. The flood's jobs arrive uniformly over it (a Poisson process given its count)."""

    quiet_s: float = DAY_S
    flood_x: float = 20.0
    flood_s: float = 2 * 3600.0

    def draw(self, rng: np.random.Generator, n: int, rate: float) -> Arrivals:
        flood = min(n, round(rate * self.flood_x * self.flood_s))
        burst = self.quiet_s + np.sort(rng.random(flood)) * self.flood_s
        after = self.quiet_s + self.flood_s + np.cumsum(rng.exponential(1 / rate, n - flood))
        return np.concatenate([burst, after]), np.arange(n)


ArrivalProcess = PoissonArrivals | DiurnalArrivals | BurstyArrivals | FloodArrivals


# --- families --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SynthFamily:
    """A named workload: arrivals × durations × GPU mix, at `mean_demand_gpus` of load, `jobs` jobs long."""

    name: str
    arrivals: ArrivalProcess
    durations: Durations
    gpus: GpuMix
    jobs: int = 3000
    mean_demand_gpus: float = 96.0
    why: str = field(default="", compare=False)

    def rate_per_s(self) -> float:
        """Jobs per second that put `mean_demand_gpus` GPUs to work on average (Little's law)."""
        return self.mean_demand_gpus / (self.durations.mean_s() * self.gpus.mean())


FAMILIES: dict[str, SynthFamily] = {f.name: f for f in (
    SynthFamily("poisson-heavy", PoissonArrivals(), HEAVY_TAIL, MOSTLY_ONE,
                why="the memoryless baseline with Philly-like durations and GPU counts"),
    SynthFamily("bursty-heavy", BurstyArrivals(), HEAVY_TAIL, MOSTLY_ONE,
                why="sweeps submitted in batches, in bursts: demand jumps faster than nodes start"),
    SynthFamily("diurnal-heavy", DiurnalArrivals(), HEAVY_TAIL, MOSTLY_ONE,
                why="working days and weekends: capacity bought at the peak idles at night"),
    SynthFamily("flood-heavy", FloodArrivals(), HEAVY_TAIL, MOSTLY_ONE,
                why="a day of nothing then a flood: no nodes, stale state, then everything at once"),
    SynthFamily("short-diurnal", DiurnalArrivals(), SHORT, MOSTLY_ONE, jobs=10_000, mean_demand_gpus=32.0,
                why="many jobs of seconds to minutes: a node's startup outlasts most of them"),
    SynthFamily("pareto-8gpu", PoissonArrivals(), PARETO_TAIL, EIGHT_HEAVY, jobs=2000,
                why="large-model training: whole-node jobs, power-law run times"),
)}


def generate(family: SynthFamily | str, seed: int = 0, jobs: int | None = None) -> Trace:
    """`jobs` (default: the family's) jobs of `family`, drawn from `seed`: the same seed gives the same trace.

    Arrivals, durations and GPU counts are drawn from separate child streams of the seed, so changing
    one family's arrival process leaves its durations as they were."""
    fam = FAMILIES[family] if isinstance(family, str) else family
    n = fam.jobs if jobs is None else jobs
    if n <= 0:
        return Trace((), (), f"synthetic {fam.name} seed {seed}", True)
    arrive_rng, dur_rng, gpu_rng = (np.random.Generator(np.random.PCG64(s))
                                    for s in np.random.SeedSequence(seed).spawn(3))
    times, batch = fam.arrivals.draw(arrive_rng, n, fam.rate_per_s())
    durations = fam.durations.sample(dur_rng, n)
    per_batch = fam.gpus.sample(gpu_rng, int(batch.max()) + 1)
    gpus = per_batch[batch]
    order = np.argsort(times, kind="stable")
    jobs_ = tuple(SimJob(i, float(times[k]), float(durations[k]), float(gpus[k])) for i, k in enumerate(order))
    return Trace(jobs_, (), f"synthetic {fam.name} seed {seed}", True)
