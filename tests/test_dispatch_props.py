"""Specification of dispatch: whatever the manifest schema accepts, the head can dispatch — or the job fails alone;
and a job is claimed only when it can finish in time (provider/timing.py).

Real Ray (a local cluster started here) judges the options; the chain parts use the real devnet and head.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etrid_ray.manifest import Manifest, ManifestError, manifest_json_schema, parse_manifest
from etrid_ray.pools import STEER
from etrid_ray.provider.task import dispatch_options, options_problem, run_job
from etrid_ray.provider.timing import Estimates, Ewma, GpuTimeline, finishes_in_time, safety_margin

SCHEMA = jsonschema.Draft202012Validator(manifest_json_schema())


def ray_refuses_options(options: dict[str, Any]) -> bool:
    """Ray's own validation of task options (what `.options()` checks before any task exists)."""
    try:
        run_job.options(**options)
    except ValueError:
        return True
    return False


# --- whatever validates, dispatches (pure: the option building and Ray's option validator) -------------

_quantities = (st.floats(0, 70, allow_nan=False) | st.integers(0, 70) | st.floats(0, 0.001)
               | st.sampled_from([0.0001, 0.00009999, 1e-5, 1.5, 2.0, 0.3333]))
_manifests = st.fixed_dictionaries(
    {"handler": st.sampled_from(["echo", "sleep", "matmul", "embedding"])},
    optional={"resources": st.fixed_dictionaries({}, optional={"gpus": _quantities,
                                                               "min_vram_gb": st.integers(-1, 5000)}),
              # NaN is no JSON number (JSON Schema cannot speak of it); the parser refuses it on its own
              "timeout_s": st.floats(allow_nan=False, allow_infinity=True) | st.integers(-5, 2**33) | st.none()},
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=_manifests, pool=st.sampled_from([None, "local-gpu", "aws-spot-a100"]),
       task_cpus=st.sampled_from([0.0, 0.5, 1.0, 2.0]))
def test_every_manifest_the_schema_accepts_parses_and_builds_options_ray_accepts(obj, pool, task_cpus):
    data = json.dumps(obj).encode()  # Infinity/NaN as Python writes them: a stranger can upload those too
    schema_ok = SCHEMA.is_valid(json.loads(data))
    try:
        manifest = parse_manifest(data)
    except ManifestError:
        assert not schema_ok, obj  # the schema promised more than the parser keeps
        return
    assert schema_ok, obj  # the parser kept what the schema refuses
    options = dispatch_options(manifest.resources.gpus, task_cpus, pool, {}, STEER)
    assert options_problem(options) is None, (obj, options)
    assert not ray_refuses_options(options), options


@settings(max_examples=400, deadline=None)
@given(q=_quantities)
def test_options_problem_refuses_exactly_what_ray_refuses_plus_fractions_above_one(q):
    options = {"num_gpus": q, "num_cpus": 1.0}
    fraction_above_one = q > 1 and not float(q).is_integer()  # Ray refuses these when the task is submitted
    assert (options_problem(options) is not None) == (ray_refuses_options(options) or fraction_above_one), q


@pytest.mark.parametrize(("options", "field"), [
    ({"num_gpus": 1.5, "num_cpus": 1.0}, "resources.gpus=1.5"),
    ({"num_gpus": 0.00001, "num_cpus": 1.0}, "resources.gpus=1e-05"),
    ({"num_gpus": 1.0, "num_cpus": 0.00001}, "task_cpus (provider config)=1e-05"),
    ({"num_gpus": 1.0, "num_cpus": 1.0, "resources": {"pool:x": 1e-6}}, "resource pool:x=1e-06"),
])
def test_a_refused_option_is_named_by_the_field_it_came_from(options, field):
    problem = options_problem(options)
    assert problem is not None and problem.startswith(field), problem


# --- against a real Ray -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray() -> Any:
    ray.init(address="local", num_cpus=2, num_gpus=4, resources={"pool:local-gpu": 1000}, include_dashboard=False,
             logging_level="ERROR", namespace="etrid-tests")
    yield
    ray.shutdown()


def test_ray_itself_refuses_the_gpu_counts_the_schema_now_refuses(local_ray):
    with pytest.raises(ValueError, match="whole"):
        run_job.options(num_gpus=1.5).remote(1, "{}", "file:///nonexistent", 1)
    with pytest.raises(ValueError, match="0.0001"):
        run_job.options(num_gpus=0.00001)
    for gpus in (1.5, 0.00001):
        with pytest.raises(ManifestError, match="resources.gpus"):
            parse_manifest(json.dumps({"handler": "echo", "resources": {"gpus": gpus}}).encode())


