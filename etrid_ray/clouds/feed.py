"""The market feed: live cloud views combined with the shipped catalog into `PriceQuote`s.

`MarketFeed` is a `PriceSource`. For each cloud pool it asks that cloud's `CloudMarket` (at
most once per `refresh_s`), then builds the quote placement reads:

- price: the live spot price when the cloud publishes one (AWS) and it is at most `max_age_s`
  old; otherwise the catalog's (GCP and Azure always: their APIs publish no spot prices).
  A live price older than `max_age_s` — the last refresh failed and the cached view aged —
  falls back to the catalog with a warning. Missing credentials or a failed call → catalog.
  Every quote carries `source` ("aws-api" / "catalog") and `as_of`, so its age is known.
- `quota_headroom_nodes`: more nodes the quota allows now, 0 when the type is restricted or no
  zone offers it (placement then never adds a node there); None = unknown.
- `interruption_rate`: AWS Spot Advisor's bucket for the type and region as a monthly rate
  (`clouds.base.BUCKET_RATES`); placement raises the pool's effective cost with it.
- GCP quotes are restricted to the zones the API says offer the machine type.

Without markets (`live=False`) the feed is the catalog plus interruption rates: no network.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from etrid_ray.clouds.base import (
    CloudCallFailed,
    CloudError,
    CloudMarket,
    MarketView,
    cheapest,
    interruption_rate,
    utcnow,
)
from etrid_ray.clouds.registry import clouds
from etrid_ray.pools import Pool
from etrid_ray.prices.catalog import PriceCatalog, PriceQuote, default_catalog

if TYPE_CHECKING:
    from etrid_ray.config import ProviderConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MarketQuote:
    """One pool's quote with what stands behind it (for `etrid-ray prices` and logs)."""

    pool: Pool
    quote: PriceQuote | None
    view: MarketView | None  # the live view used (None: none, or too old to use)
    warnings: tuple[str, ...] = ()

    @property
    def notes(self) -> tuple[str, ...]:
        return (self.view.notes if self.view else ()) + self.warnings


