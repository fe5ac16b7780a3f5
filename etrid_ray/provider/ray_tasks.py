"""The head's one seam to Ray's task API: submit a job's task, cancel it, hear when it ends, probe dispatch.

Why a seam: every Ray call the pipeline makes is here, so the stages above it are plain Python over the job
book, and the claim stage can ask "how many warm workers does this pool have" without knowing Ray. Options
are built once per (GPUs, pool) shape: `.options()` is not free per call, and at hundreds of jobs a second it
shows.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from typing import Any

import ray

from etrid_ray.provider.cluster_port import draining_node_ids
from etrid_ray.provider.preemption import Lost
from etrid_ray.provider.task import Outcome, dispatch_options, options_problem, probe, run_job, run_jobs
from etrid_ray.provider.timing import Estimates

log = logging.getLogger(__name__)

KNOWN_WORKERS = 10_000  # warm workers remembered per pool
SHAPES_KEPT = 4096  # task shapes (GPUs, pool) whose options are kept


class RayTasks:
    def __init__(self, task_cpus: float, estimates: Estimates, own_pool: Callable[[], str | None]
                 ) -> None:
        self.task_cpus = task_cpus
        self.estimates = estimates
        self.own_pool = own_pool  # the head's own pool when the cluster has nodes of it (else None)
        #: (job id, its outcome: `Outcome` or `Lost`), put by Ray's threads as tasks end
        self.done: queue.Queue[tuple[int, Any]] = queue.Queue()
        self._shapes: dict[tuple[float, str | None], Any] = {}
        self._pack_shapes: dict[tuple[float, str | None], Any] = {}
        self._problems: dict[tuple[float, str | None], str | None] = {}
        self._withdrawn: dict[str, set[int]] = {}  # task -> its jobs taken back to run elsewhere (`withdraw`)
        self._workers: dict[str | None, set[str]] = {}  # pool -> Ray workers seen running our tasks (warm ones)
        self._probe: tuple[Any, float, str | None] | None = None
        self._probe_sent_at = float("-inf")

    @staticmethod
    def connected() -> bool:
        return ray.is_initialized()

    def options(self, gpus: float, pool: str | None) -> dict[str, Any]:
        return dispatch_options(gpus, self.task_cpus, pool, self.own_pool())

    def problem(self, gpus: float, pool: str | None) -> str | None:
        """What Ray would refuse in a task of this shape (None: nothing), judged once per shape."""
        key = (gpus, pool)
        if key not in self._problems:
            if len(self._problems) > SHAPES_KEPT:
                self._problems.clear()
            self._problems[key] = options_problem(self.options(gpus, pool))
        return self._problems[key]

    def submit(self, job_id: int, manifest_json: str, store_url: str, max_input_bytes: int, gpus: float,
               pool: str | None, options: dict[str, Any] | None = None, checkpoint: str | None = None) -> Any:
        """Starts the job's task (with `options`, e.g. a TEE gate's, instead of the cached shape; from
        `checkpoint`, a preempted run's progress, when given)."""
        if options is not None:
            task = run_job.options(**options)
        else:
            task = self._shape(self._shapes, run_job, gpus, pool)
        ref = task.remote(job_id, manifest_json, store_url, max_input_bytes, checkpoint)
        key = ref.hex()
        ref.future().add_done_callback(lambda fut, key=key: self._collect((job_id,), key, fut))
        return ref

    def submit_pack(self, jobs: list[tuple[int, str]], store_url: str, max_input_bytes: int, gpus: float,
                    pool: str | None) -> Any:
        """Starts one task running `jobs` (`(job id, manifest)`) one after another, each an outcome of its own
        (provider/packing.py says which jobs; none resumes from a checkpoint)."""
        task = self._shape(self._pack_shapes, run_jobs, gpus, pool)
        ref = task.remote(jobs, store_url, max_input_bytes)
        key, ids = ref.hex(), tuple(j for j, _ in jobs)
        ref.future().add_done_callback(lambda fut, key=key: self._collect(ids, key, fut))
        return ref

    def _shape(self, cache: dict[tuple[float, str | None], Any], fn: Any, gpus: float, pool: str | None) -> Any:
        key = (gpus, pool)
        task = cache.get(key)
        if task is None:
            if len(cache) > SHAPES_KEPT:  # consumers choose the GPU counts: keep the cache bounded
                cache.clear()
            task = cache[key] = fn.options(**self.options(gpus, pool))
        return task

    def _collect(self, job_ids: tuple[int, ...], key: str, future: Any) -> None:
        """A task ended (on one of Ray's threads): each of its jobs' outcome goes to `done`, but for jobs taken back
        to run elsewhere (`withdraw`), whose run this no longer is."""
        dropped = self._withdrawn.pop(key, ())
        outcome = self.outcome(future)
        for i, job_id in enumerate(job_ids):
            if job_id not in dropped:
                self.done.put((job_id, outcome[i] if isinstance(outcome, list) else outcome))

    @staticmethod
    def cancel(ref: Any) -> None:
        ray.cancel(ref, force=True)

    def withdraw(self, ref: Any, job_id: int) -> None:
        """Cancels the task of a job placed again elsewhere (its pool's nodes never came): unlike `cancel`, that
        job's end never reaches `done`, so the harvest cannot mistake it for the job's next run (pack-mates not
        taken back hear that their task was cancelled)."""
        self._withdrawn.setdefault(ref.hex(), set()).add(job_id)
        ray.cancel(ref, force=True)

    @staticmethod
    def outcome(future: Any) -> Outcome | list[Outcome] | Lost:
        """The finished task's outcome (a list of them for a pack), or why there is none (cancelled: timed out;
        lost with its node or worker, …)."""
        try:
            return future.result()
        except ray.exceptions.RayError as err:
            return Lost.of(err)

    @staticmethod
    def preempted_nodes(node_ids: set[str]) -> set[str]:
        """Which of these nodes were preempted, as the GCS has it: still draining (the task's owner hears that a
        node is gone seconds before the GCS's health check declares it dead), or recorded dead after a PREEMPTION
        drain's deadline. Asked only when a task was lost with a node the head had not seen draining."""
        from ray.core.generated import common_pb2

        found = node_ids & draining_node_ids()
        if found == node_ids:
            return found
        preempted = common_pb2.NodeDeathInfo.Reason.Value("AUTOSCALER_DRAIN_PREEMPTED")
        return found | {row["NodeID"] for row in ray.nodes()
                        if row["NodeID"] in node_ids and not row.get("Alive") and row.get("DeathReason") == preempted}

    # warm workers and the dispatch probe -----------------------------------------------------------------

    def observe_start(self, pool: str | None, worker: str, delay: float) -> None:
        """A task started `delay` after it could have: on a worker already seen (warm) or a new one (cold)."""
        seen = self._workers.setdefault(pool, set())
        if worker in seen:
            self.estimates.observe_dispatch(delay)
        else:
            self.estimates.observe_cold(delay)
            if len(seen) < KNOWN_WORKERS:
                seen.add(worker)

    def warm_slots(self, busy: dict[str | None, int]) -> dict[str | None, int]:
        """Per pool, warm Ray workers not busy with one of our tasks: a job beyond them waits for a new worker
        process (a cold start), which on a busy machine can take longer than the job's whole limit."""
        return {pool: len(workers) - busy.get(pool, 0) for pool, workers in self._workers.items()}

    def maybe_probe(self, held: bool, now: float, pool: str | None, can_probe: bool) -> None:
        """Learns Ray's dispatch delay without betting a job on it: takes the answer of the probe in flight, and
        sends another (at most one a second, on `pool`) while jobs are held back on timing."""
        if self._probe is not None:
            ref, sent, probed = self._probe
            ready, _ = ray.wait([ref], timeout=0)
            if not ready:
                return
            self._probe = None
            try:
                started, worker = ray.get(ref)
            except ray.exceptions.RayError:
                log.warning("dispatch probe failed", exc_info=True)
                return
            self.observe_start(probed, worker, started - sent)
            return
        if not held or not can_probe or not ray.is_initialized() or now - self._probe_sent_at < 1.0:
            return
        self._probe_sent_at = now
        options = dispatch_options(0.0, 0.0, pool, self.own_pool())  # no CPU: it measures, it does not work
        self._probe = (probe.options(**options).remote(), time.time(), pool)