@pytest.mark.parametrize("gpus", [0, 0.0001, 0.25, 1, 2, 4])
def test_schema_valid_gpu_counts_run_as_real_ray_tasks(local_ray, tmp_path, gpus):
    manifest = parse_manifest(json.dumps({"handler": "echo", "args": {"payload": gpus},
                                          "resources": {"gpus": gpus}}).encode())
    options = dispatch_options(manifest.resources.gpus, 0.0, "local-gpu", {}, STEER)
    outcome = ray.get(run_job.options(**options).remote(5, manifest.model_dump_json(), f"file://{tmp_path}", 1024),
                      timeout=120)
    assert outcome.ok, outcome.reason


# --- claims that can be kept: the timing rule -------------------------------------------------------


def test_a_job_is_claimed_only_if_start_plus_run_plus_margin_fits_its_limit():
    now, limit = 1000.0, 20.0
    spare = limit - safety_margin(limit)
    assert finishes_in_time(now, now + 2, spare - 2, limit)
    assert not finishes_in_time(now, now + 2, spare - 2 + 0.01, limit)
    assert not finishes_in_time(now, now + limit, 0.0, limit)  # queued the whole limit: never in time


def test_the_timeline_starts_a_job_when_enough_gpus_stay_free():
    tl = GpuTimeline(0.0, free_now=1.0, later=[(10.0, 2.0), (5.0, 1.0)])
    assert tl.earliest(1.0) == 0.0
    assert tl.earliest(2.0) == 5.0
    assert tl.earliest(4.0) == 10.0
    assert tl.earliest(4.5) is None  # never that many here
    tl.reserve(0.0, 20.0, 1.0)  # the free GPU is taken until t=20
    assert tl.earliest(1.0) == 5.0
    assert tl.earliest(3.0) == 10.0  # 1 + 2 arrive by t=10 while the reserved one is still busy
    assert tl.earliest(4.0) == 20.0


def test_a_job_planned_now_never_takes_gpus_a_job_planned_later_counts_on():
    tl = GpuTimeline(0.0, free_now=1.0, later=[(5.0, 1.0)])
    tl.reserve(5.0, 50.0, 2.0)  # the next batch job waits for both GPUs from t=5
    assert tl.earliest(1.0) == 50.0  # a short job now would still be running for all we know


@settings(max_examples=200, deadline=None)
@given(free=st.floats(0, 8), later=st.lists(st.tuples(st.floats(0, 100), st.floats(0, 8)), max_size=6),
       jobs=st.lists(st.tuples(st.floats(0.01, 8), st.floats(0.1, 50)), max_size=8))
def test_planned_reservations_never_need_more_gpus_than_the_pool_has(free, later, jobs):
    tl = GpuTimeline(0.0, free, later)
    booked: list[tuple[float, float, float]] = []
    for gpus, run in jobs:
        start = tl.earliest(gpus)
        if start is None:
            continue
        tl.reserve(start, start + run, gpus)
        booked.append((start, start + run, gpus))
    for t in sorted({0.0} | {s for s, _e, _g in booked} | {t for t, _g in later}):
        available = free + sum(g for at, g in later if at <= t)
        in_use = sum(g for s, e, g in booked if s <= t < e)
        assert in_use <= available + 1e-6, (t, in_use, available)


def test_estimates_learn_from_observations_rather_than_keep_their_prior():
    est = Estimates()
    assert est.node_startup_s("aws", prior_s=180) >= 180  # before any node: the configured startup
    for seconds in (12.0, 11.0, 13.0, 12.0):
        est.observe_node("aws", seconds, prior_s=180)
    assert 10 < est.node_startup_s("aws", prior_s=180) < 20
    for actual in (2.1, 2.0, 2.2):
        est.observe_run("sleep", actual, declared_s=2.0, declares=True)
    assert 4.0 <= est.run_s("sleep", 4.0, limit_s=100, declares=True) <= 6.0  # ~1.05 × declared, + 2 deviations
    assert est.run_s("sleep", 400.0, limit_s=100, declares=True) == 100  # never beyond the limit
    for delay in (30.0, 28.0, 35.0):  # a loaded machine: Ray takes half a minute to start a task
        est.observe_dispatch(delay)
    assert est.dispatch_s() > 28


def test_an_ewma_ignores_non_finite_observations():
    e = Ewma(1.0, 0.25)
    e.observe(float("nan"))
    e.observe(float("inf"))
    assert (e.mean, e.count) == (1.0, 0)


# --- the head: one job Ray refuses fails alone; what cannot finish in time is left on chain ------------------


