"""Prometheus metrics: names, the module-level cloud-cost counter, and the snapshot collector."""

from __future__ import annotations

from prometheus_client import Counter

# The seed's cloud-spend metric (issue 5 accrues spend into it, per node-second).
CLOUD_COST = Counter("etrid_cloud_cost_usd_total", "Cloud spend on spot/on-demand worker nodes, in USD")
