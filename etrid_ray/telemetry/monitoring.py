"""The monitoring manifests under `cluster/monitoring/` and `cluster/grafana-dashboard.json`, from one place.

- `monitors.yaml`: PodMonitors for Ray's own metrics on the head and worker pods (port `metrics`, where
  `ray.util.metrics` values appear as `ray_etrid_*`) and for the provider head actor on the head pod
  (port `etrid-metrics`), and a ServiceMonitor for the standalone exporter;
- `exporter.yaml`: the exporter's Deployment and Service (`etrid-ray exporter`, probed on `/healthz` and
  `/readyz`), for clusters where no head runs or to watch every provider on the chain;
- `prometheusrule.yaml`: the alerts, as a prometheus-operator PrometheusRule; `etrid-rules.yml`: the same
  groups as a plain Prometheus rule file (what `promtool check rules` and the unit tests under
  tests/promtool/ read);
- `grafana-dashboard.json`: panels for every metric family.

Every alert names the sub-expressions it is built from (`signals`): the tests run each of them, and
every dashboard query, against a real Prometheus scraping a real run, and require data back.

Render with `python -m etrid_ray.telemetry.monitoring --out cluster` (a test fails when the committed
files drift).
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etrid_ray.kuberay.render import (
    CLUSTER_NAME,
    CONFIGMAP_NAME,
    NAMESPACE,
    PORTS,
    PROVIDER_METRICS_PORT,
    PROVIDER_METRICS_PORT_NAME,
    dump_yaml,
    project_image,
    project_version,
)

EXPORTER_NAME = "etrid-exporter"
EXPORTER_PORT = 9090
RULES_NAME = "etrid-ray"
DASHBOARD_UID = "etrid-ray-provider"
HEADER = ("# Rendered by `python -m etrid_ray.telemetry.monitoring --out cluster` (etrid_ray/telemetry).\n"
          "# Do not edit by hand: change the module and render again (a test fails when these drift).\n")


# ---------------------------------------------------------------------------------------------- alerts


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str
    signals: tuple[str, ...]  # the sub-expressions of `expr` that must return data on a live system

    def rule(self) -> dict[str, Any]:
        return {"alert": self.name, "expr": self.expr, "for": self.for_,
                "labels": {"severity": self.severity, "pbc": "ai-compute"},
                "annotations": {"summary": self.summary, "description": self.description}}


PENDING = 'max by (pbc) (etrid_job_queue_depth{status="pending"})'
PENDING_GROWTH = 'max by (pbc) (delta(etrid_job_queue_depth{status="pending"}[15m]))'
WAIT = "max by (pbc) (etrid_avg_job_wait_seconds)"
HEARTBEAT_AGE = "time() - max by (provider, gpu) (etrid_gpu_last_heartbeat_timestamp_seconds)"
CLAIMS_LOST = 'sum by (job) (rate(etrid_job_claims_total{result="lost"}[15m]))'
CLAIMS_ALL = "sum by (job) (rate(etrid_job_claims_total[15m]))"
FAILED = "sum by (job) (rate(etrid_job_failures_total[15m]))"
COMPLETED = "sum by (job) (rate(etrid_gpu_jobs_completed_total[15m]))"
SPEND = "max by (job) (etrid_cloud_spend_today_usd)"
BUDGET = "max by (job) (etrid_cloud_budget_usd)"
PRICE_AGE = "max by (pool, source) (etrid_price_age_seconds)"
CATALOG_AGE = 'max by (pool, source) (etrid_price_age_seconds{source="catalog"})'
BUSY = "max by (provider) (avg_over_time(etrid_gpu_utilization_percent[1h]))"
EARNED = "max by (provider) (delta(etrid_gpu_earnings_total_edsc[1h]))"
HEAD_UP = 'etrid_info{source="head"}'
SNAPSHOT_OK = "min by (job) (etrid_snapshot_ok)"
RPC_ERRORS = 'sum by (job) (rate(etrid_chain_rpc_errors_total{kind!="reconnect"}[10m]))'
LOOP_P99 = 'max by (job) (etrid_head_loop_seconds{quantile="0.99"})'

ALERTS: tuple[Alert, ...] = (
    Alert("EtridQueueBacklogGrowing", f"{PENDING} > 50 and {PENDING_GROWTH} > 0", "15m", "warning",
          "The chain's job queue keeps growing ({{ $value }} pending)",
          "More than 50 jobs wait in the queue and the queue grew over the last 15 minutes: capacity is short "
          "(cloud pools at max, over the spot max price or the budget) or the head is not claiming.",
          (PENDING, PENDING_GROWTH)),
    Alert("EtridJobWaitHigh", f"{WAIT} > 300", "10m", "warning",
          "Queued jobs have waited {{ $value | humanizeDuration }} on average",
          "The average age of the jobs in the queue stays above 5 minutes.", (WAIT,)),
    Alert("EtridGpuNoHeartbeat", f"{HEARTBEAT_AGE} > 300", "5m", "critical",
          "GPU {{ $labels.gpu }} of {{ $labels.provider }} sent no heartbeat for {{ $value | humanizeDuration }}",
          "The chain marks silent GPUs offline and their jobs time out: check the head (and its chain connection).",
          (HEARTBEAT_AGE,)),
    Alert("EtridClaimsFailing", f"{CLAIMS_LOST} / {CLAIMS_ALL} > 0.5 and {CLAIMS_ALL} > 0", "15m", "warning",
          "Most claims are lost ({{ $value | humanizePercentage }} over 15 minutes)",
          "Other providers win most of the jobs this head tries to claim: it reacts late (check the head loop "
          "latency and the chain connection) or prices below the competition.", (CLAIMS_LOST, CLAIMS_ALL)),
    Alert("EtridJobsFailing", f"{FAILED} / ({FAILED} + {COMPLETED}) > 0.25", "15m", "warning",
          "{{ $value | humanizePercentage }} of finished jobs failed over 15 minutes",
          "Failures by reason are in etrid_job_failures_total: bad manifests are the consumers' doing, "
          "timeouts and lost executions are ours.", (FAILED, COMPLETED)),
    Alert("EtridCloudSpendNearBudget", f"{SPEND} / {BUDGET} > 0.9 and {BUDGET} > 0", "5m", "warning",
          "Cloud spend today is {{ $value | humanizePercentage }} of the daily budget",
          "Past the budget no cloud pool grows until the next UTC day; raise daily_cloud_budget_usd or expect "
          "the queue to wait for local GPUs.", (SPEND, BUDGET)),
    Alert("EtridPricesStale",
          f'{PRICE_AGE} > 1800 unless on (pool, source) {CATALOG_AGE}', "10m", "warning",
          "The live price of pool {{ $labels.pool }} ({{ $labels.source }}) is {{ $value | humanizeDuration }} old",
          "Live spot prices stopped updating: the cloud API fails or is throttled; placement decides on old prices.",
          (PRICE_AGE, CATALOG_AGE)),
    Alert("EtridPriceCatalogOld", f"{CATALOG_AGE} > 120 * 86400", "1h", "info",
          "Pool {{ $labels.pool }} is priced from a catalog {{ $value | humanizeDuration }} old",
          "No live price for this pool: placement uses the shipped catalog. Turn on live prices or ship a newer "
          "catalog.", (CATALOG_AGE,)),
    Alert("EtridEarningsFlatWhileBusy", f"{BUSY} > 50 and {EARNED} <= 0", "30m", "critical",
          "{{ $labels.provider }} is busy but earned nothing in the last hour",
          "GPUs are more than half used and no payment arrived: results may not be confirmed (disputes, "
          "settlement failures) or the head runs work that does not pay.", (BUSY, EARNED)),
    Alert("EtridProviderHeadDown", f"absent({HEAD_UP})", "5m", "critical",
          "No provider head is exporting metrics",
          "The head actor is not running (or not scraped): no job is claimed or settled.", (HEAD_UP,)),
    Alert("EtridChainUnreadable", f"{SNAPSHOT_OK} == 0", "5m", "critical",
          "{{ $labels.job }} cannot read the chain",
          "The last reads of chain state failed (see etrid_chain_rpc_errors_total); the values served are stale.",
          (SNAPSHOT_OK,)),
    Alert("EtridChainRpcErrors", f"{RPC_ERRORS} > 0.1", "10m", "warning",
          "{{ $labels.job }} sees {{ $value }} chain RPC errors a second",
          "The node answers with errors or drops the connection.", (RPC_ERRORS,)),
    Alert("EtridHeadLoopSlow", f"{LOOP_P99} > 2", "10m", "warning",
          "The head's loop passes take {{ $value | humanizeDuration }} (p99)",
          "Claims, dispatch and settlement wait on slow passes; check the chain's latency and the head's CPU.",
          (LOOP_P99,)),
)


def rule_groups() -> list[dict[str, Any]]:
    return [{"name": "etrid-ray.rules", "interval": "30s", "rules": [a.rule() for a in ALERTS]}]


# ---------------------------------------------------------------------------------------------- dashboard


@dataclass(frozen=True)
class Panel:
    title: str
    targets: tuple[tuple[str, str], ...]  # (expr, legend)
    unit: str = "short"
    kind: str = "timeseries"
    width: int = 8
    description: str = ""
    stack: bool = False


@dataclass
class Row:
    title: str
    panels: list[Panel] = field(default_factory=list)


DASHBOARD: tuple[Row, ...] = (
    Row("Queue and jobs", [
        Panel("Queue by status", (('max by (status) (etrid_job_queue_depth{pbc="ai-compute"})', "{{status}}"),),
              description="Pending jobs on the chain; assigned and completed (head: its own; exporter: all)"),
        Panel("Average wait and duration", (("max by (pbc) (etrid_avg_job_wait_seconds)", "wait (queued now)"),
                                            ("max by (pbc) (etrid_avg_job_duration_seconds)", "duration")), "s"),
        Panel("Latency: queue → start, result → chain",
              (("max by (quantile) (etrid_job_queue_to_start_seconds)", "queue→start p{{quantile}}"),
               ("max by (quantile) (etrid_job_result_to_chain_seconds)", "result→chain p{{quantile}}")), "s"),
        Panel("Running jobs", (("sum by (provider) (etrid_jobs_running)", "{{provider}}"),), kind="stat"),
        Panel("Jobs completed per minute", (("max by (provider) (rate(etrid_gpu_jobs_completed_total[5m])) * 60",
                                             "{{provider}}"),)),
        Panel("Failures by reason (15 min)", (("max by (reason) (increase(etrid_job_failures_total[15m]))",
                                               "{{reason}}"),), stack=True),
        Panel("Runs lost and run again (15 min)",
              (("sum by (pool) (increase(etrid_job_preemptions_total[15m]))", "preempted: {{pool}}"),
               ("sum(increase(etrid_job_retries_total[15m]))", "crashed (retry spent)")), stack=True,
              description="not failures: a preempted run is run again free, a crashed one spends a retry"),
    ]),
    Row("GPUs and pools", [
        Panel("GPUs per pool and state", (("sum by (pool, state) (etrid_pool_gpus)", "{{pool}} {{state}}"),),
              stack=True, description="busy/idle on alive nodes; pending = requested nodes not up yet"),
        Panel("Nodes per pool", (("sum by (pool, state) (etrid_pool_nodes)", "{{pool}} {{state}}"),)),
        Panel("GPU utilization per provider", (("max by (provider) (etrid_gpu_utilization_percent)",
                                                "{{provider}}"),), "percent"),
        Panel("Seconds since each GPU's heartbeat", ((HEARTBEAT_AGE, "{{provider}} GPU {{gpu}}"),), "s"),
        Panel("Registered GPUs by status (chain)", (("sum by (status) (etrid_chain_gpus)", "{{status}}"),),
              stack=True),
        Panel("Queue seen by Ray's metrics endpoint", (('max by (status) (ray_etrid_job_queue_depth)',
                                                        "{{status}}"),),
              description="the same values pushed through ray.util.metrics (Ray dashboard)"),
    ]),
    Row("Scaling and cost", [
        Panel("Scaling decisions by pool and reason (15 min)",
              (("sum by (pool, reason) (increase(etrid_scaling_decisions_total[15m]))", "{{pool}}: {{reason}}"),),
              stack=True),
        Panel("Cloud spend today vs budget", (("max(etrid_cloud_spend_today_usd)", "spend today"),
                                              ("max(etrid_cloud_budget_usd)", "daily budget")), "currencyUSD"),
        Panel("Cloud cost rate by pool", (("sum by (pool, cloud) (rate(etrid_cloud_cost_usd_total[15m])) * 3600",
                                           "{{pool}} ({{cloud}})"),), "currencyUSD",
              description="USD per hour (etrid_cloud_cost_usd_total)"),
        Panel("Price per GPU-hour", (("max by (pool, source) (etrid_price_usd_per_gpu_hour)",
                                      "{{pool}} ({{source}})"),), "currencyUSD"),
        Panel("Price age", ((PRICE_AGE, "{{pool}} ({{source}})"),), "s"),
    ]),
    Row("Earnings and claims", [
        Panel("Earnings (ËDSC)", (("max by (provider) (etrid_gpu_earnings_total_edsc)", "{{provider}}"),)),
        Panel("Earnings per hour (ËDSC)", ((EARNED, "{{provider}}"),)),
        Panel("Net profit by pool (USD)", (("sum by (pool) (etrid_job_net_profit_usd_total)", "{{pool}}"),),
              description="what the chain paid for this head's jobs minus each job's share of its hardware's cost"),
        Panel("Claims won and lost", (("sum by (job, result) (rate(etrid_job_claims_total[5m])) * 60",
                                       "{{job}} {{result}}"),), description="per minute"),
        Panel("Jobs skipped by admission (15 min)", (("sum by (reason) (increase(etrid_job_skipped_total[15m]))",
                                                      "{{reason}}"),), stack=True),
    ]),
    Row("Chain and head", [
        Panel("Best block", (("max by (job) (etrid_chain_best_block)", "{{job}}"),)),
        Panel("Chain RPC errors", (("sum by (job, kind) (rate(etrid_chain_rpc_errors_total[5m])) * 60",
                                    "{{job}} {{kind}}"),), description="per minute"),
        Panel("Head loop pass duration", (("max by (quantile) (etrid_head_loop_seconds)", "p{{quantile}}"),), "s"),
        Panel("Snapshot age and health", (("max by (job) (etrid_snapshot_age_seconds)", "{{job}} age"),
                                          (SNAPSHOT_OK, "{{job}} ok")), "s"),
        Panel("Exporter chain read time", (("max(etrid_exporter_scrape_seconds)", "read"),), "s"),
        Panel("Head errors by kind (15 min)", (("sum by (kind) (increase(etrid_head_errors_total[15m]))",
                                                "{{kind}}"),), stack=True,
              description="no data means no failed pass"),
    ]),
)
# Panels whose query has no data until something goes wrong (the tests do not require data from them).
DATA_ONLY_ON_FAILURE = ("Head errors by kind (15 min)",)


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expr) of every query on the dashboard."""
    return [(p.title, expr) for row in DASHBOARD for p in row.panels for expr, _ in p.targets]


