"""Specification of the synthetic traces (etrid_ray/sim/synth.py), the demand utilities (demand.py) and the
scenario suite (suite.py): each family has the shape it claims, the utilities do what their names say,
and a suite run condenses into the figures targets E1–E3 are judged by."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import partial

import numpy as np
import pytest

from etrid_ray.sim.demand import (
    arrival_window,
    concurrent_demand,
    demand_stats,
    jobs_up_to,
    rescale,
    split_in_time,
    window,
)
from etrid_ray.sim.run import POLICY_NAMES
from etrid_ray.sim.scenario import build_scenario
from etrid_ray.sim.suite import (
    BASELINES,
    PHILLY_WINDOW_DAYS,
    SuiteScenario,
    local_gpus_for,
    markdown_table,
    patience_label,
    philly_window,
    run_suite,
    select,
    suite,
    summarize,
    summary_lines,
)
from etrid_ray.sim.synth import (
    DAY_S,
    EIGHT_HEAVY,
    FAMILIES,
    HEAVY_TAIL,
    MOSTLY_ONE,
    PARETO_TAIL,
    SHORT,
    DiurnalArrivals,
    PoissonArrivals,
    SynthFamily,
    generate,
)
from etrid_ray.sim.trace import SimJob, Trace, philly_trace


def arrays(trace: Trace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = np.array([(j.submit_s, j.duration_s, j.gpus) for j in trace.jobs])
    return a[:, 0], a[:, 1], a[:, 2]


def trace_of(*specs: tuple[float, float, float]) -> Trace:
    return Trace(tuple(SimJob(i, t, d, g) for i, (t, d, g) in enumerate(specs)))


# --- the generator ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_each_family_is_deterministic_per_seed_and_differs_across_seeds(name):
    assert generate(name, seed=7) == generate(name, seed=7)
    assert generate(name, seed=7).jobs != generate(name, seed=8).jobs


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_each_family_is_a_valid_sorted_trace_of_its_size(name):
    fam = FAMILIES[name]
    tr = generate(name, seed=1)
    t, d, g = arrays(tr)
    assert len(tr) == fam.jobs and [j.job_id for j in tr.jobs] == list(range(fam.jobs))
    assert np.all(np.diff(t) >= 0) and t[0] >= 0
    assert np.all(d > 0) and set(np.unique(g)) <= set(fam.gpus.sizes)
    assert 1000 <= fam.jobs <= 10_000, "a few thousand jobs: a scenario runs in seconds"


def test_heavy_tails_have_minutes_at_the_median_and_days_in_the_tail():
    for name in ("poisson-heavy", "pareto-8gpu"):
        _, d, _ = arrays(generate(name, seed=3))
        p50, p99 = np.percentile(d, [50, 99])
        assert 60 <= p50 <= 3600, name  # minutes
        assert p99 / p50 >= 50, name
        assert d.max() >= DAY_S, name  # some job runs for days
        assert d.max() <= 14 * DAY_S, name  # capped


def test_short_jobs_are_seconds_to_minutes():
    _, d, _ = arrays(generate("short-diurnal", seed=3))
    assert 30 <= np.median(d) <= 600
    assert d.min() >= SHORT.min_s and d.max() <= 3600
    assert np.percentile(d, 99) <= 3600


@pytest.mark.parametrize("dist", [HEAVY_TAIL, PARETO_TAIL, SHORT])
def test_the_analytic_mean_and_quantiles_match_samples(dist):
    rng = np.random.default_rng(0)
    sample = dist.sample(rng, 400_000)
    assert sample.mean() == pytest.approx(dist.mean_s(), rel=0.05)
    assert np.median(sample) == pytest.approx(dist.quantile_s(0.5), rel=0.02)


def test_mostly_one_gpu_mix_is_at_least_70_percent_single_gpu_jobs():
    _, _, g = arrays(generate("poisson-heavy", seed=2))
    assert np.mean(g == 1) >= 0.70
    assert set(np.unique(g)) == {1, 2, 4, 8}


def test_eight_gpu_heavy_mix_is_many_whole_node_jobs_and_most_of_the_gpus():
    _, _, g = arrays(generate("pareto-8gpu", seed=2))
    assert np.mean(g == 8) >= 0.40
    assert g[g == 8].sum() / g.sum() >= 0.70
    assert EIGHT_HEAVY.mean() >= 3 * MOSTLY_ONE.mean()


def test_diurnal_arrivals_are_busier_by_day_than_by_night_and_on_weekdays_than_weekends():
    fam = SynthFamily("d", DiurnalArrivals(), SHORT, MOSTLY_ONE, jobs=20_000, mean_demand_gpus=8)
    t, _, _ = arrays(generate(fam, seed=4))
    assert t[-1] > 7 * DAY_S  # at least a week
    full_weeks = t < 7 * DAY_S * (t[-1] // (7 * DAY_S))
    t = t[full_weeks]
    hour = (t % DAY_S) / 3600
    weekday = (t % (7 * DAY_S)) < 5 * DAY_S
    day = np.sum(weekday & (hour >= 10) & (hour < 18))
    night = np.sum(weekday & ((hour >= 22) | (hour < 6)))
    assert day > 2 * night
    assert np.sum(weekday) / 5 > 1.5 * np.sum(~weekday) / 2


def test_bursty_arrivals_come_in_batches_of_one_shape_and_vary_more_than_poisson():
    bursty, _, g = arrays(generate("bursty-heavy", seed=5))
    same_instant = np.diff(bursty) == 0
    assert same_instant.mean() > 0.5  # most jobs share their instant with the previous one: sweeps
    assert np.all(g[1:][same_instant] == g[:-1][same_instant])
    poisson, _, _ = arrays(generate("poisson-heavy", seed=5))

    def dispersion(t: np.ndarray) -> float:  # variance / mean of hourly counts: 1 for Poisson
        counts = np.bincount((t // 3600).astype(int))
        return counts.var() / counts.mean()

    assert dispersion(poisson) < 2
    assert dispersion(bursty) > 10


def test_flood_has_an_empty_first_day_then_a_flood():
    fam = FAMILIES["flood-heavy"]
    t, _, _ = arrays(generate(fam, seed=6))
    assert t.min() >= DAY_S
    flood = np.sum(t < DAY_S + fam.arrivals.flood_s)
    after_rate = np.sum(t >= DAY_S + fam.arrivals.flood_s) / (t[-1] - DAY_S - fam.arrivals.flood_s)
    assert flood / fam.arrivals.flood_s > 10 * after_rate
    assert flood >= 0.1 * len(t)


def test_the_arrival_rate_puts_the_stated_load_on_a_cluster():
    """Little's law: short jobs reach their steady state at once, so the realised mean is the stated one."""
    fam = SynthFamily("p", PoissonArrivals(), SHORT, MOSTLY_ONE, jobs=20_000, mean_demand_gpus=20)
    assert demand_stats(generate(fam, seed=1)).mean == pytest.approx(20, rel=0.08)


