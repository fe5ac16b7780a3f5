"""The market feed's rules with in-process market doubles (no network), and cloud spend: billed per
node-second by the scaler into the daily budget window and `etrid_cloud_cost_usd_total`."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest
from prometheus_client import REGISTRY

from etrid_ray.clouds import CloudCallFailed, MarketFeed, MarketView, ZonePrice, headroom_nodes, interruption_rate
from etrid_ray.clouds.base import min_known
from etrid_ray.config import ProviderConfig, pools_from_config
from etrid_ray.pools import Pool, pool_selector
from etrid_ray.prices import default_catalog
from etrid_ray.provider.scaler import Scaler
from tests.clouds_support import T0, Clock

P4D = Pool(name="aws-spot-a100", kind="aws", instance_type="p4d.24xlarge", region="us-east-1")


class Market:
    """A CloudMarket double: returns the views (or raises the errors) it is given, in order."""

    cloud = "aws"

    def __init__(self, *answers) -> None:
        self.answers = list(answers)
        self.calls = 0

    def view(self, pool: Pool) -> MarketView:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        if isinstance(answer, Exception):
            raise answer
        return replace(answer, pool=pool.name)


def view(**kw) -> MarketView:
    return MarketView(**{"pool": "p", "cloud": "aws", "region": "us-east-1", "observed_at": T0, "source": "aws-api",
                         **kw})


def test_offline_feed_is_the_catalog_plus_interruption_rates():
    feed = MarketFeed(default_catalog())
    q = feed.quote(P4D)
    assert q == replace(default_catalog().quote(P4D), interruption_rate=0.125)
    assert feed.quote(P4D.model_copy(update={"spot": False})).interruption_rate is None  # on-demand: no reclaims
    assert feed.quote(Pool(name="local", kind="local")) is None


def test_restricted_or_unoffered_types_have_zero_headroom_whatever_the_quota():
    assert view(quota_headroom_nodes=5, restricted="NotAvailableForSubscription").capacity_nodes == 0
    assert view(quota_headroom_nodes=5, zones=()).capacity_nodes == 0
    assert view(quota_headroom_nodes=5, zones=("a",)).capacity_nodes == 5
    assert view(zones=None).capacity_nodes is None
    feed = MarketFeed(default_catalog(), {"aws": Market(view(restricted="no"))}, clock=Clock())
    assert feed.quote(P4D).quota_headroom_nodes == 0


def test_live_price_for_a_type_the_catalog_lacks_uses_the_pools_gpu_count():
    pool = P4D.model_copy(update={"instance_type": "p6-b200.48xlarge", "gpus_per_node": 8})
    feed = MarketFeed(default_catalog(), {"aws": Market(view(spot_prices=(ZonePrice("us-east-1a", 16.0),)))},
                      clock=Clock())
    q = feed.quote(pool)
    assert (q.usd_per_node_hour, q.usd_per_gpu_hour, q.spot_discount, q.source) == (16.0, 2.0, 0.0, "aws-api")


def test_an_unexpected_sdk_error_never_escapes_the_feed(caplog):
    feed = MarketFeed(default_catalog(), {"aws": Market(RuntimeError("boom"))}, clock=Clock())
    mq = feed.market_quote(P4D)
    assert mq.quote.source == "catalog" and any("RuntimeError: boom" in w for w in mq.warnings)


def test_a_failed_refresh_keeps_a_fresh_enough_view_and_retries_after_the_interval():
    clock = Clock()
    market = Market(view(spot_prices=(ZonePrice("us-east-1a", 3.0),), quota_headroom_nodes=2),
                    CloudCallFailed("503", throttled=True), CloudCallFailed("503", throttled=True))
    feed = MarketFeed(default_catalog(), {"aws": market}, clock=clock, refresh_s=300, max_age_s=3600)
    assert feed.quote(P4D).usd_per_node_hour == 3.0
    clock.advance(600)
    mq = feed.market_quote(P4D)
    assert mq.quote.usd_per_node_hour == 3.0 and mq.quote.quota_headroom_nodes == 2 and mq.warnings
    feed.quote(P4D)
    assert market.calls == 2  # not again within the refresh interval
    clock.advance(3600)
    stale = feed.market_quote(P4D)
    assert stale.quote.source == "catalog" and stale.quote.quota_headroom_nodes is None and market.calls == 3


def test_feed_from_config_is_offline_unless_asked():
    cfg = ProviderConfig()
    assert MarketFeed.from_config(cfg).markets == {}
    live = MarketFeed.from_config(cfg.model_copy(update={"live_prices": True, "price_max_age_s": 600.0}))
    assert set(live.markets) == {"aws", "gcp", "azure"} and live.max_age_s == 600.0


def test_pure_helpers():
    assert headroom_nodes(384, 192, 96) == 2 and headroom_nodes(96, 192, 96) == 0
    assert headroom_nodes(None, 0, 8) is None and headroom_nodes(16, None, 8) is None
    assert headroom_nodes(24, 0, 8) == 3  # exact multiples are not lost to rounding
    assert min_known([None, 3, 1]) == 1 and min_known([None]) is None
    assert interruption_rate(">20%") == 0.25 and interruption_rate("<5%") == 0.025 and interruption_rate(None) is None


# --- cloud spend ------------------------------------------------------------------------------------


def cost(pool: str, cloud: str) -> float:
    return REGISTRY.get_sample_value("etrid_cloud_cost_usd_total", {"pool": pool, "cloud": cloud}) or 0.0


class Cluster:
    """A `ClusterPort` double: the alive nodes (id → pool) are the test's, all idle; requests are dropped."""

    def __init__(self) -> None:
        self.alive: dict[str, str] = {}

    def nodes(self):
        return [{"NodeID": n, "Alive": True, "Resources": {"GPU": 8.0}, "Labels": pool_selector(p)}
                for n, p in self.alive.items()]

    def available_per_node(self):
        return {n: {"GPU": 8.0} for n in self.alive}

    def draining(self):
        return set()

    def request(self, request) -> None:
        pass


