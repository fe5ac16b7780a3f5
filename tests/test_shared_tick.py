"""Specification: the live scaler and the simulator are one scaling loop, and bill by one rule.

One trace runs through both at once. The `Simulator` runs it as always; the live `Scaler` — the
object the head runs — observes, through its `ClusterPort` seam, a cluster whose nodes are the
simulator's own (a ready node is an alive Ray node with its free GPUs), and its requests are
recorded. The live loop ticks every `scale_interval_s` on the simulated clock, as the head does;
the simulator only when something can change. Then:

- at every simulator tick both see the same snapshot: pools, queue, prices, the jobs that left
  the queue without being ours (`departed`), and today's cloud spend;
- every queued job is placed on the same pool, for the same reason (and new nodes bought alike);
- the (time, pool, target, reason) decisions are the same — the live loop makes none in between;
- the cloud cost is the same: each node billed per second from its request until it is gone, a
  minute at least (a request withdrawn after 30 s costs a minute), and the
  `etrid_cloud_cost_usd_total` counter only grows, by exactly that spend.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace
from typing import Any

import pytest
from prometheus_client import REGISTRY

from etrid_ray.config import ProviderConfig
from etrid_ray.pools import POOL_LABEL, CapacityRequest
from etrid_ray.provider.scaler import Scaler
from etrid_ray.scaling import PlacementPlan, PlaceReason, Reason
from etrid_ray.scaling.billing import MIN_BILLED_S
from etrid_ray.scaling.state import Snapshot
from etrid_ray.sim import SimJob, SimSettings, Simulator
from etrid_ray.sim.shortage import Shortage
from tests.scaling_support import AWS
from tests.sim_support import AWS_H

# Cloud: AWS (p4d spot, 8 GPUs, 180 s startup) and GCP; one local node of 8 GPUs. Idle nodes go after 2 min,
# and a short stabilization window lets a request be withdrawn within its first minute.
CONFIG = ProviderConfig(azure_enabled=False, idle_timeout_s=120, stabilization_s=20)
SETTINGS = SimSettings(local_gpus=8, price_per_gpu_hour=2.0, patience_s=900, interruptions=False,
                       base_config=CONFIG, record=False)


def trace(seed: int = 1) -> list[SimJob]:
    """60 jobs on whole seconds. First, by hand: the local node is busy until t = 600 and a job arriving at
    570 buys an AWS node — withdrawn at 600, when the local node frees and takes the job (30 s: billed 60).
    Then seeded phases: a trickle, a burst that buys AWS nodes and loses jobs to patience, a quiet gap
    (idle timeouts), a second burst, a tail."""
    jobs = [SimJob(0, 0.0, 600.0, 8.0), SimJob(1, 570.0, 900.0, 4.0)]
    rng = random.Random(seed)
    t = 2000
    for n, gap, duration, gpus in ((4, (20, 60), (200, 900), (1, 4)), (30, (0, 6), (600, 2400), (1, 8)),
                                   (4, (600, 1200), (100, 400), (1, 2)), (14, (0, 10), (60, 1500), (2, 8)),
                                   (6, (300, 900), (60, 300), (1, 4))):
        for _ in range(n):
            t += rng.randint(*gap)
            jobs.append(SimJob(len(jobs), float(t), float(rng.randint(*duration)), float(rng.randint(*gpus))))
    return jobs


class SimCluster:
    """A `ClusterPort` over the simulator's nodes (read from its internals: this is the test's seam)."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.requests: list[CapacityRequest] = []

    def _ready(self) -> list[Any]:
        return [n for rt in self.sim.pools for n in rt.nodes if n.ready]

    def nodes(self) -> list[dict[str, Any]]:
        return [{"NodeID": f"node-{n.nid}", "Alive": True, "Resources": {"GPU": n.gpus}, "Labels": n.pool.pool.labels()}
                for n in self._ready()]

    def available_per_node(self) -> dict[str, dict[str, float]]:
        return {f"node-{n.nid}": {"GPU": n.free} for n in self._ready()}

    def draining(self) -> set[str]:
        return {f"node-{n.nid}" for n in self._ready() if n.draining}

    def request(self, request: CapacityRequest) -> None:
        self.requests.append(request)


class Lockstep(Simulator):
    """The simulator, with the live scaler ticking beside it on the same clock and the same nodes.

    The live loop steps at every grid point: those before a simulator tick run before that tick's events
    touch the state (they saw the cluster as the previous tick left it), the one at the tick right before
    the simulator's own decision."""

    def __init__(self, jobs: list[SimJob], settings: SimSettings = SETTINGS) -> None:
        super().__init__(jobs, "profit", settings)
        self.cluster = SimCluster(self)
        self.live = Scaler(self.config, list(self.scenario.pools), prices=dict(self.prices), cluster=self.cluster)
        self.live_t = -self.grid  # the live loop's last step
        self.live_decisions: list[tuple[float, str, int, Reason]] = []
        self.sim_decisions: list[tuple[float, str, int, Reason]] = []
        self.live_totals: list[float] = []
        self.mismatches: list[str] = []
        self.departures = 0

    def _live_step(self, now: float) -> Any:
        step = self.live.step(tuple(self.queue.values()), now, tuple(self.departed))
        self.live_t = now
        self.live_decisions += [(now, d.pool, d.target, d.reason) for d in step.decisions]
        self.live_totals.append(self.live.ledger.total(now))
        return step

    def _catch_up(self, before: float) -> None:
        t = self.live_t + self.grid
        while t < before - 1e-9:
            self._live_step(t)
            t += self.grid

    def _handle(self, t: float, kind: int, a: int, b: int) -> bool:
        self._catch_up(math.ceil(t / self.grid - 1e-9) * self.grid)
        return super()._handle(t, kind, a, b)

    def _tick(self, now: float) -> None:
        self._catch_up(now)
        live = self._live_step(now)
        sim_snap = self._snapshot(now)
        self.departures += len(sim_snap.departed)
        super()._tick(now)
        reply = self.last_tick
        assert reply is not None
        self.sim_decisions += [(now, d.pool, d.target, d.reason) for d in reply.decisions]
        if not same_snapshot(live.snapshot, sim_snap):
            self.mismatches.append(f"t={now}: live saw {live.snapshot}, the simulator {sim_snap}")
        if placed(live.plan) != placed(reply.plan):
            self.mismatches.append(f"t={now}: live placed {placed(live.plan)}, the simulator {placed(reply.plan)}")

    def _finish(self, end: float, wall: float) -> Any:
        self._catch_up(end)
        self.live.ledger.close_all(end)  # the run ends: every node still billed is gone
        return super()._finish(end, wall)


