"""Short jobs of one shape share a Ray task; each still gets an outcome of its own.

The grouping rule is pure (provider/packing.py); the shared task runs on a real local Ray against the devnet's
real blob store."""

from __future__ import annotations

import json
import queue
import time
from typing import Any

import pytest
import ray

from etrid_ray.blobs import open_blob_store
from etrid_ray.manifest import Manifest
from etrid_ray.provider.packing import MAX_PACK, Candidate, packs
from etrid_ray.provider.preemption import CANCELLED, Lost
from etrid_ray.provider.ray_tasks import RayTasks
from etrid_ray.provider.task import Outcome
from etrid_ray.provider.timing import Estimates

SHORT = 0.001
GPU = (1.0, None)


# the rule ------------------------------------------------------------------------------------------------------

def test_short_jobs_of_one_shape_share_a_task_within_the_budget() -> None:
    groups = packs([Candidate(GPU, SHORT)] * 5, budget_s=0.0035)
    assert groups == [[0, 1, 2], [3, 4]]  # three fit 3.5 ms, the rest start the next pack


def test_jobs_of_different_shapes_never_share_and_keep_their_order() -> None:
    half = (0.5, None)
    cloud = (1.0, "aws-spot-a100")
    groups = packs([Candidate(GPU, SHORT), Candidate(half, SHORT), Candidate(GPU, SHORT), Candidate(cloud, SHORT)],
                   budget_s=1.0)
    assert groups == [[0, 2], [1], [3]]


def test_a_long_job_or_one_that_may_not_share_runs_alone() -> None:
    groups = packs([Candidate(GPU, SHORT), Candidate(GPU, 5.0), Candidate(GPU, SHORT, may_share=False),
                    Candidate(GPU, SHORT)], budget_s=0.1)
    assert groups == [[0, 3], [1], [2]]


def test_a_pack_holds_at_most_max_pack_jobs() -> None:
    groups = packs([Candidate(GPU, 0.0)] * (2 * MAX_PACK + 1), budget_s=1.0)
    assert [len(g) for g in groups] == [MAX_PACK, MAX_PACK, 1]
    assert packs([Candidate(GPU, 0.0)] * 3, budget_s=1.0, max_size=1) == [[0], [1], [2]]  # max_jobs_per_task: 1


def test_a_handler_never_observed_is_not_short() -> None:
    """Before the head has seen a handler run, its estimate is half its limit: it runs alone, however short."""
    est = Estimates()
    unobserved = est.run_s("echo", 60.0, 60.0, False)
    assert packs([Candidate(GPU, unobserved)] * 2, budget_s=est.dispatch_s()) == [[0], [1]]
    est.observe_run("echo", 0.002, 60.0, False)
    observed = est.run_s("echo", 60.0, 60.0, False)
    assert packs([Candidate(GPU, observed)] * 2, budget_s=0.05) == [[0, 1]]


# on a real Ray -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def local_ray() -> Any:
    ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False, logging_level="ERROR",
             namespace="etrid-tests")
    yield
    ray.shutdown()


def manifest(handler: str, **args: Any) -> str:
    return Manifest(handler=handler, args=args).model_dump_json()


def outcomes(tasks: RayTasks, n: int, timeout: float = 60.0) -> dict[int, Any]:
    got: dict[int, Any] = {}
    deadline = time.time() + timeout
    while len(got) < n:
        job_id, outcome = tasks.done.get(timeout=max(0.1, deadline - time.time()))
        got[job_id] = tasks.outcome(outcome)
    return got


def test_a_shared_task_runs_its_jobs_in_one_worker_and_reports_each_alone(local_ray: Any, devnet: Any) -> None:
    tasks = RayTasks(0.0, Estimates(), lambda: None)
    jobs = [(j, manifest("echo", payload=j), None) for j in (11, 12, 13)]
    tasks.submit_pack(jobs + [(14, manifest("no-such-handler"), None)], devnet.http_url, 1 << 20, 0.5, None)
    got = outcomes(tasks, 4)
    store = open_blob_store(devnet.http_url)
    for job_id in (11, 12, 13):
        o = got[job_id]
        assert isinstance(o, Outcome) and o.ok and o.job_id == job_id
        assert json.loads(store.get(o.result_hash))["result"] == {"payload": job_id}
    assert not got[14].ok and "unknown handler" in got[14].reason  # fails alone: its pack-mates completed
    assert len({o.worker for o in got.values()}) == 1  # one task: one worker ran them, one after another
    assert got[11].finished_at <= got[12].started_at and got[12].finished_at <= got[13].started_at


def test_a_job_taken_back_from_a_shared_task_hears_nothing_and_its_mates_hear_cancelled(local_ray: Any,
                                                                                      devnet: Any) -> None:
    tasks = RayTasks(0.0, Estimates(), lambda: None)
    ref = tasks.submit_pack([(21, manifest("sleep", seconds=30), None), (22, manifest("echo", payload=1), None)],
                            devnet.http_url, 1 << 20, 0.5, None)
    time.sleep(1.0)  # running: the sleep holds the task
    tasks.withdraw(ref, 21)
    job_id, outcome = tasks.done.get(timeout=30)
    assert job_id == 22 and isinstance(outcome, Lost) and outcome.error == CANCELLED
    with pytest.raises(queue.Empty):
        tasks.done.get(timeout=1.0)  # nothing for the job taken back: its next run is elsewhere
