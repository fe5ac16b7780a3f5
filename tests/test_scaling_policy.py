"""Specification of the scaling policy (the seed's rules, stabilization, idle removal) and the baselines."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etrid_ray.config import ProviderConfig
from etrid_ray.pools import Pool
from etrid_ray.scaling import POLICIES
from etrid_ray.scaling.baselines import always_burst_cheapest, never_burst, place_cheapest, ray_default
from etrid_ray.scaling.policy import Decision, PolicyMemory, PoolMemory, Reason, apply, decide, place_profit
from etrid_ray.scaling.state import PoolState, QueuedJob, Snapshot
from tests.scaling_support import AWS, AZURE, CONFIG, GCP, LOCAL, config, job, snapshot

BUSY_LOCAL = {"local_gpu": {"busy": 4}}


def jobs(n: int, *, now: float = 0.0, **kw) -> list[QueuedJob]:
    return [job(i, waiting_since=now, **kw) for i in range(n)]


def run(snapshots: list[Snapshot], cfg: ProviderConfig = CONFIG, memory: PolicyMemory | None = None
        ) -> list[tuple[float, Decision]]:
    """Feeds the snapshots in order, carrying memory; returns (time, decision) for every decision."""
    out = []
    for snap in snapshots:
        decisions, memory = decide(snap, cfg, memory)
        out += [(snap.now, d) for d in decisions]
    return out


def by_pool(decisions: list[Decision]) -> dict[str, Decision]:
    return {d.pool: d for d in decisions}


# --- steered demand: a profitable spike reaches the autoscaler at once ------------------------------


def test_a_profitable_spike_asks_for_nodes_on_the_first_tick():
    snap = snapshot(queue=jobs(100, gpus=1, rate=1.0, duration=3600), **BUSY_LOCAL)
    got = by_pool(decide(snap, CONFIG)[0])
    assert got[AWS].reason == Reason.STEERED_DEMAND and got[AWS].target == 4 and got[AWS].delta == 4
    assert got[AZURE].reason == Reason.STEERED_DEMAND  # aws full at 4 nodes: next cheapest
    assert GCP not in got and LOCAL not in got  # gcp (2.64 $/GPU-h) does not pay at 1 $/GPU-h; local is fixed


def test_an_unprofitable_spike_never_grows_a_cloud_pool_even_when_sustained():
    queue = jobs(100, gpus=1, rate=0.2, duration=3600)  # below every spot GPU-hour
    snaps = [snapshot(now=t, queue=queue, **BUSY_LOCAL) for t in range(0, 900, 15)]
    assert run(snaps) == []


def test_a_pool_over_its_max_spot_price_never_grows():
    cfg = config(aws_spot_max_price=2.0, azure_enabled=False, gcp_enabled=False, ENABLE_TEE=False)
    snaps = [snapshot(cfg, now=t, queue=jobs(100, rate=5.0), **BUSY_LOCAL) for t in range(0, 600, 15)]
    assert run(snaps, cfg) == []


def test_the_same_plan_can_be_passed_in():
    snap = snapshot(queue=jobs(20, gpus=8, rate=1.0), **BUSY_LOCAL)
    plan = place_profit(snap, CONFIG)
    assert decide(snap, CONFIG, plan=plan) == decide(snap, CONFIG)


# --- the seed's rules -------------------------------------------------------------------------------


def onprem_config(**kw) -> ProviderConfig:
    """An elastic on-prem pool (min 1, max 6 nodes of 4 GPUs) and no cloud: the seed's rules in isolation."""
    onprem = Pool(name="onprem", kind="local", gpus_per_node=4, min_nodes=1, max_nodes=6, spot=False)
    return config(local_nodes=0, aws_enabled=False, gcp_enabled=False, azure_enabled=False, ENABLE_TEE=False,
                  pools=[onprem], **kw)


def onprem(now: float, queue: list[QueuedJob], alive: int = 1, cfg: ProviderConfig | None = None, **kw) -> Snapshot:
    cfg = cfg or onprem_config()
    return snapshot(cfg, now=now, queue=queue, onprem={"alive": alive, "busy": 4 * alive, **kw})