# an etrid_* name not preceded by a name character: `ray_etrid_*` (Ray's copy of the values) is no family here
_METRIC_NAME = re.compile(r"(?<![A-Za-z0-9_:])etrid_[a-z_]+")


def queried_metrics() -> set[str]:
    """The names of every family the dashboard and the alert rules query: those must have series from the
    first scrape, or panels say "No data" and `absent()` fires before anything happened."""
    exprs = [expr for _, expr in dashboard_exprs()] + [a.expr for a in ALERTS]
    return {name for expr in exprs for name in _METRIC_NAME.findall(expr)}


def dashboard() -> dict[str, Any]:
    ds = {"type": "prometheus", "uid": "${datasource}"}
    panels: list[dict[str, Any]] = []
    y, pid = 0, 1
    for row in DASHBOARD:
        panels.append({"type": "row", "title": row.title, "id": pid, "collapsed": False,
                       "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []})
        pid += 1
        y += 1
        x = 0
        for p in row.panels:
            if x + p.width > 24:
                x, y = 0, y + 8
            custom: dict[str, Any] = {"drawStyle": "line", "fillOpacity": 20 if p.stack else 5, "lineWidth": 1}
            if p.stack:
                custom["stacking"] = {"mode": "normal", "group": "A"}
            panel: dict[str, Any] = {
                "type": p.kind, "title": p.title, "id": pid, "datasource": ds,
                "gridPos": {"x": x, "y": y, "w": p.width, "h": 8},
                "targets": [{"datasource": ds, "expr": expr, "legendFormat": legend, "refId": chr(ord("A") + i)}
                            for i, (expr, legend) in enumerate(p.targets)],
                "fieldConfig": {"defaults": {"unit": p.unit, **({"custom": custom} if p.kind == "timeseries"
                                                                  else {})}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if p.kind == "timeseries"
                else {"reduceOptions": {"calcs": ["lastNotNull"]}},
            }
            if p.description:
                panel["description"] = p.description
            panels.append(panel)
            pid += 1
            x += p.width
        y += 8
    return {
        "title": "Etrid AI-Compute provider (etrid-ray)", "uid": DASHBOARD_UID, "tags": ["etrid", "ray", "gpu"],
        "schemaVersion": 39, "version": 1, "editable": True, "graphTooltip": 1, "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"}, "timezone": "utc",
        "description": "Queue, wait, utilization, scaling, cost and earnings of an etrid-ray provider "
                       f"(etrid-ray {project_version()}; the seed's etrid_* metrics and more)",
        "templating": {"list": [{"name": "datasource", "label": "Prometheus", "type": "datasource",
                                 "query": "prometheus", "current": {}, "hide": 0}]},
        "annotations": {"list": []},
        "panels": panels,
    }


# ---------------------------------------------------------------------------------------------- manifests


def _labels(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "etrid-ray", "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": "etrid-ai-compute", "app.kubernetes.io/version": project_version()}


def monitors() -> list[dict[str, Any]]:
    ray_pods = {"matchLabels": {"ray.io/cluster": CLUSTER_NAME},
                "matchExpressions": [{"key": "ray.io/node-type", "operator": "In", "values": ["head", "worker"]}]}
    pool_label = [{"sourceLabels": ["__meta_kubernetes_pod_label_etrid_ai_pool"], "targetLabel": "pool"},
                  {"sourceLabels": ["__meta_kubernetes_pod_label_ray_io_node_type"], "targetLabel": "ray_node_type"}]
    meta = {"namespace": NAMESPACE}
    return [
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
         "metadata": {"name": "etrid-ray-nodes", **meta, "labels": _labels("monitoring")},
         "spec": {"jobLabel": "ray.io/node-type", "selector": ray_pods,
                  "namespaceSelector": {"matchNames": [NAMESPACE]},
                  "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s",
                                           "relabelings": pool_label}]}},
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
         "metadata": {"name": "etrid-provider-head", **meta, "labels": _labels("monitoring")},
         "spec": {"selector": {"matchLabels": {"ray.io/cluster": CLUSTER_NAME, "ray.io/node-type": "head"}},
                  "namespaceSelector": {"matchNames": [NAMESPACE]},
                  "podMetricsEndpoints": [{"port": PROVIDER_METRICS_PORT_NAME, "path": "/metrics",
                                           "interval": "15s", "scrapeTimeout": "10s"}]}},
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
         "metadata": {"name": EXPORTER_NAME, **meta, "labels": _labels("monitoring")},
         "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "etrid-ray",
                                               "app.kubernetes.io/component": "exporter"}},
                  "namespaceSelector": {"matchNames": [NAMESPACE]},
                  "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "30s"}]}},
    ]


