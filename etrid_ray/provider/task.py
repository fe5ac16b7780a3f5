"""The Ray task that runs one job: fetch and verify inputs, run the allow-listed handler, store the result.

It is declared with `max_calls=0` so GPU tasks reuse worker processes (Ray's
default for `num_gpus>0` is one process per task: 3 tasks/s here instead of
1,500). Application errors come back as a failed outcome, not an exception,
so Ray retries only what it should: tasks lost with their node.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import ray

from etrid_ray.blobs import BlobError, BlobIntegrityError, BlobNotFound, BlobTooLarge, open_blob_store
from etrid_ray.manifest import Manifest, chain_reason
from etrid_ray.security.compliance import policy_for
from etrid_ray.security.crypto import CryptoError, KeyringNotConfigured, store_for_job
from etrid_ray.workloads.registry import UnknownHandler, WorkloadContext, get_workload

TASK_MAX_RETRIES = 3
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


def _device() -> tuple[str, list[str]]:
    gpu_ids = [str(g) for g in ray.get_gpu_ids()] if ray.is_initialized() else []
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


def execute(job_id: int, manifest_json: str, store_url: str, max_input_bytes: int) -> Outcome:
    """Runs a job in this process; used by the Ray task and directly by tests."""
    started = time.time()
    node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""

    def fail(reason: str) -> Outcome:
        return Outcome(job_id, False, None, chain_reason(reason), started, time.time(), node_id)

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
    try:
        result = workload.fn(manifest.args, ctx)
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
    return Outcome(job_id, True, result_hash, "", started, time.time(), node_id)


@ray.remote(max_calls=0, max_retries=TASK_MAX_RETRIES, retry_exceptions=False)
def run_job(job_id: int, manifest_json: str, store_url: str, max_input_bytes: int) -> Outcome:
    return execute(job_id, manifest_json, store_url, max_input_bytes)