def test_queue_over_5_per_gpu_for_60_s_grows_the_pool_by_half():
    cfg = onprem_config()
    # 100 fresh jobs each tick on 4 busy GPUs = 25/GPU (fresh, so the wait rule stays out of it)
    got = run([onprem(t, [job(i, waiting_since=t) for i in range(100)], cfg=cfg) for t in (0, 30, 59, 60)], cfg)
    assert [(t, d.reason, d.target) for t, d in got] == [(60, Reason.QUEUE_DEPTH, 2)]  # +50 % of 1, at least 1
    assert "25/GPU > 5" in got[0][1].text


def test_the_sustain_window_restarts_after_a_scale_up():
    cfg = onprem_config()
    memory = None
    seen = []
    alive = 2
    for t in range(0, 200, 10):
        decisions, memory = decide(onprem(t, [job(i, waiting_since=t) for i in range(200)], alive=alive, cfg=cfg),
                                   cfg, memory)
        for d in decisions:
            seen.append((t, d.target))
            alive = d.target
    assert seen == [(60, 3), (120, 5), (180, 6)]  # +50 % each 60 s: 2 → 3 → ceil(4.5) = 5 → 6 (max)


def test_a_short_burst_over_the_threshold_does_nothing():
    cfg = onprem_config()
    snaps = [onprem(t, [job(i, waiting_since=t) for i in range(100 if t < 50 else 2)], cfg=cfg)
             for t in range(0, 130, 10)]
    assert run(snaps, cfg) == []  # over for 50 s, then under: the 60 s window never completes


def test_average_wait_over_30_s_adds_a_node_at_most_every_30_s():
    cfg = onprem_config(scale_up_queue_per_gpu=1000)  # depth rule out of the way
    got = run([onprem(t, jobs(3, now=0)) for t in range(0, 100, 5)], cfg)
    assert [(t, d.reason) for t, d in got] == [(35, Reason.AVG_WAIT), (65, Reason.AVG_WAIT), (95, Reason.AVG_WAIT)]
    assert "average wait 35 s > 30 s" in got[0][1].text


def test_growth_is_capped_at_what_the_queue_can_use():
    cfg = onprem_config()
    got = run([onprem(t, [job(i, waiting_since=t, gpus=4) for i in range(3)], alive=1, cfg=cfg)
               for t in (0, 60)], cfg.model_copy(update={"scale_up_queue_per_gpu": 0.1}))
    assert [d.target for _, d in got] == [2]  # 4 busy + 12 queued GPUs = 4 nodes; +50 % of 1 = 2


def test_queue_under_1_per_gpu_for_5_minutes_shrinks_by_10_percent():
    cfg = onprem_config()
    idle = {"busy": 8, "idle_since": [None, None, 0, 0, 0, 0]}  # 6 nodes: 2 busy, 4 idle (not yet timed out)
    snaps = [snapshot(cfg, now=t, onprem={"alive": 6, **idle}) for t in (0, 100, 299, 300)]
    got = run(snaps, cfg.model_copy(update={"idle_timeout_s": 10_000}))
    assert [(t, d.reason, d.target) for t, d in got] == [(300, Reason.QUEUE_LOW, 5)]  # −max(1, 10 % of 6)


def test_idle_nodes_go_after_the_idle_timeout_and_min_nodes_stay():
    snap = snapshot(now=400, aws_spot_a100={"alive": 3, "idle_since": [0, 50, 200]})
    d = by_pool(decide(snap, CONFIG)[0])[AWS]
    assert (d.reason, d.target) == (Reason.IDLE_TIMEOUT, 1)  # two idle ≥ 300 s
    assert LOCAL not in by_pool(decide(snapshot(now=10_000), CONFIG)[0])  # local idle for hours: min = max = 1


def test_drained_queue_brings_cloud_pools_to_zero_after_the_idle_timeout():
    snaps = [snapshot(now=t, aws_spot_a100={"alive": 2, "idle_since": [0, 0]}) for t in (0, 100, 299, 300)]
    got = run(snaps)
    assert [(t, d.pool, d.target) for t, d in got] == [(300, AWS, 0)]


def test_busy_nodes_are_never_scaled_away():
    snap = snapshot(now=10_000, aws_spot_a100={"alive": 3, "busy": 8, "idle_since": [None, 0, 0]})
    assert by_pool(decide(snap, CONFIG)[0])[AWS].target == 1


def test_an_idle_node_that_jobs_were_just_steered_to_stays():
    snap = snapshot(now=400, queue=jobs(8, rate=1.0, duration=60, now=400), local_gpu={"busy": 4},
                    aws_spot_a100={"alive": 2, "idle_since": [0, 0]})
    d = by_pool(decide(snap, CONFIG)[0])[AWS]
    assert (d.reason, d.target) == (Reason.IDLE_TIMEOUT, 1)  # 8 one-GPU jobs fill one node: the other goes


