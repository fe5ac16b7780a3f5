"""Azure market reader: the real azure-mgmt-compute client, `base_url=` a local TLS server that
replays recorded ARM responses, authenticated by a TokenCredential of our own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from etrid_ray.clouds import CloudCallFailed, CredentialsMissing, MarketFeed
from etrid_ray.clouds.azure import AzureMarket
from etrid_ray.pools import Pool
from etrid_ray.prices import default_catalog
from tests.clouds_support import T0, Clock, FakeAzureCredential, recorded, reply
from tests.helpers.recorded_api import RecordedApi, self_signed_cert

SUB = "00000000-0000-0000-0000-0000000e7a1d"
SKUS = f"/subscriptions/{SUB}/providers/Microsoft.Compute/skus"
ND96 = Pool(name="azure-spot-a100", kind="azure", instance_type="Standard_ND96amsr_A100_v4", region="eastus",
            max_nodes=4)
TEE = Pool(name="azure-tee-h100", kind="azure", accelerator="H100", gpus_per_node=1, cpus_per_node=40,
           instance_type="Standard_NCC40ads_H100_v5", region="eastus2", tee="sev-snp", vram_gb=94)


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture()
def api(cert) -> Iterator[RecordedApi]:
    with recorded("azure/compute.json", tls=cert) as server:
        yield server


def market(api: RecordedApi, cert, credential=None, **kw) -> AzureMarket:
    kw = {"retry_total": 2, "retry_backoff_factor": 0.0, "timeout_s": 30.0, **kw}
    return AzureMarket(subscription_id=SUB, credential=credential or FakeAzureCredential(), base_url=api.url,
                       connection_verify=str(cert[0]), clock=Clock(), **kw)


def test_spot_sku_in_region_with_zone_restriction_and_low_priority_headroom(api, cert):
    cred = FakeAzureCredential()
    view = market(api, cert, cred).view(ND96)
    assert view.source == "azure-api" and view.observed_at == T0 and view.restricted is None
    assert view.zones == ("1", "2")  # zone 3 restricted for the subscription
    assert "zones 3 restricted (NotAvailableForSubscription)" in view.notes
    assert view.quota_headroom_nodes == 3  # lowPriorityCores: (500 − 192) / 96
    assert "quota lowPriorityCores: 192 of 500 vCPUs used" in view.notes
    assert cred.scopes == [("https://management.azure.com/.default",)]
    assert {r.headers["authorization"] for r in api.requests} == {"Bearer fake-arm-token"}
    assert not api.unmatched


def test_on_demand_headroom_is_the_tighter_of_family_and_regional_quota(api, cert):
    view = market(api, cert).view(ND96.model_copy(update={"spot": False}))
    assert view.quota_headroom_nodes == 1  # family (192 − 96) / 96 = 1, regional cores (350 − 96) / 96 = 2


def test_a_location_restricted_sku_has_no_capacity(api, cert):
    pool = ND96.model_copy(update={"instance_type": "Standard_NC24ads_A100_v4", "gpus_per_node": 1})
    view = market(api, cert).view(pool)
    assert view.restricted and "NotAvailableForSubscription" in view.restricted
    assert view.capacity_nodes == 0


def test_skus_are_read_across_pages_and_spot_needs_low_priority_capability(api, cert):
    pool = ND96.model_copy(update={"instance_type": "Standard_NC6s_v3", "gpus_per_node": 1})  # on page 2
    view = market(api, cert).view(pool)
    assert view.restricted == "Standard_NC6s_v3 is not spot-capable" and view.capacity_nodes == 0
    assert api.hits(SKUS) == 2  # nextLink followed


def test_a_size_not_offered_in_the_region_has_no_capacity(api, cert):
    view = market(api, cert).view(ND96.model_copy(update={"instance_type": "Standard_ND96isr_H100_v5"}))
    assert view.restricted == "Standard_ND96isr_H100_v5 not offered in eastus" and view.capacity_nodes == 0


def test_feed_prices_from_the_catalog_and_zero_low_priority_quota_blocks_the_pool(api, cert):
    feed = MarketFeed(default_catalog(), {"azure": market(api, cert)}, clock=Clock())
    q = feed.quote(ND96)
    assert q.source == "catalog" and q.usd_per_node_hour == pytest.approx(3.6047) and q.zone is None
    assert q.quota_headroom_nodes == 3 and q.interruption_rate is None
    tee = feed.quote(TEE)
    assert tee.quota_headroom_nodes == 0  # eastus2: lowPriorityCores limit 0
    assert tee.usd_per_node_hour == pytest.approx(1.745)


# --- errors and throttling --------------------------------------------------------------------------


def test_throttling_with_retry_after_is_retried_by_the_sdk(api, cert):
    api.add("GET", SKUS, reply("azure/compute.json", "throttle_429"), *api.routes[1].replies,
            query={"$filter": "location eq 'eastus'"}, first=True)
    view = market(api, cert).view(ND96)
    assert view.quota_headroom_nodes == 3
    assert [r.path for r in api.requests].count(SKUS) == 2  # 429, then page 1 (the size is on it)


def test_persistent_503_is_a_throttled_failure_and_the_feed_uses_the_catalog(api, cert, caplog):
    api.add("GET", SKUS, reply("azure/compute.json", "unavailable_503"), first=True)
    m = market(api, cert, retry_total=1)
    with pytest.raises(CloudCallFailed) as err:
        m.view(ND96)
    assert err.value.throttled and "503" in str(err.value)
    mq = MarketFeed(default_catalog(), {"azure": m}, clock=Clock()).market_quote(ND96)
    assert mq.quote.source == "catalog" and mq.quote.quota_headroom_nodes is None
    assert "azure market throttled" in caplog.text


def test_a_rejected_token_is_a_failure(api, cert):
    api.add("GET", SKUS, reply("azure/compute.json", "unauthorized_401"), first=True)
    with pytest.raises(CloudCallFailed) as err:
        market(api, cert).view(ND96)
    assert not err.value.throttled and "401" in str(err.value)


def test_no_subscription_means_no_call_and_the_catalog(monkeypatch):
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID", raising=False)
    m = AzureMarket(credential=FakeAzureCredential(), base_url="https://127.0.0.1:9", clock=Clock())
    with pytest.raises(CredentialsMissing, match="no subscription id"):
        m.view(ND96)
    mq = MarketFeed(default_catalog(), {"azure": m}, clock=Clock()).market_quote(ND96)
    assert mq.quote.source == "catalog" and any("no subscription id" in w for w in mq.warnings)


def test_without_a_credential_and_without_azure_identity_nothing_is_sent(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "azure.identity", None)  # an install without azure-identity
    with pytest.raises(CredentialsMissing, match="azure-identity"):
        AzureMarket(subscription_id=SUB, base_url="https://127.0.0.1:9", clock=Clock()).view(ND96)


def test_without_a_credential_passed_in_the_default_azure_chain_is_used():
    """Live Azure needs no code change: with a subscription id and no credential, azure-identity's
    DefaultAzureCredential (workload identity on AKS, environment, CLI) is built; building it and the
    client calls nothing."""
    from azure.identity import DefaultAzureCredential

    market = AzureMarket(subscription_id="00000000-0000-0000-0000-000000000000")
    market.client()
    assert isinstance(market.credential, DefaultAzureCredential)
