"""Pure scaling: snapshot in, placements and per-pool decisions out (the head and the simulator share it).

`POLICIES` names every policy the simulator compares, each a (place, decide) pair of pure functions;
`policy.tick(TickRequest(...))` (`scaling.tick.tick`) runs one of them for one snapshot, the same way live
and simulated. The function is not re-exported here: `etrid_ray.scaling.tick` stays the module.
"""

from __future__ import annotations

from etrid_ray.scaling.baselines import (
    always_burst_cheapest,
    never_burst,
    place_always_burst_cheapest,
    place_cheapest,
    place_local_only,
    ray_default,
)
from etrid_ray.scaling.capacity import CapacityMemory, PoolCapacity
from etrid_ray.scaling.hpa import HpaMemory, first_scale_up, hpa_decide, hpa_place
from etrid_ray.scaling.placement import Placement, PlacementPlan, PlaceReason, place
from etrid_ray.scaling.policy import (
    DecideFn,
    Decision,
    PlaceFn,
    PolicyMemory,
    PoolMemory,
    Reason,
    apply,
    decide,
    place_profit,
)
from etrid_ray.scaling.state import Departure, PoolState, QueuedJob, Snapshot
from etrid_ray.scaling.tick import DecideOnPlan, Policy, TickReply, TickRequest

POLICIES: dict[str, Policy] = {p.name: p for p in (
    Policy("profit", place_profit, decide,
           "ours: local first; cloud for the work local GPUs will not reach in time, when a node pays for its life"),
    Policy("seed-hpa", hpa_place, hpa_decide,
           "the seed's rules as a Kubernetes HPA: 15 s sync, 60 s sustain, cost-blind"),
    Policy("ray-default", place_cheapest, ray_default,
           "Ray's autoscaler: all pending demand, cheapest pool, no profit"),
    Policy("never-burst", place_local_only, never_burst, "local GPUs only"),
    Policy("cheapest-burst", place_always_burst_cheapest, always_burst_cheapest,
           "every job that does not fit locally bursts to the cheapest pool, within the budget"),
)}

__all__ = ["POLICIES", "CapacityMemory", "DecideFn", "DecideOnPlan", "Decision", "Departure", "HpaMemory",
           "PlaceFn", "PlaceReason", "Placement", "PlacementPlan", "Policy", "PolicyMemory", "PoolCapacity",
           "PoolMemory", "PoolState", "QueuedJob", "Reason", "Snapshot", "TickReply", "TickRequest",
           "always_burst_cheapest", "apply", "decide", "first_scale_up", "hpa_decide", "hpa_place", "never_burst",
           "place", "place_always_burst_cheapest", "place_cheapest", "place_local_only", "place_profit", "ray_default"]