def test_starting_nodes_nobody_waits_for_are_cancelled():
    got = run([snapshot(now=100, aws_spot_a100={"pending": 2})])
    assert [(d.reason, d.target) for _, d in got] == [(Reason.DRAINED, 0)]


# --- stabilization, bounds, budget -------------------------------------------------------------------


def test_no_scale_down_within_the_stabilization_window_after_a_scale_up():
    spike = snapshot(now=0, queue=jobs(8, gpus=8, rate=1.0), **BUSY_LOCAL)
    decisions, memory = decide(spike, CONFIG)
    assert by_pool(decisions)[AWS].target == 4
    # the jobs were taken by another provider: the four starting nodes are no longer needed
    gone = [snapshot(now=t, aws_spot_a100={"pending": 4}) for t in (10, 59, 60)]
    got = run(gone, memory=memory)
    assert [(t, d.reason, d.target) for t, d in got] == [(60, Reason.DRAINED, 0)]


def test_no_scale_up_within_the_stabilization_window_after_a_scale_down():
    _, memory = decide(snapshot(now=1000, aws_spot_a100={"alive": 1, "idle_since": [0]}), CONFIG)
    spike = [snapshot(now=t, queue=jobs(8, gpus=8, rate=1.0, now=t), **BUSY_LOCAL) for t in (1030, 1060)]
    got = run(spike, memory=memory)
    assert [(t, d.reason) for t, d in got if d.pool == AWS] == [(1060, Reason.STEERED_DEMAND)]


def test_bounds_apply_even_inside_the_stabilization_window():
    cfg = onprem_config()
    memory = PolicyMemory({"onprem": _mem(last_up=0.0, last_down=0.0)})
    got = by_pool(decide(snapshot(cfg, now=1, onprem={"alive": 0}), cfg, memory)[0])["onprem"]
    assert (got.reason, got.target) == (Reason.MIN_NODES, 1)
    over = snapshot(cfg, now=1, onprem={"alive": 9, "busy": 36})
    got = by_pool(decide(over, cfg, memory)[0])["onprem"]
    assert (got.reason, got.target) == (Reason.MAX_NODES, 6)


def _mem(**kw) -> PoolMemory:
    return PoolMemory(**kw)


def test_rule_driven_cloud_growth_stops_at_the_daily_budget():
    # 45 one-GPU 50 s jobs on one free aws node: 5.6/GPU; after 60 s the seed's +50 % wants 2 nodes
    cfg = config(daily_cloud_budget_usd=10.0)
    def at(t, spend):
        return snapshot(cfg, now=t, spend=spend, queue=jobs(45, rate=1.0, duration=50, now=t),
                        local_gpu={"busy": 4}, aws_spot_a100={"alive": 1, "busy": 0, "idle_since": [t]})
    assert [(d.reason, d.target) for _, d in run([at(0, 0), at(60, 0)], cfg)] == [(Reason.QUEUE_DEPTH, 2)]
    assert run([at(0, 9.9), at(60, 9.9)], cfg) == []  # an extra node costs ≥ 0.33 $ (startup + idle tail)


def test_decisions_carry_a_code_and_a_human_reason():
    d = by_pool(decide(snapshot(queue=jobs(8, gpus=8, rate=1.0), **BUSY_LOCAL), CONFIG)[0])[AWS]
    assert d.reason == "steered_demand" and d.direction == "up" and "pay for the jobs" in d.text


def test_apply_gives_each_pools_target():
    snap = snapshot(queue=jobs(8, gpus=8, rate=1.0), **BUSY_LOCAL)
    assert apply(decide(snap, CONFIG)[0], snap)[AWS] == 4
    assert apply([], snap) == {ps.name: ps.nodes for ps in snap.pools}


# --- properties: bounds, no thrash, no killing busy nodes, purity -----------------------------------

