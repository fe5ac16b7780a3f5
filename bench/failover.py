"""Issue 15 item 2: a spike while the cheapest pool can launch nothing — how fast do the jobs run elsewhere?

A real run: the devnet, the provider head and the rendered RayCluster on Ray's fake multi-node
autoscaler (`FakeKubeRayCluster`). Pools: one local node of 4 GPUs, AWS spot (the cheapest) and Azure
spot, 8 GPUs per node, GCP off. The AWS worker group's nodes never come: the fake provider may launch
none of them (`max_workers 0` for that node type, while the manifest and the head ask for them — a
quota of zero, as an exhausted spot quota or a region without capacity looks to Ray's autoscaler: the
request stays, infeasible, and no node joins). The spike: jobs of 8 GPUs each, which the local node
cannot run, so every one needs a cloud node.

Both cloud pools are declared to start in `--startup` seconds (a fake node joins in seconds, not the
real 180–240 s; the rule scales with the declared or learnt startup either way). What is printed:

- spike → the head's first request (AWS, the cheapest) and → its withdrawal (target: startup +
  `capacity_margin_s`, default 15 s);
- spike → the first job running on Azure, the next pool that pays (target, issue 15: ≤ startup + 30 s —
  reachable only when the fallback pool starts faster than the margin; the figure says which);
- no job lost (every job completed on chain, none failed or retried), and no request left dangling:
  the head's last request to Ray holds no AWS bundle, and Ray's own autoscaler state (its cluster
  constraint, what `request_resources` set) asks for no AWS node.

    .venv/bin/python bench/failover.py [--jobs 2] [--startup 20] [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # every Ray process on loopback
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from etrid_ray.ray_auth import use_token  # noqa: E402  (imports no Ray)

use_token()  # token auth on for the cluster this bench starts and for its driver (the project's own token)

import ray  # noqa: E402
from ray.autoscaler.v2.sdk import get_cluster_status  # noqa: E402  (Ray's own view: the fake cluster runs v2)

from etrid_ray.blobs import open_blob_store  # noqa: E402
from etrid_ray.chain import ChainClient, dev_signer  # noqa: E402
from etrid_ray.chain.models import JobStatus  # noqa: E402
from etrid_ray.config import load_config, pools_from_config  # noqa: E402
from etrid_ray.demo.fake_cluster import FakeKubeRayCluster  # noqa: E402
from etrid_ray.devnet.process import DevnetProcess  # noqa: E402
from etrid_ray.kuberay.render import raycluster  # noqa: E402
from etrid_ray.pools import CapacityRequest  # noqa: E402
from etrid_ray.provider.cluster_port import RayCluster  # noqa: E402
from etrid_ray.provider.head import ProviderHead  # noqa: E402
from etrid_ray.provider.journal import Journal  # noqa: E402
from etrid_ray.provider.scaler import alive_nodes_per_pool  # noqa: E402

BROKEN, FALLBACK, LOCAL = "aws-spot-a100", "azure-spot-a100", "local-gpu"


class RecordingCluster(RayCluster):
    """The real Ray seam, keeping every request the head sends (the last one is what Ray holds now)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[float, CapacityRequest]] = []

    def request(self, request: CapacityRequest) -> None:
        self.requests.append((time.time(), request))
        super().request(request)


