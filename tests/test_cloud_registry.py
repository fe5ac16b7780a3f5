"""The cloud registry (etrid_ray/clouds/registry.py): every fact about a cloud lives in its one class, and
everything that used to name clouds one by one — the config and its flat keys, the pools, the KubeRay
render, the simulator, the market feed, spot-watch — loops over the registry. A cloud registered here, in
one class, appears in all of them without another module knowing it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
from pydantic import Field

from etrid_ray.chain.errors import ConfigError
from etrid_ray.clouds.base import MarketView
from etrid_ray.clouds.feed import MarketFeed, live_markets
from etrid_ray.clouds.registry import Cloud, CloudSettings, clouds, find, names, notice_clouds, registered
from etrid_ray.config import ProviderConfig, load_config, pools_from_config
from etrid_ray.config_example import example_yaml
from etrid_ray.kuberay import render as r
from etrid_ray.pools import Pool
from etrid_ray.prices.catalog import PriceQuote
from etrid_ray.sim import SimSettings, Simulator, build_scenario, simulate
from tests.sim_support import jobs

POOL = "lambda-spot-a100"


class LambdaSettings(CloudSettings):
    """`clouds.lambdalabs` (flat: `lambdalabs_region`, …)."""

    enabled: bool = Field(True, description="burst to the Lambda pool")
    region: str = Field("us-west-1", description="Lambda region")
    instance_type: str = Field("gpu_8x_a100", description="Lambda instance type")
    spot_max_price: float | None = Field(20.0, gt=0, description="USD per node-hour")
    max_nodes: int = Field(2, ge=0, description="most nodes of the Lambda pool")


class FakeMarket:
    cloud: ClassVar[str] = "lambdalabs"

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.clock = clock
        self.views = 0

    def view(self, pool: Pool) -> MarketView:
        self.views += 1
        return MarketView(pool=pool.name, cloud=self.cloud, region=pool.region, observed_at=self.clock(),
                          source="lambda-api", zones=("us-west-1a",), quota_headroom_nodes=1)


class Lambda(Cloud):
    """The whole of a new cloud: its settings and defaults, its pool, startup and notice, its pods' scheduling
    and its market reader."""

    name = "lambdalabs"
    order = 40
    title = "Lambda"
    Settings = LambdaSettings
    pool_name = POOL
    startup_s = 200.0
    notice_s = 45.0

    def spot_scheduling(self, pool: Pool, selector: dict[str, str], tolerations: list[dict[str, str]]) -> None:
        selector["lambdalabs.com/capacity"] = "spot"
        tolerations.append({"key": "lambdalabs.com/spot", "operator": "Exists", "effect": "NoSchedule"})

    def market(self, settings: Any, clouds: Any, clock: Callable[[], datetime]) -> FakeMarket:
        return FakeMarket(clock)


@pytest.fixture
def lam() -> Iterator[Cloud]:
    with registered(Lambda) as cloud:
        yield cloud
    assert find("lambdalabs") is None  # gone again: no other test sees it


def test_the_built_in_clouds_and_their_facts() -> None:
    assert names() == ["local", "aws", "gcp", "azure"]
    facts = {c.name: (c.is_cloud, c.startup_s, c.notice_s) for c in clouds()}
    assert facts == {"local": (False, 0.0, 30.0), "aws": (True, 180.0, 120.0), "gcp": (True, 150.0, 30.0),
                     "azure": (True, 240.0, 30.0)}
    assert notice_clouds() == ["aws", "gcp", "azure"]
    pools = {p.name: p for p in pools_from_config(ProviderConfig())}
    assert {n: (p.kind, p.startup_s) for n, p in pools.items()} == {
        "local-gpu": ("local", 0.0), "aws-spot-a100": ("aws", 180.0), "gcp-spot-a100": ("gcp", 150.0),
        "azure-spot-a100": ("azure", 240.0)}


def test_a_pool_of_an_unknown_cloud_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown cloud 'lambdalabs'"):
        Pool(name="x", kind="lambdalabs")


def test_a_new_cloud_has_a_config_section_and_the_seed_style_flat_keys(lam: Cloud) -> None:
    c = ProviderConfig()
    assert c.clouds.of("lambdalabs") == LambdaSettings() and c.lambdalabs_region == "us-west-1"
    c = load_config(env={"ETRID_LAMBDALABS_MAX_NODES": "3"}, overrides={"lambdalabs_region": "us-east-3"})
    assert (c.clouds.lambdalabs.region, c.clouds.lambdalabs.max_nodes) == ("us-east-3", 3)
    c = load_config(env={}, overrides={"clouds": {"lambdalabs": {"enabled": False}}})
    assert c.lambdalabs_enabled is False
    with pytest.raises(ConfigError, match="lambdalabs_max_nodes: Input should be greater than or equal to 0"):
        load_config(env={}, overrides={"lambdalabs_max_nodes": -1})
    with pytest.raises(ConfigError, match="clouds.lambdalabs.regoin: unknown setting: did you mean region"):
        load_config(env={}, overrides={"clouds": {"lambdalabs": {"regoin": "x"}}})
    assert "  lambdalabs:\n" in example_yaml() and "    instance_type: gpu_8x_a100\n" in example_yaml()


def test_a_new_cloud_appears_in_pools_and_the_kuberay_render(lam: Cloud) -> None:
    config = ProviderConfig(lambdalabs_max_nodes=3)
    pool = {p.name: p for p in pools_from_config(config)}[POOL]
    assert (pool.kind, pool.is_cloud, pool.region, pool.instance_type, pool.max_nodes, pool.startup_s) == (
        "lambdalabs", True, "us-west-1", "gpu_8x_a100", 3, 200.0)
    assert pools_from_config(config)[-1] == pool  # in the registry's order: after azure
    groups = {g["groupName"]: g for g in r.raycluster(config)["spec"]["workerGroupSpecs"]}
    spec = groups[POOL]["template"]["spec"]
    assert spec["nodeSelector"] == {"node.kubernetes.io/instance-type": "gpu_8x_a100",
                                    "topology.kubernetes.io/region": "us-west-1", "lambdalabs.com/capacity": "spot"}
    assert {t["key"] for t in spec["tolerations"]} == {"nvidia.com/gpu", "lambdalabs.com/spot"}
    assert "initContainers" not in spec  # no notice endpoint: no spot-watch sidecar
    assert groups[POOL]["maxReplicas"] == 3
    assert "lambdalabs" not in notice_clouds()


def test_a_new_cloud_is_priced_by_its_own_market(lam: Cloud) -> None:
    config = ProviderConfig(live_prices=True)
    markets = live_markets(config, clock=lambda: datetime(2026, 11, 2, tzinfo=UTC))
    assert isinstance(markets["lambdalabs"], FakeMarket) and set(markets) == {"aws", "gcp", "azure", "lambdalabs"}
    feed = MarketFeed(markets={"lambdalabs": markets["lambdalabs"]}, clock=markets["lambdalabs"].clock)
    pool = {p.name: p for p in pools_from_config(config)}[POOL]
    quote = feed.market_quote(pool)
    assert quote.view is not None and quote.view.source == "lambda-api" and quote.quote is None  # not catalogued


def test_a_new_cloud_runs_in_the_simulator_with_its_startup_and_notice(lam: Cloud) -> None:
    config = ProviderConfig(aws_enabled=False, gcp_enabled=False, azure_enabled=False)
    quote = PriceQuote(pool=POOL, cloud="lambdalabs", region="us-west-1", zone=None, usd_per_node_hour=8.0,
                       usd_per_gpu_hour=1.0, ondemand_usd_per_hour=16.0, spot_discount=0.5,
                       instance_type="gpu_8x_a100", interruption_rate=0.0)
    sim = SimSettings(local_gpus=0, base_config=config, price_per_gpu_hour=2.0, prices={POOL: quote},
                      interruptions=False, patience_s=None)
    assert [p.name for p in build_scenario(sim).pools] == [POOL]
    assert Simulator(jobs((0, 60, 8)), "profit", sim).by_name[POOL].notice_s == 45.0  # reclaimed 45 s after notice
    result = simulate(jobs((0, 3600, 8)), "cheapest-burst", sim)
    assert result.jobs["completed"] == 1 and result.node_launches == {POOL: 1}
    assert result.wait_s["p50"] == pytest.approx(200.0)  # the cloud's own startup time
    assert result.cloud_cost_usd == pytest.approx(8.0 * (200 + 3600 + 300) / 3600)
