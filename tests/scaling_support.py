"""Builders for scaling snapshots: pools from the real config, prices from the shipped catalog."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from etrid_ray.config import ProviderConfig, pools_from_config
from etrid_ray.pools import Pool
from etrid_ray.prices import PriceQuote, quotes_for
from etrid_ray.scaling.state import PLATFORM_FEE_BPS, PoolState, QueuedJob, Snapshot
from etrid_ray.units import PLANCK_PER_EDSC

# Default config plus the TEE pool: local-gpu (1 node × 4 A100, region "local", min = max = 1),
# aws-spot-a100 (p4d, us-east-1, 2.4655 $/h, max 12), gcp-spot-a100 (europe-west4, 21.08704 $/h, max 24),
# azure-spot-a100 (eastus, 3.6047 $/h, max 8), azure-tee-h100 (eastus2, sev-snp, 1 GPU, 1.745 $/h).
CONFIG = ProviderConfig(ENABLE_TEE=True)
AWS, GCP, AZURE, TEE, LOCAL = "aws-spot-a100", "gcp-spot-a100", "azure-spot-a100", "azure-tee-h100", "local-gpu"


def config(**overrides: Any) -> ProviderConfig:
    return CONFIG.model_copy(update=overrides)


def planck_per_gpu_s(usd_per_gpu_hour: float, edsc_usd: float = 1.0) -> float:
    """The offered price that nets the provider `usd_per_gpu_hour` after the chain's fee."""
    return usd_per_gpu_hour * PLANCK_PER_EDSC / (3600 * (1 - PLATFORM_FEE_BPS / 10_000) * edsc_usd)


def job(job_id: int, *, gpus: float = 1, rate: float = 1.0, duration: float = 3600, waiting_since: float = 0.0,
        **kw: Any) -> QueuedJob:
    """A queued job paying `rate` USD per GPU-hour (net of the fee, at edsc_usd = 1)."""
    return QueuedJob(job_id=job_id, gpus=gpus, price_per_gpu_s=planck_per_gpu_s(rate), expected_duration_s=duration,
                     waiting_since=waiting_since, **kw)


def pool_state(pool: Pool, *, alive: int | None = None, pending: int = 0, busy: float = 0.0,
               idle_since: Iterable[float | None] | None = None) -> PoolState:
    """Alive defaults to min_nodes; `busy` GPUs are in use, the rest of the alive GPUs are free;
    idle_since defaults to every alive node busy while any GPU is busy, else idle since t = 0."""
    alive = pool.min_nodes if alive is None else alive
    if idle_since is None:
        idle_since = [None if busy > 0 else 0.0] * alive
    return PoolState(pool=pool, alive=alive, pending=pending, idle_since=tuple(idle_since), gpus_busy=busy,
                     gpus_free=alive * pool.gpus_per_node - busy)


def snapshot(cfg: ProviderConfig = CONFIG, *, now: float = 0.0, queue: Iterable[QueuedJob] = (),
             spend: float = 0.0, prices: dict[str, PriceQuote] | None = None,
             states: dict[str, PoolState] | None = None, **pool_kw: dict[str, Any]) -> Snapshot:
    """Every pool of the config; `local_gpu={"busy": 4}` style keyword overrides per pool."""
    pools = pools_from_config(cfg)
    out = []
    for p in pools:
        if states and p.name in states:
            out.append(states[p.name])
        else:
            out.append(pool_state(p, **pool_kw.get(p.name.replace("-", "_"), {})))
    return Snapshot(now=now, pools=tuple(out), queue=tuple(queue), spend_today_usd=spend,
                    prices=quotes_for(pools) if prices is None else prices)
