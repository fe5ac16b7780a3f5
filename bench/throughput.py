"""Targets P1, P2, P7: no-op jobs chain → head → Ray → chain on the devnet.

Phase 1 queues N echo jobs (0.01 GPU each) on the devnet, then starts the head and times the drain:
jobs/s end to end and the head's CPU per job. Phase 2 streams jobs one by one and measures, per job,
chain inclusion → Ray task start and task end → result on chain. Phase 3 runs raw Ray no-op GPU
tasks in the same process (max_calls=0 as the head uses, and Ray's default for GPU tasks on a few),
so the ratio compares like with like on this noisy machine.

    .venv/bin/python bench/throughput.py [--jobs 10000] [--stream 200]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on loopback only
import resource
import sys
import tempfile
import time
from pathlib import Path

import ray

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etrid_ray.blobs import open_blob_store  # noqa: E402
from etrid_ray.chain import Call, ChainClient, dev_signer  # noqa: E402
from etrid_ray.config import load_config  # noqa: E402
from etrid_ray.devnet.process import DevnetProcess  # noqa: E402
from etrid_ray.manifest import encode_manifest  # noqa: E402
from etrid_ray.percentiles import percentile  # noqa: E402
from etrid_ray.provider.head import ProviderHead  # noqa: E402
from etrid_ray.provider.journal import Journal  # noqa: E402

NOOP = {"handler": "echo", "args": {"payload": "x"}, "resources": {"gpus": 0.01}}


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


PER_CONSUMER = 900  # JobMarketplace.UserJobs holds at most 1,000 jobs per account


def submit_call(input_hash: str) -> Call:
    return Call("JobMarketplace", "submit_job", {
        "model_id": 0, "model_type": "Custom", "input_hash": input_hash, "output_format": b"json",
        "max_compute_time": 600, "payment": 10**16, "priority": "Standard"})


def queue_jobs(client: ChainClient, n: int, input_hash: str) -> None:
    names = [f"bench-consumer-{i}" for i in range((n + PER_CONSUMER - 1) // PER_CONSUMER + 1)]
    client.fund(dev_signer("Alice"), [dev_signer(n).address for n in names], 10_000 * 10**18)
    left = n
    for name in names[:-1]:
        consumer = client.consumer(dev_signer(name))
        consumer.submitter.max_batch = 450
        count = min(left, PER_CONSUMER)
        consumer.submitter.batch([submit_call(input_hash) for _ in range(count)])
        left -= count


@ray.remote(num_gpus=0.01, max_calls=0)
def noop_reused() -> None:
    return None


@ray.remote(num_gpus=0.01)
def noop_default() -> None:  # Ray's default for GPU tasks: a new worker process per task
    return None


def raw_ray(n: int) -> tuple[float, float]:
    ray.get([noop_reused.remote() for _ in range(200)])  # warm the workers
    t = time.perf_counter()
    ray.get([noop_reused.remote() for _ in range(n)])
    reused = n / (time.perf_counter() - t)
    m = 12
    t = time.perf_counter()
    ray.get([noop_default.remote() for _ in range(m)])
    default = m / (time.perf_counter() - t)
    return reused, default


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--stream", type=int, default=200)
    parser.add_argument("--max-jobs-per-task", type=int, default=None,
                        help="the head's provider.max_jobs_per_task (default: the config's; 1: a Ray task per job)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="etrid-bench-"))
    with DevnetProcess(block_time=0) as devnet:
        ray.init(address="local", num_cpus=2, num_gpus=4, include_dashboard=False, logging_level="ERROR")
        client = ChainClient(devnet.url)
        store = open_blob_store(devnet.http_url)
        input_hash = store.put(encode_manifest(NOOP))
        t = time.perf_counter()
        queue_jobs(client, args.jobs, input_hash)
        print(f"queued {args.jobs} jobs on the devnet in {time.perf_counter() - t:.1f}s")
        config = load_config(env={}, overrides={
            "websocket_url": devnet.url, "rpc_url": devnet.http_url, "PRICE_PER_SECOND": 1,
            "journal_path": str(workdir / "journal.sqlite"), "claim_batch": 1000, "result_batch": 1000,
            "max_inflight_per_gpu": 1000, "heartbeat_interval_s": 30, "telemetry_interval_s": 30,
            "poll_interval_s": 0.05,
            **({"max_jobs_per_task": args.max_jobs_per_task} if args.max_jobs_per_task else {})})
        rss_before = rss_mb()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        head = ProviderHead(config, dev_signer("Bob"), journal=Journal(config.journal_file)).start()
        peak_rss = rss_mb()
        while head.stats.reported < args.jobs:  # a counter: the bench's polling must not cost the head
            time.sleep(0.05)
            peak_rss = max(peak_rss, rss_mb())
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        rate = args.jobs / wall
        print(f"P1 end to end: {args.jobs} no-op jobs in {wall:.1f}s = {rate:.0f} jobs/s "
              f"(target >= 500); head process CPU {cpu / args.jobs * 1000:.2f} ms/job (target <= 1)")
        st = head.status()
        print(f"claims: {st.claimed} won, {st.lost_claims} lost (another provider, or the chain said no); "
              f"{head.stats.tasks} Ray tasks, {head.stats.shared} job runs in shared tasks")
        print(f"P7 head process RSS: {rss_before:.0f} MB before, peak {peak_rss:.0f} MB with {args.jobs} queued "
              f"(+{peak_rss - rss_before:.0f} MB; target <= 300 MB); max RSS ever "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")

        # P2: stream jobs one at a time while the head runs
        consumer = client.consumer(dev_signer("Dave"))
        on_chain: dict[int, float] = {}
        for _ in range(min(args.stream, PER_CONSUMER)):
            job = consumer.submitter.submit(submit_call(input_hash))
            job_id = int(job.first("JobMarketplace", "JobSubmitted").get("job_id"))
            on_chain[job_id] = time.time()
            time.sleep(0.02)
        deadline = time.time() + 120
        while time.time() < deadline and not all(j in head.stats.on_chain_at for j in on_chain):
            time.sleep(0.05)
        starts = [head.stats.started_at[j] - on_chain[j] for j in on_chain if j in head.stats.started_at]
        if not starts:
            raise SystemExit(f"no streamed job started; head status: {head.status()}")
        results = [head.stats.on_chain_at[j] - head.stats.ended_at[j] for j in on_chain
                   if j in head.stats.on_chain_at and j in head.stats.ended_at]
        print(f"P2 job on chain -> task start: p50 {percentile(starts, 50) * 1000:.0f} ms, "
              f"p99 {percentile(starts, 99) * 1000:.0f} ms; result ready -> on chain: p50 "
              f"{percentile(results, 50) * 1000:.0f} ms, p99 {percentile(results, 99) * 1000:.0f} ms "
              f"(instant-seal devnet: one block ~ one round trip; target p50 <= one block + 50 ms)")
        head.stop()
        reused, default = raw_ray(args.jobs)
        print(f"raw Ray no-op GPU tasks, same run: {reused:.0f} tasks/s with max_calls=0, "
              f"{default:.1f} tasks/s with Ray's default max_calls=1")
        print(f"ratio end-to-end / raw Ray (max_calls=0): {rate / reused:.2f}; "
              f"end-to-end / raw Ray default GPU tasks: {rate / default:.0f}x")
        client.close()
        ray.shutdown()


if __name__ == "__main__":
    main()
