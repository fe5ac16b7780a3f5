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
NONE_FREE: dict[str | None, int] = {}


def short(n: int, pool: str | None = None, gpus: float = 1.0, run_s: float = SHORT) -> list[Candidate]:
    return [Candidate(gpus, pool, run_s)] * n


def test_short_jobs_beyond_the_free_workers_share_a_task_within_the_budget() -> None:
    assert packs(short(5), 0.0035, NONE_FREE) == [[0, 1, 2], [3, 4]]  # three fit 3.5 ms; the rest start the next


def test_jobs_with_an_idle_warm_worker_each_run_alone_in_parallel() -> None:
    """Sharing only ever replaces waiting: two warm workers free means the first two jobs take them."""
    assert packs(short(5), 1.0, {None: 2}) == [[0], [1], [2, 3, 4]]
    assert packs(short(3), 1.0, {None: 3}) == [[0], [1], [2]]
    assert packs(short(3), 1.0, {"other-pool": 3}) == [[0, 1, 2]]  # another pool's free workers are no use


def test_jobs_of_different_shapes_never_share_and_keep_their_order() -> None:
    jobs = [Candidate(1.0, None, SHORT), Candidate(0.5, None, SHORT), Candidate(1.0, None, SHORT),
            Candidate(1.0, "aws-spot-a100", SHORT)]
    assert packs(jobs, 1.0, NONE_FREE) == [[0, 2], [1], [3]]


def test_a_long_job_or_one_that_may_not_share_runs_alone() -> None:
    jobs = [Candidate(1.0, None, SHORT), Candidate(1.0, None, 5.0), Candidate(1.0, None, SHORT, may_share=False),
            Candidate(1.0, None, SHORT)]
    assert packs(jobs, 0.1, NONE_FREE) == [[0, 3], [1], [2]]


def test_a_pack_holds_at_most_max_pack_jobs() -> None:
    groups = packs(short(2 * MAX_PACK + 1, run_s=0.0), 1.0, NONE_FREE)
    assert [len(g) for g in groups] == [MAX_PACK, MAX_PACK, 1]
    assert packs(short(3, run_s=0.0), 1.0, NONE_FREE, max_size=1) == [[0], [1], [2]]  # max_jobs_per_task: 1


def test_nothing_shares_before_the_head_has_observed_runs_and_warm_starts() -> None:
    """Before the head has seen a handler run, its estimate is half its limit; before it has seen Ray start a task
    on a warm worker, the budget is nothing: either way every job runs alone."""
    est = Estimates()
    assert est.observed_dispatch_s() == 0.0
    unobserved = est.run_s("echo", 60.0, 60.0, False)
    est.observe_dispatch(0.02)
    assert packs(short(2, run_s=unobserved), est.observed_dispatch_s(), NONE_FREE) == [[0], [1]]
    est.observe_run("echo", 0.002, 60.0, False)
    observed = est.run_s("echo", 60.0, 60.0, False)
    assert packs(short(2, run_s=observed), est.observed_dispatch_s(), NONE_FREE) == [[0, 1]]
    assert packs(short(2, run_s=observed), Estimates().observed_dispatch_s(), NONE_FREE) == [[0], [1]]


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
        got[job_id] = outcome
    return got


def test_a_shared_task_runs_its_jobs_in_one_worker_and_reports_each_alone(local_ray: Any, devnet: Any) -> None:
    tasks = RayTasks(0.0, Estimates(), lambda: None)
    jobs = [(j, manifest("echo", payload=j)) for j in (11, 12, 13)]
    tasks.submit_pack(jobs + [(14, manifest("no-such-handler"))], devnet.http_url, 1 << 20, 0.5, None)
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
    ref = tasks.submit_pack([(21, manifest("sleep", seconds=30)), (22, manifest("echo", payload=1))],
                            devnet.http_url, 1 << 20, 0.5, None)
    time.sleep(1.0)  # running: the sleep holds the task
    tasks.withdraw(ref, 21)
    job_id, outcome = tasks.done.get(timeout=30)
    assert job_id == 22 and isinstance(outcome, Lost) and outcome.error == CANCELLED
    with pytest.raises(queue.Empty):
        tasks.done.get(timeout=1.0)  # nothing for the job taken back: its next run is elsewhere
