"""The queue watcher's CPU per block with a long queue (issue 14, P1: the head's CPU per job).

Queues ``--jobs`` no-op jobs on an instant-seal devnet, then makes blocks that each cancel ``--per-block`` of them
(one ``Utility.batch_all`` per block, so each block changes the queue by a few ids, as the head's claims do) and
times ``QueueWatcher.poll_once`` with ``time.thread_time`` — the watcher's own CPU, not the node's or the load
generator's. Two cadences: a poll after every block (the subscription keeping up), and one every ``--every`` blocks
(the watcher catching up on several). The watcher has its own connection, so no other reader's event cache helps it.

    .venv/bin/python bench/watch_cost.py [--jobs 10000] [--blocks 150]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etrid_ray.chain import Call, ChainClient, Connection, QueueWatcher, dev_signer  # noqa: E402
from etrid_ray.devnet.process import DevnetProcess  # noqa: E402

PER_CONSUMER = 900  # JobMarketplace.UserJobs holds at most 1,000 jobs per account
INPUT = "0x" + "ab" * 32


def submit_call() -> Call:
    return Call("JobMarketplace", "submit_job", {
        "model_id": 0, "model_type": "Custom", "input_hash": INPUT, "output_format": b"json",
        "max_compute_time": 600, "payment": 10**16, "priority": "Standard"})


def queue_jobs(client: ChainClient, n: int) -> dict[str, list[int]]:
    """``n`` pending jobs from a few consumers; returns each consumer's job ids."""
    names = [f"watch-cost-{i}" for i in range((n + PER_CONSUMER - 1) // PER_CONSUMER)]
    client.fund(dev_signer("Alice"), [dev_signer(x).address for x in names], 10_000 * 10**18)
    left, owned = n, {}
    for name in names:
        consumer = client.consumer(dev_signer(name))
        consumer.submitter.max_batch = 450
        count = min(left, PER_CONSUMER)
        consumer.submitter.batch([submit_call() for _ in range(count)])
        owned[name] = client.reader.user_jobs(consumer.address)
        left -= count
    return owned


def measure(url: str, client: ChainClient, owned: dict[str, list[int]], blocks: int, per_block: int,
            every: int) -> tuple[float, int, int]:
    """(CPU ms per block, blocks, polls) of a watcher polled every ``every`` blocks while blocks cancel jobs."""
    consumers = [(client.consumer(dev_signer(name)), ids) for name, ids in owned.items()]
    with Connection(url) as conn:
        watcher = QueueWatcher(conn, lambda _u: None)
        watcher.poll_once()  # the start: a full read, not counted
        cpu, polls, seen = 0.0, 0, 0
        first = conn.best_number()
        for b in range(blocks):
            consumer, ids = consumers[b % len(consumers)]
            take, ids[:] = ids[:per_block], ids[per_block:]
            consumer.submitter.batch([Call("JobMarketplace", "cancel_job", {"job_id": j}) for j in take])
            if (b + 1) % every == 0 or b == blocks - 1:
                t0 = time.thread_time()
                update = watcher.poll_once()
                cpu += time.thread_time() - t0
                polls += 1
                if update is not None:
                    seen = update.block_number
    return cpu * 1000 / max(seen - first, 1), seen - first, polls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--blocks", type=int, default=150)
    ap.add_argument("--per-block", type=int, default=3)
    ap.add_argument("--every", type=int, default=4)
    args = ap.parse_args()
    import etrid_ray

    print(f"etrid_ray from {Path(etrid_ray.__file__).parent}, pid {os.getpid()}")
    with DevnetProcess(block_time=0) as devnet, ChainClient(devnet.url) as client:
        t0 = time.monotonic()
        owned = queue_jobs(client, args.jobs)
        print(f"queued {sum(map(len, owned.values()))} jobs in {time.monotonic() - t0:.1f}s; "
              f"PendingJobs holds {len(client.reader.pending_job_ids())}")
        for every in (1, args.every):
            ms, blocks, polls = measure(devnet.url, client, owned, args.blocks, args.per_block, every)
            print(f"poll every {every} block(s): {ms:.3f} ms watcher CPU per block "
                  f"({blocks} blocks, {polls} polls, queue {len(client.reader.pending_job_ids())})")


if __name__ == "__main__":
    main()
