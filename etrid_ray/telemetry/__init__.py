"""Observability: the seed's Prometheus metrics (and more) from the head or the chain, Ray metrics,
health endpoints, logs, the status view and the monitoring manifests.

- `metrics`: the metric names, the `Snapshot` both sources fill, and the Prometheus collector that
  turns a snapshot into metric families at scrape time (plus the module-level cloud-cost counter);
- `head_source` / `chain_source`: a snapshot of a running `ProviderHead`, or of chain state alone;
- `server`: `/metrics`, `/healthz`, `/readyz` over HTTP; `ray_metrics`: the same values on Ray's
  metrics endpoint through `ray.util.metrics`;
- `logs`: human or JSON log lines, secrets redacted; `status_view`: `etrid-ray status`;
- `monitoring`: PodMonitor/ServiceMonitor, PrometheusRule, exporter Deployment and the Grafana dashboard.
"""
