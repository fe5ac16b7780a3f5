"""Target R8 and a market of providers: separate provider processes (own keys, prices, journals and Ray clusters)
race for one devnet's queue of 1 s blocks. Real devnet, real Ray, real heads."""

from __future__ import annotations

from etrid_ray.demo.market import run_market


def test_competing_providers_serve_each_job_exactly_once_and_the_cheaper_wins_more() -> None:
    result = run_market(providers=2, jobs=32, bursts=2, job_s=0.5, timeout_s=180)
    cheap, dear = result.providers
    assert result.served_twice == 0 and result.unserved == 0
    assert result.completed == result.jobs == 32
    assert cheap.served + dear.served == result.jobs
    assert dear.served > 0  # both keep serving
    assert cheap.served > dear.served  # half the jobs pay only what the cheaper provider asks
    assert cheap.earnings_planck > 0 and dear.earnings_planck > 0
    # losing is rare and quiet: a lost claim is one failed item of a batch, and costs no GPU time
    assert result.lost_share <= 0.25, f"{result.lost} of {result.claim_attempts} claim attempts lost"