POOLS = [
    Pool(name="onprem", kind="local", gpus_per_node=2, min_nodes=1, max_nodes=5, spot=False),  # elastic: seed rules
    Pool(name="local-gpu", kind="local", gpus_per_node=4, min_nodes=1, max_nodes=1, spot=False),
    Pool(name="aws-spot-a100", kind="aws", instance_type="p4d.24xlarge", region="us-east-1", max_nodes=4,
         max_spot_price=12.0, startup_s=180),
    Pool(name="azure-spot-a100", kind="azure", instance_type="Standard_ND96amsr_A100_v4", region="eastus",
         min_nodes=1, max_nodes=3, max_spot_price=8.0, startup_s=240),
    Pool(name="gcp-spot-a100", kind="gcp", instance_type="a2-ultragpu-8g", region="europe-west4", max_nodes=2,
         max_spot_price=10.0),  # 21.09 $/h: over its max price, never grows
]
PRICES = snapshot().prices


@st.composite
def observations(draw, *, within_bounds: bool):
    """A sequence of arbitrary observations on one clock: node counts, busy GPUs, idle times, queues."""
    t = 0.0
    out = []
    for _ in range(draw(st.integers(1, 30))):
        t += draw(st.sampled_from([0.5, 1, 5, 15, 30, 59, 60, 61, 120, 301]))
        states = []
        for p in POOLS:
            lo, hi = (p.min_nodes, p.max_nodes) if within_bounds else (0, p.max_nodes + 2)
            alive = draw(st.integers(lo, hi))
            pending = draw(st.integers(0, hi - alive))
            busy_nodes = draw(st.integers(0, alive))
            idle = [None] * busy_nodes + [t - draw(st.sampled_from([0, 10, 299, 300, 1000]))
                                          for _ in range(alive - busy_nodes)]
            busy = draw(st.integers(busy_nodes, busy_nodes * p.gpus_per_node)) if busy_nodes else 0
            states.append(PoolState(p, alive=alive, pending=pending, idle_since=tuple(idle), gpus_busy=busy,
                                    gpus_free=alive * p.gpus_per_node - busy))
        n = draw(st.sampled_from([0, 0, 1, 5, 20, 60, 150]))
        rate = draw(st.sampled_from([0.1, 0.5, 1.0, 5.0]))
        dur = draw(st.sampled_from([30, 600, 3600]))
        age = draw(st.sampled_from([0, 20, 40, 200]))
        gpus = draw(st.lists(st.sampled_from([1, 2, 8]), min_size=1, max_size=3))
        queue = tuple(job(i, gpus=gpus[i % len(gpus)], rate=rate, duration=dur, waiting_since=t - age)
                      for i in range(n))
        out.append(Snapshot(now=t, pools=tuple(states), queue=queue, spend_today_usd=draw(st.sampled_from([0, 50])),
                            prices=PRICES))
    return out


CFG = config(daily_cloud_budget_usd=100.0)
BOUNDS = {p.name: (p.min_nodes, p.max_nodes) for p in POOLS}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(observations(within_bounds=False))
def test_targets_never_leave_min_and_max(snaps):
    memory = None
    for snap in snaps:
        decisions, memory = decide(snap, CFG, memory)
        for d in decisions:
            lo, hi = BOUNDS[d.pool]
            assert lo <= d.target <= hi
            assert d.delta == d.target - snap.pool(d.pool).nodes != 0


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(observations(within_bounds=True))
def test_never_thrashes_within_the_stabilization_window(snaps):
    memory = None
    last: dict[str, tuple[float, str]] = {}
    for snap in snaps:
        decisions, memory = decide(snap, CFG, memory)
        assert len({d.pool for d in decisions}) == len(decisions)  # one decision per pool
        for d in decisions:
            prev = last.get(d.pool)
            # the one reversal allowed inside the window: removing nodes idle for the whole idle timeout
            if prev is not None and prev[1] != d.direction and d.reason != Reason.IDLE_TIMEOUT:
                assert snap.now - prev[0] >= CFG.stabilization_s, f"{d.pool} reversed after {snap.now - prev[0]} s"
            if d.reason == Reason.IDLE_TIMEOUT:
                ps = snap.pool(d.pool)
                idle_long = sum(1 for t in ps.idle_since if t is not None and snap.now - t >= CFG.idle_timeout_s)
                assert -d.delta <= idle_long
            last[d.pool] = (snap.now, d.direction)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(observations(within_bounds=True))