def exporter_objects() -> list[dict[str, Any]]:
    labels = _labels("exporter")
    selector = {"app.kubernetes.io/name": "etrid-ray", "app.kubernetes.io/component": "exporter"}
    probe = {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 20, "timeoutSeconds": 5,
             "failureThreshold": 3}
    container = {
        "name": "exporter", "image": project_image(), "imagePullPolicy": "IfNotPresent",
        # WEBSOCKET_URL comes from the provider's ConfigMap; the chain is read every 10 s
        "command": ["python", "-m", "etrid_ray", "exporter", "--url", "$(WEBSOCKET_URL)", "--host", "0.0.0.0",
                    "--port", str(EXPORTER_PORT), "--interval", "10", "--log-format", "json"],
        "envFrom": [{"configMapRef": {"name": CONFIGMAP_NAME}}],
        "ports": [{"name": "metrics", "containerPort": EXPORTER_PORT}],
        "startupProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 5,
                         "failureThreshold": 24},
        "livenessProbe": probe,
        "readinessProbe": {**probe, "httpGet": {"path": "/readyz", "port": "metrics"}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                            "readOnlyRootFilesystem": True},
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": EXPORTER_NAME, "namespace": NAMESPACE, "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": selector},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 100},
                                       "automountServiceAccountToken": False,
                                       "containers": [container]}}},
    }
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": EXPORTER_NAME, "namespace": NAMESPACE, "labels": labels},
        "spec": {"type": "ClusterIP", "selector": selector,
                 "ports": [{"name": "metrics", "port": EXPORTER_PORT, "targetPort": "metrics"}]},
    }
    return [deployment, service]