# --- demand utilities ------------------------------------------------------------------------------

def test_concurrent_demand_is_the_gpus_of_jobs_started_on_arrival():
    tr = trace_of((0, 10, 1), (5, 10, 2), (5, 1, 4), (20, 5, 8))
    curve = concurrent_demand(tr)
    assert list(curve.times) == [0, 5, 6, 10, 15, 20, 25]
    assert list(curve.gpus) == [1, 7, 3, 2, 0, 8, 0]


def test_demand_stats_are_time_weighted_over_the_arrival_window():
    # window [0, 20): 1 GPU for 5 s, 7 for 1 s, 3 for 4 s, 2 for 5 s, 0 for 5 s
    s = demand_stats(trace_of((0, 10, 1), (5, 10, 2), (5, 1, 4), (20, 5, 8)))
    assert (s.start_s, s.end_s) == (0, 20)
    assert s.mean == pytest.approx((5 * 1 + 1 * 7 + 4 * 3 + 5 * 2) / 20)
    assert s.median == 1  # sorted by level: 0 (5 s), 1 (5 s) reach half of 20 s
    assert s.p90 == 3 and s.peak == 7


def test_jobs_up_to_keeps_what_a_node_can_run():
    tr = trace_of((0, 10, 1), (1, 10, 16), (2, 10, 8))
    assert [j.gpus for j in jobs_up_to(tr, 8).jobs] == [1, 8]