def _final_reasons(client: Any, ids: list[int]) -> dict[int, str]:
    from tests.provider_support import chain_events, failure_reasons

    return {j: r for j, r in failure_reasons(chain_events(client)).items() if j in ids}


def test_a_job_ray_refuses_fails_alone_on_chain_and_the_rest_of_its_batch_runs(fresh_devnet, tmp_path: Path,
                                                                                local_ray):
    from etrid_ray.admission import CLAIM
    from etrid_ray.blobs import open_blob_store
    from etrid_ray.chain import ChainClient, dev_signer
    from etrid_ray.chain.models import JobStatus
    from etrid_ray.provider.job import JobState
    from tests.provider_support import CONSUMER, all_final, provider_config, read_jobs, start_head, wait_until

    os.environ["ETRID_SEED"] = "//Bob"
    store_dir = tmp_path / "blobs"
    client = ChainClient(fresh_devnet.url)
    consumer = client.consumer(dev_signer(CONSUMER), blobs=open_blob_store(f"file://{store_dir}"))
    head = start_head(provider_config(fresh_devnet, tmp_path, blob_store=f"file://{store_dir}"))
    try:
        head.drain()  # its own loop claims nothing: this test hands it one batch, as the claim stage would
        jobs = [consumer.submit_job({"handler": "echo", "args": {"payload": i}}, payment=10**18, max_compute_time=60)
                for i in range(3)]
        gpu = head.gpu_ids[0]
        results = head.chain.claim([(j.job_id, gpu) for j in jobs])
        assert all(r.ok for r in results)
        chain_jobs = read_jobs(client, [j.job_id for j in jobs])
        good = Manifest(handler="echo", args={"payload": 1})
        # a manifest that slipped past the parser (an older head's cache, a bug): Ray refuses 1.5 GPUs
        bad = Manifest.model_construct(**{**good.__dict__, "resources": good.resources.model_copy(
            update={"gpus": 1.5})})
        with head.book.lock:  # the three, claimed, as the claim stage hands them to dispatch
            batch = []
            for j, m in zip(jobs, [good, bad, good], strict=True):
                tracked = head.book.add(chain_jobs[j.job_id], JobState.QUEUED)
                tracked.verdict, tracked.manifest, tracked.gpu_id = CLAIM, m, gpu
                for state in (JobState.ADMITTED, JobState.CLAIMING, JobState.CLAIMED):
                    head.book.move(tracked, state)
                batch.append(tracked)
            head.dispatcher.dispatch(batch)
        ids = [j.job_id for j in jobs]
        wait_until(lambda: all_final(client, ids), 60, "the batch settled")
        final = read_jobs(client, ids)
        assert [final[i].status for i in ids] == [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.COMPLETED]
        reason = _final_reasons(client, ids)[ids[1]]
        assert reason.startswith("cannot dispatch resources.gpus=1.5"), reason
        assert len(reason.encode()) <= 128
    finally:
        head.stop()
        client.close()


def test_a_job_that_cannot_finish_within_its_limit_is_left_unclaimed_and_counted(fresh_devnet, tmp_path: Path,
                                                                                 local_ray):
    from etrid_ray.blobs import open_blob_store
    from etrid_ray.chain import ChainClient, dev_signer
    from etrid_ray.chain.models import JobStatus
    from tests.provider_support import CONSUMER, all_final, provider_config, read_jobs, start_head, wait_until

    os.environ["ETRID_SEED"] = "//Bob"
    store_dir = tmp_path / "blobs"
    client = ChainClient(fresh_devnet.url)
    consumer = client.consumer(dev_signer(CONSUMER), blobs=open_blob_store(f"file://{store_dir}"))
    head = start_head(provider_config(fresh_devnet, tmp_path, blob_store=f"file://{store_dir}"))
    try:
        # sleep declares 5 s; with a 5 s limit no start time leaves room for the margin
        late = consumer.submit_job({"handler": "sleep", "args": {"seconds": 5}}, payment=10**18, max_compute_time=5)
        fine = consumer.submit_job({"handler": "sleep", "args": {"seconds": 0.1}}, payment=10**18,
                                   max_compute_time=30)
        wait_until(lambda: all_final(client, [fine.job_id]), 60, "the servable job completed")
        wait_until(lambda: head.status().skipped.get("cannot_finish_in_time") == 1, 10,
                   "the late job counted as skipped")
        assert read_jobs(client, [late.job_id])[late.job_id].status == JobStatus.PENDING  # left for others
        assert read_jobs(client, [fine.job_id])[fine.job_id].status == JobStatus.COMPLETED
        assert head.status().estimates["dispatch_s"] >= 0
    finally:
        head.stop()
        client.close()
