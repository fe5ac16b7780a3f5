"""GCP market reader: the real google-cloud-compute clients (REST transport) pointed, through
their own `client_options`, at a local server replaying recorded Compute API responses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials

from etrid_ray.clouds import CloudCallFailed, CredentialsMissing, MarketFeed
from etrid_ray.clouds.gcp import GcpMarket, gpu_quota_metrics, quota_for
from etrid_ray.pools import Pool
from etrid_ray.prices import default_catalog
from tests.clouds_support import T0, Clock, gcp_service_account_file, recorded, reply
from tests.helpers.recorded_api import RecordedApi

PROJECT = "etrid-test"
REGION_PATH = f"/compute/v1/projects/{PROJECT}/regions/europe-west4"
A2 = Pool(name="gcp-spot-a100", kind="gcp", instance_type="a2-ultragpu-8g", region="europe-west4", max_nodes=4)
L4 = Pool(name="gcp-l4", kind="gcp", accelerator="L4", gpus_per_node=1, instance_type="g2-standard-4",
          region="europe-west4", vram_gb=24)


@pytest.fixture()
def api() -> Iterator[RecordedApi]:
    with recorded("gcp/europe_west4.json") as server:
        yield server


def market(api: RecordedApi, **kw) -> GcpMarket:
    kw = {"timeout_s": 30.0, "retry_initial_s": 0.01, **kw}
    return GcpMarket(project=PROJECT, credentials=AnonymousCredentials(), api_endpoint=api.url, clock=Clock(), **kw)


def test_zones_offering_the_machine_type_and_its_gpu_with_spot_quota_headroom(api):
    view = market(api).view(A2)
    assert view.source == "gcp-api" and view.observed_at == T0
    assert view.zones == ("europe-west4-a", "europe-west4-b")  # c: machine type 404
    assert view.quota_headroom_nodes == 3  # PREEMPTIBLE_NVIDIA_A100_80GB_GPUS: (32 − 8) / 8
    assert "quota PREEMPTIBLE_NVIDIA_A100_80GB_GPUS: 8 of 32 GPUs used" in view.notes
    assert not api.unmatched or all(r.path.endswith("/machineTypes/a2-ultragpu-8g") for r in api.unmatched)
    # zone b's accelerator types came in two pages
    assert api.hits(f"/compute/v1/projects/{PROJECT}/zones/europe-west4-b/acceleratorTypes") == 2


def test_on_demand_pools_use_the_standard_gpu_quota(api):
    view = market(api).view(A2.model_copy(update={"spot": False}))
    assert view.quota_headroom_nodes == 2  # NVIDIA_A100_80GB_GPUS: 16 / 8


def test_spot_without_preemptible_quota_consumes_the_standard_quota_and_zones_need_the_gpu(api):
    view = market(api).view(L4)
    assert view.zones == ("europe-west4-a", "europe-west4-b")  # c lists the machine type but no L4
    assert any("europe-west4-c offers g2-standard-4 but not nvidia-l4" in n for n in view.notes)
    assert view.quota_headroom_nodes == 8  # PREEMPTIBLE_NVIDIA_L4_GPUS is 0 → NVIDIA_L4_GPUS 8 / 1


def test_exhausted_quota_leaves_no_headroom(api):
    api.add("GET", REGION_PATH, {"status": 200, "body": {
        "name": "europe-west4", "zones": [f"https://www.googleapis.com/compute/v1/projects/{PROJECT}/zones/europe-west4-a"],
        "quotas": [{"metric": "PREEMPTIBLE_NVIDIA_A100_80GB_GPUS", "limit": 16, "usage": 12}]}}, first=True)
    view = market(api).view(A2)
    assert view.quota_headroom_nodes == 0 and view.capacity_nodes == 0


def test_no_zone_offers_the_type_means_no_capacity(api):
    pool = A2.model_copy(update={"instance_type": "a3-highgpu-8g"})  # nothing recorded: every zone 404s
    view = market(api).view(pool)
    assert view.zones == () and view.capacity_nodes == 0
    assert any("no zone of europe-west4 offers a3-highgpu-8g" in n for n in view.notes)


def test_feed_prices_from_the_catalog_in_an_offered_zone_with_live_quota(api):
    feed = MarketFeed(default_catalog(), {"gcp": market(api)}, clock=Clock())
    q = feed.quote(A2)
    # GCP bills GPUs apart from the host VM: the catalog row is host + 8 GPUs already summed
    assert q.source == "catalog" and q.usd_per_node_hour == pytest.approx(21.08704)
    assert q.zone == "europe-west4-a" and q.quota_headroom_nodes == 3
    assert q.interruption_rate is None  # no published preemption rates for GCP
    a2_1g = Pool(name="gcp-a2-1g", kind="gcp", gpus_per_node=1, instance_type="a2-highgpu-1g", region="europe-west4")
    assert default_catalog().quote(a2_1g, zones=["europe-west4-b"]).zone == "europe-west4-b"  # narrowed to live zones
    assert default_catalog().quote(a2_1g, zones=["us-east-1a"]).zone == "europe-west4-a"  # unknown names: no narrowing


def test_anonymous_credentials_send_no_token(api):
    market(api).view(A2)
    assert all("authorization" not in r.headers for r in api.requests)


def test_application_default_credentials_from_a_key_file(api, monkeypatch, tmp_path: Path):
    key = gcp_service_account_file(tmp_path / "sa.json", f"{api.url}/token", PROJECT)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    m = GcpMarket(api_endpoint=api.url, timeout_s=30, clock=Clock())  # project from the key file
    assert m.view(A2).quota_headroom_nodes == 3 and m.project == PROJECT
    # the SDK signs its own JWT with the key (no token endpoint is called) and sends it to loopback only
    assert {r.headers.get("authorization", "")[:10] for r in api.requests} == {"Bearer eyJ"}
    assert api.hits("/token") == 0


# --- errors and throttling --------------------------------------------------------------------------


def test_a_throttled_call_is_retried(api):
    api.add("GET", REGION_PATH, reply("gcp/errors.json", "throttle_429"), *api.routes[0].replies, first=True)
    view = market(api).view(A2)
    assert view.quota_headroom_nodes == 3 and api.hits(REGION_PATH) == 2


def test_persistent_unavailability_is_a_throttled_failure_and_the_feed_uses_the_catalog(api, caplog):
    api.add("GET", REGION_PATH, reply("gcp/errors.json", "unavailable_503"), first=True)
    m = market(api, retry_deadline_s=0.3)
    with pytest.raises(CloudCallFailed) as err:
        m.view(A2)
    assert err.value.throttled
    mq = MarketFeed(default_catalog(), {"gcp": m}, clock=Clock()).market_quote(A2)
    assert mq.quote.source == "catalog" and mq.quote.quota_headroom_nodes is None
    assert any("live gcp market unavailable" in w for w in mq.warnings)
    assert "gcp market throttled" in caplog.text


def test_permission_denied_is_a_failure_not_throttling(api):
    api.add("GET", REGION_PATH, reply("gcp/errors.json", "forbidden_403"), first=True)
    with pytest.raises(CloudCallFailed) as err:
        market(api).view(A2)
    assert not err.value.throttled and "403" in str(err.value) and api.hits(REGION_PATH) == 1


def test_missing_credentials_or_project_never_call_out(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(CredentialsMissing):
        GcpMarket(project=PROJECT, clock=Clock()).view(A2)
    with pytest.raises(CredentialsMissing, match="no project"):
        GcpMarket(credentials=AnonymousCredentials(), clock=Clock()).view(A2)
    mq = MarketFeed(default_catalog(), {"gcp": GcpMarket(project=PROJECT)}, clock=Clock()).market_quote(A2)
    assert mq.quote.source == "catalog" and any("no application default credentials" in w for w in mq.warnings)


def test_quota_metric_names():
    assert gpu_quota_metrics("nvidia-a100-80gb") == ("NVIDIA_A100_80GB_GPUS", "PREEMPTIBLE_NVIDIA_A100_80GB_GPUS")
    assert gpu_quota_metrics("nvidia-tesla-a100") == ("NVIDIA_A100_GPUS", "PREEMPTIBLE_NVIDIA_A100_GPUS")
    assert gpu_quota_metrics("nvidia-h100-80gb")[0] == "NVIDIA_H100_GPUS"
    assert gpu_quota_metrics("nvidia-tesla-k80")[0] == "NVIDIA_K80_GPUS"
    quotas = {"NVIDIA_T4_GPUS": (4.0, 1.0)}
    assert quota_for(quotas, "nvidia-tesla-t4", spot=True) == ("NVIDIA_T4_GPUS", 4.0, 1.0)
    assert quota_for(quotas, "nvidia-l4", spot=True) is None


def test_an_unreachable_endpoint_is_a_failure():
    with RecordedApi() as gone:
        url = gone.url
    m = GcpMarket(project=PROJECT, credentials=AnonymousCredentials(), api_endpoint=url, timeout_s=2, clock=Clock())
    with pytest.raises(CloudCallFailed, match="ConnectionError"):
        m.view(A2)
