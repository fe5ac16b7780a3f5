"""The simulated provider: its pools, prices and terms, built from the one config model.

Why these defaults (the scenario the README's table comes from):

- **Demand** is the whole Philly trace as chain jobs. Its concurrent GPU demand, had every job
  started on arrival, is 330 GPUs at the median, 634 at p90 and 813 at p99; 82 % of its GPU-hours
  are jobs of a day or longer (up to 7 weeks).
- **Local GPUs: 320** (40 nodes × 8 A100): about the median demand. Half the time the provider's
  own GPUs are enough; above the median the question is exactly the one bursting answers — buy
  spot nodes, or let the work go. A provider sized for the peak would never burst, one far
  below the median would burst all the time; neither is a decision worth simulating.
- **Price: 1.00 USD per GPU-hour** offered by consumers (10 ËDSC at the seed's 0.10 USD/ËDSC),
  of which the provider keeps 95 %. That is about what A100 hours rent for on GPU marketplaces,
  between the shipped spot prices of AWS p4d (0.31 USD/GPU-h) and Azure ND96amsr (0.45) and
  that of GCP a2-ultragpu-8g (2.64): some bursts pay, some never do, and packing decides the
  rest (a node of 8 GPUs running one job costs 8 GPU-hours per hour). The seed's own price,
  `PRICE_PER_SECOND` = 10¹⁴ planck per GPU-second, is 0.036 USD per GPU-hour at 0.10 USD/ËDSC:
  below every spot price, so at that price no burst pays (see `--explain-breakeven`).
- **Patience: 1 hour.** A job waiting in the chain's queue can be claimed by any provider, so
  one that waits here past this is counted as lost to another provider (no revenue, no cost).
  Without it, work deferred for weeks would earn as much as work served at once and bursting
  could only lose money — not the market the chain runs.
- Pools, startup times, max spot prices, the daily budget, idle timeout and the seed's scaling
  thresholds are the config's defaults (AWS, GCP, Azure spot pools of 4 nodes × 8 A100 each), and
  so is `claim_order` (best-paying: which queued jobs the profit policy serves first when room is
  short; `base_config=ProviderConfig(claim_order="first-come")` for the chain queue's own order).

The policies read the scenario's `scaling` settings alone (the config's `scaling` section, valued at
the scenario's ËDSC rate), as the live head's do; the base config only describes the pools.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

from etrid_ray.clouds.base import interruption_rate
from etrid_ray.config import ProviderConfig, ProviderSettings, ScalingSettings, pools_from_config
from etrid_ray.pools import Pool
from etrid_ray.prices.catalog import (
    INTERRUPTION_CSV,
    PriceCatalog,
    PriceQuote,
    parse_interruption_buckets,
    parse_price_rows,
    quotes_for,
)
from etrid_ray.scaling.state import PLATFORM_FEE_BPS
from etrid_ray.sim.shortage import Shortage
from etrid_ray.units import PLANCK_PER_EDSC

DEFAULT_LOCAL_GPUS = 320
DEFAULT_PRICE_PER_GPU_HOUR = 1.00  # USD a consumer pays per GPU-hour
SEED_EDSC_USD = 0.10  # the seed's ËDSC→USD rate
DEFAULT_PATIENCE_S = 3600.0
LOCAL_GPUS_PER_NODE = 8


@dataclass(frozen=True)
class SimSettings:
    local_gpus: int = DEFAULT_LOCAL_GPUS
    price_per_gpu_hour: float = DEFAULT_PRICE_PER_GPU_HOUR  # USD per GPU-hour, before the chain's 5 % fee
    edsc_usd: float = SEED_EDSC_USD
    patience_s: float | None = DEFAULT_PATIENCE_S  # None: jobs wait forever
    seed: int = 0  # spot interruptions are drawn from this
    interruptions: bool = True
    base_config: ProviderConfig | None = None  # pools and scaling settings (default: the config's defaults)
    prices: Mapping[str, PriceQuote] | None = None  # by pool (default: the shipped catalog)
    drain_s: float = 6 * 3600.0  # after the last job, nodes a policy keeps are billed this long at most
    # what the policy knows of a job's length: its `max_compute_time`, declared by the consumer as this many
    # times its real duration (1.0: exactly; the payment is the same either way, so a job that declares
    # more looks cheaper per GPU-second and longer to a new node's cost)
    declared_slack: float = 1.0
    record: bool = True  # keep time series for plots
    per_job: bool = False  # keep each finished job's profit row (etrid_ray.profit.JobProfit), as the head records it
    shortage: Shortage | None = None  # capacity shortages per cloud pool (sim.shortage); None: capacity is always there

    def __post_init__(self) -> None:
        if self.local_gpus < 0:
            raise ValueError("local_gpus must be ≥ 0")
        if self.price_per_gpu_hour < 0 or self.edsc_usd <= 0:
            raise ValueError("price_per_gpu_hour must be ≥ 0 and edsc_usd > 0")
        if self.patience_s is not None and self.patience_s <= 0:
            raise ValueError("patience_s must be > 0 (or None)")
        if self.declared_slack < 1:
            raise ValueError("declared_slack must be ≥ 1 (a job's max_compute_time covers its run)")


@dataclass(frozen=True)
class Scenario:
    """What one run simulates: the scaling settings the policies read, the pools and their prices, and the seed's
    minimum price (planck per GPU-second, for the break-even table)."""

    settings: SimSettings
    scaling: ScalingSettings
    pools: tuple[Pool, ...]
    prices: Mapping[str, PriceQuote] = field(default_factory=dict)
    price_per_second: int = ProviderSettings.model_fields["price_per_second"].default

    @property
    def price_planck_per_gpu_s(self) -> float:
        """The offered price in planck per GPU-second (what a chain job carries)."""
        return self.settings.price_per_gpu_hour / 3600 / self.settings.edsc_usd * PLANCK_PER_EDSC

    @property
    def net_usd_per_gpu_hour(self) -> float:
        """What the provider keeps per GPU-hour, after the chain's fee."""
        return self.settings.price_per_gpu_hour * (1 - PLATFORM_FEE_BPS / 10_000)

    @property
    def local_gpus(self) -> int:
        return sum(p.gpus_per_node * p.min_nodes for p in self.pools if not p.is_cloud)


