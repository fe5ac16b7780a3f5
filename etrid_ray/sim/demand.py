"""What a trace asks of a cluster, and the two ways the scenario suite reshapes a trace.

- `concurrent_demand`: GPUs busy over time *had every job started on arrival* — the demand an
  infinitely large provider would see. It is the yardstick the suite sizes local capacity by
  ("0.5× the median demand"), so that one rule fits a 100-day production trace and a 10-day
  synthetic one alike.
- `demand_stats`: its time-weighted median, mean and percentiles **over the arrival window**
  (first to last submission). Why that window and not up to the last job's end: a heavy-tailed
  trace ends with a few week-long jobs running alone; counting that tail would pull the median
  towards zero and say nothing about the period the policies are actually tested on.
- `rescale`: stretch or compress the arrival times by one factor so the mean demand hits a target.
  Durations and GPU counts are kept — they are the workload's character (how long a training
  run takes does not depend on how many users submit them); only the arrival rate changes, as it
  would with more or fewer users. A side effect, said plainly: periodic patterns stretch too (a
  diurnal trace rescaled by 2 has a 48 h "day").
- `split_in_time`: the first and second part of a trace by submission time, the second re-based to
  start at 0, so a policy can be tuned on one and reported on the other. Jobs are split by when
  they arrive; a first-part job keeps its full duration (it may run past the split), and the second
  part starts on an empty cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from etrid_ray.sim.trace import SimJob, Trace


@dataclass(frozen=True)
class DemandCurve:
    """A step function: `gpus[i]` GPUs busy from `times[i]` until `times[i + 1]` (0 after the last)."""

    times: np.ndarray
    gpus: np.ndarray

    def __post_init__(self) -> None:
        self.times.setflags(write=False)
        self.gpus.setflags(write=False)


@dataclass(frozen=True)
class DemandStats:
    """Time-weighted statistics of concurrent GPU demand over [start_s, end_s]."""

    median: float
    mean: float
    p90: float
    p99: float
    peak: float
    start_s: float
    end_s: float
    gpu_hours: float  # of all jobs, whole durations


def concurrent_demand(trace: Trace) -> DemandCurve:
    """GPUs busy over time had every job started on arrival and run for its duration."""
    if not trace.jobs:
        return DemandCurve(np.zeros(1), np.zeros(1))
    arr = np.array([(j.submit_s, j.duration_s, j.gpus) for j in trace.jobs], dtype=float)
    times = np.concatenate([arr[:, 0], arr[:, 0] + arr[:, 1]])
    deltas = np.concatenate([arr[:, 2], -arr[:, 2]])
    order = np.argsort(times, kind="stable")
    times, level = times[order], np.cumsum(deltas[order])
    last = np.r_[times[1:] != times[:-1], True]  # several events at one instant: keep the level after all
    times, level = times[last], np.maximum(level[last], 0.0)  # clamp float dust at the end
    return DemandCurve(times, level)


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    if weights.sum() <= 0:
        return float(values.max()) if len(values) else 0.0
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    i = int(np.searchsorted(cum, q * cum[-1], side="left"))
    return float(values[order][min(i, len(order) - 1)])


def arrival_window(trace: Trace) -> tuple[float, float]:
    """First to last submission; a trace whose jobs all arrive at once uses its last job's end."""
    if not trace.jobs:
        return 0.0, 0.0
    start = min(j.submit_s for j in trace.jobs)
    end = max(j.submit_s for j in trace.jobs)
    if end <= start:
        end = max(j.submit_s + j.duration_s for j in trace.jobs)
    return start, end


def demand_stats(trace: Trace, window: tuple[float, float] | None = None) -> DemandStats:
    """Median, mean, p90, p99 and peak of `concurrent_demand` over `window` (default: the arrival window)."""
    start, end = window if window is not None else arrival_window(trace)
    gpu_h = sum(j.duration_s * j.gpus for j in trace.jobs) / 3600
    if end <= start:
        return DemandStats(0.0, 0.0, 0.0, 0.0, 0.0, start, end, gpu_h)
    curve = concurrent_demand(trace)
    edges = np.clip(np.r_[curve.times, np.inf], start, end)
    spans = np.diff(edges)
    level = curve.gpus
    if start < curve.times[0]:  # nothing busy before the first event
        spans, level = np.r_[curve.times[0] - start, spans], np.r_[0.0, level]
    keep = spans > 0
    spans, level = spans[keep], level[keep]
    return DemandStats(median=_weighted_quantile(level, spans, 0.5), mean=float((level * spans).sum() / (end - start)),
                       p90=_weighted_quantile(level, spans, 0.9), p99=_weighted_quantile(level, spans, 0.99),
                       peak=float(level.max()), start_s=start, end_s=end, gpu_hours=gpu_h)


