"""The shipped price catalog, and the one interface every price source implements.

Why a catalog at all: placement must be able to decide "does a cloud node pay?" with no
credentials and no network (tests, the simulator, a laptop). The package ships the
skypilot-catalog prices read in November 2026 (`etrid_ray/data/gpu_prices.csv`) and the AWS
Spot Advisor interruption buckets; live cloud feeds (a later issue) implement the same
`PriceSource.quote(pool)` and fall back to this catalog.

Facts about the CSV that shape the lookup:
- a region has several zones with very different spot prices (p4d.24xlarge in us-east-1:
  2.47 to 8.19 USD/h), so a spot pool is quoted at its region's cheapest zone — that is the
  zone a spot request constrained to the region can be placed in first;
- a spot price that is empty or equal to the on-demand price means "no spot market": such a
  zone is no spot offer at all, and a spot pool with no real offer in its region gets no quote.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time
from functools import lru_cache
from importlib import resources
from typing import Protocol, runtime_checkable

from etrid_ray.pools import Pool

# The catalog's facts were read in November 2026 (see etrid_ray/data/README.md); the day is not recorded.
CATALOG_AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
PRICES_CSV = "data/gpu_prices.csv"
DECLARED_SOURCE = "config"  # a quote from a pool's declared price: "config: <where the figure comes from>"
INTERRUPTION_CSV = "data/aws_spot_interruption.csv"


@dataclass(frozen=True)
class PriceQuote:
    """What one node of a pool costs now, where, and how sure we are (source and age).

    `usd_per_node_hour` is the spot price for spot pools (on-demand for on-demand pools);
    `usd_per_gpu_hour` divides it by the instance's accelerator count, because revenue is
    earned per GPU-second and the break-even has to be compared per GPU, not per instance.
    """

    pool: str
    cloud: str
    region: str
    zone: str | None
    usd_per_node_hour: float
    usd_per_gpu_hour: float
    ondemand_usd_per_hour: float
    spot_discount: float  # 1 − spot/on-demand; 0.0 for on-demand quotes
    source: str = "catalog"
    as_of: datetime = CATALOG_AS_OF
    interruption_bucket: str | None = None  # AWS Spot Advisor: "<5%", "5-10%", …, ">20%"; None = unknown
    instance_type: str | None = None
    spot: bool = True
    # what the live market adds (etrid_ray/clouds): None = unknown, and placement ignores it
    quota_headroom_nodes: int | None = None  # more nodes the quota/capacity allows now; 0 = the pool cannot grow
    interruption_rate: float | None = None  # expected share of spot nodes interrupted per month (Spot Advisor)

    def age_s(self, now: datetime) -> float:
        """Seconds since the price was observed (callers warn on stale live prices)."""
        return (now - self.as_of).total_seconds()


@runtime_checkable
class PriceSource(Protocol):
    """Anything that can price a pool: the shipped catalog, a live cloud feed, a test double.

    Returns None when the source cannot price the pool (local pool, unknown instance type or
    region, no spot offer): placement then never grows that pool.
    """

    def quote(self, pool: Pool) -> PriceQuote | None: ...


@dataclass(frozen=True)
class CatalogRow:
    """One row of the shipped CSV: one instance type in one zone (Azure rows have no zone)."""

    cloud: str
    instance_type: str
    accelerator: str
    accelerator_count: int
    region: str
    zone: str | None
    ondemand_usd_per_hour: float
    spot_usd_per_hour: float | None  # None = no spot offer (empty, or equal to on-demand, in the CSV)

    @property
    def has_spot(self) -> bool:
        return self.spot_usd_per_hour is not None


def _spot_or_none(spot: str, ondemand: float) -> float | None:
    """Empty or on-demand-priced spot cells are placeholders, not a market: treat both as no spot."""
    if not spot.strip():
        return None
    value = float(spot)
    if value <= 0 or value >= ondemand:
        return None
    return value


def parse_price_rows(text: str) -> list[CatalogRow]:
    rows = []
    for rec in csv.DictReader(io.StringIO(text)):
        ondemand = float(rec["ondemand_usd_per_hour"])
        rows.append(CatalogRow(cloud=rec["cloud"], instance_type=rec["instance_type"],
                               accelerator=rec["accelerator"], accelerator_count=int(rec["accelerator_count"]),
                               region=rec["region"], zone=rec["zone"] or None, ondemand_usd_per_hour=ondemand,
                               spot_usd_per_hour=_spot_or_none(rec["spot_usd_per_hour"], ondemand)))
    return rows


def parse_interruption_buckets(text: str) -> dict[tuple[str, str, str], str]:
    return {(r["cloud"], r["instance_type"], r["region"]): r["interruption_bucket"]
            for r in csv.DictReader(io.StringIO(text))}


class PriceCatalog:
    """Offline prices: the shipped CSV, indexed by (cloud, instance type, region)."""

    def __init__(self, rows: Iterable[CatalogRow], *, as_of: datetime = CATALOG_AS_OF,
                 interruption: Mapping[tuple[str, str, str], str] | None = None, source: str = "catalog") -> None:
        self.as_of = as_of
        self.source = source
        self._interruption = dict(interruption or {})
        self._offers: dict[tuple[str, str, str], list[CatalogRow]] = {}
        for row in rows:
            self._offers.setdefault((row.cloud, row.instance_type, row.region), []).append(row)

    @classmethod
    def load(cls) -> PriceCatalog:
        """The catalog the package ships (read once per process through `default_catalog()`)."""
        data = resources.files("etrid_ray")
        rows = parse_price_rows(data.joinpath(PRICES_CSV).read_text(encoding="utf-8"))
        buckets = parse_interruption_buckets(data.joinpath(INTERRUPTION_CSV).read_text(encoding="utf-8"))
        return cls(rows, interruption=buckets)

    def offers(self, cloud: str, instance_type: str, region: str) -> Sequence[CatalogRow]:
        """Every zone's row for this instance type in this region (empty when the catalog lacks it)."""
        return tuple(self._offers.get((cloud, instance_type, region), ()))

    def interruption_bucket(self, cloud: str, instance_type: str, region: str) -> str | None:
        return self._interruption.get((cloud, instance_type, region))

    def quote(self, pool: Pool, *, zones: Collection[str] | None = None) -> PriceQuote | None:
        """The pool's price: the cheapest zone with a real spot offer (spot pools) or the cheapest
        on-demand zone (on-demand pools). Local pools and unknown offers get None.

        `zones` (from a live market: the zones that offer the type now) narrows the rows to those
        zones when the catalog knows any of them; zone names it does not know (AWS zone names vs
        the catalog's zone ids) leave the rows as they are.

        A pool the catalog cannot price is quoted at the price its config declares (`Pool.price`), if any."""
        if not pool.is_cloud:
            return None
        quote = self._catalogued(pool, zones) if pool.instance_type else None
        return quote if quote is not None else declared_quote(pool)

    def _catalogued(self, pool: Pool, zones: Collection[str] | None) -> PriceQuote | None:
        assert pool.instance_type is not None
        rows = self.offers(pool.kind, pool.instance_type, pool.region)
        if zones:
            wanted = set(zones)
            narrowed = [r for r in rows if r.zone in wanted]
            rows = narrowed or rows
        if pool.spot:
            priced = [(r.spot_usd_per_hour, r.zone or "", r) for r in rows if r.spot_usd_per_hour is not None]
            if not priced:
                return None
            node_hour, _, best = min(priced, key=lambda t: (t[0], t[1]))
        else:
            if not rows:
                return None
            best = min(rows, key=lambda r: (r.ondemand_usd_per_hour, r.zone or ""))
            node_hour = best.ondemand_usd_per_hour
        ondemand = best.ondemand_usd_per_hour
        return PriceQuote(pool=pool.name, cloud=best.cloud, region=best.region, zone=best.zone,
                          usd_per_node_hour=node_hour, usd_per_gpu_hour=node_hour / best.accelerator_count,
                          ondemand_usd_per_hour=ondemand,
                          spot_discount=max(0.0, 1.0 - node_hour / ondemand) if ondemand > 0 else 0.0,
                          source=self.source, as_of=self.as_of,
                          interruption_bucket=self.interruption_bucket(best.cloud, best.instance_type, best.region),
                          instance_type=best.instance_type, spot=pool.spot)