def local_shape(gpus: int) -> tuple[int, int]:
    """(nodes, GPUs per node) for `gpus` local GPUs: nodes of 8 (one smaller node when it is fewer)."""
    if gpus <= 0:
        return 0, 1
    per = min(gpus, LOCAL_GPUS_PER_NODE)
    return math.ceil(gpus / per), per


def build_scenario(settings: SimSettings) -> Scenario:
    base = settings.base_config or ProviderConfig()
    nodes, per = local_shape(settings.local_gpus)
    if nodes and nodes * per != settings.local_gpus:
        raise ValueError(f"local_gpus {settings.local_gpus}: use a multiple of {LOCAL_GPUS_PER_NODE} "
                         f"(nodes of {LOCAL_GPUS_PER_NODE} GPUs) or fewer than {LOCAL_GPUS_PER_NODE}")
    # the pools: the base config's, its local nodes reshaped to the scenario's local GPUs
    local: dict[str, object] = {"local_nodes": nodes}
    if nodes:
        local["gpus"] = {"count": per}
    pools = tuple(pools_from_config(base.model_copy(update=local)))
    scaling = base.scaling.model_copy(update={"edsc_usd": settings.edsc_usd})
    prices = dict(settings.prices) if settings.prices is not None else with_interruption_rates(quotes_for(pools))
    return Scenario(settings, scaling, pools, prices, price_per_second=base.provider.price_per_second)


def with_interruption_rates(quotes: Mapping[str, PriceQuote]) -> dict[str, PriceQuote]:
    """The quotes as the head's market feed hands them to placement offline: catalog prices, and each spot
    quote's monthly interruption rate from its Spot Advisor bucket (unknown stays None)."""
    return {name: replace(q, interruption_rate=interruption_rate(q.interruption_bucket)) if q.spot else q
            for name, q in quotes.items()}


def prices_from_file(path: str | Path, pools: list[Pool] | tuple[Pool, ...]) -> dict[str, PriceQuote]:
    """Quotes from a CSV in the shipped catalog's format (interruption buckets from the shipped data)."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        rows = parse_price_rows(text)
    except (KeyError, ValueError) as err:
        raise ValueError(f"{path}: not a price catalog CSV ({err})") from None
    buckets = parse_interruption_buckets(resources.files("etrid_ray").joinpath(INTERRUPTION_CSV)
                                         .read_text(encoding="utf-8"))
    catalog = PriceCatalog(rows, interruption=buckets, source=f"file:{Path(path).name}")
    return with_interruption_rates(quotes_for(pools, catalog))
