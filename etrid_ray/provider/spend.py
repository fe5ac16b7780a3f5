"""The process-wide cloud-spend counter (`etrid_cloud_cost_usd_total`, the seed's name).

The scaler accrues each pool's billed spend into it (`Scaler._account`); the telemetry serves it with the
snapshot's families (`telemetry.metrics.cloud_spend`). It lives here, beside its one writer, because the
telemetry reads the provider and never the other way round: `provider` does not import `telemetry`.
"""

from __future__ import annotations

from prometheus_client import Counter

CLOUD_COST_NAME = "etrid_cloud_cost_usd_total"
# By pool and cloud; per node-second of billed spend. `telemetry.metrics.CLOUD_COST` is the same counter under
# its first name.
CLOUD_COST_USD = Counter(CLOUD_COST_NAME, "Cloud spend on spot/on-demand worker nodes, in USD", ["pool", "cloud"])
