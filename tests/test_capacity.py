"""Specification: capacity that never comes (scaling.capacity), through the one tick the head and the simulator run.

A pool whose requested nodes have not joined within its startup time plus a margin gets its requests
withdrawn and backs off exponentially; the jobs go to the next pool that still pays, or wait and say why.
An on-demand fallback pool grows only while its spot pool cannot launch, and only for jobs that pay for it.
All on a fake clock: the snapshot says what is pending since when.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from etrid_ray.config import ProviderConfig, pools_from_config
from etrid_ray.kuberay.render import raycluster
from etrid_ray.manifest import Manifest
from etrid_ray.pools import CapacityRequest
from etrid_ray.prices import default_catalog, quotes_for
from etrid_ray.provider.cluster_view import ClusterView, ClusterWatch
from etrid_ray.provider.job import JobBook, JobState, RunInfo
from etrid_ray.provider.scaler import Scaler
from etrid_ray.provider.stages.scaling import PoolScaling
from etrid_ray.provider.timing import Estimates
from etrid_ray.scaling import POLICIES, PlaceReason, Reason
from etrid_ray.scaling.capacity import CapacityMemory, backoff_s
from etrid_ray.scaling.state import PoolState, Snapshot
from etrid_ray.scaling.tick import TickReply, TickRequest, tick
from etrid_ray.sim import SimJob, SimSettings, Simulator
from etrid_ray.sim.shortage import Shortage, Windows
from etrid_ray.telemetry.head_source import DecisionLog
from tests.scaling_support import AWS, AZURE, GCP, LOCAL, job, pool_state
from tests.test_job_book import NOW, Clock
from tests.test_job_book import admitted as book_job
from tests.test_kuberay_manifests import _crd_validator

AWS_OD = "aws-ondemand-a100"
# AWS p4d spot (0.31 USD/GPU-h, 180 s startup) is the cheapest pool, Azure spot (0.45, 240 s) the next, GCP (2.64)
# the dearest spot pool; AWS on-demand 2.74 USD/GPU-h. The one local node of 4 GPUs is full in every snapshot.
CONFIG = ProviderConfig(aws_ondemand_max_nodes=2, capacity_margin_s=30, capacity_backoff_s=120,
                        capacity_backoff_max_s=600)
SCALING = CONFIG.scaling
POOLS = {p.name: p for p in pools_from_config(CONFIG)}
PRICES = quotes_for(POOLS.values())
PROFIT = POLICIES["profit"]


def snap(now: float, queue=(), **states: PoolState) -> Snapshot:
    """Every pool of CONFIG, empty unless given (by name, `_` for `-`); the local node busy."""
    pools = []
    for name, pool in POOLS.items():
        given = states.get(name.replace("-", "_"))
        if given is not None:
            pools.append(given)
        elif name == LOCAL:
            pools.append(pool_state(pool, busy=pool.gpus_per_node))
        else:
            pools.append(PoolState(pool))
    return Snapshot(now=now, pools=tuple(pools), queue=tuple(queue), prices=PRICES)


def pending(name: str, *since: float, alive: int = 0, startup_s: float | None = None) -> PoolState:
    pool = POOLS[name]
    return PoolState(pool, alive=alive, pending=len(since), pending_since=tuple(since),
                     idle_since=(None,) * alive, gpus_busy=alive * pool.gpus_per_node, startup_s=startup_s,
                     node_free=(0.0,) * alive)


def run(now: float, queue=(), capacity: CapacityMemory | None = None, policy=PROFIT, **states: PoolState
        ) -> TickReply:
    return tick(policy, TickRequest(snap(now, queue, **states), SCALING, None, capacity))


SPIKE = [job(i, gpus=8, rate=2.0, duration=3600, waiting_since=0.0) for i in range(2)]  # pays any spot pool


def test_a_request_that_has_not_joined_within_startup_plus_margin_is_withdrawn_and_the_jobs_go_to_the_next_pool():
    first = run(0.0, SPIKE)
    assert first.targets[AWS] == 2  # the cheapest pool is asked first
    still_starting = run(209.0, SPIKE, first.capacity, aws_spot_a100=pending(AWS, 0.0, 0.0))
    assert [d.reason for d in still_starting.decisions] != [Reason.UNAVAILABLE]
    assert still_starting.targets[AWS] == 2  # 180 s startup + 30 s margin: not yet

    late = run(210.0, SPIKE, still_starting.capacity, aws_spot_a100=pending(AWS, 0.0, 0.0))
    withdrawal = late.decisions[0]
    assert (withdrawal.pool, withdrawal.target, withdrawal.delta, withdrawal.reason) == (AWS, 0, -2, Reason.UNAVAILABLE)
    assert "no node joined within 210 s" in withdrawal.text and "120 s" in withdrawal.text
    assert late.targets[AWS] == 0  # no request left for the pool that cannot launch
    assert late.targets[AZURE] == 2  # the next pool that pays gets the jobs
    assert {p.pool for p in late.plan.steered} == {AZURE}
    assert late.capacity.backing_off(210.0) == {AWS: 330.0}


def test_the_learnt_startup_replaces_the_declared_one():
    """A pool the head has seen start nodes in 60 s is judged on that, not on its declared 180 s."""
    on_time = run(89.0, SPIKE, aws_spot_a100=pending(AWS, 0.0, startup_s=60.0))
    assert all(d.reason is not Reason.UNAVAILABLE for d in on_time.decisions)
    late = run(90.0, SPIKE, on_time.capacity, aws_spot_a100=pending(AWS, 0.0, startup_s=60.0))
    assert late.decisions[0].reason is Reason.UNAVAILABLE


def test_jobs_that_no_other_pool_pays_for_wait_and_say_why():
    cheap = [job(7, gpus=8, rate=0.40, duration=3600)]  # pays AWS spot (0.31) but not Azure (0.45) nor GCP
    reply = run(300.0, cheap, aws_spot_a100=pending(AWS, 0.0))
    assert reply.targets[AWS] == 0 and reply.targets[AZURE] == 0 and reply.targets[GCP] == 0
    (placement,) = reply.plan.placements
    assert placement.pool is None and placement.reason is PlaceReason.UNAVAILABLE
    assert placement.text.startswith(f"{AWS} unavailable: no node joined within 300 s")
    assert placement.text.endswith("waits for local")


def test_the_backoff_doubles_for_each_failure_in_a_row_up_to_its_cap_and_a_joined_node_resets_it():
    assert [backoff_s(n, SCALING) for n in (1, 2, 3, 4, 5)] == [120, 240, 480, 600, 600]
    mem = run(300.0, SPIKE, aws_spot_a100=pending(AWS, 0.0)).capacity
    assert mem.get(AWS).failures == 1 and mem.backing_off(300.0) == {AWS: 420.0}
    # while backing off, no policy asks the pool again, whatever its own rules say
    for name in ("profit", "ray-default", "cheapest-burst", "seed-hpa"):
        during = run(400.0, SPIKE, mem, policy=POLICIES[name])
        assert during.targets[AWS] == 0, name
    # the backoff over, the pool is asked again; failing again doubles the wait
    again = run(420.0, SPIKE, mem)
    assert again.targets[AWS] == 2
    mem = run(650.0, SPIKE, again.capacity, aws_spot_a100=pending(AWS, 420.0, 420.0)).capacity
    assert mem.get(AWS).failures == 2 and mem.backing_off(650.0) == {AWS: 890.0}
    # a node that joins (a late one) shows capacity is back: available at once, the count starts over
    joined = run(700.0, SPIKE, mem, aws_spot_a100=pending(AWS, alive=1))
    assert joined.capacity.get(AWS).failures == 0 and joined.capacity.backing_off(700.0) == {}


def test_on_demand_stands_by_while_spot_can_launch():
    dear = [job(i, gpus=8, rate=5.0, duration=3600) for i in range(4)]  # pays on-demand (2.74) too
    reply = run(0.0, dear)
    assert reply.targets[AWS_OD] == 0
    assert PRICES[AWS_OD].usd_per_node_hour == pytest.approx(21.957642)  # the catalog's on-demand price
    assert not PRICES[AWS_OD].spot
    # every spot pool full: still not on-demand (it stands in for a spot pool that cannot launch, not a full one)
    full = {n.replace("-", "_"): pending(n, alive=POOLS[n].max_nodes) for n in (AWS, AZURE, GCP)}
    reply = run(0.0, dear, **full)
    assert reply.targets[AWS_OD] == 0
    assert {p.reason for p in reply.plan.placements} == {PlaceReason.POOL_FULL}


def test_on_demand_takes_over_when_spot_cannot_launch_and_it_pays():
    dear = [job(i, gpus=8, rate=5.0, duration=3600) for i in range(2)]
    others_full = {n.replace("-", "_"): pending(n, alive=POOLS[n].max_nodes) for n in (AZURE, GCP)}
    reply = run(210.0, dear, aws_spot_a100=pending(AWS, 0.0), **others_full)
    assert reply.targets[AWS] == 0 and reply.targets[AWS_OD] == 2
    assert {p.pool for p in reply.plan.steered} == {AWS_OD}
    # at a price below on-demand's, the jobs wait instead, and say the spot pool is unavailable
    cheap = [replace(j, price_per_gpu_s=j.price_per_gpu_s * 0.3) for j in dear]  # 1.50 USD/GPU-h
    reply = run(210.0, cheap, aws_spot_a100=pending(AWS, 0.0), **others_full)
    assert reply.targets[AWS_OD] == 0
    assert {p.reason for p in reply.plan.placements} == {PlaceReason.UNAVAILABLE}


def test_on_demand_fallback_pools_are_built_per_cloud_only_when_asked_for():
    names = [p.name for p in pools_from_config(ProviderConfig())]
    assert not any("ondemand" in n for n in names)  # off by default: the manifests and the economics as before
    every = pools_from_config(ProviderConfig(aws_ondemand_max_nodes=2, gcp_ondemand_max_nodes=1,
                                             azure_ondemand_max_nodes=3))
    od = {p.name: p for p in every if not p.spot and p.is_cloud}
    assert set(od) == {"aws-ondemand-a100", "gcp-ondemand-a100", "azure-ondemand-a100"}
    assert [od[n].max_nodes for n in sorted(od)] == [2, 3, 1]
    for p in od.values():
        spot = next(s for s in every if s.spot and s.kind == p.kind and s.accelerator == p.accelerator)
        assert (p.instance_type, p.region, p.max_spot_price) == (spot.instance_type, spot.region, None)
        quote = default_catalog().quote(p)
        assert quote is not None and quote.usd_per_node_hour == quote.ondemand_usd_per_hour


# --- the simulator: seeded shortages --------------------------------------------------------------------------


def test_shortage_windows_are_seeded_per_pool_and_off_unless_asked_for():
    a = Windows(Shortage(rate_per_day=2, mean_s=3600), 7, AWS)
    b = Windows(Shortage(rate_per_day=2, mean_s=3600), 7, AWS)
    times = [i * 600.0 for i in range(2000)]
    assert [a.until(t) for t in times] == [b.until(t) for t in times]
    short = sum(1 for t in times if Windows(Shortage(rate_per_day=2, mean_s=3600), 7, AWS).until(t) is not None)
    assert 0 < short < len(times)
    assert SimSettings().shortage is None
    assert Shortage().applies(AWS, spot=True) and not Shortage().applies(AWS_OD, spot=False)
    assert not Shortage(pools=(AZURE,)).applies(AWS, spot=True)


def test_in_a_shortage_of_the_cheapest_pool_the_simulator_withdraws_and_serves_the_spike_elsewhere():
    """A spike of 8-GPU jobs that the local node cannot take, while AWS can launch nothing for the whole run:
    every AWS request is withdrawn at startup + margin, the jobs run on Azure, none is lost."""
    spike = [SimJob(i, 10.0 + i, 1800.0, 8.0) for i in range(4)]
    settings = SimSettings(local_gpus=8, price_per_gpu_hour=2.0, patience_s=3600, interruptions=False,
                           base_config=ProviderConfig(gcp_enabled=False), record=False,
                           shortage=Shortage(rate_per_day=1e6, mean_s=1e9, pools=(AWS,)))
    result = Simulator(spike, "profit", settings).run()
    assert result.withdrawn_requests[AWS] >= 1
    assert result.node_launches[AZURE] >= 1
    assert result.jobs["completed"] == 4 and result.jobs["lost"] == 0
    # the same spike with capacity everywhere runs on AWS and withdraws nothing
    calm = Simulator(spike, "profit", replace(settings, shortage=None)).run()
    assert calm.withdrawn_requests[AWS] == 0 and calm.node_launches[AZURE] == 0


# --- the live scaler: the withdrawal is the next request, and status says why ----------------------------------


class NoCloudNodes:
    """A `ClusterPort` of one busy local node, where requested cloud nodes never join; requests are recorded."""

    def __init__(self) -> None:
        self.requests: list[CapacityRequest] = []

    def nodes(self) -> list[dict[str, Any]]:
        return [{"NodeID": "local", "Alive": True, "Resources": {"GPU": 4.0}, "Labels": POOLS[LOCAL].labels()}]

    def available_per_node(self) -> dict[str, dict[str, float]]:
        return {"local": {"GPU": 0.0}}

    def draining(self) -> set[str]:
        return set()

    def request(self, request: CapacityRequest) -> None:
        self.requests.append(request)


def test_the_live_scaler_withdraws_by_its_next_request_and_says_why_with_the_learnt_startup():
    shown = DecisionLog().attach()  # what `etrid-ray status` lists as recent scaling decisions
    port = NoCloudNodes()
    scaler = Scaler(CONFIG, list(POOLS.values()), prices=dict(PRICES), cluster=port,
                    startup_of=lambda pool: 60.0 if pool.name == AWS else None)  # learnt: AWS nodes start in 60 s
    queue = SPIKE
    scaler.step(queue, 0.0)
    assert port.requests[-1].per_pool() == {AWS: 2}
    assert port.requests[-1].bundles == ({"GPU": 8.0},) * 2
    scaler.step(queue, 89.0)
    assert scaler.unavailable(89.0) == {}
    step = scaler.step(queue, 90.0)  # 60 s learnt + 30 s margin (the declared 180 s would wait till 210 s)
    assert step.decisions[0].reason is Reason.UNAVAILABLE
    assert port.requests[-1].per_pool() == {AZURE: 2}  # withdrawn from Ray's request; the next pool that pays
    assert AWS not in scaler.requested
    why = scaler.unavailable(100.0)[AWS]
    assert why.startswith("no node joined within 90 s of its request (startup 60 s + margin 30 s)")
    assert why.endswith("asked again in 110 s")
    shown.detach()
    withdrawal = next(d for d in shown.recent if d["reason"] == "unavailable")
    assert [withdrawal[k] for k in ("pool", "direction", "target", "delta")] == [AWS, "down", 0, -2]
    assert withdrawal["text"].startswith("withdrew 2 node request(s): no node joined within 90 s")
    # the withdrawn requests' bills closed at the withdrawal (a minute at least, as any withdrawn request)
    assert scaler.ledger.closed_by_pool[AWS] == pytest.approx(2 * PRICES[AWS].usd_per_node_hour * 90 / 3600)


def test_the_head_learns_a_pool_startup_only_from_nodes_it_saw_join():
    estimates = Estimates()
    assert estimates.learnt_node_startup_s(AWS) is None  # nothing seen: the capacity rule waits the declared one
    estimates.observe_node(AWS, 42.0, prior_s=180.0)
    learnt = estimates.learnt_node_startup_s(AWS)
    assert learnt is not None and 42.0 <= learnt < 180.0 * 1.5


# --- the head: jobs already sent to the pool that cannot launch are taken back, placed again, or failed in time ---


def test_jobs_sent_to_a_pool_whose_nodes_never_came_are_taken_back_and_placed_again() -> None:
    """A job claimed and dispatched to AWS's coming node (its task waits in Ray): when the request is withdrawn the
    task is withdrawn too, the job is claimed again (never failed), placed on the next pool that pays, and
    dispatched there once it has room; one that no pool can run before its chain deadline is failed with why."""
    clock = Clock(NOW)
    book = JobBook(clock)
    port = NoCloudNodes()
    withdrawn: list[Any] = []
    view = ClusterWatch(lambda: ClusterView(clock(), connected=False))
    scaling = PoolScaling(list(POOLS.values()), book, view, Estimates(),
                          lambda: Scaler(CONFIG, list(POOLS.values()), prices=dict(PRICES), cluster=port),
                          1.0, lambda: None, clock, clock, cancel=lambda ref, job: withdrawn.append((ref, job)))
    scaling.scaler = scaling.make_scaler()
    tracked = book_job(book, 1, submitted_at=int(NOW))
    tracked.manifest = Manifest(handler="sleep", args={"seconds": 60}, resources={"gpus": 8})
    tracked.job = replace(tracked.job, payment=10**20, max_compute_time=3600)  # pays any spot pool
    scaling.step(NOW, [])
    assert scaling.plan.pool_for(1) == AWS and scaling.scaler.requested == {AWS: 1}
    # claimed and sent to the AWS node that is coming
    for state in (JobState.CLAIMING, JobState.CLAIMED):
        book.move(tracked, state)
    tracked.run = RunInfo("ray-task-1", NOW + 3600, NOW, 8.0, AWS)
    book.move(tracked, JobState.RUNNING, AWS)

    clock.t = NOW + 210  # 180 s declared startup + 30 s margin: the request is withdrawn
    scaling.step(clock.t, book.in_state(JobState.RUNNING))
    assert withdrawn == [("ray-task-1", 1)]
    assert tracked.state is JobState.CLAIMED and tracked.run is None and 1 in scaling.requeued
    assert tracked.chain_deadline == NOW + 3600

    clock.t += 1  # ours already: placed on Azure, which buys a node for it; no room yet, so nothing to dispatch
    scaling.step(clock.t, [])
    assert scaling.plan.pool_for(1) == AZURE and scaling.scaler.requested == {AZURE: 1}
    assert scaling.runnable([]) == [] and scaling.expired(clock.t) == []
    scaling.pool_capacity[AZURE] = 8.0  # its node joined
    assert scaling.runnable([]) == [tracked] and tracked.pool == AZURE and not scaling.requeued

    # a job taken back that nothing can run before its deadline on chain is settled as a failure, not kept
    scaling.requeued[1] = tracked
    assert scaling.expired(NOW + 3599) == []
    assert scaling.expired(NOW + 3600) == [tracked] and not scaling.requeued


def test_on_demand_pools_render_as_worker_groups_of_their_own_that_validate_against_the_crd() -> None:
    """No render change: a fallback pool is a pool, so it is a worker group, on the on-demand capacity type."""
    cr = raycluster(ProviderConfig(aws_ondemand_max_nodes=2, gcp_ondemand_max_nodes=1))
    errors = sorted(_crd_validator("ray.io_rayclusters.yaml").iter_errors(cr), key=str)
    assert not errors, errors[0].message if errors else ""
    groups = {g["groupName"]: g for g in cr["spec"]["workerGroupSpecs"]}
    aws = groups["aws-ondemand-a100"]
    assert aws["maxReplicas"] == 2 and aws["minReplicas"] == 0
    assert aws["template"]["spec"]["nodeSelector"]["karpenter.sh/capacity-type"] == "on-demand"
    gcp = groups["gcp-ondemand-a100"]["template"]["spec"]
    assert "cloud.google.com/gke-spot" not in gcp["nodeSelector"]
    assert all(t["key"] != "cloud.google.com/gke-spot" for t in gcp["tolerations"])
