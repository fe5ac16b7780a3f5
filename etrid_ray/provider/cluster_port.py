"""What the scaler reads from and asks of the Ray cluster, behind one small seam.

Why a seam: the scaler's decisions come from the shared pure tick, but what it observes (nodes, their
free GPUs, which ones drain) and the one thing it asks for (`request_resources` bundles) are Ray's.
`ClusterPort` is exactly those four calls, so a test can run the real `Scaler` against a cluster
fed from the simulator's node model and check that both make the same decisions and bill the same.
`RayCluster` is the default: it calls Ray as the scaler always did.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

log = logging.getLogger(__name__)


class ClusterPort(Protocol):
    def nodes(self) -> list[dict[str, Any]]:
        """Ray's node table rows: at least `NodeID`, `Alive` and `Resources` (with `GPU`, `pool:<name>`)."""
        ...

    def available_per_node(self) -> dict[str, dict[str, float]]:
        """Free resources by node id (Ray's `available_resources_per_node`)."""
        ...

    def draining(self) -> set[str]:
        """Ids of nodes Ray is draining (spot notice, preStop, idle removal)."""
        ...

    def request(self, bundles: list[dict[str, float]]) -> None:
        """Asks the autoscaler for exactly these node-shaped bundles (empty: releases them)."""
        ...


def draining_nodes() -> dict[str, float | None]:
    """Nodes Ray is draining (spot notice, preStop, idle removal), each with its drain deadline (Unix seconds;
    None: drained without one). No new work may be steered there."""
    try:
        from ray._private.state import state

        return {node: ms / 1000 if ms else None for node, ms in state.get_draining_nodes().items()}
    except Exception:  # an older or newer Ray without the call: no node is known to drain
        return {}


def draining_node_ids() -> set[str]:
    return set(draining_nodes())


def refresh_autoscaler_version() -> None:
    """Ray caches, per process, whether the cluster runs autoscaler v1 or v2, and `request_resources` writes
    where that cache says. A process that talked to another cluster before (a notebook, a test session)
    would ask an autoscaler that is not listening: read it again from the cluster we are connected to."""
    import ray

    if not ray.is_initialized():
        return
    try:
        from ray.autoscaler.v2.utils import is_autoscaler_v2

        is_autoscaler_v2(fetch_from_server=True)
    except Exception:  # an older or newer Ray without the call: keep its own answer
        log.debug("could not re-read the autoscaler version", exc_info=True)


class RayCluster:
    """The connected Ray cluster (the process must be connected, `ray.init`, before the first call)."""

    def __init__(self) -> None:
        refresh_autoscaler_version()

    def nodes(self) -> list[dict[str, Any]]:
        import ray

        return ray.nodes()

    def available_per_node(self) -> dict[str, dict[str, float]]:
        from ray._private.state import available_resources_per_node

        return available_resources_per_node()

    def draining(self) -> set[str]:
        return draining_node_ids()

    def request(self, bundles: list[dict[str, float]]) -> None:
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=bundles)
