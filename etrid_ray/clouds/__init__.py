"""The clouds: one module per cloud, each holding one registered class (`registry.Cloud`: `local.Local`,
`aws.Aws`, `gcp.Gcp`, `azure.Azure`) that owns the cloud's config section and defaults, pools, startup
time, spot notice, KubeRay scheduling, market reader and interruption source; everything else loops over
`registry.clouds()`.

The cloud market: one reader per cloud behind one interface (`base.CloudMarket`).

- `aws.AwsMarket` — live spot prices, spot placement scores, GPU quotas (boto3);
- `gcp.GcpMarket` — zones offering the machine type, accelerator types per zone, regional GPU
  quotas (google-cloud-compute);
- `azure.AzureMarket` — resource SKUs and their restrictions, vCPU usage against quota
  (azure-mgmt-compute);
- `feed.MarketFeed` — combines them with the shipped catalog into the `PriceQuote`s placement
  reads (live when fresh, the catalog otherwise; every quote with its source and age).

SDKs are imported only when a market is used, so the catalog-only path needs none of them.
"""

from etrid_ray.clouds.base import (
    BUCKET_RATES,
    CloudCallFailed,
    CloudError,
    CloudMarket,
    CredentialsMissing,
    MarketView,
    ZonePrice,
    headroom_nodes,
    interruption_rate,
)
from etrid_ray.clouds.feed import MarketFeed, MarketQuote, live_markets, price_source

__all__ = [
    "BUCKET_RATES",
    "CloudCallFailed",
    "CloudError",
    "CloudMarket",
    "CredentialsMissing",
    "MarketFeed",
    "MarketQuote",
    "MarketView",
    "ZonePrice",
    "headroom_nodes",
    "interruption_rate",
    "live_markets",
    "price_source",
]