def prometheus_rule() -> dict[str, Any]:
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": RULES_NAME, "namespace": NAMESPACE, "labels": _labels("monitoring")},
            "spec": {"groups": rule_groups()}}


def render_monitoring() -> dict[str, str]:
    """Path under cluster/ → file text."""
    return {
        "monitoring/monitors.yaml": HEADER + f"# Ray's metrics on every node (port metrics, {PORTS['metrics']}: ray_* "
        f"and ray_etrid_*), the provider head actor on the head pod\n# (port {PROVIDER_METRICS_PORT_NAME}, "
        f"{PROVIDER_METRICS_PORT}: etrid_*), and the exporter's Service (port metrics, {EXPORTER_PORT}).\n"
        + dump_yaml(*monitors()),
        "monitoring/exporter.yaml": HEADER + dump_yaml(*exporter_objects()),
        "monitoring/prometheusrule.yaml": HEADER + dump_yaml(prometheus_rule()),
        "monitoring/etrid-rules.yml": HEADER + "# The PrometheusRule's groups as a plain rule file (promtool, "
        "Prometheus without the operator).\n" + dump_yaml({"groups": rule_groups()}),
        "grafana-dashboard.json": json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n",
    }


def write(out: Path) -> list[Path]:
    written = []
    for name, text in render_monitoring().items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="cluster", help="directory to write into (default: cluster)")
    args = parser.parse_args(argv)
    for path in write(Path(args.out)):
        print(f"wrote {path}")


if __name__ == "__main__":  # pragma: no cover
    main()
