"""Specification of profit-aware placement: local first; cloud only when a new node pays for its life."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etrid_ray.admission import JobTerms, region_allowed
from etrid_ray.config import pools_from_config
from etrid_ray.devnet.pallets.job_marketplace import PLATFORM_FEE_BPS as CHAIN_FEE_BPS
from etrid_ray.manifest import Manifest
from etrid_ray.pools import Pool
from etrid_ray.prices import PriceQuote, quotes_for
from etrid_ray.scaling.eligibility import eligible
from etrid_ray.scaling.placement import PlaceReason, place
from etrid_ray.scaling.state import PLATFORM_FEE_BPS, PoolState, QueuedJob, Snapshot
from tests.scaling_support import AWS, AZURE, CONFIG, GCP, LOCAL, TEE, config, job, pool_state, snapshot

BUSY_LOCAL = {"local_gpu": {"busy": 4}}  # the one local node's 4 GPUs all busy


def placed(snap: Snapshot, cfg=CONFIG) -> dict[int, tuple[str | None, PlaceReason]]:
    return {p.job_id: (p.pool, p.reason) for p in place(snap, cfg).placements}


# --- local first ------------------------------------------------------------------------------------


def test_a_job_goes_local_when_local_has_room_even_if_cloud_would_pay():
    assert placed(snapshot(queue=[job(1, rate=50)])) == {1: (LOCAL, PlaceReason.LOCAL)}


def test_local_room_is_used_in_queue_order_and_not_oversubscribed():
    queue = [job(i, gpus=2, waiting_since=10 - i) for i in range(4)]  # job 3 waited longest
    got = placed(snapshot(queue=queue))
    assert [i for i, (pool, _) in got.items() if pool == LOCAL] == [3, 2]  # 4 GPUs = two 2-GPU jobs, oldest first
    assert plan_order(queue) == [3, 2, 1, 0]


def test_short_of_room_the_best_paying_job_goes_first_then_the_longest():
    """Local room for one 4-GPU job: the higher price per GPU-second wins over an older job; at equal
    prices the job with more GPU-seconds does (it keeps the GPUs earning after the rush)."""
    older_cheaper = job(1, gpus=4, rate=0.5, duration=3600, waiting_since=0)
    newer_dearer = job(2, gpus=4, rate=0.9, duration=3600, waiting_since=50)
    assert placed(snapshot(queue=[older_cheaper, newer_dearer]))[2] == (LOCAL, PlaceReason.LOCAL)
    short = job(3, gpus=4, rate=0.9, duration=600, waiting_since=0)
    long = job(4, gpus=4, rate=0.9, duration=86_400, waiting_since=50)
    got = place(snapshot(queue=[short, long]), CONFIG)
    assert [p.job_id for p in got.placements] == [4, 3] and got.placements[0].pool == LOCAL
    # a provider that would rather serve the most jobs keeps the chain queue's own order
    fifo = config(claim_order="first-come")
    assert placed(snapshot(queue=[older_cheaper, newer_dearer]), fifo)[1] == (LOCAL, PlaceReason.LOCAL)
    assert [p.job_id for p in place(snapshot(queue=[short, long]), fifo).placements] == [3, 4]


def plan_order(queue) -> list[int]:
    return [p.job_id for p in place(snapshot(queue=queue), CONFIG).placements]


# --- cloud only when it pays ------------------------------------------------------------------------


def test_local_full_and_the_job_pays_a_new_node_in_the_cheapest_pool():
    plan = place(snapshot(queue=[job(1, gpus=8, rate=1.0, duration=3600)], **BUSY_LOCAL), CONFIG)
    assert plan.placements[0].pool == AWS and plan.placements[0].reason == PlaceReason.CLOUD_NEW_NODE
    assert plan.new_nodes == {AWS: 1}
    assert plan.projected_cost_usd == pytest.approx(2.4655 * (180 + 3600 + 300) / 3600)  # startup + work + idle tail


def test_a_job_paying_less_than_spot_per_gpu_hour_waits_for_local():
    p = place(snapshot(queue=[job(1, gpus=8, rate=0.30, duration=36_000)], **BUSY_LOCAL), CONFIG).placements[0]
    assert p.pool is None and p.reason == PlaceReason.UNPROFITABLE  # aws spot = 0.308 $/GPU-h
    assert "waits for local" in p.text


@pytest.mark.parametrize("duration, pays", [(700, False), (900, True)])
def test_startup_and_idle_tail_count_in_the_cost(duration, pays):
    # 8 GPUs × 0.5 $/GPU-h × d  vs  2.4655 $/h × (180 s startup + d + 300 s idle tail): break-even at d ≈ 771 s
    p = place(snapshot(queue=[job(1, gpus=8, rate=0.5, duration=duration)], **BUSY_LOCAL), CONFIG).placements[0]
    assert (p.pool == AWS) is pays
    assert p.reason == (PlaceReason.CLOUD_NEW_NODE if pays else PlaceReason.UNPROFITABLE)


def test_the_offered_price_is_converted_with_edsc_usd():
    queue = [job(1, gpus=8, rate=1.0, duration=3600)]  # 1 $/GPU-h at 1 ËDSC = 1 $ ...
    assert placed(snapshot(queue=queue, **BUSY_LOCAL), config(edsc_usd=0.1))[1][0] is None  # ... 0.1 $ at 0.10
    assert placed(snapshot(queue=queue, **BUSY_LOCAL), config(edsc_usd=1.0))[1][0] == AWS


def test_short_jobs_share_a_node_and_together_pay_for_it():
    # one 60 s job cannot pay a node's 480 s of overhead; forty of them queued behind each other can
    one = place(snapshot(queue=[job(1, gpus=1, rate=1.0, duration=60)], **BUSY_LOCAL), CONFIG)
    assert one.placements[0].pool is None
    many = place(snapshot(queue=[job(i, gpus=1, rate=1.0, duration=60) for i in range(40)], **BUSY_LOCAL), CONFIG)
    assert Counter(p.pool for p in many.placements) == {AWS: 40}
    assert many.new_nodes == {AWS: 1}  # 40 GPU-minutes on 8 GPUs = 300 s: within one idle timeout's horizon


def test_nodes_are_bought_for_the_best_paying_jobs_first():
    cfg = config(aws_max_nodes=1, azure_enabled=False, gcp_enabled=False, ENABLE_TEE=False)
    queue = [job(i, gpus=8, rate=1.0 if i % 2 else 5.0, duration=3600) for i in range(4)]
    got = placed(snapshot(cfg, queue=queue, **BUSY_LOCAL), cfg)
    assert got[0] == (AWS, PlaceReason.CLOUD_NEW_NODE)  # first of the 5 $/GPU-h jobs
    assert [got[i][1] for i in (1, 2, 3)] == [PlaceReason.POOL_FULL] * 3


def test_the_next_cheapest_pool_takes_what_the_cheapest_cannot():
    queue = [job(i, gpus=8, rate=1.0, duration=3600) for i in range(6)]
    got = Counter(pool for pool, _ in placed(snapshot(queue=queue, **BUSY_LOCAL)).values())
    assert got == {AWS: 4, AZURE: 2}  # aws (0.308 $/GPU-h) to its max of 4 nodes, then azure (0.451); gcp (2.64) unused


def test_room_on_running_or_starting_cloud_nodes_is_used_before_buying_more():
    snap = snapshot(queue=[job(1, rate=1.0)], local_gpu={"busy": 4}, aws_spot_a100={"pending": 1})
    plan = place(snap, CONFIG)
    assert plan.placements[0].pool == AWS and plan.placements[0].reason == PlaceReason.CLOUD_CAPACITY
    assert plan.new_nodes == {} and plan.projected_cost_usd == 0


def test_free_cloud_gpus_spread_over_nodes_are_no_room_for_a_whole_node_job():
    """Four alive AWS nodes with 3 + 3 + 2 + 2 GPUs free: 10 free GPUs, but an 8-GPU job needs one node.
    It must not be steered onto that 'room' (it would wait there and be lost to another provider); the
    next pool buys a node for it. A 2-GPU job still takes the free GPUs."""
    aws = next(p for p in pools_from_config(CONFIG) if p.name == AWS)
    fragmented = PoolState(pool=aws, alive=4, idle_since=(None,) * 4, gpus_busy=22, gpus_free=10,
                           node_free=(3.0, 3.0, 2.0, 2.0))
    plan = place(snapshot(queue=[job(1, gpus=8, rate=1.0, duration=7200), job(2, gpus=2, rate=1.0)],
                          states={AWS: fragmented}, **BUSY_LOCAL), CONFIG)
    got = {p.job_id: (p.pool, p.reason) for p in plan.placements}
    assert got[1] == (AZURE, PlaceReason.CLOUD_NEW_NODE) and plan.new_nodes == {AZURE: 1}
    assert got[2] == (AWS, PlaceReason.CLOUD_CAPACITY)


def test_existing_cloud_room_still_needs_the_job_to_pay_the_gpu_hour():
    snap = snapshot(queue=[job(1, rate=0.1)], local_gpu={"busy": 4}, aws_spot_a100={"alive": 1})
    assert place(snap, CONFIG).placements[0].pool is None


# --- cloud market: quota/capacity headroom and spot interruptions -----------------------------------


def test_quota_or_capacity_headroom_caps_new_nodes_and_zero_rules_a_pool_out():
    prices = dict(quotes_for(pools_from_config(CONFIG)))
    queue = [job(i, gpus=8, rate=5.0, duration=3600) for i in range(3)]
    prices[AWS] = replace(prices[AWS], quota_headroom_nodes=1)
    assert place(snapshot(queue=queue, prices=prices, **BUSY_LOCAL), CONFIG).new_nodes == {AWS: 1, AZURE: 2}
    for name in (AWS, AZURE, GCP):
        prices[name] = replace(prices[name], quota_headroom_nodes=0)
    p = place(snapshot(queue=queue[:1], prices=prices, **BUSY_LOCAL), CONFIG).placements[0]
    assert p.pool is None and p.reason == PlaceReason.NO_CAPACITY
    assert "allows 0 more nodes" in p.text


@pytest.mark.parametrize("rate, pays", [(None, True), (0.025, True), (0.25, False)])
def test_a_high_interruption_rate_raises_the_effective_cost(rate, pays):
    # break-even at d ≈ 771 s without interruptions; a ">20%" pool at rerun share 0.5 costs 12.5 % more: ≈ 1086 s
    prices = dict(quotes_for(pools_from_config(CONFIG)))
    prices[AWS] = replace(prices[AWS], interruption_rate=rate)
    cfg = config(azure_enabled=False, gcp_enabled=False, ENABLE_TEE=False)
    plan = place(snapshot(cfg, queue=[job(1, gpus=8, rate=0.5, duration=900)], prices=prices, **BUSY_LOCAL), cfg)
    assert (plan.placements[0].pool == AWS) is pays
    if pays:
        factor = 1 + (rate or 0) * cfg.spot_rerun_share
        assert plan.projected_cost_usd == pytest.approx(2.4655 * factor * (180 + 900 + 300) / 3600)


# --- hard rules: price cap, budget, TEE, residency, size ---------------------------------------------


def test_a_pool_over_its_max_spot_price_is_never_picked():
    cfg = config(aws_spot_max_price=2.0)  # aws spot is 2.4655 $/node-h
    got = placed(snapshot(cfg, queue=[job(1, gpus=8, rate=2.0)], **BUSY_LOCAL), cfg)
    assert got == {1: (AZURE, PlaceReason.CLOUD_NEW_NODE)}


def test_over_max_price_everywhere_is_the_reason_given():
    cfg = config(aws_spot_max_price=1.0, azure_spot_max_price=1.0, gcp_spot_max_price=1.0, ENABLE_TEE=False)
    p = place(snapshot(cfg, queue=[job(1, gpus=8, rate=9.0)], **BUSY_LOCAL), cfg).placements[0]
    assert p.pool is None and p.reason == PlaceReason.OVER_MAX_PRICE


def test_no_new_node_past_the_daily_budget():
    cfg = config(daily_cloud_budget_usd=5.0)  # a 1-hour aws node costs 2.4655 × 4080/3600 ≈ 2.79 $
    got = placed(snapshot(cfg, queue=[job(i, gpus=8, rate=1.0) for i in range(3)], **BUSY_LOCAL), cfg)
    assert [got[i][0] for i in range(3)] == [AWS, None, None]
    assert got[1][1] == PlaceReason.BUDGET


def test_budget_already_spent_means_no_cloud_at_all():
    snap = snapshot(queue=[job(1, rate=9.0)], spend=2000.0, local_gpu={"busy": 4}, aws_spot_a100={"alive": 1})
    p = place(snap, CONFIG).placements[0]
    assert p.pool is None and p.reason == PlaceReason.BUDGET


def test_a_tee_job_runs_only_on_a_pool_with_that_tee():
    got = placed(snapshot(queue=[job(1, gpus=1, rate=9.0, tee="sev-snp")], **BUSY_LOCAL))
    assert got == {1: (TEE, PlaceReason.CLOUD_NEW_NODE)}
    got = placed(snapshot(queue=[job(1, gpus=1, rate=9.0, tee="tdx")], **BUSY_LOCAL))
    assert got == {1: (None, PlaceReason.NO_ELIGIBLE_POOL)}


def test_a_tee_job_never_takes_a_local_node_without_that_tee():
    assert placed(snapshot(queue=[job(1, tee="sev-snp", rate=9.0)]))[1][0] == TEE  # local has room, but no TEE


def test_a_gdpr_job_runs_only_in_an_eu_region():
    got = placed(snapshot(queue=[job(1, gpus=8, rate=9.0, compliance_template="GDPR")]))
    assert got == {1: (GCP, PlaceReason.CLOUD_NEW_NODE)}  # not local ("local" region), not us-east-1/eastus


def test_a_gdpr_job_takes_local_room_when_the_provider_is_in_the_eu():
    cfg = config(region="eu-west-1")
    assert placed(snapshot(cfg, queue=[job(1, compliance_template="GDPR")]), cfg)[1][0] == LOCAL


def test_allowed_region_prefixes_restrict_the_pools():
    got = placed(snapshot(queue=[job(1, gpus=8, rate=9.0, allowed_regions=("eastus",))], **BUSY_LOCAL))
    assert got[1][0] == AZURE  # eastus only: not aws us-east-1, not gcp


def test_a_job_larger_than_a_node_is_not_placed_on_it():
    got = placed(snapshot(queue=[job(1, gpus=8, rate=9.0)]))  # local nodes have 4 GPUs
    assert got[1] == (AWS, PlaceReason.CLOUD_NEW_NODE)


def test_accelerator_and_vram_requirements_are_hard_rules():
    assert placed(snapshot(queue=[job(1, rate=9.0, accelerator="H100")]))[1][0] == TEE
    assert placed(snapshot(queue=[job(1, rate=9.0, min_vram_gb=90)]))[1][0] == TEE  # 94 GB H100


def test_an_unpriced_pool_is_never_grown():
    prices = {k: v for k, v in snapshot().prices.items() if k != AWS}
    got = placed(snapshot(queue=[job(1, gpus=8, rate=9.0)], prices=prices, **BUSY_LOCAL))
    assert got[1][0] == AZURE


# --- chain jobs -------------------------------------------------------------------------------------


def test_the_provider_earns_the_payment_less_the_chains_fee():
    assert PLATFORM_FEE_BPS == CHAIN_FEE_BPS
    terms = JobTerms(job_id=9, model_type="Custom", max_compute_time=600, payment=10**18)  # 1 ËDSC
    q = QueuedJob.from_chain(terms, Manifest(handler="echo", resources={"gpus": 2}), waiting_since=5.0)
    assert q.revenue_usd(edsc_usd=0.1) == pytest.approx(0.095)
    assert (q.gpus, q.expected_duration_s, q.waiting_since) == (2.0, 600.0, 5.0)
    q = QueuedJob.from_chain(terms, Manifest(handler="echo"), waiting_since=0, expected_duration_s=60)
    assert q.revenue_usd(1.0) == pytest.approx(0.95)  # fixed payment: a shorter expected run raises the rate


def test_from_chain_keeps_the_manifests_hard_rules():
    m = Manifest(handler="echo", resources={"tee": "sev-snp", "accelerator": "H100"},
                 compliance={"template": "GDPR", "allowed_regions": ["eu-west"]})
    q = QueuedJob.from_chain(JobTerms(1, "Custom", 10, 10**15), m, waiting_since=0)
    assert (q.tee, q.accelerator, q.compliance_template, q.allowed_regions) == ("sev-snp", "H100", "GDPR",
                                                                                   ("eu-west",))


# --- properties -------------------------------------------------------------------------------------

REGIONS = ["local", "us-east-1", "eu-west-1", "europe-west4", "eastus", "ap-south-1"]
TEES = [None, None, "sev-snp", "tdx"]
POOL_TEES = [None] * 3 + ["sev-snp", "tdx"]
JOB_TEES = [None] * 6 + ["sev-snp", "tdx"]
ALLOWED = [()] * 6 + [("eu",), ("us",), ("eastus", "eu")]


@st.composite
def worlds(draw):
    n_cloud = draw(st.integers(1, 4))
    pools = [Pool(name="local", kind="local", gpus_per_node=draw(st.sampled_from([1, 2, 4, 8])),
                  min_nodes=1, max_nodes=1, region=draw(st.sampled_from(REGIONS)), spot=False,
                  tee=draw(st.sampled_from(TEES)))]
    prices: dict[str, PriceQuote] = {}
    for i in range(n_cloud):
        gpn = draw(st.sampled_from([1, 4, 8]))
        p = Pool(name=f"c{i}", kind=draw(st.sampled_from(["aws", "gcp", "azure"])), gpus_per_node=gpn,
                 max_nodes=draw(st.integers(0, 4)), region=draw(st.sampled_from(REGIONS)),
                 tee=draw(st.sampled_from(POOL_TEES)), startup_s=draw(st.sampled_from([0, 120, 300])),
                 max_spot_price=draw(st.one_of(st.none(), st.floats(0.5, 30))))
        pools.append(p)
        if draw(st.booleans()) or i == 0:
            node_hour = draw(st.floats(0.2, 40))
            prices[p.name] = PriceQuote(pool=p.name, cloud=p.kind, region=p.region, zone=None,
                                        usd_per_node_hour=node_hour, usd_per_gpu_hour=node_hour / gpn,
                                        ondemand_usd_per_hour=50.0, spot_discount=1 - node_hour / 50,
                                        quota_headroom_nodes=draw(st.one_of(st.none(), st.integers(0, 3))),
                                        interruption_rate=draw(st.sampled_from([None, 0.025, 0.25])))
    states = []
    for p in pools:
        alive = p.min_nodes if not p.is_cloud else draw(st.integers(0, min(1, p.max_nodes)))
        pending = 0 if not p.is_cloud else draw(st.integers(0, min(1, p.max_nodes - alive)))
        busy = draw(st.integers(0, alive * p.gpus_per_node))
        states.append(pool_state(p, alive=alive, pending=pending, busy=busy))
    queue = [QueuedJob(job_id=i, gpus=draw(st.sampled_from([0, 0.5, 1, 1, 1, 2, 4, 8])),
                       price_per_gpu_s=10 ** draw(st.floats(12, 16)),
                       expected_duration_s=draw(st.floats(1, 100_000)), waiting_since=draw(st.floats(0, 100)),
                       tee=draw(st.sampled_from(JOB_TEES)),
                       compliance_template=draw(st.sampled_from([None, None, None, "GDPR", "HIPAA"])),
                       allowed_regions=draw(st.sampled_from(ALLOWED)))
             for i in range(draw(st.integers(0, 40)))]
    cfg = CONFIG.model_copy(update={"daily_cloud_budget_usd": draw(st.floats(0, 1000)),
                                    "edsc_usd": draw(st.sampled_from([0.1, 1.0, 5.0])),
                                    "idle_timeout_s": draw(st.sampled_from([0.0, 60.0, 300.0]))})
    snap = Snapshot(now=100.0, pools=tuple(states), queue=tuple(queue), spend_today_usd=draw(st.floats(0, 250)),
                    prices=prices)
    return snap, cfg


def _manifest_for(j: QueuedJob) -> Manifest:
    return Manifest(handler="x", compliance={"template": j.compliance_template,
                                             "allowed_regions": list(j.allowed_regions)})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_placement_never_breaks_a_hard_rule_or_the_budget(world):
    snap, cfg = world
    plan = place(snap, cfg)
    states = {ps.name: ps for ps in snap.pools}
    jobs = {j.job_id: j for j in snap.queue}
    assert sorted(p.job_id for p in plan.placements) == sorted(jobs)  # every job exactly once
    steered: Counter[str] = Counter()
    for p in plan.placements:
        if p.pool is None:
            continue
        j, ps = jobs[p.job_id], states[p.pool]
        pool = ps.pool
        assert j.tee is None or pool.tee == j.tee, "wrong TEE"
        assert region_allowed(pool.region, _manifest_for(j)), "residency broken"
        assert j.gpus <= pool.gpus_per_node
        steered[p.pool] += j.gpus
        if pool.is_cloud:
            quote = snap.prices[pool.name]
            assert pool.max_spot_price is None or quote.usd_per_node_hour <= pool.max_spot_price, "over max price"
            assert snap.spend_today_usd < cfg.daily_cloud_budget_usd, "cloud used with the budget spent"
    assert snap.spend_today_usd + plan.projected_cost_usd <= cfg.daily_cloud_budget_usd + 1e-9 or not plan.new_nodes
    for name, n in plan.new_nodes.items():
        ps = states[name]
        assert ps.nodes + n <= ps.pool.max_nodes
        assert snap.prices[name].quota_headroom_nodes is None or n <= snap.prices[name].quota_headroom_nodes
    for name in steered:  # nothing steered beyond the room it has, or the work the nodes it buys can do
        ps = states[name]
        mine = [(p, jobs[p.job_id]) for p in plan.placements if p.pool == name]
        # queued back to back: at most a horizon (the idle timeout) or the longest job's worth of work
        for reason, gpus in ((PlaceReason.CLOUD_CAPACITY, ps.free_capacity),
                             (PlaceReason.CLOUD_NEW_NODE, plan.new_nodes.get(name, 0) * ps.pool.gpus_per_node)):
            these = [j for p, j in mine if p.reason == reason]
            if these:
                span = max(cfg.idle_timeout_s, max(j.expected_duration_s for j in these))
                assert sum(j.gpus * j.expected_duration_s for j in these) <= gpus * span * (1 + 1e-9)
                assert max(j.gpus for j in these) <= gpus
    new_node_revenue = sum(jobs[p.job_id].revenue_usd(cfg.edsc_usd) for p in plan.placements
                           if p.reason == PlaceReason.CLOUD_NEW_NODE)
    assert not plan.new_nodes or new_node_revenue > plan.projected_cost_usd  # every bought node pays


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_placement_picks_local_whenever_local_has_room(world):
    snap, cfg = world
    plan = {p.job_id: p for p in place(snap, cfg).placements}
    local = next(ps for ps in snap.pools if not ps.pool.is_cloud)
    free = local.free_capacity
    def best_paying_first(j: QueuedJob) -> tuple[float, float, float, int]:
        return (-j.price_per_gpu_s, -j.billable_gpus * j.expected_duration_s, j.waiting_since, j.job_id)

    for j in sorted(snap.queue, key=best_paying_first):
        fits = j.gpus <= free and eligible(j, local.pool)
        assert (plan[j.job_id].pool == "local") is fits
        if fits:
            free -= j.gpus


def test_eligibility_is_admissions_region_rule():
    pool = pool_state(Pool(name="x", kind="aws", region="eu-central-1")).pool
    gdpr = job(1, compliance_template="GDPR")
    assert eligible(gdpr, pool)
    assert not eligible(gdpr, pool.model_copy(update={"region": "us-east-1"}))


def test_placement_is_pure():
    snap = snapshot(queue=[job(i, gpus=8, rate=1.0) for i in range(3)], **BUSY_LOCAL)
    before = repr(snap)
    assert place(snap, CONFIG) == place(snap, CONFIG)
    assert repr(snap) == before


def test_no_local_pool_means_every_job_is_weighed_for_cloud():
    cfg = config(local_nodes=0)
    assert placed(snapshot(cfg, queue=[job(1, gpus=8, rate=1.0)]), cfg)[1][0] == AWS


def test_pool_state_rejects_nonsense():
    pool = pool_state(Pool(name="x", kind="aws")).pool
    with pytest.raises(ValueError):
        PoolState(pool=pool, alive=-1)
    with pytest.raises(ValueError):
        PoolState(pool=pool, alive=1, idle_since=(0.0, 0.0))


def test_nodes_bought_last_tick_are_not_bought_again_while_they_start():
    # 100 one-minute jobs: two nodes take 40 each back to back (8 GPUs × 300 s); the last 20 cannot pay a third
    queue = [job(i, gpus=1, rate=1.0, duration=60) for i in range(100)]
    first = place(snapshot(queue=queue, **BUSY_LOCAL), CONFIG)
    assert first.new_nodes == {AWS: 2}
    assert Counter(p.pool for p in first.placements) == {AWS: 80, None: 20}
    second = place(snapshot(queue=queue, local_gpu={"busy": 4}, aws_spot_a100={"alive": 0, "pending": 2}), CONFIG)
    assert second.new_nodes == {}
    assert Counter((p.pool, p.reason) for p in second.placements) == {(AWS, PlaceReason.CLOUD_CAPACITY): 80,
                                                                      (None, PlaceReason.UNPROFITABLE): 20}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.5, 1.0, 2.0]), st.sampled_from([0, 1, 2, 8]),
                          st.sampled_from([60.0, 600.0, 3600.0]), st.sampled_from([0.0, 5.0, 9.0])), max_size=30))
def test_claim_orders_are_the_orders_of_their_whole_keys(rows):
    """Best-paying first: price per GPU-second, then GPU-seconds, then first come, then job id; a new node is
    filled by price, then first come; the chain's own order is first come, then job id."""
    from etrid_ray.scaling.placement import price_order, profit_order, queue_order

    queue = [QueuedJob(i, gpus=g, price_per_gpu_s=p, expected_duration_s=d, waiting_since=w)
             for i, (p, g, d, w) in enumerate(rows)]
    ids = lambda jobs: [j.job_id for j in jobs]  # noqa: E731
    assert ids(profit_order(queue)) == ids(sorted(queue, key=lambda j: (-j.price_per_gpu_s, -j.billable_gpus
                                                                         * j.expected_duration_s, j.waiting_since,
                                                                         j.job_id)))
    assert ids(price_order(list(queue))) == ids(sorted(queue, key=lambda j: (-j.price_per_gpu_s, j.waiting_since,
                                                                              j.job_id)))
    assert ids(queue_order(queue)) == ids(sorted(queue, key=lambda j: (j.waiting_since, j.job_id)))