def ray_constraint_demands(gcs_address: str) -> list[str]:
    """What Ray's autoscaler holds as the cluster constraint (`request_resources`), as text per bundle (its status
    reports shapes only, not the label selectors: that the head's last request and Ray's agree in number is the
    check on Ray's side)."""
    status = get_cluster_status(gcs_address)
    out: list[str] = []
    for demand in status.resource_demands.cluster_constraint_demand:
        for by_count in demand.bundles_by_count:
            out += [str(by_count.bundle)] * by_count.count
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2, help="8-GPU jobs (≤ 2: 2 nodes a pool)")
    parser.add_argument("--startup", type=float, default=20.0, help="declared startup (s) of both cloud pools")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long each job sleeps")
    parser.add_argument("--idle", type=float, default=10.0, help="idle timeout (s) of the fake cluster")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="etrid-failover-"))
    with DevnetProcess(block_time=0) as devnet:
        config = load_config(env={}, overrides={
            "websocket_url": devnet.url, "rpc_url": devnet.http_url, "PRICE_PER_SECOND": 10**12,
            "gpus": {"count": 4}, "local_nodes": 1, "journal_path": str(workdir / "journal.sqlite"),
            "poll_interval_s": 0.1, "idle_timeout_s": args.idle, "aws_max_nodes": 2, "azure_max_nodes": 2,
            "gcp_enabled": False, "scale_interval_s": 0.5, "heartbeat_interval_s": 30, "telemetry_interval_s": 30})
        # both cloud pools declared to start in --startup seconds (the fake nodes' scale, not the clouds')
        pools = [p.model_copy(update={"startup_s": args.startup}) for p in pools_from_config(config) if p.is_cloud]
        config = config.model_copy(update={"clouds": config.clouds.model_copy(update={"pools": pools})})
        margin = config.scaling.capacity_margin_s
        cluster = FakeKubeRayCluster(raycluster(config), workdir / "fake", idle_timeout_s=args.idle,
                                     max_workers_per_type=2, cpus_per_node=4,
                                     max_workers_by_type={BROKEN: 0}).start()
        port = None
        head = None
        client = ChainClient(devnet.url)
        try:
            ray.init(address=cluster.address, logging_level="ERROR")
            while alive_nodes_per_pool().get(LOCAL, 0) < 1:
                time.sleep(0.2)
            port = RecordingCluster()
            head = ProviderHead(config, dev_signer("Bob"), journal=Journal(config.journal_file), cluster=port).start()
            consumer = client.consumer(dev_signer("Charlie"), blobs=open_blob_store(devnet.http_url))
            manifests = [{"handler": "sleep", "args": {"seconds": args.seconds, "n": i}, "resources": {"gpus": 8}}
                         for i in range(args.jobs)]
            ids = [j.job_id for j in consumer.submit_jobs(manifests, payment=3 * 10**18, max_compute_time=300)]
            spike = time.time()
            withdrawn_at = first_elsewhere = None
            broken_peak = 0
            while time.time() - spike < 600:
                scaler = head.scaler
                if withdrawn_at is None and scaler is not None and scaler.capacity.get(BROKEN).failures > 0:
                    withdrawn_at = time.time()
                status = head.status()
                if first_elsewhere is None and any(r.pool == FALLBACK for r in status.running_jobs):
                    first_elsewhere = time.time()
                broken_peak = max(broken_peak, alive_nodes_per_pool().get(BROKEN, 0))
                if status.reported >= args.jobs:
                    break
                time.sleep(0.1)
            done = time.time()
            jobs = consumer.reader.jobs(ids)
            status = head.status()
            scaler = head.scaler
            requested = dict(scaler.requested) if scaler is not None else {}
            last_request = port.requests[-1][1] if port.requests else CapacityRequest()
            first_request = next((t for t, r in port.requests if r.per_pool().get(BROKEN)), None)
            ray_demands = ray_constraint_demands(cluster.address)
            pools_ran = dict(head.stats.pool_of)
        finally:
            if head is not None:
                head.stop()
            client.close()
            ray.shutdown()
            cluster.stop()

    def since(t: float | None) -> str:
        return f"{t - spike:.1f} s" if t is not None else "never"

    completed = sum(1 for j in jobs.values() if j is not None and j.status == JobStatus.COMPLETED)
    dangling = last_request.per_pool().get(BROKEN, 0) + max(0, len(ray_demands) - len(last_request.bundles))
    target = args.startup + 30
    print(f"spike of {args.jobs} jobs × 8 GPUs; {BROKEN} (cheapest) can launch nothing; both cloud pools declared "
          f"to start in {args.startup:g} s; capacity margin {margin:g} s")
    print(f"  spike -> first request for {BROKEN}: {since(first_request)}")
    print(f"  spike -> {BROKEN} request withdrawn, pool backing off: {since(withdrawn_at)} "
          f"(rule: startup {args.startup:g} s + margin {margin:g} s)")
    print(f"  spike -> first job dispatched to a live {FALLBACK} node: {since(first_elsewhere)} (issue target <= "
          f"startup + 30 s = {target:g} s; the fallback node's own startup comes on top of the withdrawal)")
    if withdrawn_at is not None and first_elsewhere is not None:
        print(f"  withdrawal -> first job dispatched to a live {FALLBACK} node: {first_elsewhere - withdrawn_at:.1f} s")
    print(f"  all jobs reported: {done - spike:.1f} s; completed on chain {completed}/{args.jobs}; head failed "
          f"{dict(status.failed)}; ran on {sorted(set(pools_ran.get(i) or '?' for i in ids))}")
    print(f"  {BROKEN} nodes ever alive: {broken_peak}; head's standing request {requested}; "
          f"bundles for {BROKEN} left in the head's last request, plus bundles Ray's cluster constraint holds beyond "
          f"that request: {dangling}")
    print(f"  decisions by (pool, reason): {dict(scaler.decisions_total) if scaler is not None else {}}")
    ok = completed == args.jobs and not dangling and first_elsewhere is not None
    print("OK: no job lost, no request left dangling" if ok else "FAILED: see above")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
