"""Specification of the eligibility table: the hard rules asked once per rule set, answering exactly as
`eligible` does for each job and pool, and the plan that reads it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etrid_ray.pools import Pool
from etrid_ray.scaling.eligibility import Fits, eligible
from etrid_ray.scaling.placement import place
from etrid_ray.scaling.policy import place_profit
from etrid_ray.scaling.state import QueuedJob
from tests.scaling_support import CONFIG, LOCAL, job, snapshot

POOLS = (
    Pool(name="local-a", kind="local", gpus_per_node=4, vram_gb=24, accelerator="RTX4090"),
    Pool(name="local-tee", kind="local", gpus_per_node=8, tee="sgx"),
    Pool(name="aws-us", kind="aws", region="us-east-1", gpus_per_node=8),
    Pool(name="aws-eu", kind="aws", region="eu-west-1", gpus_per_node=8, accelerator="H100"),
    Pool(name="azure-sev", kind="azure", region="westeurope", gpus_per_node=1, tee="sev-snp"),
)

jobs = st.builds(
    QueuedJob,
    job_id=st.integers(0, 10**6),
    gpus=st.sampled_from([0, 0.5, 1, 2, 4, 8, 16]),
    price_per_gpu_s=st.just(1e14),
    expected_duration_s=st.just(600.0),
    waiting_since=st.just(0.0),
    tee=st.sampled_from([None, "sgx", "sev-snp"]),
    compliance_template=st.sampled_from([None, "GDPR", "HIPAA"]),
    allowed_regions=st.sampled_from([(), ("eu-",), ("us-",)]),
    accelerator=st.sampled_from([None, "A100", "H100", "RTX4090"]),
    min_vram_gb=st.sampled_from([0, 24, 48, 80]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(jobs, min_size=1, max_size=12))
def test_the_table_answers_exactly_as_eligible_for_every_job_and_pool(queue):
    fits = Fits(POOLS)
    for j in queue:
        m = fits.mask(j)
        assert [bool(m & (1 << k)) for k in range(len(POOLS))] == [eligible(j, p) for p in POOLS]
        first = next((p.name for p in POOLS if not p.is_cloud and eligible(j, p)), None)
        assert fits.first_local_name(j) == first


def test_jobs_with_the_same_rules_share_a_rule_set_and_others_do_not():
    a, b = job(1, gpus=2), job(2, gpus=2, rate=9, duration=5)
    assert a.rules is b.rules
    assert job(3, gpus=4).rules is not a.rules


def test_a_rule_set_lives_only_as_long_as_a_job_carries_it():
    """Consumers write residency lists: a stream of ever-new rules must not grow a long-running head."""
    import gc
    import weakref

    rules = weakref.ref(job(1, gpus=2, allowed_regions=("never-seen-before-1",)).rules)
    gc.collect()
    assert rules() is None


def test_the_local_bits_are_the_local_pools():
    fits = Fits(POOLS)
    assert fits.local == fits.bit("local-a") | fits.bit("local-tee")
    with pytest.raises(KeyError):
        fits.bit("nowhere")


def test_a_plan_knows_every_job_it_placed_and_steers_only_those_with_a_pool():
    """What dispatch reads (`steered`, `pool_for`) agrees with the full placements, which are written only
    when read."""
    queue = [job(i, gpus=2, rate=1.0 + i, waiting_since=float(i)) for i in range(6)]
    for plan in (place(snapshot(queue=queue), CONFIG), place_profit(snapshot(queue=queue), CONFIG)):
        full = tuple(plan.placements)
        assert plan.steered == tuple(p for p in full if p.pool is not None)
        assert plan.job_ids == tuple(p.job_id for p in full)
        assert {p.job_id: p.pool for p in full} == {i: plan.pool_for(i) for i in plan.job_ids}
        assert any(p.pool == LOCAL for p in plan.steered)
        with pytest.raises(KeyError):
            plan.pool_for(999)
