"""Targets P3 and P4: a spike of chain jobs on the fake multi-node autoscaler, from the rendered RayCluster.

P3: spike of 100 jobs on chain → the head's first scale-up request, and → the first new worker node
alive. P4: queue drained → zero cloud nodes (target: idle timeout + 10 s). For comparison, the same
spike under the seed's HPA rules (60 s sustained + 15 s sync), simulated on the same clock with the
same pools by `etrid_ray.scaling.hpa`, and our policy on those same snapshots.

    .venv/bin/python bench/autoscale.py [--jobs 100] [--idle 10]
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

from etrid_ray.blobs import open_blob_store  # noqa: E402
from etrid_ray.chain import ChainClient, dev_signer  # noqa: E402
from etrid_ray.config import load_config, pools_from_config  # noqa: E402
from etrid_ray.demo.fake_cluster import FakeKubeRayCluster  # noqa: E402
from etrid_ray.devnet.process import DevnetProcess  # noqa: E402
from etrid_ray.kuberay.render import raycluster  # noqa: E402
from etrid_ray.prices.catalog import quotes_for  # noqa: E402
from etrid_ray.provider.head import ProviderHead  # noqa: E402
from etrid_ray.provider.journal import Journal  # noqa: E402
from etrid_ray.provider.scaler import alive_nodes_per_pool  # noqa: E402
from etrid_ray.scaling import POLICIES, PoolState, QueuedJob, Snapshot, first_scale_up  # noqa: E402


def cloud_nodes() -> int:
    return sum(n for pool, n in alive_nodes_per_pool().items() if not pool.startswith("local"))


def simulated_first_scale_up(config, jobs: int) -> dict[str, float | None]:
    """The same spike on a simulated clock (1 s ticks): when does each policy first scale up?"""
    pools = pools_from_config(config)
    prices = quotes_for(pools)
    queue = tuple(QueuedJob(i, 1.0, 3 * 10**18 / 120, 120.0, 0.0) for i in range(jobs))
    states = tuple(PoolState(p, alive=p.min_nodes, idle_since=(None,) * p.min_nodes,
                             gpus_busy=p.gpus_per_node * p.min_nodes) for p in pools)
    snapshots = [Snapshot(now=float(t), pools=states, queue=queue, prices=prices) for t in range(0, 200)]
    out: dict[str, float | None] = {}
    for name in ("profit", "seed-hpa"):
        hit = first_scale_up(POLICIES[name].decide, snapshots, config)
        out[name] = hit[0] if hit else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--idle", type=float, default=10.0, help="idle timeout (s) of the fake cluster")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="etrid-autoscale-"))
    with DevnetProcess(block_time=0) as devnet:
        config = load_config(env={}, overrides={
            "websocket_url": devnet.url, "rpc_url": devnet.http_url, "PRICE_PER_SECOND": 10**12,
            "gpus": {"count": 4}, "local_nodes": 1, "journal_path": str(workdir / "journal.sqlite"),
            "poll_interval_s": 0.1, "idle_timeout_s": args.idle, "aws_max_nodes": 2, "gcp_max_nodes": 1,
            "azure_max_nodes": 1, "scale_interval_s": 0.25, "heartbeat_interval_s": 30,
            "telemetry_interval_s": 30})
        cluster = FakeKubeRayCluster(raycluster(config), workdir / "fake", idle_timeout_s=args.idle,
                                     max_workers_per_type=2, cpus_per_node=8).start()
        try:
            ray.init(address=cluster.address, logging_level="ERROR")
            while not any(pool.startswith("local") for pool in alive_nodes_per_pool()):  # by its pool label
                time.sleep(0.2)
            head = ProviderHead(config, dev_signer("Bob"), journal=Journal(config.journal_file)).start()
            client = ChainClient(devnet.url)
            consumer = client.consumer(dev_signer("Charlie"), blobs=open_blob_store(devnet.http_url))
            manifests = [{"handler": "sleep", "args": {"seconds": 3, "n": i}} for i in range(args.jobs)]
            consumer.submit_jobs(manifests, payment=3 * 10**18, max_compute_time=120)
            spike = time.time()
            first_node = None
            while first_node is None and time.time() - spike < 120:
                if cloud_nodes() > 0:
                    first_node = time.time()
                time.sleep(0.1)
            while head.status().reported < args.jobs and time.time() - spike < 600:
                time.sleep(0.2)
            drained = time.time()
            while cloud_nodes() > 0 and time.time() - drained < 300:
                time.sleep(0.2)
            gone = time.time()
            request = head.scaler.first_request_at if head.scaler else None
            print(f"P3 spike of {args.jobs} jobs -> first scale-up request: "
                  f"{(request - spike) if request else float('nan'):.2f} s (target <= 2 s); "
                  f"-> first new worker node alive: {(first_node - spike) if first_node else float('nan'):.1f} s "
                  f"(target <= 15 s)")
            print(f"P4 queue drained -> zero cloud nodes: {gone - drained:.1f} s "
                  f"(idle timeout {args.idle:.0f} s; target <= idle timeout + 10 s)")
            print(f"    decisions by (pool, reason): {dict(head.scaler.decisions_total) if head.scaler else {}}")
            head.stop()
            client.close()
        finally:
            ray.shutdown()
            cluster.stop()
    sim = simulated_first_scale_up(config, args.jobs)
    print(f"same spike, simulated clock: first scale-up after {sim['profit']} s with the profit policy, "
          f"{sim['seed-hpa']} s under the seed's HPA rules (60 s sustained + 15 s sync)")


if __name__ == "__main__":
    main()
