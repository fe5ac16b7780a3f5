"""One view of the Ray cluster per tick: its nodes, which pool each belongs to, what is free, what drains.

Why one view: the head's capacity, the scaler's snapshot, the telemetry's pool gauges and the TEE gate each
read Ray's node table, and read apart they disagreed during a drain (one counted a draining node's GPUs,
another did not). `ClusterView` is read once from the cluster port and every reader takes its answer from
the same rows. Nothing here calls Ray: `RayCluster` (provider/cluster_port.py) does, behind the port.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from etrid_ray.pools import pool_of_labels

EPS = 1e-9


@dataclass(frozen=True)
class NodeView:
    node_id: str
    alive: bool
    draining: bool
    resources: Mapping[str, float]
    available: Mapping[str, float]
    pool: str | None  # from the node's pool label (`pools.POOL_LABEL`); None for a node of no pool
    labels: Mapping[str, str] = field(default_factory=dict)  # the node's Ray labels

    @property
    def gpus(self) -> float:
        return float(self.resources.get("GPU", 0.0))

    @property
    def free_gpus(self) -> float:
        return float(self.available.get("GPU", 0.0))


@dataclass(frozen=True)
class PoolLoad:
    total: float = 0.0  # GPUs of alive nodes, draining ones included
    free: float = 0.0
    nodes: int = 0


@dataclass(frozen=True)
class ClusterView:
    taken_at: float
    nodes: tuple[NodeView, ...] = ()
    connected: bool = True

    @classmethod
    def read(cls, port: Any, now: float | None = None) -> ClusterView:
        """The cluster as `port` shows it now (its node table, free resources per node, draining nodes)."""
        draining = port.draining()
        free = port.available_per_node()
        nodes = []
        for row in port.nodes():
            labels = dict(row.get("Labels") or {})
            node_id = row["NodeID"]
            nodes.append(NodeView(node_id, bool(row.get("Alive")), node_id in draining,
                                  dict(row.get("Resources") or {}), dict(free.get(node_id, {})),
                                  pool_of_labels(labels), labels))
        return cls(time.time() if now is None else now, tuple(nodes))

    @property
    def alive(self) -> tuple[NodeView, ...]:
        return tuple(n for n in self.nodes if n.alive)

    def schedulable_gpus(self) -> float:
        """GPUs new work may go to: alive nodes that are not draining."""
        return sum(n.gpus for n in self.nodes if n.alive and not n.draining)

    def has_pool(self, name: str) -> bool:
        """Whether an alive node carries pool `name`'s label."""
        return any(n.pool == name for n in self.nodes if n.alive)

    def nodes_per_pool(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for node in self.alive:
            if node.pool is not None:
                out[node.pool] = out.get(node.pool, 0) + 1
        return out

    def pools(self, default_pool: str) -> dict[str, PoolLoad]:
        """Per pool, the GPUs and nodes alive. A GPU node of no pool counts under `default_pool`; a CPU-only
        node of no pool (a KubeRay head) is no pool."""
        acc: dict[str, list[float]] = {}
        for node in self.alive:
            pool = node.pool
            if pool is None:
                if node.gpus <= 0:
                    continue
                pool = default_pool
            a = acc.setdefault(pool, [0.0, 0.0, 0])
            a[0] += node.gpus
            a[1] += node.free_gpus
            a[2] += 1
        return {p: PoolLoad(t, f, int(n)) for p, (t, f, n) in acc.items()}


@dataclass
class ClusterWatch:
    """The latest `ClusterView`, read again at most every `max_age_s` (walking Ray's node table is not free):
    every reader in one tick gets the same view."""

    read: Callable[[], ClusterView]
    max_age_s: float = 1.0
    clock: Callable[[], float] = time.monotonic
    _view: ClusterView | None = None
    _at: float = field(default=float("-inf"))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def view(self) -> ClusterView:
        with self._lock:
            now = self.clock()
            if self._view is None or now - self._at >= self.max_age_s:
                self._view = self.read()
                self._at = now
            return self._view

    def invalidate(self) -> None:
        with self._lock:
            self._view = None
