"""Specification of the shipped price catalog and the PriceSource interface placement reads."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from etrid_ray.config import ProviderConfig, pools_from_config
from etrid_ray.pools import Pool
from etrid_ray.prices import (
    CATALOG_AS_OF,
    CatalogRow,
    FallbackSource,
    PriceCatalog,
    PriceQuote,
    PriceSource,
    default_catalog,
    quotes_for,
)

SHARED_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "gpu_prices.csv"
PACKAGED_CSV = Path(__file__).resolve().parents[1] / "etrid_ray" / "data" / "gpu_prices.csv"


def aws(instance: str, region: str, *, spot: bool = True, name: str = "p") -> Pool:
    return Pool(name=name, kind="aws", instance_type=instance, region=region, spot=spot)


def quote(pool: Pool) -> PriceQuote:
    q = default_catalog().quote(pool)
    assert q is not None, f"no quote for {pool}"
    return q


# --- the default pools are priced from the shipped CSV ---------------------------------------------


def test_every_default_cloud_pool_gets_a_quote_from_the_shipped_catalog():
    pools = pools_from_config(ProviderConfig(ENABLE_TEE=True))
    quotes = quotes_for(pools)
    assert set(quotes) == {p.name for p in pools if p.is_cloud}
    assert all(q.source == "catalog" and q.as_of == CATALOG_AS_OF for q in quotes.values())


@pytest.mark.parametrize("pool_name, cloud, region, zone, node_hour, gpus", [
    ("aws-spot-a100", "aws", "us-east-1", "use1-az1", 2.4655, 8),  # cheapest of four zones (7.88 … 8.19 elsewhere)
    ("gcp-spot-a100", "gcp", "europe-west4", "europe-west4-a", 21.08704, 8),
    ("azure-spot-a100", "azure", "eastus", None, 3.6047, 8),  # Azure rows have no zone
    ("azure-tee-h100", "azure", "eastus2", None, 1.745, 1),
])
def test_default_pool_quotes(pool_name, cloud, region, zone, node_hour, gpus):
    q = quotes_for(pools_from_config(ProviderConfig(ENABLE_TEE=True)))[pool_name]
    assert (q.pool, q.cloud, q.region, q.zone) == (pool_name, cloud, region, zone)
    assert q.usd_per_node_hour == pytest.approx(node_hour)
    assert q.usd_per_gpu_hour == pytest.approx(node_hour / gpus)  # revenue is per GPU: compare per GPU
    assert q.spot


def test_quote_carries_on_demand_price_discount_and_interruption_bucket():
    q = quote(aws("p4d.24xlarge", "us-east-1"))
    assert q.ondemand_usd_per_hour == pytest.approx(21.957642)
    assert q.spot_discount == pytest.approx(1 - 2.4655 / 21.957642)
    assert q.interruption_bucket == "10-15%"  # AWS Spot Advisor, aws_spot_interruption.csv
    assert q.instance_type == "p4d.24xlarge"


def test_interruption_bucket_is_unknown_outside_aws():
    assert quotes_for(pools_from_config(ProviderConfig()))["gcp-spot-a100"].interruption_bucket is None


def test_catalog_date_is_november_2026_and_quotes_know_their_age():
    assert (CATALOG_AS_OF.year, CATALOG_AS_OF.month) == (2026, 11)
    q = quote(aws("p4d.24xlarge", "us-east-1"))
    assert q.age_s(datetime(2026, 11, 2, tzinfo=UTC)) == pytest.approx(86400)


# --- "no spot" rows ---------------------------------------------------------------------------------


def test_spot_equal_to_on_demand_in_every_zone_means_no_spot_offer():
    assert default_catalog().quote(aws("p4d.24xlarge", "ap-south-1")) is None  # 26.3444 = on-demand, 3 zones


def test_empty_spot_cells_mean_no_spot_offer():
    assert default_catalog().quote(aws("p5.48xlarge", "ap-northeast-2")) is None


def test_azure_spot_equal_to_on_demand_means_no_spot_offer():
    pool = Pool(name="h", kind="azure", instance_type="Standard_ND96isr_H100_v5", region="eastus")
    assert default_catalog().quote(pool) is None


def test_zones_without_spot_are_skipped_and_the_real_offer_is_quoted():
    q = quote(aws("p5.48xlarge", "eu-north-1"))  # two empty zones, one at 28.3188
    assert (q.zone, q.usd_per_node_hour) == ("eun1-az3", pytest.approx(28.3188))


def test_placeholder_zones_never_undercut_a_real_spot_price():
    rows = [CatalogRow("aws", "x.big", "A100", 8, "r1", "z-empty", 10.0, None),
            CatalogRow("aws", "x.big", "A100", 8, "r1", "z-real", 10.0, 6.0),
            CatalogRow("aws", "x.big", "A100", 8, "r1", "z-cheaper", 10.0, 4.0)]
    q = PriceCatalog(rows).quote(aws("x.big", "r1"))
    assert q is not None and (q.zone, q.usd_per_node_hour, q.usd_per_gpu_hour) == ("z-cheaper", 4.0, 0.5)


def test_on_demand_pool_is_quoted_at_on_demand_even_without_spot():
    q = quote(aws("p4d.24xlarge", "ap-south-1", spot=False))
    assert q.usd_per_node_hour == pytest.approx(26.3444) and q.spot_discount == 0 and not q.spot


# --- what cannot be priced --------------------------------------------------------------------------


def test_local_pool_has_no_catalog_price():
    local = next(p for p in pools_from_config(ProviderConfig()) if p.kind == "local")
    assert default_catalog().quote(local) is None  # its cost is electricity: Pool.local_cost_per_gpu_hour()


@pytest.mark.parametrize("pool", [
    aws("p4d.24xlarge", "mars-north-1"),
    aws("no-such.type", "us-east-1"),
    Pool(name="g", kind="gcp", instance_type="p4d.24xlarge", region="us-east-1"),  # AWS type under GCP
    Pool(name="n", kind="aws", instance_type=None, region="us-east-1"),
])
def test_unknown_offers_get_no_quote(pool):
    assert default_catalog().quote(pool) is None


# --- the interface live feeds implement -------------------------------------------------------------


class Live:
    def __init__(self, price: float | None) -> None:
        self.price = price

    def quote(self, pool: Pool) -> PriceQuote | None:
        if self.price is None:
            return None
        return PriceQuote(pool=pool.name, cloud=pool.kind, region=pool.region, zone="z", usd_per_node_hour=self.price,
                          usd_per_gpu_hour=self.price / pool.gpus_per_node, ondemand_usd_per_hour=20.0,
                          spot_discount=1 - self.price / 20, source="aws-api", as_of=datetime.now(UTC))


def test_catalog_and_live_feeds_share_the_price_source_interface():
    assert isinstance(default_catalog(), PriceSource)
    assert isinstance(Live(1.0), PriceSource)


def test_fallback_prefers_the_live_feed_and_falls_back_to_the_catalog():
    pool = aws("p4d.24xlarge", "us-east-1")
    assert quotes_for([pool], FallbackSource(Live(3.0), default_catalog()))["p"].source == "aws-api"
    fallback = quotes_for([pool], FallbackSource(Live(None), default_catalog()))["p"]
    assert fallback.source == "catalog" and fallback.usd_per_node_hour == pytest.approx(2.4655)


def test_default_catalog_is_read_once():
    assert default_catalog() is default_catalog()


def test_packaged_prices_are_the_shared_data_file():
    if not SHARED_CSV.exists():
        pytest.skip("no ../shared/data in this checkout")
    assert PACKAGED_CSV.read_bytes() == SHARED_CSV.read_bytes()