def test_never_scales_away_busy_nodes_or_grows_an_unpayable_pool(snaps):
    memory = None
    for snap in snaps:
        decisions, memory = decide(snap, CFG, memory)
        for d in decisions:
            ps = snap.pool(d.pool)
            if d.delta < 0:
                assert d.target >= ps.busy_nodes
            elif ps.pool.is_cloud and d.reason != Reason.MIN_NODES:
                assert d.pool != "gcp-spot-a100"  # over its max spot price
                assert snap.spend_today_usd < CFG.daily_cloud_budget_usd


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(observations(within_bounds=True))
def test_decide_is_pure(snaps):
    snap = snaps[-1]
    mem = PolicyMemory({"onprem": _mem(over_since=0.0)})
    before = (repr(snap), repr(mem))
    assert decide(snap, CFG, mem) == decide(snap, CFG, mem)
    assert (repr(snap), repr(mem)) == before


# --- baselines: same shape, different economics -----------------------------------------------------


def test_every_policy_has_the_same_shape():
    snap = snapshot(queue=jobs(50, gpus=1, rate=1.0), **BUSY_LOCAL)
    assert set(POLICIES) == {"profit", "seed-hpa", "ray-default", "never-burst", "cheapest-burst"}
    for policy in POLICIES.values():
        decisions, _ = policy.decide(snap, CONFIG, None)
        assert all(isinstance(d, Decision) for d in decisions)
        assert len(policy.place(snap, CONFIG).placements) == 50


def test_ray_default_bursts_unprofitable_demand_cheapest_pool_first():
    snap = snapshot(queue=jobs(16, gpus=8, rate=0.01), **BUSY_LOCAL)  # pays almost nothing
    got = {d.pool: (d.reason, d.target) for d in ray_default(snap, CONFIG)[0]}
    assert got == {AWS: (Reason.PENDING_DEMAND, 4), AZURE: (Reason.PENDING_DEMAND, 4), GCP: (Reason.PENDING_DEMAND, 4)}
    assert decide(snap, CONFIG)[0] == []  # the profit-aware policy buys nothing


def test_ray_default_launches_at_ray_upscaling_speed():
    cfg = config(aws_max_nodes=20)
    snap = snapshot(cfg, queue=jobs(20, gpus=8, rate=1.0), **BUSY_LOCAL)
    assert by_pool(ray_default(snap, cfg)[0])[AWS].target == 5  # pending ≤ max(5, 1.0 × running)
    snap = snapshot(cfg, queue=jobs(20, gpus=8, rate=1.0), local_gpu={"busy": 4},
                    aws_spot_a100={"alive": 8, "busy": 64})
    assert by_pool(ray_default(snap, cfg)[0])[AWS].target == 16


def test_always_burst_cheapest_ignores_profit_but_keeps_the_budget():
    snap = snapshot(queue=jobs(3, gpus=8, rate=0.01), **BUSY_LOCAL)
    assert by_pool(always_burst_cheapest(snap, CONFIG)[0])[AWS].target == 3
    tight = config(daily_cloud_budget_usd=3.0)
    assert by_pool(always_burst_cheapest(snap, tight)[0])[AWS].target == 1


def test_never_burst_holds_cloud_pools_at_their_minimum():
    snap = snapshot(queue=jobs(50, gpus=8, rate=50.0), local_gpu={"busy": 4},
                    aws_spot_a100={"alive": 2, "busy": 8, "idle_since": [None, 0]})
    assert by_pool(never_burst(snap, CONFIG)[0])[AWS].target == 1  # the idle one goes; the busy one finishes
    assert {p.pool for p in POLICIES["never-burst"].place(snap, CONFIG).placements} == {None}


def test_baselines_still_keep_the_hard_rules():
    snap = snapshot(queue=[job(1, gpus=8, rate=0.01, compliance_template="GDPR")], **BUSY_LOCAL)
    assert place_cheapest(snap, CONFIG).placements[0].pool == GCP  # the only EU pool, whatever it costs


def test_baselines_remove_idle_nodes_only_after_the_idle_timeout():
    for fn in (ray_default, always_burst_cheapest):
        assert fn(snapshot(now=299, aws_spot_a100={"alive": 1, "idle_since": [0]}), CONFIG)[0] == []
        assert by_pool(fn(snapshot(now=300, aws_spot_a100={"alive": 1, "idle_since": [0]}), CONFIG)[0])[AWS].target == 0


@pytest.mark.parametrize("name", ["ray-default", "cheapest-burst", "never-burst", "profit", "seed-hpa"])
def test_every_policy_respects_min_nodes(name):
    cfg = onprem_config()
    d = by_pool(POLICIES[name].decide(snapshot(cfg, onprem={"alive": 0}), cfg, None)[0])["onprem"]
    assert (d.reason, d.target) == (Reason.MIN_NODES, 1)
