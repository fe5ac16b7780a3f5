"""Specification of the seed's HPA rules as a baseline model, on the same clock as our policy (targets P3, P4, E3)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etrid_ray.config import ProviderConfig, pools_from_config
from etrid_ray.scaling.hpa import HPA_SYNC_PERIOD_S, HpaMemory, first_scale_up, hpa_decide, hpa_place
from etrid_ray.scaling.placement import PlaceReason
from etrid_ray.scaling.policy import DecideFn, Decision, Reason, decide
from etrid_ray.scaling.state import QueuedJob, Snapshot
from tests.scaling_support import AWS, AZURE, CONFIG, GCP, LOCAL, config, job, pool_state, snapshot

CFG = config(ENABLE_TEE=False)  # local-gpu, aws, gcp, azure
SPIKE = 100


def spike_at(t0: float, *, rate: float = 1.0, duration: float = 3600) -> Callable[[float], list[QueuedJob]]:
    """Queue of the benchmark: empty, then 100 one-GPU jobs arriving at t0 and staying queued."""
    jobs = [job(i, gpus=1, rate=rate, duration=duration, waiting_since=t0) for i in range(SPIKE)]
    return lambda t: jobs if t >= t0 else []


def clock(queue: Callable[[float], list[QueuedJob]], *, start: float = 0.0, until: float = 200.0,
          step: float = 0.5, cfg: ProviderConfig = CFG) -> Iterator[Snapshot]:
    """Snapshots every `step` seconds with the local GPUs busy and no cloud nodes (nothing applied)."""
    t = start
    while t <= until:
        yield snapshot(cfg, now=t, queue=queue(t), local_gpu={"busy": 4})
        t += step


# --- P3: spike → first scale-up, HPA against ours on one clock -----------------------------------


def test_a_spike_just_after_a_sync_is_answered_75_s_later():
    t, d = first_scale_up(hpa_decide, clock(spike_at(0.5)), CFG)
    assert t - 0.5 == pytest.approx(74.5)  # seen at the 15 s sync, held 60 s, acted on at the 75 s sync
    assert d.reason == Reason.HPA_UP and d.delta == 1  # +50 % of one replica, at least one


def test_a_spike_on_a_sync_tick_is_answered_60_s_later():
    t, _ = first_scale_up(hpa_decide, clock(spike_at(15.0)), CFG)
    assert t - 15.0 == pytest.approx(60.0)


@pytest.mark.parametrize("phase", [0.5, 3.0, 7.5, 14.5])
def test_the_hpa_answers_between_60_and_75_s_whatever_the_phase(phase):
    t, _ = first_scale_up(hpa_decide, clock(spike_at(phase)), CFG)
    assert 60.0 <= t - phase <= 60.0 + HPA_SYNC_PERIOD_S


def test_our_policy_answers_the_same_spike_on_the_tick_it_arrives():
    ours = first_scale_up(decide, clock(spike_at(0.5)), CFG)
    hpa = first_scale_up(hpa_decide, clock(spike_at(0.5)), CFG)
    assert ours is not None and hpa is not None
    assert ours[0] == 0.5 and ours[1].reason == Reason.STEERED_DEMAND
    assert hpa[0] - 0.5 >= 60  # ours: 0 s after the spike; the HPA: at least its 60 s window


def test_first_scale_up_is_none_when_nothing_grows_and_ignores_min_node_corrections():
    assert first_scale_up(decide, clock(spike_at(0.5, rate=0.1), until=400), CFG) is None  # unprofitable
    onprem = config(local_nodes=2)
    below_min = [snapshot(onprem, now=0, local_gpu={"alive": 1})]
    assert first_scale_up(decide, below_min, onprem) is None


# --- the rules ---------------------------------------------------------------------------------------


def test_nothing_happens_between_syncs():
    snaps = list(clock(spike_at(0.0), until=200))
    _, mem = hpa_decide(snaps[0], CFG)
    for snap in snaps[1:30]:  # 0.5 … 14.5 s
        decisions, new = hpa_decide(snap, CFG, mem)
        assert decisions == [] and new == mem


def test_average_wait_over_30_s_counts_like_queue_depth():
    few_but_old = [job(i, waiting_since=-100) for i in range(3)]  # 3 jobs on 4 GPUs, waiting 100 s
    got = first_scale_up(hpa_decide, clock(lambda t: few_but_old), CFG)
    assert got is not None and got[0] == 60.0


def test_the_hpa_is_cost_blind_it_grows_unprofitable_demand():
    got = first_scale_up(hpa_decide, clock(spike_at(0.0, rate=0.01)), CFG)
    assert got is not None  # the profit-aware policy never grows for this queue (test above)


def simulate(decide_fn: DecideFn, cfg: ProviderConfig, queue: Callable[[float], list[QueuedJob]], *,
             until: float, step: float = 5.0, cloud: dict[str, int] | None = None
             ) -> list[tuple[float, Decision]]:
    """Applies each decision at once (nodes appear idle, and go); returns every decision with its time."""
    alive = {p.name: p.min_nodes for p in pools_from_config(cfg)} | (cloud or {})
    born: dict[str, float] = {}
    out = []
    memory = None
    t = 0.0
    while t <= until:
        states = {p.name: pool_state(p, alive=alive[p.name], idle_since=[born.get(p.name, 0.0)] * alive[p.name],
                                     busy=0.0) for p in pools_from_config(cfg)}
        snap = snapshot(cfg, now=t, queue=queue(t), states=states)
        decisions, memory = decide_fn(snap, cfg, memory)
        for d in decisions:
            out.append((t, d))
            alive[d.pool] = d.target
            born[d.pool] = t
        t += step
    return out


def test_scale_up_repeats_every_window_by_half_the_replicas_round_robin_over_pools():
    got = simulate(hpa_decide, CFG, spike_at(0.0), until=250, step=15)
    assert [(t, d.pool, d.delta) for t, d in got] == [
        (60, AWS, 1),  # replicas 1 (local) → +1
        (120, GCP, 1),  # 2 → +1: the expander ignores that gcp costs 8× aws per GPU-hour
        (180, AWS, 1), (180, AZURE, 1),  # 3 → +2 (azure, then round to aws; listed in pool order)
        (240, AWS, 1), (240, GCP, 1), (240, AZURE, 1),  # 5 → +3
    ]


def test_a_pool_over_its_max_spot_price_is_never_grown_the_cloud_would_not_fill_it():
    cfg = config(ENABLE_TEE=False, gcp_spot_max_price=10.0)  # gcp spot is 21.09 $/h
    got = simulate(hpa_decide, cfg, spike_at(0.0), until=250, step=15)
    assert GCP not in {d.pool for _, d in got}


def test_scale_down_is_10_percent_per_5_minutes_not_an_idle_timeout():
    # four idle aws nodes and an empty queue: the HPA removes one per 300 s window (−10 %, at least one) …
    got = simulate(hpa_decide, CFG, lambda t: [], until=1300, cloud={AWS: 4})
    assert [(t, d.reason, d.target) for t, d in got] == [
        (300, Reason.HPA_DOWN, 3), (600, Reason.HPA_DOWN, 2), (900, Reason.HPA_DOWN, 1), (1200, Reason.HPA_DOWN, 0)]
    # … our policy removes all four when they have been idle for the idle timeout (P4)
    ours = simulate(decide, CFG, lambda t: [], until=1300, cloud={AWS: 4})
    assert [(t, d.reason, d.target) for t, d in ours] == [(300, Reason.IDLE_TIMEOUT, 0)]


def test_scale_down_never_takes_busy_replicas_or_goes_below_min():
    snap = snapshot(CFG, now=0, local_gpu={"busy": 4}, aws_spot_a100={"alive": 2, "busy": 8, "idle_since": [None, 0]})
    mem = HpaMemory(last_sync=-15.0, under_since=-300.0)
    decisions, _ = hpa_decide(snap, CFG, mem)
    assert [(d.pool, d.target) for d in decisions] == [(AWS, 1)]
    snap = snapshot(CFG, now=0, local_gpu={"busy": 4}, aws_spot_a100={"alive": 1, "busy": 8})
    assert hpa_decide(snap, CFG, mem)[0] == []


def test_hpa_place_uses_any_room_and_buys_nothing():
    snap = snapshot(CFG, queue=[job(i, gpus=4) for i in range(4)], gcp_spot_a100={"alive": 1})
    plan = hpa_place(snap, CFG)
    assert [p.pool for p in plan.placements] == [LOCAL, GCP, GCP, None]
    assert plan.placements[-1].reason == PlaceReason.POOL_FULL and plan.new_nodes == {}


def test_hpa_place_still_keeps_tee_and_residency():
    snap = snapshot(CONFIG, queue=[job(1, tee="sev-snp"), job(2, compliance_template="GDPR")],
                    azure_spot_a100={"alive": 1})
    assert [p.pool for p in hpa_place(snap, CONFIG).placements] == [None, None]


# --- property: bounds ---------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from([1.0, 15.0, 60.0, 300.0]), st.sampled_from([0, 2, 40, 400]),
                          st.dictionaries(st.sampled_from([AWS, GCP, AZURE]), st.integers(0, 6), max_size=3)),
                min_size=1, max_size=40))
def test_hpa_targets_never_leave_min_and_max(steps):
    t, memory = 0.0, None
    bounds = {p.name: (p.min_nodes, p.max_nodes) for p in pools_from_config(CFG)}
    for dt, n, nodes in steps:
        t += dt
        kw = {name.replace("-", "_"): {"alive": k} for name, k in nodes.items()}
        snap = snapshot(CFG, now=t, queue=[job(i, waiting_since=t - 10) for i in range(n)], **kw)
        decisions, memory = hpa_decide(snap, CFG, memory)
        for d in decisions:
            lo, hi = bounds[d.pool]
            assert lo <= d.target <= hi and d.delta == d.target - snap.pool(d.pool).nodes
