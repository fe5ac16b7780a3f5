"""A KubeRay RayCluster run on Ray's fake multi-node autoscaler: real raylets launched as "nodes".

The RayCluster manifest users deploy goes through Ray's own KubeRay translation
(`_derive_autoscaling_config_from_ray_cr`), and the node types it yields — resources, min/max,
priority and the group's Ray `labels` — become the fake provider's node types, so the scaling
tested here is the scaling of that manifest. The fake provider starts each fake raylet with its
node type's labels (as KubeRay >= 1.5 starts a worker pod's `ray start --labels`), and the
autoscaler runs as v2, the one that honours label selectors when it scales up (v1 drops them).
Everything is on loopback with free ports; stopping kills exactly the processes of this
cluster (by pid, found through its unique GCS port), never `ray stop`.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_ID
from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr

from etrid_ray.local_ray import SLOW_MACHINE_ENV, free_port
from etrid_ray.ray_auth import ensure_token, token_env
from etrid_ray.telemetry.logs import SECRET_ENV

HEAD_TYPE = "ray.head.default"
FAKE_PROVIDER_CLASS = "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider"
KUBERAY_HEAD_GROUP = "headgroup"


def fake_autoscaling_config(ray_cr: dict[str, Any], gcs_address: str, *, idle_timeout_s: float | None = None,
                            max_workers_per_type: int | None = None, cpus_per_node: float | None = None,
                            head_cpus: float = 1) -> dict[str, Any]:
    """The fake provider's config for a RayCluster: same node types, resources, min/max and idle timeout.

    `cpus_per_node` shrinks each fake node's CPU count (a p4d node has 96 vCPUs; a 2-core test
    machine should not pretend to run 96 CPU tasks per fake node); GPUs, labels and priority are untouched."""
    derived = _derive_autoscaling_config_from_ray_cr(copy.deepcopy(ray_cr))
    node_types: dict[str, Any] = {}
    for name, node_type in derived["available_node_types"].items():
        if name == KUBERAY_HEAD_GROUP:
            continue
        resources = dict(node_type["resources"])
        resources.pop("memory", None)
        if cpus_per_node is not None:
            resources["CPU"] = cpus_per_node
        max_workers = node_type["max_workers"]
        if max_workers_per_type is not None:
            max_workers = min(max_workers, max_workers_per_type)
        node_types[name] = {"resources": resources, "node_config": {}, "min_workers": node_type["min_workers"],
                            "max_workers": max_workers, "labels": dict(node_type.get("labels") or {})}
        if "priority" in node_type:
            node_types[name]["priority"] = node_type["priority"]
    node_types[HEAD_TYPE] = {"resources": {"CPU": head_cpus}, "node_config": {}, "max_workers": 0}
    idle_minutes = derived["idle_timeout_minutes"] if idle_timeout_s is None else idle_timeout_s / 60
    return {
        "cluster_name": derived["cluster_name"],
        "max_workers": sum(t.get("max_workers", 0) for t in node_types.values()),
        "upscaling_speed": derived["upscaling_speed"],
        "idle_timeout_minutes": idle_minutes,
        # Ray's fake provider, loaded as an "external" provider: the wheel lacks the defaults file
        # (fake_multi_node/example.yaml) that the built-in "fake_multinode" type would read.
        "provider": {"type": "external", "module": FAKE_PROVIDER_CLASS,
                     "use_node_id_as_ip": True, "disable_node_updaters": True,
                     "disable_launch_config_check": True, "launch_multiple": True,
                     "head_node_id": FAKE_HEAD_NODE_ID, "gcs_address": gcs_address},
        "available_node_types": node_types,
        "head_node_type": HEAD_TYPE,
        "docker": {}, "auth": {"ssh_user": "ubuntu"}, "file_mounts": {}, "cluster_synced_files": [],
        "file_mounts_sync_continuously": False, "initialization_commands": [], "setup_commands": [],
        "head_setup_commands": [], "worker_setup_commands": [], "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


@dataclass
class FakeKubeRayCluster:
    ray_cr: dict[str, Any]
    workdir: Path
    idle_timeout_s: float | None = 10.0
    max_workers_per_type: int | None = 2
    cpus_per_node: float | None = 2
    # per node type (worker group name): the most nodes the fake provider may launch, below the manifest's own;
    # 0 = a group whose nodes never come (a quota of zero), what bench/failover.py measures failover on
    max_workers_by_type: dict[str, int] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    dashboard: bool = False  # Ray's dashboard on 127.0.0.1 (token login); off where nobody looks at it
    proc: subprocess.Popen[bytes] | None = None
    gcs_port: int = 0
    dashboard_port: int = 0
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str | None:
        return f"http://127.0.0.1:{self.dashboard_port}" if self.dashboard else None

    def start(self, timeout: float = 90.0) -> FakeKubeRayCluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.gcs_port = free_port()
        self.config = fake_autoscaling_config(self.ray_cr, self.address, idle_timeout_s=self.idle_timeout_s,
                                              max_workers_per_type=self.max_workers_per_type,
                                              cpus_per_node=self.cpus_per_node)
        for name, most in self.max_workers_by_type.items():
            node_type = self.config["available_node_types"][name]  # KeyError: no such worker group
            node_type["max_workers"] = min(node_type["max_workers"], most)
        config_path = self.workdir / "autoscaling.json"
        config_path.write_text(json.dumps(self.config, indent=1))
        ray_bin = str(Path(sys.executable).with_name("ray"))
        args = [ray_bin, "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
                "--port", str(self.gcs_port), f"--autoscaling-config={config_path}",
                "--num-cpus", "1", "--num-gpus", "0", *self._dashboard_args(),
                "--ray-client-server-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port()),
                "--metrics-export-port", str(free_port()), "--runtime-env-agent-port", str(free_port()),
                "--disable-usage-stats"]
        # Secrets of the calling shell stay out of the cluster (every worker would inherit them); a test
        # that wants a key in the cluster's environment passes it in `env`, as a pod spec would.
        inherited = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
        env = {**inherited, **SLOW_MACHINE_ENV, "RAY_FAKE_CLUSTER": "1", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
               **token_env(ensure_token()), "AUTOSCALER_UPDATE_INTERVAL_S": "1",
               "RAY_enable_autoscaler_v2": "1", "RAY_CLOUD_INSTANCE_ID": FAKE_HEAD_NODE_ID,
               "RAY_OVERRIDE_NODE_ID_FOR_TESTING": FAKE_HEAD_NODE_ID,
               "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}", **self.env}
        log = (self.workdir / "ray-start.log").open("wb")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"fake cluster exited: {(self.workdir / 'ray-start.log').read_text()[-3000:]}")
            if b"--block" in (self.workdir / "ray-start.log").read_bytes():
                return self
            time.sleep(0.5)
        self.stop()
        raise TimeoutError("fake cluster head did not come up")

    def _dashboard_args(self) -> list[str]:
        if not self.dashboard:
            return ["--include-dashboard", "false"]
        self.dashboard_port = free_port()
        return ["--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
                "--dashboard-port", str(self.dashboard_port)]

    def _our_processes(self) -> list[psutil.Process]:
        """Every process of this cluster: the ones `ray start` spawned and the fake nodes the autoscaler
        launched (they carry this cluster's unique GCS address on their command line)."""
        marker = f"127.0.0.1:{self.gcs_port}"
        found: dict[int, psutil.Process] = {}
        if self.proc is not None:
            try:
                root = psutil.Process(self.proc.pid)
                for p in [root, *root.children(recursive=True)]:
                    found[p.pid] = p
            except psutil.NoSuchProcess:
                pass
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                if any(marker in part for part in (p.info["cmdline"] or [])):
                    found[p.pid] = p
                    for child in p.children(recursive=True):
                        found[child.pid] = child
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        found.pop(os.getpid(), None)
        return list(found.values())

    def stop(self, timeout: float = 30.0) -> None:
        procs = self._our_processes()
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        for p in procs:
            try:
                p.terminate()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(procs, timeout=10)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5)