def placed(plan: PlacementPlan) -> tuple[list[tuple[int, str | None, PlaceReason]], dict[str, int]]:
    """Where each job goes and why (the reason's code; its text is for people), and the nodes it buys."""
    return [(p.job_id, p.pool, p.reason) for p in plan.placements], dict(plan.new_nodes)


def same_snapshot(live: Snapshot, sim: Snapshot) -> bool:
    """Equal in every field; today's spend to the last few bits (two ledgers add the same bills in
    different orders)."""
    return (replace(live, spend_today_usd=0.0) == replace(sim, spend_today_usd=0.0)
            and live.spend_today_usd == pytest.approx(sim.spend_today_usd, rel=1e-12, abs=1e-12))


def cost_counter(pool: str) -> float:
    return REGISTRY.get_sample_value("etrid_cloud_cost_usd_total", {"pool": pool, "cloud": "aws"}) or 0.0


def test_the_live_scaler_and_the_simulator_decide_place_and_bill_alike():
    counter_before = cost_counter(AWS)
    run = Lockstep(trace())
    result = run.run()

    # what the trace exercises: cloud nodes bought and dropped by idle timeout, a request withdrawn within its
    # first minute, jobs lost to other providers — so every rule below is tested on something
    reasons = {r for *_, r in run.sim_decisions}
    assert {Reason.STEERED_DEMAND, Reason.IDLE_TIMEOUT, Reason.DRAINED} <= reasons
    assert (570.0, AWS, 1, Reason.STEERED_DEMAND) in run.sim_decisions
    assert (600.0, AWS, 0, Reason.DRAINED) in run.sim_decisions  # 30 s after its request
    assert result.node_launches[AWS] >= 2 and result.jobs["completed"] > 0
    assert result.jobs["lost"] > 0 and run.departures == result.jobs["lost"]

    # one tick: the same view, the same placements, the same decisions (the live loop none in between)
    assert run.mismatches == []
    assert run.live_decisions == run.sim_decisions
    assert run.cluster.requests, "the live scaler asked Ray for nodes"
    # each bundle names its pool by label selector: the autoscaler grows that group and no other
    asked = [r for r in run.cluster.requests if r.bundles]
    assert any(r.per_pool().get(AWS) for r in asked)
    for r in asked:
        assert len(r.selectors) == len(r.bundles)
        for bundle, selector in zip(r.bundles, r.selectors, strict=True):
            assert bundle == {"GPU": float(run.live.by_name[selector[POOL_LABEL]].gpus_per_node)}

    # one billing rule: the same cost, node by node summed; the withdrawn request costs a full minute
    assert run.live.ledger.closed_usd == pytest.approx(result.cloud_cost_usd, rel=1e-12)
    billed = {pool: usd for pool, usd in result.cloud_cost_by_pool.items() if usd}
    assert run.live.ledger.closed_by_pool == pytest.approx(billed, rel=1e-12)
    node_seconds = result.node_hours_by_pool[AWS] * 3600
    assert result.cloud_cost_usd >= AWS_H * (node_seconds + MIN_BILLED_S - 30) / 3600 - 1e-9

    # the counter: never falls, and grew by the spend the scaler had billed at its last look
    totals = run.live_totals
    assert all(b >= a for a, b in zip(totals, totals[1:], strict=False))
    assert cost_counter(AWS) - counter_before == pytest.approx(totals[-1], rel=1e-9)


def test_requests_that_never_come_are_withdrawn_alike_live_and_simulated():
    """AWS short of capacity through the second burst (a seeded window to t = 7879 s), Azure there to fall back
    on: the live scaler and the simulator withdraw the same requests at the same instants, back the pool off
    alike, place the jobs on Azure alike and bill the withdrawn requests alike."""
    short = replace(SETTINGS, base_config=CONFIG.model_copy(update={"clouds": CONFIG.clouds.model_copy(
        update={"azure": CONFIG.clouds.azure.model_copy(update={"enabled": True})})}),
        shortage=Shortage(rate_per_day=24, mean_s=1200, pools=(AWS,)))
    run = Lockstep(trace(), short)
    result = run.run()
    withdrawals = [d for d in run.sim_decisions if d[3] is Reason.UNAVAILABLE]
    assert withdrawals and result.withdrawn_requests[AWS] >= len(withdrawals)
    assert run.mismatches == []
    assert run.live_decisions == run.sim_decisions
    assert run.live.capacity == run.capacity
    assert run.live.ledger.closed_usd == pytest.approx(result.cloud_cost_usd, rel=1e-12)
