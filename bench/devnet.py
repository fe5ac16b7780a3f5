"""P6: how fast `etrid-ray devnet` applies signed extrinsics and serves the job queue.

    .venv/bin/python bench/devnet.py [--runs 3] [--single 5000] [--connections 4] [--jobs 10000]

Each run starts a fresh instant-seal devnet on a free loopback port (stopped by pid) and measures:

1. single signed extrinsics applied per second — N `Balances.transfer_keep_alive` pre-signed with
   increasing nonces by 20 accounts, pushed with `author_submitExtrinsic` over several websockets
   without waiting for answers, timed from the first send until a storage subscription sees the
   last one applied (the destination's balance reaches N × amount);
2. calls per second inside `Utility.batch` — 10,000 `JobMarketplace.submit_job` calls in batches of
   500 (10 submitters: `UserJobs` holds 1,000 per account), timed the same way on `TotalJobs`;
3. the time to read those 10,000 pending jobs as the provider does (`etrid_ray.chain`): `PendingJobs`,
   then every `Jobs` entry with `state_queryStorageAt` in chunks at one block, decoded. The first
   read after the batches ("cold") makes the devnet encode every job; later reads hit its cache.

Prints the median and best of the runs against the targets (targets.md, P6).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import websocket
from substrateinterface import Keypair, SubstrateInterface

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etrid_ray.chain.connection import Connection  # noqa: E402
from etrid_ray.chain.reader import ChainReader  # noqa: E402
from etrid_ray.devnet.process import DevnetProcess  # noqa: E402

EDSC = 10**18
TARGET_SINGLE, TARGET_BATCH, TARGET_READ = 500.0, 2000.0, 1.0
MAX_USER_JOBS = 1000  # JobMarketplace UserJobs bound: one account submits at most 1,000 jobs
BATCH_SIZE = 500


@dataclass
class RunResult:
    single_per_s: float
    batch_calls_per_s: float
    read_cold_s: float
    read_warm_s: float


class Watch:
    """Subscribes to one storage key and records when its decoded value first reaches a target."""

    def __init__(self, url: str, key_hex: str, decode, target: int) -> None:
        self.conn = websocket.create_connection(url, timeout=120)
        self.decode, self.target = decode, target
        self.reached_at: float | None = None
        self.last: int | None = None
        self.conn.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "state_subscribeStorage",
                                   "params": [[key_hex]]}))
        reply = json.loads(self.conn.recv())
        assert "result" in reply, reply
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.reached_at is None:
            message = json.loads(self.conn.recv())
            for _, value in message.get("params", {}).get("result", {}).get("changes", []):
                self.last = self.decode(value)
                if self.last >= self.target:
                    self.reached_at = time.perf_counter()

    def wait(self, timeout: float) -> float:
        self.thread.join(timeout)
        self.conn.close()
        if self.reached_at is None:
            raise RuntimeError(f"target {self.target} not reached (last value {self.last})")
        return self.reached_at


def free_balance(value: str | None) -> int:
    # AccountInfo: nonce, consumers, providers, sufficients (u32 each), then AccountData.free (u128)
    return 0 if value is None else int.from_bytes(bytes.fromhex(value[2:])[16:32], "little")


def u64(value: str | None) -> int:
    return 0 if value is None else int.from_bytes(bytes.fromhex(value[2:]), "little")


def push(url: str, extrinsics: list[str], errors: list[object]) -> None:
    """Sends every extrinsic without waiting, then collects the answers (hashes or errors)."""
    conn = websocket.create_connection(url, timeout=120)
    for i, ext in enumerate(extrinsics):
        conn.send(json.dumps({"jsonrpc": "2.0", "id": i, "method": "author_submitExtrinsic", "params": [ext]}))
    for _ in extrinsics:
        reply = json.loads(conn.recv())
        if "error" in reply:
            errors.append(reply["error"])
    conn.close()


def submit_all(url: str, lanes: list[list[str]], watch: Watch, timeout: float) -> float:
    """Pushes each lane over its own websocket (a sender's nonces stay in order) and returns seconds
    from the first send until the watch saw the last one applied."""
    errors: list[object] = []
    threads = [threading.Thread(target=push, args=(url, lane, errors)) for lane in lanes]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = watch.wait(timeout)
    if errors:
        raise RuntimeError(f"{len(errors)} extrinsics refused, e.g. {errors[0]}")
    return done - start


def fund(s: SubstrateInterface, accounts: list[Keypair], amount: int) -> None:
    calls = [s.compose_call("Balances", "transfer_keep_alive", {"dest": a.ss58_address, "value": amount})
             for a in accounts]
    receipt = s.submit_extrinsic(s.create_signed_extrinsic(s.compose_call("Utility", "batch_all", {"calls": calls}),
                                                           Keypair.create_from_uri("//Alice")),
                                 wait_for_inclusion=True)
    if not receipt.is_success:
        raise RuntimeError(f"funding failed: {receipt.error_message}")


def run_once(n_single: int, connections: int, n_jobs: int, warm_reads: int) -> RunResult:
    with DevnetProcess(block_time=0) as proc:
        s = SubstrateInterface(url=proc.url, ss58_format=42)
        senders = [Keypair.create_from_uri(f"//Bench{i}") for i in range(20)]
        submitters = senders[: -(-n_jobs // MAX_USER_JOBS)]
        fund(s, senders, 10_000 * EDSC)

        # 1. single extrinsics --------------------------------------------------------------------
        dest = Keypair.create_from_uri("//BenchDestination")
        amount = EDSC
        transfer = s.compose_call("Balances", "transfer_keep_alive", {"dest": dest.ss58_address, "value": amount})
        lanes: list[list[str]] = [[] for _ in range(connections)]
        per_sender = -(-n_single // len(senders))
        signed = 0
        for nonce in range(per_sender):
            for i, sender in enumerate(senders):
                if signed == n_single:
                    break
                # nonce 0 was not used: the funding came from Alice
                lanes[i % connections].append(str(s.create_signed_extrinsic(transfer, sender, nonce=nonce).data))
                signed += 1
        watch = Watch(proc.url, s.create_storage_key("System", "Account", [dest.ss58_address]).to_hex(),
                      free_balance, n_single * amount)
        single_s = submit_all(proc.url, lanes, watch, timeout=300)

        # 2. calls inside Utility.batch -----------------------------------------------------------
        job = s.compose_call("JobMarketplace", "submit_job", {
            "model_id": 1, "model_type": "LLM", "input_hash": "0x" + "11" * 32, "output_format": "json",
            "max_compute_time": 3600, "payment": 10**15, "priority": "Standard"})
        lanes = [[] for _ in range(connections)]
        remaining = n_jobs
        for i, submitter in enumerate(submitters):
            nonce = s.get_account_nonce(submitter.ss58_address)
            mine = min(MAX_USER_JOBS, remaining)
            remaining -= mine
            while mine > 0:
                size = min(BATCH_SIZE, mine)
                batch = s.compose_call("Utility", "batch", {"calls": [job] * size})
                lanes[i % connections].append(str(s.create_signed_extrinsic(batch, submitter, nonce=nonce).data))
                nonce += 1
                mine -= size
        total_jobs_key = s.create_storage_key("JobMarketplace", "TotalJobs").to_hex()
        watch = Watch(proc.url, total_jobs_key, u64, n_jobs)
        batch_s = submit_all(proc.url, [lane for lane in lanes if lane], watch, timeout=300)
        s.close()

        # 3. reading the queue, as the provider's chain client does --------------------------------
        conn = Connection(proc.url)
        reader = ChainReader(conn)
        t0 = time.perf_counter()
        _, jobs = reader.pending_jobs()
        cold = time.perf_counter() - t0
        if len(jobs) != n_jobs or not all(j.is_pending for j in jobs):
            raise RuntimeError(f"read {len(jobs)} jobs, expected {n_jobs} pending")
        warm = []
        for _ in range(warm_reads):
            t0 = time.perf_counter()
            _, jobs = reader.pending_jobs()
            warm.append(time.perf_counter() - t0)
        conn.close()
        return RunResult(n_single / single_s, n_jobs / batch_s, cold, statistics.median(warm))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--single", type=int, default=5000, help="signed transfers per run")
    parser.add_argument("--connections", type=int, default=4, help="websockets to submit over")
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs submitted in batches, then read")
    parser.add_argument("--warm-reads", type=int, default=5)
    args = parser.parse_args()

    print(f"etrid-ray devnet benchmark (P6): {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{args.runs} runs", flush=True)
    results = []
    for run in range(args.runs):
        r = run_once(args.single, args.connections, args.jobs, args.warm_reads)
        results.append(r)
        print(f"  run {run + 1}: {r.single_per_s:,.0f} extrinsics/s, {r.batch_calls_per_s:,.0f} batched calls/s, "
              f"read {args.jobs:,} jobs {r.read_cold_s:.3f} s cold / {r.read_warm_s:.3f} s warm", flush=True)

    def row(label: str, values: list[float], fmt: str, best, target: str, ok: bool) -> None:
        print(f"  {label:<40} {fmt.format(statistics.median(values)):>12}  (best {fmt.format(best(values))})"
              f"   target {target:<10} {'ok' if ok else 'MISSED'}")

    single = [r.single_per_s for r in results]
    batch = [r.batch_calls_per_s for r in results]
    cold = [r.read_cold_s for r in results]
    warm = [r.read_warm_s for r in results]
    print(f"median of {args.runs} runs:")
    row(f"single signed extrinsics applied ({args.single:,})", single, "{:,.0f}/s", max, ">= 500/s",
        statistics.median(single) >= TARGET_SINGLE)
    row("calls inside Utility.batch (submit_job)", batch, "{:,.0f}/s", max, ">= 2,000/s",
        statistics.median(batch) >= TARGET_BATCH)
    row(f"read {args.jobs:,} pending jobs, cold", cold, "{:.3f} s", min, "<= 1 s",
        statistics.median(cold) <= TARGET_READ)
    row(f"read {args.jobs:,} pending jobs, warm", warm, "{:.3f} s", min, "<= 1 s",
        statistics.median(warm) <= TARGET_READ)


if __name__ == "__main__":
    main()