@pytest.mark.parametrize("target", [30.0, 150.0])
def test_rescale_hits_the_target_mean_demand_and_keeps_durations_and_sizes(target):
    tr = generate("poisson-heavy", seed=9)
    out = rescale(tr, target)
    assert demand_stats(out).mean == pytest.approx(target, rel=0.03)
    assert [(j.duration_s, j.gpus) for j in out.jobs] == [(j.duration_s, j.gpus) for j in tr.jobs]
    ratios = {round(b.submit_s / a.submit_s, 9) for a, b in zip(tr.jobs, out.jobs, strict=True) if a.submit_s}
    assert len(ratios) == 1  # one factor for every arrival


def test_split_in_time_partitions_the_jobs_and_rebases_the_second_part():
    tr = generate("diurnal-heavy", seed=2)
    first, second = split_in_time(tr, at=0.5)
    assert len(first) + len(second) == len(tr)
    cut = tr.jobs[0].submit_s + 0.5 * (tr.jobs[-1].submit_s - tr.jobs[0].submit_s)
    assert all(j.submit_s < cut for j in first.jobs)
    assert second.jobs[0].submit_s == 0
    t0 = tr.jobs[len(first)].submit_s
    assert t0 >= cut
    assert [(j.submit_s + t0, j.duration_s, j.gpus) for j in second.jobs] == \
        [(j.submit_s, j.duration_s, j.gpus) for j in tr.jobs[len(first):]]
    assert [j.job_id for j in second.jobs] == list(range(len(second)))
    with pytest.raises(ValueError):
        split_in_time(tr, at=1.0)


def test_window_rebases_and_renumbers():
    tr = trace_of((0, 1, 1), (10, 1, 2), (20, 1, 4), (30, 1, 8))
    w = window(tr, 10, 30)
    assert [(j.job_id, j.submit_s, j.gpus) for j in w.jobs] == [(0, 0, 2), (1, 10, 4)]


# --- the suite -------------------------------------------------------------------------------------

def test_local_capacity_is_whole_nodes_of_the_median_demand_at_least_one():
    tr = trace_of(*[(float(t), 100.0, 1) for t in range(0, 1000, 2)])  # 50 GPUs busy most of the window
    assert local_gpus_for(tr, 1.0) == 48
    assert local_gpus_for(tr, 2.0) == 96
    assert local_gpus_for(tr, 0.01) == 8
    assert all(local_gpus_for(tr, x) % 8 == 0 for x in (0.25, 0.5, 0.7, 1.3))


def test_the_report_suite_varies_one_axis_at_a_time_plus_corners_and_covers_every_family():
    names = [s.name for s in suite("report")]
    assert len(names) == len(set(names))
    start, end = PHILLY_WINDOW_DAYS["report"]
    philly = [s for s in suite("report") if s.name.startswith(f"philly-d{start}-{end}/") and s.shortage is None]
    settings = {(s.capacity_x, s.price_per_gpu_hour, s.patience_s) for s in philly}
    assert {x for x, _, _ in settings} == {0.25, 0.5, 1.0, 2.0}
    assert {p for _, p, _ in settings} == {0.6, 1.0, 2.0}
    assert {w for _, _, w in settings} == {None, 900.0, 3600.0, 21600.0}
    assert (1.0, 1.0, 3600.0) in settings and (0.5, 0.6, 3600.0) in settings and (2.0, 2.0, 900.0) in settings
    assert len(settings) < 4 * 3 * 4
    assert any(n.startswith("philly-late-half/") for n in names)
    for fam in FAMILIES:
        assert sum(n.startswith(fam + ".") for n in names) == 2
    assert [s.name for s in select(suite("report"), "/0.25x/")] == [f"philly-d{start}-{end}/0.25x/1.00usd/1h"]
    # capacity shortages (issue 15): the cheapest spot pool short at the defaults, and every spot pool short with
    # on-demand fallbacks at a price on-demand pays at
    short = {s.name: s for s in select(suite("report"), "/short-")}
    assert set(short) == {f"philly-d{start}-{end}/1x/1.00usd/1h/short-aws-spot-a100",
                          f"philly-d{start}-{end}/1x/4.00usd/1h/short-spot+ondemand"}
    aws_only, every = short.values()
    assert aws_only.shortage.pools == ("aws-spot-a100",) and aws_only.ondemand_max_nodes == 0
    assert every.shortage.pools is None and every.ondemand_max_nodes > 0
    tr = philly_window(start, end)
    assert any(not p.spot and p.is_cloud for p in build_scenario(every.settings(tr)).pools)
    assert all(p.spot or not p.is_cloud for p in build_scenario(aws_only.settings(tr)).pools)