class MarketFeed:
    """Live cloud markets first, the shipped catalog always underneath."""

    def __init__(self, catalog: PriceCatalog | None = None, markets: Mapping[str, CloudMarket] | None = None, *,
                 max_age_s: float = 3600.0, refresh_s: float = 300.0,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.catalog = catalog if catalog is not None else default_catalog()
        self.markets = dict(markets or {})
        self.max_age_s = max_age_s
        self.refresh_s = refresh_s
        self.clock = clock
        self._views: dict[str, MarketView] = {}
        self._attempted: dict[str, datetime] = {}
        self._errors: dict[str, str] = {}

    @classmethod
    def from_config(cls, config: ProviderConfig, *, live: bool | None = None,
                    markets: Mapping[str, CloudMarket] | None = None,
                    clock: Callable[[], datetime] = utcnow) -> MarketFeed:
        """The feed a config asks for: live markets for every cloud when `live_prices` (or `live`)
        is on, each pointed at its configured endpoint; otherwise the catalog alone."""
        clouds = config.clouds
        live = clouds.live_prices if live is None else live
        if markets is None:
            markets = live_markets(config, clock=clock) if live else {}
        return cls(default_catalog(), markets, max_age_s=clouds.price_max_age_s, refresh_s=clouds.price_refresh_s,
                   clock=clock)

    # PriceSource ---------------------------------------------------------------------------------

    def quote(self, pool: Pool) -> PriceQuote | None:
        return self.market_quote(pool).quote

    def quotes(self, pools: Iterable[Pool]) -> dict[str, PriceQuote]:
        out = {}
        for pool in pools:
            q = self.quote(pool)
            if q is not None:
                out[pool.name] = q
        return out

    # the composition -----------------------------------------------------------------------------

    def _view(self, pool: Pool, now: datetime, warnings: list[str]) -> MarketView | None:
        market = self.markets.get(pool.kind)
        if market is None:
            return None
        cached = self._views.get(pool.name)
        last = self._attempted.get(pool.name)
        due = last is None or (now - last).total_seconds() >= self.refresh_s
        if due:
            self._attempted[pool.name] = now
            try:
                cached = market.view(pool)
                self._views[pool.name] = cached
                self._errors.pop(pool.name, None)
            except CloudError as err:
                self._errors[pool.name] = str(err)
                what = "throttled" if isinstance(err, CloudCallFailed) and err.throttled else "unavailable"
                log.warning("%s market %s for pool %s: %s", pool.kind, what, pool.name, err)
            except Exception as err:  # an SDK's unexpected error must not stop the scaler
                self._errors[pool.name] = f"{type(err).__name__}: {err}"
                log.warning("%s market failed for pool %s: %s", pool.kind, pool.name, err, exc_info=True)
        if pool.name in self._errors:
            warnings.append(f"live {pool.kind} market unavailable ({self._errors[pool.name]})")
        if cached is None:
            return None
        age = (now - cached.observed_at).total_seconds()
        if age > self.max_age_s:
            msg = (f"live {pool.kind} data for {pool.name} is {age / 3600:.1f} h old "
                   f"(max {self.max_age_s / 3600:g} h): catalog price used, capacity unknown")
            warnings.append(msg)
            log.warning(msg)
            return None
        return cached

    def market_quote(self, pool: Pool) -> MarketQuote:
        if not pool.is_cloud or not pool.instance_type:
            return MarketQuote(pool, None, None)
        now = self.clock()
        warnings: list[str] = []
        view = self._view(pool, now, warnings)
        zones = view.zones if view is not None and view.zones else None
        base = self.catalog.quote(pool, zones=zones)
        bucket = self.catalog.interruption_bucket(pool.kind, pool.instance_type, pool.region)
        live = cheapest(view.spot_prices) if view is not None and pool.spot else None
        if live is not None:
            if base is not None:
                ondemand, gpus = base.ondemand_usd_per_hour, base.usd_per_node_hour / base.usd_per_gpu_hour
            else:
                ondemand, gpus = 0.0, float(pool.gpus_per_node)
            quote: PriceQuote | None = PriceQuote(
                pool=pool.name, cloud=pool.kind, region=pool.region, zone=live.zone,
                usd_per_node_hour=live.usd_per_hour, usd_per_gpu_hour=live.usd_per_hour / gpus,
                ondemand_usd_per_hour=ondemand or live.usd_per_hour,
                spot_discount=max(0.0, 1.0 - live.usd_per_hour / ondemand) if ondemand > 0 else 0.0,
                source=view.source if view else "live", as_of=view.observed_at if view else now,
                interruption_bucket=bucket, instance_type=pool.instance_type, spot=True)
        else:
            quote = base
        if quote is None:
            return MarketQuote(pool, None, view, tuple(warnings))
        rate = interruption_rate(quote.interruption_bucket) if pool.spot else None
        headroom = view.capacity_nodes if view is not None else None
        quote = replace(quote, quota_headroom_nodes=headroom, interruption_rate=rate)
        return MarketQuote(pool, quote, view, tuple(warnings))

    def market_quotes(self, pools: Iterable[Pool]) -> list[MarketQuote]:
        return [self.market_quote(p) for p in pools if p.is_cloud]


def live_markets(config: ProviderConfig, *, clock: Callable[[], datetime] = utcnow) -> dict[str, CloudMarket]:
    """One market reader per registered cloud that has one, pointed at the configured endpoints (public ones by
    default)."""
    markets: dict[str, CloudMarket] = {}
    for cloud in clouds():
        market = cloud.market(cloud.settings(config), config.clouds, clock)
        if market is not None:
            markets[cloud.name] = market
    return markets


def price_source(config: ProviderConfig) -> MarketFeed:
    """What the head prices pools with: `MarketFeed.from_config` (catalog only unless live_prices)."""
    return MarketFeed.from_config(config)
