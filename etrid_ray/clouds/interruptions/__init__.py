"""Spot interruptions: each cloud's notice endpoint, one `Notice`, and the node-side watcher that
drains the Ray node before the instance goes (target R4).

- `notice`: `Notice(cloud, kind, deadline)` and the pure parsers of each endpoint's answers;
- `sources`: the endpoints over HTTP — AWS IMDSv2, GCP metadata, Azure Scheduled Events;
- `watcher`: the polling loop and the drain (`etrid-ray spot-watch --cloud aws|gcp|azure`).
"""

from etrid_ray.clouds.interruptions.notice import (
    CLOUDS,
    DRAIN_KINDS,
    KINDS,
    NOTICE_S,
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
from etrid_ray.clouds.interruptions.watcher import RayNodeDrain, SpotWatcher, WatchStats, run_spot_watch

__all__ = [
    "CLOUDS",
    "DRAIN_KINDS",
    "KINDS",
    "NOTICE_S",
    "AwsImds",
    "AzureScheduledEvents",
    "EndpointError",
    "GcpMetadata",
    "MalformedAnswer",
    "Notice",
    "NoticeSource",
    "RayNodeDrain",
    "SpotWatcher",
    "WatchStats",
    "parse_aws_instance_action",
    "parse_aws_rebalance",
    "parse_azure_scheduled_events",
    "parse_gcp_maintenance",
    "parse_gcp_preempted",
    "run_spot_watch",
    "source_for",
]