def test_tune_and_report_suites_use_disjoint_data():
    report, tune = suite("report"), suite("tune")
    assert not {s.name for s in report} & {s.name for s in tune}
    start, end = arrival_window(philly_trace())
    middle_day = (start + end) / 2 / DAY_S  # where split_in_time cuts it
    assert PHILLY_WINDOW_DAYS["tune"][1] <= middle_day <= PHILLY_WINDOW_DAYS["report"][0]


def test_patience_labels():
    assert [patience_label(w) for w in (None, 900.0, 3600.0, 21600.0, 90.5)] == \
        ["forever", "15m", "1h", "6h", "90.5s"]


def tiny(family: str, seed: int) -> Trace:
    """A small trace (picklable: a worker process can build it)."""
    return generate(family, seed, jobs=120)


TINY = (SuiteScenario("tiny-poisson/0.5x", partial(tiny, "poisson-heavy", 1), capacity_x=0.5),
        SuiteScenario("tiny-8gpu/1x", partial(tiny, "pareto-8gpu", 1), patience_s=None))


def test_a_tiny_suite_run_produces_every_summary_figure():
    seen = []
    run = run_suite(TINY, ("profit", "never-burst", "oracle"), workers=1, progress=lambda o: seen.append(o.name))
    assert seen == [s.name for s in TINY] and run.workers == 1
    for o in run.outcomes:
        assert set(o.policies) == {"profit", "never-burst"}
        assert o.best_baseline == "never-burst"
        assert o.margin_usd == pytest.approx(o.ours.net_profit_usd - o.policies["never-burst"].net_profit_usd)
        assert o.wins == (o.margin_usd >= -1e-6)
        assert o.oracle_usd is not None and o.oracle_usd > 0
        assert o.share_of_bound == pytest.approx(o.ours.net_profit_usd / o.oracle_usd)
        assert o.local_gpus % 8 == 0 and o.jobs == 120
        assert o.service_ok is None  # no seed-hpa to compare waits with
        assert o.ours.lost >= 0 and o.ours.lost_while_profitable >= 0 and o.ours.wait_p95_s >= 0
    s = run.summary
    assert s.scenarios == 2 and s.wins == sum(o.wins for o in run.outcomes)
    assert s.worst_share == min(o.share_of_bound for o in run.outcomes)
    assert s.median_share == pytest.approx(sum(o.share_of_bound for o in run.outcomes) / 2)
    assert len(s.losses) == 2 - s.wins
    table = markdown_table(run.outcomes)
    assert all(sc.name in table for sc in TINY) and "never-burst $" in table and "seed-hpa $" not in table
    assert summary_lines(s)[0] == f"E1 profit ≥ every baseline: {s.wins} of 2 scenarios"
    json.dumps(run.to_json())


def test_the_summary_names_each_loss_and_the_baselines_that_won_it():
    run = run_suite(TINY[:1], ("profit", "never-burst"), workers=1)
    o = run.outcomes[0]
    richer = replace(o.policies["never-burst"], net_profit_usd=o.ours.net_profit_usd + 100)
    losing = replace(o, policies={**o.policies, "never-burst": richer})
    s = summarize([losing, o])
    assert not losing.wins and losing.margin_usd == pytest.approx(-100)
    assert s.losses == ((losing.name, (("never-burst", pytest.approx(100)),)),)
    assert "lost tiny-poisson/0.5x to never-burst (by 100 USD)" in "\n".join(summary_lines(s))


def test_the_suite_runs_across_processes_with_the_same_figures():
    alone = run_suite(TINY, ("profit", "never-burst"), workers=1)
    pooled = run_suite(TINY, ("profit", "never-burst"), workers=2)
    assert pooled.workers == 2
    assert [o.name for o in pooled.outcomes] == [o.name for o in alone.outcomes]
    assert [o.ours.net_profit_usd for o in pooled.outcomes] == [o.ours.net_profit_usd for o in alone.outcomes]


def test_the_suite_compares_every_policy_and_every_baseline_by_default():
    assert set(BASELINES) | {"profit", "oracle"} == set(POLICY_NAMES)
