"""Capacity that never comes: withdraw requests for nodes that did not join, back off the pool, fall back.

What operators of KubeRay GPU clusters meet most is not scaling up but a pool whose nodes are
requested and never arrive: the spot market has no capacity, the quota is exhausted, the image
cannot be pulled. Ray keeps the request (and KubeRay the pending pod) forever, and every job
steered to that pool waits with it. The rule here, run by the one scaling tick (`scaling.tick`)
before any policy places or sizes anything:

- **overdue**: a pool's oldest pending request older than the pool's startup time — the one the
  head has learnt for it (`PoolState.startup_s`), else the declared `Pool.startup_s` — plus
  `capacity_margin_s` is capacity that will not come. Every pending request of the pool is
  withdrawn (its younger ones asked the same market) and the pool is **unavailable** for
  `capacity_backoff_s` × 2^(failures in a row − 1), at most `capacity_backoff_max_s`;
- while unavailable, a pool gets no new nodes (placement reports `PlaceReason.UNAVAILABLE` and
  tries the next pool that pays, so the jobs go there or wait and say why); its alive nodes keep
  running and taking work;
- when the backoff ends the pool may be asked again — if that request fails too, the next backoff
  is twice as long; a node of the pool joining resets the count (capacity is back);
- an **on-demand fallback** pool (`spot=False`, with a spot pool of the same cloud and accelerator
  in the snapshot) gets new nodes only while every such spot pool is unavailable; on-demand still
  has to pay for itself (placement's profit test, at its on-demand quote).

Pure: state in (the snapshot, the memory of the previous tick), decisions out (the adjusted
snapshot the policies see, a `Reason.UNAVAILABLE` decision per withdrawal, the new memory). The
IO — withdrawing the request from Ray — is the caller's: the live scaler sends the targets
without the withdrawn nodes, the simulator cancels its starting nodes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from etrid_ray.config import ScalingSettings
from etrid_ray.pools import Pool
from etrid_ray.scaling.policy import Decision, Reason
from etrid_ray.scaling.state import PoolState, Snapshot


@dataclass(frozen=True)
class PoolCapacity:
    """What the tick remembers about one cloud pool's capacity."""

    failures: int = 0  # requests in a row that never produced a node
    until: float | None = None  # unavailable (backing off) until then
    why: str = ""  # why, while unavailable
    alive: int = 0  # alive nodes at the previous tick: more now means one joined


@dataclass(frozen=True)
class CapacityMemory:
    pools: Mapping[str, PoolCapacity] = field(default_factory=dict)

    def get(self, name: str) -> PoolCapacity:
        return self.pools.get(name, _FRESH)

    def backing_off(self, now: float) -> dict[str, float]:
        """Pools unavailable at `now`, with the instant each may be asked again (a simulator wakes there)."""
        return {name: pc.until for name, pc in self.pools.items() if pc.until is not None and pc.until > now}


_FRESH = PoolCapacity()


def deadline_s(ps: PoolState, config: ScalingSettings) -> float:
    """How long a requested node of the pool may take before it counts as never coming."""
    return ps.expected_startup_s + config.capacity_margin_s


def backoff_s(failures: int, config: ScalingSettings) -> float:
    """Exponential: the base after the first failure, doubled for each one in a row, capped."""
    return min(config.capacity_backoff_max_s, config.capacity_backoff_s * 2.0 ** max(0, failures - 1))


def overdue_at(ps: PoolState, config: ScalingSettings) -> float:
    """When the pool's oldest pending request becomes overdue (inf: none pending, or request times unknown)."""
    return ps.pending_since[0] + deadline_s(ps, config) if ps.pending_since else math.inf


def spot_twins(pool: Pool, pools: Iterable[Pool]) -> list[Pool]:
    """The spot pools an on-demand pool stands in for: same cloud and accelerator (none: it is no fallback)."""
    if pool.spot or not pool.is_cloud:
        return []
    return [p for p in pools if p.spot and p.is_cloud and p.kind == pool.kind and p.accelerator == pool.accelerator]


def assess(snapshot: Snapshot, config: ScalingSettings, memory: CapacityMemory | None = None
           ) -> tuple[Snapshot, list[Decision], CapacityMemory]:
    """The snapshot as the policies may act on it (withdrawn requests gone, unavailable pools marked), the
    withdrawals as decisions, and the memory for the next tick."""
    mem = memory if memory is not None else CapacityMemory()
    now = snapshot.now
    new_mem: dict[str, PoolCapacity] = {}
    withdrawals: list[Decision] = []
    states: dict[str, PoolState] = {}
    for ps in snapshot.pools:
        if not ps.pool.is_cloud:
            continue
        pc = mem.get(ps.name)
        if ps.alive > pc.alive:  # a node joined: the pool has capacity again
            pc = replace(pc, failures=0, until=None, why="")
        elif pc.until is not None and now >= pc.until:  # the backoff is over: it may be asked again
            pc = replace(pc, until=None, why="")
        if ps.pending_since and now >= overdue_at(ps, config):
            failures = pc.failures + 1
            wait = backoff_s(failures, config)
            waited = now - ps.pending_since[0]
            why = (f"no node joined within {waited:.0f} s of its request (startup {ps.expected_startup_s:.0f} s + "
                   f"margin {config.capacity_margin_s:g} s); failure {failures} in a row")
            pc = PoolCapacity(failures, now + wait, why, ps.alive)
            withdrawals.append(Decision(ps.name, ps.alive, -ps.pending, Reason.UNAVAILABLE,
                                        f"withdrew {ps.pending} node request(s): {why}; no new requests for "
                                        f"{wait:.0f} s"))
            ps = replace(ps, pending=0, pending_since=())
        pc = replace(pc, alive=ps.alive)
        if pc != _FRESH:
            new_mem[ps.name] = pc
        if pc.until is not None:
            ps = replace(ps, unavailable=f"{pc.why}; asked again in {pc.until - now:.0f} s")
        states[ps.name] = ps
    # on-demand fallbacks: only while every spot pool they stand in for is unavailable
    all_pools = [ps.pool for ps in snapshot.pools]
    for ps in snapshot.pools:
        twins = spot_twins(ps.pool, all_pools)
        if not twins or states[ps.name].unavailable is not None:
            continue
        open_twins = [t.name for t in twins if states[t.name].unavailable is None]
        if open_twins:
            states[ps.name] = replace(states[ps.name], unavailable=(
                f"on-demand fallback: used only while {', '.join(open_twins)} cannot launch"))
    if not states or all(states[ps.name] is ps for ps in snapshot.pools if ps.name in states):
        return snapshot, withdrawals, CapacityMemory(new_mem)
    pools = tuple(states.get(ps.name, ps) for ps in snapshot.pools)
    return replace(snapshot, pools=pools), withdrawals, CapacityMemory(new_mem)


def hold(decisions: Sequence[Decision], snapshot: Snapshot) -> list[Decision]:
    """The policy's decisions less any growth of an unavailable pool (every policy, its own rules included:
    a pool that cannot launch is never asked to)."""
    blocked = {ps.name: ps.nodes for ps in snapshot.pools if ps.unavailable is not None}
    if not blocked:
        return list(decisions)
    return [d for d in decisions if d.pool not in blocked or d.target <= blocked[d.pool]]
