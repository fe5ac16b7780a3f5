"""Specification of what the head learns from the queue it watches (scaling.outlook) and how the profit
placement reads it: patience from consumers seen leaving, local reach overall and per job size, the
estimates moving only at fixed instants."""

from __future__ import annotations

import math
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from etrid_ray.scaling.outlook import LEARN_EVERY_S, PATIENCE_PRIOR_S, Outlook, Seen
from etrid_ray.scaling.placement import split_overflow
from etrid_ray.scaling.state import Departure, size_class
from tests.scaling_support import job, snapshot

BUSY_LOCAL = {"local_gpu": {"busy": 4}}  # the one local node (4 GPUs) full


def test_size_classes_group_jobs_by_the_gpus_that_must_free_at_once():
    assert [size_class(g) for g in (0, 0.5, 1, 2, 3, 4, 5, 8, 9, 16, 64)] == [0, 0, 0, 1, 2, 2, 3, 3, 4, 4, 4]


def test_patience_starts_at_the_prior_grows_while_nobody_leaves_and_then_is_the_lower_quartile_of_departures():
    o = Outlook()
    assert o.patience_s == PATIENCE_PRIOR_S and not o.patience_observed
    queue = [job(i) for i in range(10)]
    t = 0.0
    for _ in range(4):  # ten jobs wait for 4 × 300 s: 12,000 job-seconds and nobody left
        o = o.observe(snapshot(now=t, queue=queue), {}, 0, ())
        t += LEARN_EVERY_S
    o = o.current(t)
    assert o.patience_s >= 10 * 3 * LEARN_EVERY_S > PATIENCE_PRIOR_S and not o.patience_observed
    gone = tuple(Departure.of(job(100 + k, waiting_since=0.0), w) for k, w in enumerate((600, 1200, 1800, 2400, 3000)))
    seen_leaving = replace(snapshot(now=t + 1, queue=queue), departed=gone)
    o = o.observe(seen_leaving, {}, 0, ()).current(t + LEARN_EVERY_S)
    assert o.patience_observed and o.patience_s == 1200


def learn_reach(starts: list[tuple[int, float]], waiting_sizes: int, seconds: float = 2 * LEARN_EVERY_S,
                departed: tuple[Departure, ...] = ()) -> Outlook:
    """An outlook that watched jobs of `waiting_sizes` (size-class bits) wait for local GPUs for `seconds`
    while the jobs `starts` (id, GPUs) started locally (and `departed` left)."""
    o = Outlook().observe(snapshot(now=0.0), {}, waiting_sizes, ())
    o = o.observe(replace(snapshot(now=seconds / 2), departed=departed), dict(starts), waiting_sizes, ())
    return o.observe(snapshot(now=seconds), dict(starts), waiting_sizes, ()).current(seconds + LEARN_EVERY_S)


def test_local_reach_is_measured_only_while_jobs_wait_for_it():
    assert Outlook().local_rate is None
    quiet = learn_reach([(1, 4.0)], waiting_sizes=0)  # a job started but nothing waited: says nothing of speed
    assert quiet.local_rate is None
    busy = learn_reach([(1, 4.0), (2, 2.0)], waiting_sizes=1 << size_class(1))
    # 6 GPUs started over the time jobs waited (decayed)
    assert busy.local_rate is not None and 0 < busy.local_rate <= 6.0 / LEARN_EVERY_S


def test_a_size_that_waited_while_only_smaller_jobs_started_is_never_reached():
    """Eight 1-GPU jobs started while 1-GPU and 4-GPU jobs waited: GPUs free, but one at a time, and the small
    jobs take them. The 4-GPU class has waited and started nothing: its reach is nil, not the GPUs' rate."""
    o = learn_reach([(k, 1.0) for k in range(8)], waiting_sizes=1 << size_class(1) | 1 << size_class(4))
    rates = o.size_rates
    assert rates[size_class(1)] == o.local_rate > 0
    assert rates[size_class(4)] == 0.0
    assert rates[size_class(8)] is None  # never waited: unknown, the overall rate stands


WAITS = 1 << size_class(1) | 1 << size_class(4)  # 1-GPU and 4-GPU jobs waited


def test_once_consumers_leave_a_starved_size_is_overflow_and_the_small_jobs_behind_it_stay_for_local():
    left = tuple(Departure.of(job(100 + k), 3600.0) for k in range(4))  # consumers leave after an hour
    o = learn_reach([(k, 1.0) for k in range(8)], waiting_sizes=WAITS, departed=left)
    assert o.patience_observed and o.patience_s == 3600.0
    now = o.learned_at + 1.0
    big, small = job(10, gpus=4, waiting_since=now), job(11, gpus=1, waiting_since=now)
    split = split_overflow([big, small], snapshot(now=now, queue=[big, small], **BUSY_LOCAL), o)
    assert [j.job_id for j in split.overflow] == [10]
    assert [j.job_id for j, _ in split.soon] == [11]
    assert split.waiting_sizes == WAITS
    # without the per-size measure the 4-GPU job would have looked 5 GPUs of work from a start
    assert o.local_start_in(5) < o.patience_s


