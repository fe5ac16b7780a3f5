"""AWS market reader against moto's server (real HTTP on 127.0.0.1), plus recorded answers where
moto has none (GPU Service Quotas) and for EC2 throttling."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from etrid_ray.clouds import CloudCallFailed, CredentialsMissing, MarketFeed
from etrid_ray.clouds.aws import AwsMarket, latest_per_zone, quota_code, quota_family, used_vcpus
from etrid_ray.pools import Pool
from etrid_ray.prices import default_catalog
from tests.clouds_support import (
    T0,
    Clock,
    aws_session,
    fake_aws_env,
    moto_server,
    no_aws_credentials,
    recorded,
    reply,
)

P4D = Pool(name="aws-spot-a100", kind="aws", instance_type="p4d.24xlarge", region="us-east-1", max_nodes=4)


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_server() as url:
        yield url


def market(url: str, **kw) -> AwsMarket:
    return AwsMarket(session=aws_session(), endpoint_url=url, max_attempts=1, timeout_s=30, clock=Clock(), **kw)


# --- live spot prices from moto ---------------------------------------------------------------------


def test_spot_prices_per_zone_come_from_describe_spot_price_history(moto):
    view = market(moto).view(P4D)
    assert view.cloud == "aws" and view.source == "aws-api" and view.observed_at == T0
    assert [p.zone for p in view.spot_prices] == ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"]
    assert {p.usd_per_hour for p in view.spot_prices} == {0.00001}  # what moto's server answers
    assert view.zones == ("us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d")


def test_moto_lacks_spot_placement_scores_and_gpu_quotas_both_degrade_to_unknown(moto):
    m = market(moto)
    view = m.view(P4D)
    assert view.placement_score is None and view.quota_headroom_nodes is None
    assert "spot placement score unavailable (GetSpotPlacementScores not implemented by this endpoint" \
        " (it answered a non-AWS error page))" in view.notes
    assert any(n.startswith("quota L-7212CCBC unknown (NoSuchResource") for n in view.notes)
    assert m.placement_scores_unavailable  # not asked again on the next refresh
    assert m.view(P4D).placement_score is None


def test_feed_quotes_the_live_price_with_its_source_age_and_catalog_on_demand_reference(moto):
    clock = Clock()
    feed = MarketFeed(default_catalog(), {"aws": market(moto)}, clock=clock)
    q = feed.quote(P4D)
    assert q is not None and q.source == "aws-api" and q.as_of == T0 and q.age_s(clock()) == 0
    assert q.usd_per_node_hour == 0.00001 and q.usd_per_gpu_hour == pytest.approx(0.00001 / 8)
    assert q.ondemand_usd_per_hour == default_catalog().quote(P4D).ondemand_usd_per_hour  # the catalog's reference
    assert q.spot_discount == pytest.approx(1.0, abs=1e-5)
    assert q.interruption_bucket == "10-15%" and q.interruption_rate == 0.125  # aws_spot_interruption.csv
    assert q.quota_headroom_nodes is None  # moto: quota unknown, placement ignores it


def test_a_type_without_spot_offer_in_the_region_has_no_capacity(moto):
    pool = P4D.model_copy(update={"region": "af-south-1"})  # moto offers no p4d there
    feed = MarketFeed(default_catalog(), {"aws": market(moto)}, clock=Clock())
    mq = feed.market_quote(pool)
    assert mq.view is not None and mq.view.zones == () and mq.view.capacity_nodes == 0
    assert any("no spot offer" in n for n in mq.notes)


# --- GPU quota headroom: moto's instances + recorded Service Quotas --------------------------------


def test_quota_headroom_counts_running_p_instances_in_vcpus(moto):
    import boto3

    region = "us-west-2"
    ec2 = boto3.client("ec2", endpoint_url=moto, region_name=region, aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.run_instances(ImageId=ami, MinCount=2, MaxCount=2, InstanceType="p4d.24xlarge",
                      InstanceMarketOptions={"MarketType": "spot"})  # 2 × 96 vCPUs of spot
    ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="p5.48xlarge")  # 192 on-demand vCPUs
    ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="g5.xlarge",
                      InstanceMarketOptions={"MarketType": "spot"})  # another family's quota
    with recorded("aws/service_quotas.json") as sq:
        m = market(moto, service_endpoints={"service-quotas": sq.url})
        spot = m.view(P4D.model_copy(update={"region": region}))
        ondemand = m.view(P4D.model_copy(update={"region": region, "spot": False, "name": "aws-od"}))
        assert not sq.unmatched
    assert spot.quota_headroom_nodes == 2  # (384 − 192) / 96
    assert "quota L-7212CCBC: 192 of 384 vCPUs used" in spot.notes
    assert ondemand.quota_headroom_nodes == 0  # 96-vCPU quota, 192 already used by the p5
    assert ondemand.capacity_nodes == 0


def test_quota_codes_by_family():
    assert quota_family("p4d.24xlarge") == quota_family("p5.48xlarge") == "p"
    assert quota_family("g6e.xlarge") == "g" and quota_family("vt1.3xlarge") == "vt"
    assert quota_family("m5.large") is None and quota_family("gr6.4xlarge") is None
    assert quota_code("p4d.24xlarge", spot=True) == "L-7212CCBC"
    assert quota_code("p4d.24xlarge", spot=False) == "L-417A185B"
    insts = [{"InstanceType": "p4d.24xlarge", "InstanceLifecycle": "spot"}, {"InstanceType": "p5.48xlarge"},
             {"InstanceType": "g5.xlarge", "InstanceLifecycle": "spot"}]
    assert used_vcpus(insts, "p", True, {"p4d.24xlarge": 96, "p5.48xlarge": 192}) == 96
    assert used_vcpus(insts, "p", False, {"p4d.24xlarge": 96, "p5.48xlarge": 192}) == 192


# --- recorded EC2 answers: realistic prices, throttling ---------------------------------------------


def test_latest_record_per_zone_is_the_price_in_effect_and_throttling_is_retried():
    with recorded("aws/ec2.json") as ec2:
        ec2.add("POST", "/", reply("aws/ec2.json", "throttle_503"), reply("aws/ec2.json", "spot_price_history"),
                form={"Action": "DescribeSpotPriceHistory"})
        ec2.add("POST", "/", reply("aws/ec2.json", "instance_types"), form={"Action": "DescribeInstanceTypes"})
        m = AwsMarket(session=aws_session(), endpoint_url=ec2.url, max_attempts=3, timeout_s=30, clock=Clock())
        view = m.view(P4D)
        calls = [r.form.get("Action") for r in ec2.requests]
        q = MarketFeed(default_catalog(), {"aws": m}, clock=Clock()).quote(P4D)
    assert calls.count("DescribeSpotPriceHistory") == 2  # RequestLimitExceeded, then the answer
    assert [(p.zone, p.usd_per_hour) for p in view.spot_prices] == [("us-east-1a", 2.5123), ("us-east-1b", 7.8818)]
    assert (q.zone, q.usd_per_node_hour, q.source) == ("us-east-1a", 2.5123, "aws-api")
    assert q.spot_discount == pytest.approx(1 - 2.5123 / q.ondemand_usd_per_hour)


def test_persistent_throttling_is_a_throttled_failure_and_the_feed_falls_back_to_the_catalog(caplog):
    with recorded() as ec2:
        ec2.add("POST", "/", reply("aws/ec2.json", "throttle_503"))
        m = AwsMarket(session=aws_session(), endpoint_url=ec2.url, max_attempts=2, timeout_s=30, clock=Clock())
        with pytest.raises(CloudCallFailed) as err:
            m.view(P4D)
        assert err.value.throttled and "RequestLimitExceeded" in str(err.value)
        mq = MarketFeed(default_catalog(), {"aws": m}, clock=Clock()).market_quote(P4D)
    assert mq.quote == replace(default_catalog().quote(P4D), interruption_rate=0.125)
    assert mq.quote.source == "catalog" and mq.view is None
    assert any("live aws market unavailable" in w and "RequestLimitExceeded" in w for w in mq.warnings)
    assert "aws market throttled" in caplog.text


def test_stale_live_price_falls_back_to_the_catalog_with_a_warning(moto, caplog):
    clock = Clock()
    feed = MarketFeed(default_catalog(), {"aws": market(moto)}, clock=clock, max_age_s=3600, refresh_s=300)
    assert feed.quote(P4D).source == "aws-api"
    with recorded() as down:  # the endpoint now answers 503 to everything
        down.add("POST", "/", reply("aws/ec2.json", "throttle_503"))
        feed.markets["aws"] = AwsMarket(session=aws_session(), endpoint_url=down.url, max_attempts=1, clock=clock)
        clock.advance(1800)  # refresh due, fails: the cached live price is 30 min old, still used
        half = feed.market_quote(P4D)
        assert half.quote.source == "aws-api" and half.quote.age_s(clock()) == 1800
        assert any("unavailable" in w for w in half.warnings)
        clock.advance(5400)  # 2 h old now: stale
        stale = feed.market_quote(P4D)
    assert stale.quote.source == "catalog" and stale.quote.usd_per_node_hour == 2.4655
    assert any("is 2.0 h old (max 1 h): catalog price used" in w for w in stale.warnings)
    assert "catalog price used" in caplog.text


def test_feed_asks_the_cloud_at_most_once_per_refresh_interval():
    with recorded("aws/ec2.json") as ec2:
        ec2.add("POST", "/", reply("aws/ec2.json", "spot_price_history"), form={"Action": "DescribeSpotPriceHistory"})
        ec2.add("POST", "/", reply("aws/ec2.json", "instance_types"), form={"Action": "DescribeInstanceTypes"})
        clock = Clock()
        feed = MarketFeed(default_catalog(), {"aws": AwsMarket(session=aws_session(), endpoint_url=ec2.url,
                                                               max_attempts=1, clock=clock)}, clock=clock)
        for _ in range(5):
            feed.quote(P4D)
            clock.advance(30)
        first = sum(1 for r in ec2.requests if r.form.get("Action") == "DescribeSpotPriceHistory")
        clock.advance(300)
        feed.quote(P4D)
        second = sum(1 for r in ec2.requests if r.form.get("Action") == "DescribeSpotPriceHistory")
    assert (first, second) == (1, 2)


# --- credentials ------------------------------------------------------------------------------------


def test_no_credentials_means_no_call_and_the_catalog(monkeypatch, tmp_path: Path, moto):
    no_aws_credentials(monkeypatch, tmp_path)
    m = AwsMarket(endpoint_url=moto, max_attempts=1, clock=Clock())
    with pytest.raises(CredentialsMissing):
        m.view(P4D)
    mq = MarketFeed(default_catalog(), {"aws": m}, clock=Clock()).market_quote(P4D)
    assert mq.quote.source == "catalog" and mq.quote.usd_per_node_hour == 2.4655
    assert any("no credentials" in w for w in mq.warnings)


def test_credentials_from_the_environment_reach_moto(monkeypatch, tmp_path: Path, moto):
    fake_aws_env(monkeypatch, tmp_path)
    view = AwsMarket(endpoint_url=moto, max_attempts=1, clock=Clock()).view(P4D)
    assert view.spot_prices


def test_latest_per_zone_ignores_records_without_zone_or_price():
    from datetime import timedelta

    recs = [{"AvailabilityZone": "a", "SpotPrice": "1.0", "Timestamp": T0},
            {"AvailabilityZone": "a", "SpotPrice": "2.0", "Timestamp": T0 + timedelta(hours=1)},
            {"AvailabilityZone": "b", "Timestamp": T0}, {"SpotPrice": "0.1", "Timestamp": T0}]
    assert [(p.zone, p.usd_per_hour) for p in latest_per_zone(recs)] == [("a", 2.0)]
