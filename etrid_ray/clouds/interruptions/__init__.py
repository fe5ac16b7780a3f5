"""Spot interruptions: each cloud's notice endpoint, one `Notice`, and the node-side watcher that
drains the Ray node before the instance goes (target R4).

- `notice`: `Notice(cloud, kind, deadline)` and the pure parsers of each endpoint's answers;
- `sources`: the endpoints over HTTP — AWS IMDSv2, GCP metadata, Azure Scheduled Events;
- `watcher`: the polling loop; the drain it triggers on the nodes and the `etrid-ray spot-watch --cloud
  aws|gcp|azure` process are the KubeRay pods' (`etrid_ray.kuberay.spot_watch`).

Which class polls which cloud, its address and its notice length are the cloud registry's
(`etrid_ray.clouds.registry`: `Cloud.notice_source`, `metadata_endpoint`, `notice_s`).

Deployment: `etrid-ray render` gives every spot pool's worker pod a native sidecar (an init container
with `restartPolicy: Always`, Kubernetes >= 1.29) running `python -m etrid_ray spot-watch --cloud <kind>
--linger`, which finds its Ray node by the pod's name and IP (downward API, as the preStop hook does)
and reaches the GCS through the head service. The pod's preStop hook still drains on eviction (node
drain, Karpenter/node-termination-handler, GKE's graceful node shutdown); the watcher adds the
cloud's own, earlier warning. Per cloud:

- AWS: IMDSv2 only. From a pod (not host network) the token's PUT response needs an instance metadata
  hop limit of 2 or more (`aws ec2 modify-instance-metadata-options --http-put-response-hop-limit 2`,
  or the launch template's MetadataOptions); with 1 the watcher reports "token request" errors.
- GCP: the metadata server must be reachable from the pod; GKE's Workload Identity metadata server
  serves only part of `instance/`, so check `instance/preempted` answers there (otherwise the preStop
  hook alone covers GKE's graceful node shutdown).
- Azure: Scheduled Events are per availability/scale set; the watcher keeps only events that name its
  VM (`compute/name`). It never acknowledges an event (that would let Azure act sooner).
"""

from etrid_ray.clouds.interruptions.notice import (
    DRAIN_KINDS,
    KINDS,
    MalformedAnswer,
    Notice,
    parse_aws_instance_action,
    parse_aws_rebalance,
    parse_azure_scheduled_events,
    parse_gcp_maintenance,
    parse_gcp_preempted,
)
from etrid_ray.clouds.interruptions.sources import (
    AwsImds,
    AzureScheduledEvents,
    EndpointError,
    GcpMetadata,
    NoticeSource,
    source_for,
)
from etrid_ray.clouds.interruptions.watcher import SpotWatcher, WatchStats

__all__ = [
    "DRAIN_KINDS",
    "KINDS",
    "AwsImds",
    "AzureScheduledEvents",
    "EndpointError",
    "GcpMetadata",
    "MalformedAnswer",
    "Notice",
    "NoticeSource",
    "SpotWatcher",
    "WatchStats",
    "parse_aws_instance_action",
    "parse_aws_rebalance",
    "parse_azure_scheduled_events",
    "parse_gcp_maintenance",
    "parse_gcp_preempted",
    "source_for",
]