def usd(nodes: int, usd_per_node_hour: float, seconds: float) -> float:
    return nodes * usd_per_node_hour * seconds / 3600


def test_spend_accrues_per_node_second_into_the_budget_window_and_the_counter():
    """The scaler bills by `scaling.billing` (per second, a minute at least; tests/test_shared_tick.py: from the
    request, as the simulator): a node nobody asked for is billed from when it is first seen alive."""
    cfg = ProviderConfig(ENABLE_TEE=False)
    cluster = Cluster()
    scaler = Scaler(cfg, pools_from_config(cfg), cluster=cluster)
    assert scaler.prices["aws-spot-a100"].interruption_rate == 0.125  # the default feed: catalog + rates
    before_aws, before_azure = cost("aws-spot-a100", "aws"), cost("azure-spot-a100", "azure")
    day = 20_000 * 86_400.0
    cluster.alive = {"a1": "aws-spot-a100", "a2": "aws-spot-a100", "z1": "azure-spot-a100", "l1": "local-gpu"}
    scaler.observe([], day)  # first seen: nothing accrued yet
    assert scaler.spend_usd == 0
    scaler.observe([], day + 90)
    aws, azure = usd(2, 2.4655, 90), usd(1, 3.6047, 90)
    assert scaler.spend_usd == pytest.approx(aws + azure)  # local power is not cloud spend
    assert cost("aws-spot-a100", "aws") - before_aws == pytest.approx(aws)
    assert cost("azure-spot-a100", "azure") - before_azure == pytest.approx(azure)
    del cluster.alive["z1"]  # gone: billed until last seen alive
    scaler.observe([], day + 86_400 + 10)  # a new UTC day: the window holds only today's seconds …
    assert scaler.spend_usd == pytest.approx(usd(2, 2.4655, 10))
    # … the counter everything billed
    assert cost("aws-spot-a100", "aws") - before_aws == pytest.approx(usd(2, 2.4655, 86_410))
    assert cost("azure-spot-a100", "azure") - before_azure == pytest.approx(azure)
    cluster.alive["z2"] = "azure-spot-a100"
    scaler.observe([], day + 86_420)
    del cluster.alive["z2"]
    scaler.observe([], day + 86_430)  # seen alive for 0 s: charged a minute
    assert scaler.spend_usd == pytest.approx(usd(2, 2.4655, 30) + usd(1, 3.6047, 60))
    assert cost("azure-spot-a100", "azure") - before_azure == pytest.approx(azure + usd(1, 3.6047, 60))


def test_scaler_reprices_from_its_source_every_refresh_interval():
    class Source:
        calls = 0

        def quote(self, pool: Pool):
            Source.calls += 1
            q = default_catalog().quote(pool)
            return q and replace(q, usd_per_node_hour=float(Source.calls))

    cfg = ProviderConfig(ENABLE_TEE=False, gcp_enabled=False, azure_enabled=False, price_refresh_s=60)
    scaler = Scaler(cfg, pools_from_config(cfg), price_source=Source())
    first = scaler.prices["aws-spot-a100"].usd_per_node_hour
    now = scaler.prices_at
    assert not scaler.maybe_refresh_prices(now + 30)
    assert scaler.maybe_refresh_prices(now + 61)
    assert scaler.prices["aws-spot-a100"].usd_per_node_hour > first
    fixed = Scaler(cfg, pools_from_config(cfg), prices={"aws-spot-a100": scaler.prices["aws-spot-a100"]})
    assert not fixed.maybe_refresh_prices(now + 10_000)  # explicit prices are never replaced


def test_a_slow_cloud_api_never_holds_up_the_scaling_loop():
    """With background refresh (the head's setting) a re-price that blocks on the cloud runs on its own thread:
    the loop returns at once and decides on the last quotes; one refresh is in flight at a time; its quotes
    replace the old ones whole when it finishes."""
    answer = threading.Event()
    started = threading.Event()

    class SlowSource:
        slow = False  # the first (synchronous) pricing at start-up answers at once

        def quote(self, pool: Pool):
            if SlowSource.slow:
                started.set()
                assert answer.wait(30)
            q = default_catalog().quote(pool)
            return q and replace(q, usd_per_node_hour=2.0 if SlowSource.slow else 1.0)

    cfg = ProviderConfig(ENABLE_TEE=False, gcp_enabled=False, azure_enabled=False, price_refresh_s=60)
    scaler = Scaler(cfg, pools_from_config(cfg), price_source=SlowSource(), refresh_in_background=True)
    before = scaler.prices
    assert before["aws-spot-a100"].usd_per_node_hour == 1.0
    now = scaler.prices_at
    SlowSource.slow = True
    t0 = time.perf_counter()
    assert scaler.maybe_refresh_prices(now + 61)
    assert started.wait(10)
    assert time.perf_counter() - t0 < 1.0 and scaler.prices is before  # the loop goes on with the old quotes
    assert not scaler.maybe_refresh_prices(now + 200)  # still in flight: no second refresh
    answer.set()
    assert scaler._refreshing is not None
    scaler._refreshing.join(10)
    assert scaler.prices is not before and scaler.prices["aws-spot-a100"].usd_per_node_hour == 2.0
    assert scaler.prices_at == now + 61
