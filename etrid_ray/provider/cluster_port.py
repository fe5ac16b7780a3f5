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

from etrid_ray.pools import CapacityRequest

log = logging.getLogger(__name__)


class ClusterPort(Protocol):
    def nodes(self) -> list[dict[str, Any]]:
        """Ray's node table rows: at least `NodeID`, `Alive`, `Resources` (with `GPU`) and `Labels` (with the
        pool's labels, `Pool.labels()`)."""
        ...

    def available_per_node(self) -> dict[str, dict[str, float]]:
        """Free resources by node id (Ray's `available_resources_per_node`)."""
        ...

    def draining(self) -> set[str]:
        """Ids of nodes Ray is draining (spot notice, preStop, idle removal)."""
        ...

    def request(self, request: CapacityRequest) -> None:
        """Asks the autoscaler for exactly these node-shaped bundles, each on nodes its label selector matches
        (empty: releases them)."""
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


def refresh_autoscaler_version() -> bool | None:
    """Ray caches, per process, whether the cluster runs autoscaler v1 or v2, and `request_resources` writes
    where that cache says. A process that talked to another cluster before (a notebook, a test session)
    would ask an autoscaler that is not listening: read it again from the cluster we are connected to.
    Returns whether it is v2 (None: not connected, or Ray cannot say)."""
    import ray

    if not ray.is_initialized():
        return None
    try:
        from ray.autoscaler.v2.utils import is_autoscaler_v2

        return bool(is_autoscaler_v2(fetch_from_server=True))
    except Exception:  # an older or newer Ray without the call: keep its own answer
        log.debug("could not re-read the autoscaler version", exc_info=True)
        return None


class RayCluster:
    """The connected Ray cluster (the process must be connected, `ray.init`, before the first call)."""

    def __init__(self) -> None:
        self.autoscaler_v2 = refresh_autoscaler_version()
        self._warned_v1 = False

    def nodes(self) -> list[dict[str, Any]]:
        import ray

        return ray.nodes()

    def available_per_node(self) -> dict[str, dict[str, float]]:
        from ray._private.state import available_resources_per_node

        return available_resources_per_node()

    def draining(self) -> set[str]:
        return draining_node_ids()

    def request(self, request: CapacityRequest) -> None:
        from ray.autoscaler.sdk import request_resources

        if request.bundles and self.autoscaler_v2 is False and not self._warned_v1:
            self._warned_v1 = True  # v1 keeps the bundles and drops their selectors (docs/architecture.md)
            log.warning("the cluster runs Ray's autoscaler v1, which drops the pool label selectors of capacity "
                        "requests and cannot grow a pool's group for its tasks: run autoscaler v2 (KubeRay "
                        "autoscalerOptions.version: v2, or RAY_enable_autoscaler_v2=1 on the head)")
        request_resources(bundles=list(request.bundles), bundle_label_selectors=list(request.selectors))
