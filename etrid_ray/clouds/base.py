"""The one interface every cloud module implements, and the pure helpers they share.

A `CloudMarket` looks at one pool in its cloud and says what it sees *now*: live spot prices
where the cloud publishes them (AWS), the zones of the region that offer the instance type,
how many more nodes the quota allows, and whether the type is restricted (no capacity for
this subscription/region). It never decides anything: `clouds.feed.MarketFeed` turns views
into `PriceQuote`s (falling back to the shipped catalog) and the pure placement decides.

Errors are typed so the feed can fall back cleanly: `CredentialsMissing` when the cloud's
credentials or account id are not configured (no network call was made), `CloudCallFailed`
when a call failed (`throttled` for 429/503/Throttling, so logs say "throttled", not "down").
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar, Protocol, runtime_checkable

from etrid_ray.pools import Pool

# AWS Spot Advisor's "frequency of interruption" buckets (share of spot instances of that type
# and region interrupted over the last month) and the representative rate used for each: the
# bucket's midpoint, and 25 % for the open-ended ">20%" bucket.
BUCKET_RATES: dict[str, float] = {"<5%": 0.025, "5-10%": 0.075, "10-15%": 0.125, "15-20%": 0.175, ">20%": 0.25}


class CloudError(Exception):
    """A cloud market could not be read; the feed falls back to the catalog."""


class CredentialsMissing(CloudError):
    """No credentials / account id configured for the cloud: nothing was sent anywhere."""


class CloudCallFailed(CloudError):
    """An API call failed (network, permissions, server error or throttling)."""

    def __init__(self, message: str, *, throttled: bool = False) -> None:
        super().__init__(message)
        self.throttled = throttled


@dataclass(frozen=True)
class ZonePrice:
    """One zone's current spot price (USD per node-hour), as the cloud reported it."""

    zone: str
    usd_per_hour: float
    changed_at: datetime | None = None  # when this price took effect (AWS history timestamp)


@dataclass(frozen=True)
class MarketView:
    """What one cloud said about one pool at `observed_at`.

    `zones`: zones of the region that offer the instance type (None = not known, () = none:
    no capacity). `quota_headroom_nodes`: more nodes the quota allows now (None = unknown).
    `restricted`: why the type cannot be launched for this account in the region, if it cannot.
    """

    pool: str
    cloud: str
    region: str
    observed_at: datetime
    source: str
    zones: tuple[str, ...] | None = None
    spot_prices: tuple[ZonePrice, ...] = ()
    quota_headroom_nodes: int | None = None
    restricted: str | None = None
    placement_score: int | None = None  # AWS spot placement score, 1–10 (None = unavailable)
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def capacity_nodes(self) -> int | None:
        """Nodes the pool may still add per this view: 0 when restricted or offered in no zone."""
        if self.restricted is not None or self.zones == ():
            return 0
        return self.quota_headroom_nodes


@runtime_checkable
class CloudMarket(Protocol):
    """One cloud's market reader (aws.py, gcp.py, azure.py)."""

    cloud: ClassVar[str]

    def view(self, pool: Pool) -> MarketView:
        """Reads the cloud for this pool; raises `CredentialsMissing` or `CloudCallFailed`."""
        ...


# --- pure helpers ---------------------------------------------------------------------------------


def utcnow() -> datetime:
    return datetime.now(UTC)


def headroom_nodes(limit: float | None, used: float | None, per_node: float) -> int | None:
    """Whole nodes that fit in a quota: floor((limit − used) / per node), never negative.

    Quotas are counted in the unit `per_node` is in (vCPUs on AWS and Azure, GPUs on GCP);
    an unknown limit or usage gives None (unknown), not zero.
    """
    if limit is None or used is None or per_node <= 0:
        return None
    return max(0, math.floor((limit - used) / per_node + 1e-9))


def min_known(values: Iterable[int | None]) -> int | None:
    """The tightest of several headrooms, ignoring unknown ones (None when all are unknown)."""
    known = [v for v in values if v is not None]
    return min(known) if known else None


def interruption_rate(bucket: str | None) -> float | None:
    """The representative monthly interruption rate of a Spot Advisor bucket (None = unknown)."""
    return BUCKET_RATES.get(bucket) if bucket else None


def cheapest(prices: Iterable[ZonePrice]) -> ZonePrice | None:
    """The cheapest zone (ties by zone name, for determinism)."""
    return min(prices, key=lambda p: (p.usd_per_hour, p.zone), default=None)
