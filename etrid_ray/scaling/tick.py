"""One scaling tick: place the queue, decide each pool's size on that placement, turn it into targets.

Why one function: the live head (`provider.scaler.Scaler.step`) and the simulator
(`sim.engine.Simulator._tick`) must do exactly the same with a snapshot, or the simulator proves
things about a head that does not exist (architecture, principle 1). Both build a `TickRequest`
from what they observe and act on the `TickReply`: the head steers tasks by its plan and asks Ray
for its targets; the simulator starts jobs and launches or removes nodes.

Every policy decides on the plan it is handed (`plan=`), so the pools are sized for exactly the
placement the jobs are steered by — no policy is special-cased by name. Policies that size pools
by their own rules (the HPA model, never-burst) take the plan and ignore it.

Before any policy runs, `scaling.capacity.assess` judges the pools' requests: nodes requested longer
ago than the pool's startup plus a margin are withdrawn and the pool backs off; the policies see the
snapshot without them, with unavailable pools marked, and no policy's decision may grow such a pool.
Its memory (`CapacityMemory`) rides beside the policy's own, in the request and the reply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from etrid_ray.config import ScalingSettings
from etrid_ray.scaling.capacity import CapacityMemory, assess, hold
from etrid_ray.scaling.placement import PlacementPlan
from etrid_ray.scaling.policy import Decision, PlaceFn, apply
from etrid_ray.scaling.state import Snapshot


class DecideOnPlan(Protocol):
    """A policy's sizing rule: `decide(snapshot, config, memory, plan=plan) -> (decisions, memory)`, where `config`
    is the scaling settings (`ProviderConfig.scaling`) and nothing else.

    `memory` is the policy's own frozen value from the previous tick (None on the first); `plan` is
    the placement of this tick (None: the policy places the queue itself, for callers without one)."""

    def __call__(self, snapshot: Snapshot, config: ScalingSettings, memory: Any = None, /, *,
                 plan: PlacementPlan | None = None) -> tuple[list[Decision], Any]: ...


@dataclass(frozen=True)
class Policy:
    """A named policy: where jobs go (`place`) and how pools are sized on that placement (`decide`)."""

    name: str
    place: PlaceFn
    decide: DecideOnPlan
    description: str

    def tick(self, request: TickRequest) -> TickReply:
        return tick(self, request)


@dataclass(frozen=True)
class TickRequest:
    """What a tick reads: the snapshot, the scaling settings (the config's `scaling` section, all a policy reads)
    and the policy's memory from the previous tick. A whole `ProviderConfig` is narrowed to its section."""

    snapshot: Snapshot
    config: ScalingSettings
    memory: Any = None
    capacity: CapacityMemory | None = None  # the capacity rule's memory from the previous tick (None: the first)

    def __post_init__(self) -> None:
        if not isinstance(self.config, ScalingSettings):  # the live scaler hands its whole ProviderConfig
            object.__setattr__(self, "config", self.config.scaling)


@dataclass(frozen=True)
class TickReply:
    """What a tick answers: where each queued job goes, the decisions with their reasons (withdrawals of
    requests that never came first), the node target of every pool (alive + starting; unchanged pools keep
    their count), the memories to pass back next tick, and the snapshot the policy acted on (the observed
    one less withdrawn requests, unavailable pools marked)."""

    plan: PlacementPlan
    decisions: list[Decision]
    targets: dict[str, int]
    memory: Any
    capacity: CapacityMemory = field(default_factory=CapacityMemory)
    snapshot: Snapshot | None = None


def tick(policy: Policy, request: TickRequest) -> TickReply:
    """Judges the pools' requests, places the snapshot's queue and sizes every pool on that placement: pure."""
    config = request.config
    snap, withdrawn, capacity = assess(request.snapshot, config, request.capacity)
    plan = policy.place(snap, config, request.memory)
    decisions, memory = policy.decide(snap, config, request.memory, plan=plan)
    if withdrawn or snap is not request.snapshot:
        decisions = withdrawn + hold(decisions, snap)
    return TickReply(plan, decisions, apply(decisions, snap), memory, capacity, snap)