def test_before_anyone_has_left_a_slow_size_waits_for_local():
    """Nobody seen leaving: waiting has lost nobody, and bursting for a job the local GPUs serve later earns
    nothing — with consumers who wait forever the policy must never burst for it."""
    o = learn_reach([(k, 1.0) for k in range(8)], waiting_sizes=WAITS)
    assert not o.patience_observed
    now = o.learned_at + 1.0
    big = job(10, gpus=4, waiting_since=now)
    split = split_overflow([big], snapshot(now=now, queue=[big], **BUSY_LOCAL), o)
    assert split.overflow == [] and [j.job_id for j, _ in split.soon] == [10]


def test_until_its_gpus_have_started_waiting_jobs_the_head_cannot_count_on_them():
    """A spike on a full cluster may burst on its first tick (target P3): no job is held for local GPUs whose
    speed was never seen."""
    o = Outlook().current(0.0)
    assert o.local_rate is None
    jobs = [job(i, gpus=4, waiting_since=0.0) for i in range(3)]
    split = split_overflow(jobs, snapshot(now=10.0, queue=jobs, **BUSY_LOCAL), o)
    assert len(split.overflow) == 3 and split.soon == []


def test_estimates_move_only_at_learning_instants_and_a_tick_there_decides_with_the_new_ones():
    o = Outlook().observe(snapshot(now=0.0), {}, 1, ())
    o = o.observe(snapshot(now=10.0), {1: 1.0}, 1, ())
    assert o.local_rate is None and o.has_pending  # seen, not yet learned
    assert o.current(LEARN_EVERY_S - 1) is o  # between instants nothing moves
    learned = o.current(LEARN_EVERY_S)  # what a tick at the instant places with
    assert not learned.has_pending and learned.local_rate is not None and math.isfinite(learned.local_rate)
    after = o.observe(snapshot(now=LEARN_EVERY_S), {1: 1.0}, 1, ())
    assert after.learned == learned.learned  # observing at the instant learns the same, then gathers anew


def reference_split(waiting, now, outlook, local_ok):
    """split_overflow's rule, one job at a time with nothing skipped: the specification the fast paths keep."""
    rate, patience, observed = outlook.local_rate, outlook.patience_s, outlook.patience_observed
    ahead, ahead_size, overflow, soon, sizes = 0.0, [0.0] * 5, [], [], 0
    for j in waiting:
        if local_ok(j):
            c = size_class(j.gpus)
            sizes |= 1 << c
            ahead += j.gpus
            ahead_size[c] += j.gpus
            if rate is not None:
                start_in = ahead / rate
                size_rate = outlook.size_rates[c] if observed else None
                if size_rate is not None:
                    start_in = max(start_in, ahead_size[c] / size_rate if size_rate > 0 else math.inf)
                if j.claimed or now - j.waiting_since + start_in <= patience:
                    soon.append(j.job_id)
                    continue
        overflow.append(j.job_id)
    return overflow, soon, sizes


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.5, 1, 2, 4, 8]), st.booleans(), st.floats(0, 7200)), max_size=40),
       st.floats(1e-5, 0.05), st.lists(st.floats(0, 0.02), min_size=5, max_size=5), st.booleans(),
       st.sampled_from([600.0, 3600.0]))
def test_the_split_is_the_one_job_at_a_time_rule(rows, rate, size_rates, observed, patience):
    now = 7200.0
    waiting = [job(i, gpus=g, waiting_since=w, claimed=c) for i, (g, c, w) in enumerate(rows)]
    learned = Seen(local_started=rate * 1000, local_waited_s=1000.0,
                   departures=(patience,) * 4 if observed else (), exposure_s=0.0 if observed else patience,
                   size_started=tuple(r * 1000 for r in size_rates), size_waited_s=(1000.0,) * 5)
    outlook = Outlook(learned=learned, learned_at=now, at=now)
    snap = snapshot(now=now, queue=waiting, **BUSY_LOCAL)
    split = split_overflow(waiting, snap, outlook)
    local = snap.fits.local
    overflow, soon, sizes = reference_split(waiting, now, outlook, lambda j: snap.fits.mask(j) & local)
    assert [j.job_id for j in split.overflow] == overflow
    assert [j.job_id for j, _ in split.soon] == soon
    assert split.waiting_sizes == sizes
