"""The Ray task that runs one job: fetch and verify inputs, run the allow-listed handler, store the result.

It is declared with `max_calls=0` so GPU tasks reuse worker processes (Ray's
default for `num_gpus>0` is one process per task: 3 tasks/s here instead of
1,500). Application errors come back as a failed outcome, not an exception.

Ray does not retry it (`max_retries=0`): the head does (provider/stages/harvest.py), because only the head
can tell a preemption from a crash and act on each — a preempted job runs again without spending its retry
budget (`TASK_MAX_RETRIES`, for crashes), is journalled and counted as preempted, and is failed only when its
deadline can no longer be met. Ray's own exemption (a node that died after its PREEMPTION drain deadline) misses
a node reclaimed before that deadline or drained without one (a rebalance notice), and Ray's retries are
invisible to the head. A handler that declares `checkpoints` is told of its node's drain and leaves early with
its progress saved (`Outcome.checkpoint`); the rerun starts from it.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ray

from etrid_ray.blobs import BlobError, BlobIntegrityError, BlobNotFound, BlobTooLarge, open_blob_store
from etrid_ray.manifest import Manifest, chain_reason
from etrid_ray.pools import pool_selector
from etrid_ray.provider.cluster_port import draining_nodes
from etrid_ray.security.compliance import policy_for
from etrid_ray.security.crypto import CryptoError, KeyringNotConfigured, store_for_job
from etrid_ray.workloads.matmul import cuda_present
from etrid_ray.workloads.registry import Preempted, UnknownHandler, WorkloadContext, get_workload

TASK_MAX_RETRIES = 3  # reruns a job gets after crashes (a node or worker lost without a drain); preemptions are free
DRAIN_POLL_S = 0.5  # a worker asks the GCS whether its node drains at most this often (shared by its tasks)
LEAVE_MARGIN_S = 2.0  # a handler that would end closer than this to its node's drain deadline leaves instead
STORE_RETRY_S = 90.0  # ride out a blob store restart (the devnet's store restarts with the chain)
PERMANENT = (BlobIntegrityError, BlobNotFound, BlobTooLarge, CryptoError)


def _with_retry(fn: Any, *args: Any) -> Any:
    """Retries transient store failures with backoff; integrity, absence and size errors are final."""
    deadline = time.monotonic() + STORE_RETRY_S
    delay = 0.2
    while True:
        try:
            return fn(*args)
        except PERMANENT:
            raise
        except BlobError:
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


@dataclass(frozen=True)
class Outcome:
    job_id: int
    ok: bool
    result_hash: str | None = None
    reason: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    node_id: str = ""
    worker: str = ""  # node and pid of the Ray worker that ran it: the head counts the warm workers it has seen
    preempted: bool = False  # the handler left its draining node early (`Preempted`): to be run again
    checkpoint: str | None = None  # with `preempted`: the blob holding its progress, for the rerun
    remaining_s: float | None = None  # with `preempted`: what the handler said the rest needs, when it knew


class DrainWatch:
    """Whether a handler on this worker's node should leave it: the node is being drained (a spot notice, a
    preStop hook) and the handler would not finish, with `LEAVE_MARGIN_S` to spare, before the drain's deadline
    (or it cannot say, or the drain has none). A job that will finish in time stays: finishing beats a rerun.
    The GCS is asked at most once per `DRAIN_POLL_S` however many tasks and calls ask."""

    def __init__(self, poll_s: float = DRAIN_POLL_S, read: Any = draining_nodes, clock: Any = time.time) -> None:
        self.poll_s = poll_s
        self.read = read
        self.clock = clock
        self._at = float("-inf")
        self._draining: dict[str, float | None] = {}

    def leave(self, node_id: str, remaining_s: float | None = None) -> bool:
        now = time.monotonic()
        if now - self._at >= self.poll_s:
            self._at = now
            self._draining = self.read()
        if node_id not in self._draining:
            return False
        deadline = self._draining[node_id]
        return deadline is None or remaining_s is None or self.clock() + remaining_s + LEAVE_MARGIN_S > deadline


_DRAIN_WATCH = DrainWatch()


def _checkpoint_payload(job_id: int, handler: str, progress: dict[str, Any]) -> bytes:
    return json.dumps({"checkpoint": {"job_id": job_id, "handler": handler, "progress": progress}},
                      sort_keys=True, separators=(",", ":")).encode()


def _resumed(store: Any, checkpoint: str | None, job_id: int, handler: str) -> dict[str, Any] | None:
    """The progress a preempted run of this job saved, or None (no checkpoint; or one that cannot be read or is
    not this job's: the job then starts over, which is slower but never wrong)."""
    if not checkpoint:
        return None
    try:
        saved = json.loads(_with_retry(store.get, checkpoint))["checkpoint"]
    except (BlobError, ValueError, KeyError, TypeError):
        return None
    if saved.get("job_id") != job_id or saved.get("handler") != handler or not isinstance(saved.get("progress"), dict):
        return None
    return dict(saved["progress"])


def _device() -> tuple[str, list[str]]:
    gpu_ids = [str(g) for g in ray.get_gpu_ids()] if ray.is_initialized() else []
    if not gpu_ids or not cuda_present():
        return "cpu", gpu_ids  # no torch import (seconds of a cold worker's time) where CUDA cannot be
    try:
        import torch

        if gpu_ids and torch.cuda.is_available():
            return "cuda", gpu_ids
    except ImportError:
        pass
    return "cpu", gpu_ids


_STORES: dict[str, Any] = {}


def _store(url: str) -> Any:
    store = _STORES.get(url)
    if store is None:
        store = _STORES[url] = open_blob_store(url)
    return store


def handler_failure(handler: str, err: BaseException) -> str:
    """What the consumer reads on chain when the handler raised: which handler, the exception's type and its
    message (`matmul: ValueError: n must be within 1..16384`), on one line, cut to the chain's 128 bytes. A bare
    "matmul failed" would tell them nothing they could fix."""
    message = " ".join(str(err).split())
    text = f"{handler}: {type(err).__name__}: {message}" if message else f"{handler}: {type(err).__name__}"
    return chain_reason(text)


def execute(job_id: int, manifest_json: str, store_url: str, max_input_bytes: int, checkpoint: str | None = None,
            drain: DrainWatch | None = None) -> Outcome:
    """Runs a job in this process (from `checkpoint`, a preempted run's progress, when given); used by the Ray
    task and directly by tests."""
    started = time.time()
    node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    worker = f"{node_id}:{os.getpid()}"

    def fail(reason: str) -> Outcome:
        return Outcome(job_id, False, None, chain_reason(reason), started, time.time(), node_id, worker)

    manifest = Manifest.model_validate_json(manifest_json)
    try:
        workload = get_workload(manifest.handler)
    except UnknownHandler:
        return fail(f"unknown handler {manifest.handler!r}")
    store = _store(store_url)
    policy = policy_for(manifest.compliance.template)
    if policy is not None and policy.encryption_required:
        # the result sealed under the job's data key; under ENABLE_COMPLIANCE sealed inputs only (security/crypto.py)
        try:
            store = store_for_job(store, job_id)
        except KeyringNotConfigured:
            return fail(f"{policy.template} needs encryption at rest: no key configured (ETRID_KEK, ETRID_KEYSTORE)")
        except BlobError as err:
            return fail(f"{policy.template} needs encryption at rest: {type(err).__name__}")
    inputs: dict[str, bytes] = {}
    total = 0
    for ref in manifest.inputs:
        try:
            data = _with_retry(store.get, ref.hash)
        except BlobError as err:
            return fail(f"input {ref.name}: {type(err).__name__}")
        total += len(data)
        if total > max_input_bytes:
            return fail(f"inputs too large: > {max_input_bytes} bytes")
        inputs[ref.name] = data
    device, gpu_ids = _device()
    ctx = WorkloadContext(inputs=inputs, device=device, gpu_ids=gpu_ids, timeout_s=manifest.timeout_s)
    if workload.checkpoints:
        watch = drain or _DRAIN_WATCH
        if node_id or drain is not None:  # outside Ray (tests, benches) only a watch passed in can tell
            ctx.preempting = lambda remaining_s=None: watch.leave(node_id, remaining_s)
        ctx.resumed = _resumed(store, checkpoint, job_id, manifest.handler)
    try:
        result = workload.fn(manifest.args, ctx)
    except Preempted as notice:  # left the draining node early: its progress goes where the rerun finds it
        try:  # once: the node has seconds left, not the store's restart window
            saved: str | None = store.put(_checkpoint_payload(job_id, manifest.handler, notice.progress))
        except (BlobError, TypeError, ValueError):
            saved = None  # the rerun starts over
        return Outcome(job_id, False, None, "preempted", started, time.time(), node_id, worker, preempted=True,
                       checkpoint=saved, remaining_s=notice.remaining_s)
    except Exception as err:  # the handler's failure is the job's failure, not the head's
        return fail(handler_failure(manifest.handler, err))
    if isinstance(result, bytes | bytearray):
        payload = bytes(result)
    else:
        payload = json.dumps({"job_id": job_id, "handler": manifest.handler, "result": result},
                             sort_keys=True, separators=(",", ":")).encode()
    try:
        result_hash = _with_retry(store.put, payload)
    except BlobError as err:
        return fail(f"result upload failed: {type(err).__name__}")
    return Outcome(job_id, True, result_hash, "", started, time.time(), node_id, worker)


RAY_RESOURCE_SCALING = 10_000  # Ray counts resources in 1/10,000: a smaller non-zero request is refused
RAY_RESOURCE_UNIT = 1 / RAY_RESOURCE_SCALING


def dispatch_options(gpus: float, task_cpus: float, pool: str | None, own_pool: str | None = None,
                     fallback: Sequence[str] = ()) -> dict[str, Any]:
    """`run_job`'s Ray options for a job: its GPUs, the CPUs the provider reserves per task, and the label selector
    of the pool that runs it (`pool`, or the head's own pool when none was chosen and the cluster has it; Ray's
    autoscaler v2 grows exactly that group). `fallback`, when given, are pools Ray may run it on, in order, when
    no alive node matches the first (`fallback_strategy`: Ray takes it at once rather than wait for the first
    pool to grow, docs/architecture.md, so placed jobs get none). Pure, so what the head would ask Ray for can be
    checked without Ray (`options_problem`) and property-tested against every manifest the schema accepts."""
    options: dict[str, Any] = {"num_gpus": gpus, "num_cpus": task_cpus}
    target = pool if pool is not None else own_pool
    if target is not None:
        options["label_selector"] = pool_selector(target)
        others = [p for p in dict.fromkeys(fallback) if p != target]
        if others:
            options["fallback_strategy"] = [{"label_selector": pool_selector(p)} for p in others]
    return options


# where each option comes from, for a reason the consumer (or the operator) can act on
OPTION_SOURCES = {"num_gpus": "resources.gpus", "num_cpus": "task_cpus (provider config)"}


def _quantity_problem(quantity: Any, whole_above_one: bool) -> str | None:
    if isinstance(quantity, bool) or not isinstance(quantity, int | float) or not math.isfinite(quantity):
        return "not a finite number"
    if quantity < 0:
        return "negative"
    if quantity != 0 and int(quantity * RAY_RESOURCE_SCALING) == 0:  # Ray's own test, to the bit
        return f"below Ray's unit of {RAY_RESOURCE_UNIT}"
    if whole_above_one and quantity > 1 and not float(quantity).is_integer():
        return "a fraction above 1 (Ray takes whole units there)"
    return None


def options_problem(options: dict[str, Any]) -> str | None:
    """Why Ray would refuse these task options, naming the field they came from, or None. Mirrors Ray's own
    checks (its option validation and, at submission, "quantities above 1 must be whole numbers"), so a job
    Ray would refuse fails alone, with a reason, instead of raising in the middle of a claim batch."""
    for key in ("num_gpus", "num_cpus"):
        if key in options:
            problem = _quantity_problem(options[key], whole_above_one=True)
            if problem is not None:
                return f"{OPTION_SOURCES[key]}={options[key]!r}: {problem}"
    for name, quantity in (options.get("resources") or {}).items():
        problem = _quantity_problem(quantity, whole_above_one=True)
        if problem is not None:
            return f"resource {name}={quantity!r}: {problem}"
    return None


def dispatch_failure(options: dict[str, Any], err: BaseException) -> str:
    """The chain reason for a dispatch Ray refused although `options_problem` saw none: the job's GPUs (the one
    option a manifest sets) and Ray's own words."""
    gpus = options.get("num_gpus")
    return chain_reason(f"cannot dispatch resources.gpus={gpus!r}: {type(err).__name__}: {' '.join(str(err).split())}")


@ray.remote(max_calls=0, max_retries=0, retry_exceptions=False)  # the head reruns: see the module docstring
def run_job(job_id: int, manifest_json: str, store_url: str, max_input_bytes: int,
            checkpoint: str | None = None) -> Outcome:
    return execute(job_id, manifest_json, store_url, max_input_bytes, checkpoint)


@ray.remote(max_calls=0, max_retries=0, retry_exceptions=False)
def run_jobs(jobs: list[tuple[int, str]], store_url: str, max_input_bytes: int) -> list[Outcome]:
    """Several short jobs of one shape, one after another (provider/packing.py): `(job id, manifest)` each, an
    outcome each (a job resuming from a checkpoint runs alone). A job that raises fails alone; its pack goes on."""
    out = []
    for job_id, manifest_json in jobs:
        try:
            out.append(execute(job_id, manifest_json, store_url, max_input_bytes))
        except Exception as err:  # noqa: BLE001 - one job's error is its own failure, not its pack-mates'
            now = time.time()
            out.append(Outcome(job_id, False, None, chain_reason(f"execution error: {type(err).__name__}"), now, now))
    return out


@ray.remote(max_calls=0, max_retries=0)
def probe() -> tuple[float, str]:
    """When a worker began running a task: the head sends one (no GPU, no CPU reserved) whenever it has not yet
    seen Ray start a task, or holds jobs back on its dispatch estimate, and learns from `start − sent` how long
    this cluster takes to start a task now. It loads what `run_job` loads, so a cold worker costs it the same."""
    started = time.time()
    _device()
    node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    return started, f"{node_id}:{os.getpid()}"