def declared_quote(pool: Pool) -> PriceQuote | None:
    """The price the pool's config declares, as a quote whose source names where the figure comes from."""
    price = pool.price
    if price is None or not pool.is_cloud:
        return None
    node_hour = price.usd_per_node_hour
    ondemand = price.ondemand_usd_per_node_hour or node_hour
    return PriceQuote(pool=pool.name, cloud=pool.kind, region=pool.region, zone=None, usd_per_node_hour=node_hour,
                      usd_per_gpu_hour=node_hour / pool.gpus_per_node, ondemand_usd_per_hour=ondemand,
                      spot_discount=max(0.0, 1.0 - node_hour / ondemand) if pool.spot else 0.0,
                      source=f"{DECLARED_SOURCE}: {price.source}",
                      as_of=datetime.combine(price.as_of, time.min, tzinfo=UTC),
                      instance_type=pool.instance_type, spot=pool.spot)


class FallbackSource:
    """The first source that can price a pool wins: live feeds first, the catalog last."""

    def __init__(self, *sources: PriceSource) -> None:
        self.sources = sources

    def quote(self, pool: Pool) -> PriceQuote | None:
        for source in self.sources:
            q = source.quote(pool)
            if q is not None:
                return q
        return None


@lru_cache(maxsize=1)
def default_catalog() -> PriceCatalog:
    """The shipped catalog, read from the package once per process."""
    return PriceCatalog.load()


def quotes_for(pools: Iterable[Pool], source: PriceSource | None = None) -> dict[str, PriceQuote]:
    """Quotes for the pools a source can price, by pool name (what a scaling `Snapshot.prices` holds)."""
    src = source if source is not None else default_catalog()
    out: dict[str, PriceQuote] = {}
    for pool in pools:
        q = src.quote(pool)
        if q is not None:
            out[pool.name] = q
    return out
