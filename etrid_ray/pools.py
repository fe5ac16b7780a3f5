"""Pools: each one Ray autoscaler node type and one KubeRay worker group.

A pool's nodes carry Ray node labels (`Pool.labels()`: pool, cloud, market type, accelerator, region and,
for confidential pools, TEE), set from the worker group's `labels` (KubeRay >= 1.5 passes them to
`ray start --labels`; Ray's KubeRay translation copies them into the autoscaler's node type). The head
steers a job to a pool with a `label_selector` on that pool's label (`pool_selector`), and asks for
capacity with `request_resources(bundles=…, bundle_label_selectors=…)` (`capacity_request`): Ray's
autoscaler v2 grows exactly the group whose labels match. Ray's autoscaler v1 drops bundle label
selectors (it writes only the resource shapes), so the clusters here run v2 (docs/architecture.md).
Each registered cloud (`etrid_ray.clouds.registry`: local, AWS, GCP, Azure, …) turns its config section
(the seed's `aws_enabled`, `aws_region`, …, and the local GPU settings) into its pools
(`config.pools_from_config`), so the manifests, the policy and the simulator see the same pools.

This module is the one place that names a pool's labels and reads them back (`pool_of_labels`). It is
the bottom of the stack: it imports nothing of the project. A pool's `kind` is a
registered cloud's name, and the registry, whose clouds build pools, sits above it; so the registry hands
this module its table of kinds when it is imported (`use_kinds`), instead of this module importing it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Kind = str  # a registered cloud's name (etrid_ray.clouds.registry): local, aws, gcp, azure, …
TeeType = Literal["sgx", "sev-snp", "tdx"]

RESOURCE_UNITS = 1000  # a node's attested `tee:<type>` resource (security/tee/node.py) offers this many units …
STEER = 1 / RESOURCE_UNITS  # … and a TEE task asks for one unit: many tasks share a node's attestation

# The Ray node labels of a pool's nodes. Our own prefix: Ray refuses user labels under `ray.io/` (its defaults).
LABEL_PREFIX = "etrid.ai/"
POOL_LABEL = LABEL_PREFIX + "pool"
CLOUD_LABEL = LABEL_PREFIX + "cloud"
MARKET_LABEL = LABEL_PREFIX + "market-type"  # spot | on-demand | owned (the provider's own machines)
ACCELERATOR_LABEL = LABEL_PREFIX + "accelerator"
REGION_LABEL = LABEL_PREFIX + "region"
TEE_LABEL = LABEL_PREFIX + "tee"  # the TEE the pool's nodes are meant to have; attestation is its own gate

# Ray's (and Kubernetes') label value syntax: at most 63 characters, alphanumeric at both ends, `-_.` inside
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$")


def label_value(text: str) -> str:
    """`text` as a valid label value: characters Ray refuses become `-`, cut to 63, trimmed to alphanumeric
    ends (NVML names a local GPU "NVIDIA A100-SXM4-80GB"; its label is `NVIDIA-A100-SXM4-80GB`)."""
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63]
    value = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)
    assert _LABEL_VALUE.match(value), value
    return value


def pool_selector(name: str) -> dict[str, str]:
    """The label selector of pool `name`'s nodes: for a task's `label_selector` and a capacity bundle's."""
    return {POOL_LABEL: name}


def pool_of_labels(labels: Mapping[str, str] | None) -> str | None:
    """The pool a Ray node belongs to, from its labels; None for a node of no pool (a KubeRay head)."""
    return (labels or {}).get(POOL_LABEL) or None


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
    def market(self) -> str:
        """The market the nodes are bought on: `spot`, `on-demand`, or `owned` for the provider's own machines."""
        if not self.is_cloud:
            return "owned"
        return "spot" if self.spot else "on-demand"

    def labels(self) -> dict[str, str]:
        """The Ray node labels one node of this pool carries (the worker group's `labels`)."""
        out = {POOL_LABEL: self.name, CLOUD_LABEL: label_value(self.kind), MARKET_LABEL: self.market,
               ACCELERATOR_LABEL: label_value(self.accelerator), REGION_LABEL: label_value(self.region)}
        if self.tee:
            out[TEE_LABEL] = self.tee
        return out

    def selector(self) -> dict[str, str]:
        return pool_selector(self.name)

    def resources(self) -> dict[str, float]:
        """The Ray resources one node of this pool can advertise: its GPUs and, for a confidential pool, the
        `tee:<type>` resource a node keeps only once it attested (security/tee/node.py zeroes it otherwise).
        Which pool a node is, is in its labels: no resource names a pool."""
        res: dict[str, float] = {"GPU": float(self.gpus_per_node)}
        if self.tee:
            res[f"tee:{self.tee}"] = float(RESOURCE_UNITS)
        return res

    def local_cost_per_gpu_hour(self) -> float:
        """What a busy local GPU costs in electricity (USD per GPU-hour)."""
        return self.power_watts_per_gpu / 1000 * self.electricity_usd_per_kwh


@dataclass(frozen=True)
class CapacityRequest:
    """What the head asks Ray's autoscaler for: one node-shaped bundle per wanted node, each with the label
    selector of the pool it must come from (`request_resources(bundles=…, bundle_label_selectors=…)`)."""

    bundles: tuple[dict[str, float], ...] = ()
    selectors: tuple[dict[str, str], ...] = ()

    def per_pool(self) -> dict[str, int]:
        """Bundles asked per pool (what a test or a log line reads back)."""
        out: dict[str, int] = {}
        for selector in self.selectors:
            name = pool_of_labels(selector) or ""
            out[name] = out.get(name, 0) + 1
        return out


def capacity_request(pools: Mapping[str, Pool], targets: Mapping[str, int]) -> CapacityRequest:
    """Per pool, `targets[name]` whole-node bundles (the pool's GPUs per node) on nodes of that pool's label:
    the autoscaler launches exactly those groups' nodes and keeps them while asked. Pools are taken in
    `targets`' order; a target of 0 or below asks for nothing."""
    bundles: list[dict[str, float]] = []
    selectors: list[dict[str, str]] = []
    for name, n in targets.items():
        pool = pools[name]
        for _ in range(max(0, n)):
            bundles.append({"GPU": float(pool.gpus_per_node)})
            selectors.append(pool.selector())
    return CapacityRequest(tuple(bundles), tuple(selectors))
