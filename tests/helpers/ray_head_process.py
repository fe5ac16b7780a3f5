"""A real `ray start --head --block` on loopback with free ports, stopped by its pid (never `ray stop`,
which would kill every Ray process on the machine): the production `LocalRay` with the tests' defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

from etrid_ray.local_ray import LocalRay, free_port
from etrid_ray.pools import pool_selector

__all__ = ["RayHeadProcess", "free_port"]


@dataclass
class RayHeadProcess(LocalRay):
    num_gpus: int = 2
    num_cpus: int | None = 2
    labels: dict[str, str] = field(default_factory=lambda: pool_selector("local"))  # a node of pool `local`
