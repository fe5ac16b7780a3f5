"""Pools: each one Ray autoscaler node type and one KubeRay worker group.

A pool advertises `GPU`, `pool:<name>`, `accelerator_type:<X>`, `region:<r>` and, for
confidential nodes, `tee:<type>` as Ray resources. The head steers a job to a pool by
requesting a tiny amount (`STEER`) of that pool's resource; the autoscaler then grows
exactly that group. Each registered cloud (`etrid_ray.clouds.registry`: local, AWS, GCP,
Azure, …) turns its config section (the seed's `aws_enabled`, `aws_region`, …, and the local
GPU settings) into its pools (`config.pools_from_config`), so the manifests, the policy and the
simulator see the same pools.

This module is the bottom of the stack: it imports nothing of the project. A pool's `kind` is a
registered cloud's name, and the registry, whose clouds build pools, sits above it; so the registry hands
this module its table of kinds when it is imported (`use_kinds`), instead of this module importing it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Kind = str  # a registered cloud's name (etrid_ray.clouds.registry): local, aws, gcp, azure, …
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


# kind -> is it a cloud (False: the provider's own machines), as the cloud registry knows them
_kinds: Callable[[], Mapping[str, bool]] | None = None


def use_kinds(table: Callable[[], Mapping[str, bool]]) -> None:
    """Called by `etrid_ray.clouds.registry` when it is imported: `kinds()` returns every registered cloud's
    name and `Cloud.is_cloud`, loading the registry's clouds on first use."""
    global _kinds
    _kinds = table


def kinds() -> Mapping[str, bool]:
    if _kinds is None:  # only a process that imported pools alone: the config, clouds and all above import it
        raise RuntimeError("no cloud registry: import etrid_ray.clouds.registry (etrid_ray.config does) before "
                           "making or reading pools")
    return _kinds()


class DeclaredPrice(BaseModel):
    """A price the provider's config states for a pool the shipped catalog cannot price (AMD Instinct VM sizes, a
    GPU cloud's contract): quotes use it only where the catalog has none, and say so (`PriceQuote.source` is
    "config: <source>"), so an operator's figure never silently replaces a catalogued one."""

    model_config = ConfigDict(extra="forbid")

    usd_per_node_hour: float = Field(..., gt=0, description="what one node costs per hour (spot for spot pools)")
    ondemand_usd_per_node_hour: float | None = Field(None, gt=0, description="the on-demand price, when known "
                                                     "(spot pools: the discount it implies)")
    source: str = Field(..., min_length=3, description="where the figure comes from: a price page and the day it "
                        "was read, a contract, an invoice")
    as_of: date = Field(..., description="the day the figure was read")


class Pool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., pattern=r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$", description="DNS-1123 label")
    kind: Kind = Field(..., description="the cloud it runs in: a registered cloud's name (local, aws, gcp, azure)")
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
    price: DeclaredPrice | None = Field(None, description="the config's price, for a pool the catalog lacks")
    startup_s: float = Field(0.0, ge=0, description="time from request to a node that runs tasks")
    power_watts_per_gpu: float = Field(400.0, ge=0, description="local pools: electricity drawn per busy GPU")
    electricity_usd_per_kwh: float = Field(0.12, ge=0)

    @field_validator("kind")
    @classmethod
    def _registered(cls, v: str) -> str:
        known = kinds()
        if v not in known:
            raise ValueError(f"unknown cloud {v!r} (one of {', '.join(known)})")
        return v

    @property
    def is_cloud(self) -> bool:
        """Every pool but the provider's own machines' (`Cloud.is_cloud`) bills by the node-hour."""
        return kinds().get(self.kind, True)

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