def _with_times(trace: Trace, jobs: list[SimJob], source: str) -> Trace:
    return Trace(tuple(jobs), (), source, True)


def scale_arrivals(trace: Trace, factor: float) -> Trace:
    """The trace with every arrival time multiplied by `factor` (durations and GPUs kept)."""
    if factor <= 0:
        raise ValueError("factor must be > 0")
    jobs = [SimJob(j.job_id, j.submit_s * factor, j.duration_s, j.gpus) for j in trace.jobs]
    return _with_times(trace, jobs, f"{trace.source} (arrivals ×{factor:.4g})")


def rescale(trace: Trace, target_mean_demand_gpus: float, tolerance: float = 0.005, rounds: int = 30) -> Trace:
    """Scale arrival times by one factor so the mean concurrent demand (over the arrival window) is
    `target_mean_demand_gpus`, within `tolerance` (relative) where the trace allows it.

    Mean demand over a window of length S is roughly total work / S, so the factor is found by
    repeated multiplicative correction (k ← k·mean/target) — not exactly inverse-proportional,
    since jobs running past the window's end count only in part."""
    if target_mean_demand_gpus <= 0:
        raise ValueError("target_mean_demand_gpus must be > 0")
    if not trace.jobs or max(j.submit_s for j in trace.jobs) <= min(j.submit_s for j in trace.jobs):
        return trace  # no arrival span to stretch
    factor = 1.0
    out = trace
    for _ in range(rounds):
        mean = demand_stats(out).mean
        if mean <= 0 or abs(mean / target_mean_demand_gpus - 1) <= tolerance:
            break
        factor *= mean / target_mean_demand_gpus
        out = scale_arrivals(trace, factor)
    return Trace(out.jobs, (), f"{trace.source} (rescaled to mean demand {target_mean_demand_gpus:g} GPUs)", True)


def split_in_time(trace: Trace, at: float = 0.5) -> tuple[Trace, Trace]:
    """(first, second): jobs submitted before `at` of the arrival window, and the rest re-based to start at 0.

    `at` is a fraction of time, not of jobs: "tune on the first weeks, report on the later ones" is
    how a provider would use its own history. Job ids are renumbered from 0 in each part."""
    if not 0 < at < 1:
        raise ValueError("at must be strictly between 0 and 1")
    start, end = arrival_window(trace)
    cut = start + at * (end - start)
    first = [j for j in trace.jobs if j.submit_s < cut]
    rest = [j for j in trace.jobs if j.submit_s >= cut]
    t0 = rest[0].submit_s if rest else 0.0
    a = [SimJob(i, j.submit_s, j.duration_s, j.gpus) for i, j in enumerate(first)]
    b = [SimJob(i, j.submit_s - t0, j.duration_s, j.gpus) for i, j in enumerate(rest)]
    return (_with_times(trace, a, f"{trace.source} (before {at:.0%})"),
            _with_times(trace, b, f"{trace.source} (from {at:.0%}, re-based)"))


def window(trace: Trace, start_s: float, end_s: float, label: str = "") -> Trace:
    """Jobs submitted in [start_s, end_s), re-based to start at 0 and renumbered (whole durations kept)."""
    sel = [j for j in trace.jobs if start_s <= j.submit_s < end_s]
    t0 = sel[0].submit_s if sel else 0.0
    jobs = [SimJob(i, j.submit_s - t0, j.duration_s, j.gpus) for i, j in enumerate(sel)]
    return _with_times(trace, jobs, label or f"{trace.source} [{start_s:g} s, {end_s:g} s)")


def jobs_up_to(trace: Trace, gpus: float) -> Trace:
    """Only the jobs of at most `gpus` GPUs (ids kept): the demand a provider whose nodes have `gpus` GPUs
    can serve at all — the simulator skips larger jobs, so sizing capacity by them would mislead."""
    return Trace(tuple(j for j in trace.jobs if j.gpus <= gpus), (), f"{trace.source} (jobs ≤ {gpus:g} GPUs)", True)
