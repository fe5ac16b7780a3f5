"""Does Ray's autoscaler grow the worker group a label selector names? Autoscaler v1 against v2, measured.

A RayCluster with two identical 1-GPU worker groups, `pa` and `pb`, that differ only in their Ray `labels`
runs on Ray's fake multi-node provider (`etrid_ray/demo/fake_cluster.py`), once per autoscaler version:

1. `request_resources` with one GPU bundle selected to `pb`: which group launches, and when (v1 drops the
   selector, so under v1 the group is whichever one it picks for a bare GPU bundle);
2. a task selected to `pa`: does it run, on which group, and when;
3. (v2 only, where selectors work) a task selected to `pa` with a `fallback_strategy` to `pb` while `pa` has
   no node: where it runs, and whether `pa` is launched anyway.

The figures are in docs/architecture.md ("Pools are Ray labels"). Usage: python bench/label_autoscaler.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback, as the tests run Ray

from etrid_ray.ray_auth import use_token  # noqa: E402  (imports no Ray)

use_token()  # before Ray is imported: the driver reads the token when it loads

import ray  # noqa: E402
from ray.autoscaler.sdk import request_resources  # noqa: E402

from etrid_ray.demo.fake_cluster import FakeKubeRayCluster  # noqa: E402
from etrid_ray.pools import POOL_LABEL, pool_selector  # noqa: E402
from etrid_ray.provider.cluster_port import refresh_autoscaler_version  # noqa: E402

WAIT_S = 60.0


def two_groups(pb_min: int = 0) -> dict[str, Any]:
    container = {"name": "ray", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}
    groups = [{"groupName": g, "minReplicas": pb_min if g == "pb" else 0, "maxReplicas": 1,
               "labels": pool_selector(g), "rayStartParams": {"num-gpus": "1"},
               "template": {"spec": {"containers": [container]}}} for g in ("pa", "pb")]
    return {"metadata": {"name": "label-probe", "namespace": "default"},
            "spec": {"enableInTreeAutoscaling": True, "autoscalerOptions": {"idleTimeoutSeconds": 30},
                     "headGroupSpec": {"rayStartParams": {"num-cpus": "0"},
                                       "template": {"spec": {"containers": [container]}}},
                     "workerGroupSpecs": groups}}


def pools_alive() -> list[str | None]:
    return sorted((n.get("Labels") or {}).get(POOL_LABEL) or "-" for n in ray.nodes() if n["Alive"])


def node_pool(node_id: str) -> str | None:
    return next(((n.get("Labels") or {}).get(POOL_LABEL) for n in ray.nodes() if n["NodeID"] == node_id), None)


@ray.remote(num_gpus=1, num_cpus=0, max_retries=0)
def where() -> str:
    return ray.get_runtime_context().get_node_id()


def run(ref: Any) -> str:
    started = time.monotonic()
    try:
        node = ray.get(ref, timeout=WAIT_S)
    except ray.exceptions.GetTimeoutError:
        ray.cancel(ref, force=True)
        return f"did not run within {WAIT_S:.0f} s (nodes: {pools_alive()})"
    return f"ran on {node_pool(node)} after {time.monotonic() - started:.1f} s"


def probe(version: str, workdir: Path) -> None:
    v2 = version == "v2"
    cluster = FakeKubeRayCluster(two_groups(), workdir / version, idle_timeout_s=30, max_workers_per_type=1,
                                 cpus_per_node=1, env={"RAY_enable_autoscaler_v2": "1" if v2 else "0"}).start()
    try:
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        assert refresh_autoscaler_version() is v2, "Ray caches the version per process: read it again"
        started = time.monotonic()
        request_resources(bundles=[{"GPU": 1}], bundle_label_selectors=[pool_selector("pb")])
        while time.monotonic() - started < WAIT_S and pools_alive() == ["-"]:
            time.sleep(0.5)
        print(f"{version}: bundle selected to pb -> nodes {pools_alive()} after {time.monotonic() - started:.1f} s")
        request_resources(bundles=[])
        print(f"{version}: task selected to pa -> {run(where.options(label_selector=pool_selector('pa')).remote())}")
    finally:
        ray.shutdown()
        cluster.stop()


def probe_fallback(workdir: Path) -> None:
    cluster = FakeKubeRayCluster(two_groups(pb_min=1), workdir / "fallback", idle_timeout_s=30,
                                 max_workers_per_type=1, cpus_per_node=1).start()
    try:
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        started = time.monotonic()
        while time.monotonic() - started < WAIT_S and "pb" not in pools_alive():
            time.sleep(0.5)
        ref = where.options(label_selector=pool_selector("pa"),
                            fallback_strategy=[{"label_selector": pool_selector("pb")}]).remote()
        print(f"v2: task selected to pa (no node) with fallback pb (alive) -> {run(ref)}")
        time.sleep(8)
        print(f"v2: 8 s later, nodes {pools_alive()} (pa launched: {'pa' in pools_alive()})")
    finally:
        ray.shutdown()
        cluster.stop()


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="etrid-label-probe-"))
    print(f"Ray {ray.__version__}, fake multi-node provider; two 1-GPU groups pa/pb that differ only in labels")
    probe("v2", workdir)
    probe("v1", workdir)
    probe_fallback(workdir)


if __name__ == "__main__":
    main()
