"""The provider's own GPU machines: the `local` pool (no spot market, billed as electricity per busy GPU)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from etrid_ray.clouds.registry import GPU_TOLERATION, POOL_LABEL, Cloud, register
from etrid_ray.pools import Pool

if TYPE_CHECKING:
    from etrid_ray.config import ProviderConfig


class LocalSettings(BaseModel):
    """The local GPU nodes (`clouds.local`); their GPUs are `provider.gpus`, their region label `provider.region`."""

    model_config = ConfigDict(extra="forbid")

    nodes: int = Field(1, ge=0, le=1000, description="local GPU nodes (each with gpus.count GPUs)")
    cpus_per_node: int = Field(32, ge=1, description="CPUs of each local GPU node")
    memory_gib: int = Field(256, ge=1, description="memory of each local GPU node")
    electricity_usd_per_kwh: float = Field(0.12, ge=0,
        description="what a busy local GPU's power costs (the local pool's cost per GPU-hour)")


@register
class Local(Cloud):
    name = "local"
    order = 0
    is_cloud = False
    title = "local"
    Settings = LocalSettings
    flat_keys: ClassVar[dict[str, str]] = {"electricity_usd_per_kwh": "electricity_usd_per_kwh"}
    pool_name = "local-gpu"

    def pools(self, settings: Any, config: ProviderConfig) -> list[Pool]:
        if settings.nodes <= 0:
            return []
        gpus = config.provider.gpus
        return [Pool(name=self.pool_name, kind=self.name, accelerator=gpus.model, gpus_per_node=max(1, gpus.count),
                     cpus_per_node=settings.cpus_per_node, memory_gib=settings.memory_gib, vram_gb=gpus.vram_gb,
                     min_nodes=settings.nodes, max_nodes=settings.nodes, region=config.provider.region, spot=False,
                     tee=gpus.tee, power_watts_per_gpu=float(gpus.tdp_watts),
                     electricity_usd_per_kwh=settings.electricity_usd_per_kwh)]

    def scheduling(self, pool: Pool) -> tuple[dict[str, str], list[dict[str, str]]]:
        # the provider's own GPU machines: label them `etrid.ai/pool=<name>` when joining them to the cluster
        return {POOL_LABEL: pool.name}, [dict(GPU_TOLERATION)]
