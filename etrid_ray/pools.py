"""Pools: each one Ray autoscaler node type and one KubeRay worker group.

A pool advertises `GPU`, `pool:<name>`, `accelerator_type:<X>`, `region:<r>` and, for
confidential nodes, `tee:<type>` as Ray resources. The head steers a job to a pool by
requesting a tiny amount (`STEER`) of that pool's resource; the autoscaler then grows
exactly that group. The seed's cloud keys (`aws_enabled`, `aws_region`, …) and the local
GPU settings all map onto this one list, so the manifests, the policy and the simulator
see the same pools.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from etrid_ray.config import ProviderConfig

Kind = Literal["local", "aws", "gcp", "azure"]
TeeType = Literal["sgx", "sev-snp", "tdx"]

RESOURCE_UNITS = 1000  # each node offers this many units of its label resources …
STEER = 1 / RESOURCE_UNITS  # … and a task asks for one unit: many tasks share a node's label
POOL_PREFIX = "pool:"  # the one place a pool's Ray resource is named (`pool_resource`) and read back


def pool_resource(name: str) -> str:
    """The Ray resource nodes of pool `name` advertise and a task steered there asks for."""
    return POOL_PREFIX + name


def pool_of_resources(resources: Iterable[str]) -> str | None:
    """The pool a Ray node belongs to, from the names of its resources; None for a node of no pool."""
    return next((k[len(POOL_PREFIX):] for k in resources if k.startswith(POOL_PREFIX)), None)


class Pool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., pattern=r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$", description="DNS-1123 label")
    kind: Kind
    accelerator: str = "A100"
    gpus_per_node: int = Field(8, ge=1, le=16)
    cpus_per_node: int = Field(96, ge=1)
    memory_gib: int = Field(1152, ge=1)
    vram_gb: int = Field(80, ge=1)
    min_nodes: int = Field(0, ge=0)
    max_nodes: int = Field(4, ge=0)
    region: str = "local"
    instance_type: str | None = None
    spot: bool = True
    max_spot_price: float | None = Field(None, gt=0, description="USD per node-hour; above it the pool never grows")
    tee: TeeType | None = None
    startup_s: float = Field(0.0, ge=0, description="time from request to a node that runs tasks")
    power_watts_per_gpu: float = Field(400.0, ge=0, description="local pools: electricity drawn per busy GPU")
    electricity_usd_per_kwh: float = Field(0.12, ge=0)

    @property
    def is_cloud(self) -> bool:
        return self.kind != "local"

    @property
    def resource(self) -> str:
        return pool_resource(self.name)

    def resources(self) -> dict[str, float]:
        """The Ray resources one node of this pool advertises."""
        res: dict[str, float] = {"GPU": float(self.gpus_per_node), self.resource: float(RESOURCE_UNITS),
                                 f"accelerator_type:{self.accelerator}": float(RESOURCE_UNITS),
                                 f"region:{self.region}": float(RESOURCE_UNITS)}
        if self.tee:
            res[f"tee:{self.tee}"] = float(RESOURCE_UNITS)
        return res

    def local_cost_per_gpu_hour(self) -> float:
        """What a busy local GPU costs in electricity (USD per GPU-hour)."""
        return self.power_watts_per_gpu / 1000 * self.electricity_usd_per_kwh


def pools_from_config(config: ProviderConfig) -> list[Pool]:
    """The pools the seed's keys describe, then any explicitly configured ones (same name wins)."""
    pools: list[Pool] = []
    gpus = config.gpus
    if config.local_nodes > 0:
        pools.append(Pool(name="local-gpu", kind="local", accelerator=gpus.model, gpus_per_node=max(1, gpus.count),
                          cpus_per_node=config.local_cpus_per_node, memory_gib=config.local_memory_gib,
                          vram_gb=gpus.vram_gb, min_nodes=config.local_nodes, max_nodes=config.local_nodes,
                          region=config.region, spot=False, tee=gpus.tee,
                          power_watts_per_gpu=float(gpus.tdp_watts),
                          electricity_usd_per_kwh=config.electricity_usd_per_kwh))
    if config.aws_enabled:
        pools.append(Pool(name="aws-spot-a100", kind="aws", instance_type=config.aws_instance_type,
                          region=config.aws_region, max_spot_price=config.aws_spot_max_price,
                          max_nodes=config.aws_max_nodes, startup_s=180, memory_gib=1152, cpus_per_node=96))
    if config.gcp_enabled:
        pools.append(Pool(name="gcp-spot-a100", kind="gcp", instance_type=config.gcp_machine_type,
                          region=config.gcp_region, max_spot_price=config.gcp_spot_max_price,
                          max_nodes=config.gcp_max_nodes, startup_s=150, memory_gib=1360, cpus_per_node=96))
    if config.azure_enabled:
        pools.append(Pool(name="azure-spot-a100", kind="azure", instance_type=config.azure_vm_size,
                          region=config.azure_region, max_spot_price=config.azure_spot_max_price,
                          max_nodes=config.azure_max_nodes, startup_s=240, memory_gib=1900, cpus_per_node=96))
    if config.ENABLE_TEE:
        pools.append(Pool(name="azure-tee-h100", kind="azure", accelerator="H100", gpus_per_node=1,
                          cpus_per_node=40, memory_gib=320, vram_gb=94, instance_type="Standard_NCC40ads_H100_v5",
                          region=config.tee_region, tee="sev-snp", max_nodes=config.tee_max_nodes, startup_s=300))
    by_name = {p.name: p for p in pools}
    for extra in config.pools:
        by_name[extra.name] = extra
    return list(by_name.values())
