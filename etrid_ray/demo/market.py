"""Several providers competing for one chain's queue: `etrid-ray demo --providers N` and `bench/market.py`.

Each provider is its own process, as on separate machines: own account (own key, own GPUs registered and staked
on chain), own price, own journal, own local Ray cluster (token auth on) and head; each is stopped by its pid.
One consumer submits bursts of jobs whose pay spreads across the providers' prices, so a cheaper provider can
take jobs a dearer one skips. What it measures is what a market needs: every job served and settled by exactly
one provider, how many claim attempts lost (and in which block), each provider's share, earnings and wait.
"""

from __future__ import annotations

import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on loopback only
os.environ.setdefault("RAY_AUTH_MODE", "token")  # read by Ray when first imported: each provider's Ray has token auth
import json
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from etrid_ray.blobs import open_blob_store
from etrid_ray.chain import ChainClient, dev_signer
from etrid_ray.chain.events import events_in_range
from etrid_ray.chain.models import JobStatus
from etrid_ray.config import load_config
from etrid_ray.devnet.process import DevnetProcess
from etrid_ray.percentiles import percentile
from etrid_ray.provider.head import ProviderHead
from etrid_ray.provider.journal import Journal
from etrid_ray.ray_auth import use_token
from etrid_ray.units import PLANCK_PER_EDSC

BASE_PRICE = 10**14  # planck per GPU-second the cheapest provider asks
PRICE_STEP = 0.15  # each further provider asks 15 % more than the one before
FUNDS_EDSC = 10_000  # each provider account's funding: its GPUs' stake and fees
GPUS_PER_PROVIDER = 2
JOB_LIMIT_S = 60  # each job's max_compute_time
CONFIRM_WINDOW = 3


@dataclass
class ProviderShare:
    name: str
    address: str
    price: int
    served: int = 0
    claimed: int = 0
    lost: int = 0
    earnings_planck: int = 0
    waits: list[float] = field(default_factory=list)

    @property
    def wait_p50(self) -> float:
        return percentile(self.waits, 50) if self.waits else float("nan")


@dataclass
class MarketResult:
    providers: list[ProviderShare]
    jobs: int
    completed: int
    served_twice: int
    unserved: int
    elapsed_s: float

    @property
    def claim_attempts(self) -> int:
        return sum(p.claimed + p.lost for p in self.providers)

    @property
    def lost(self) -> int:
        return sum(p.lost for p in self.providers)

    @property
    def lost_share(self) -> float:
        return self.lost / self.claim_attempts if self.claim_attempts else 0.0


def provider_main(argv: list[str]) -> None:
    """One competing provider (`python -m etrid_ray.demo.market URL NAME PRICE JOURNAL OUT`): its own Ray, its own
    head; on SIGTERM it writes its head's final status to OUT (JSON) and stops."""
    url, name, price, journal, out = argv
    use_token()
    import ray

    ray.init(address="local", num_cpus=1, num_gpus=GPUS_PER_PROVIDER, include_dashboard=False,
             logging_level="ERROR", log_to_driver=False)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    config = load_config(env={}, overrides={
        "websocket_url": url, "rpc_url": url.replace("ws://", "http://", 1), "PRICE_PER_SECOND": int(price),
        "gpus": {"count": GPUS_PER_PROVIDER}, "journal_path": journal,
        "heartbeat_interval_s": 30, "telemetry_interval_s": 30, "poll_interval_s": 0.1})
    head = ProviderHead(config, dev_signer(name), journal=Journal(config.journal_file)).start()
    print("ready", flush=True)
    stop.wait()
    Path(out).write_text(json.dumps({"address": head.chain.address, **head.status(True).as_dict(True)}))
    head.stop()
    ray.shutdown()


def run_market(providers: int = 3, jobs: int = 120, *, block_time: float = 1.0, bursts: int = 4,
               job_s: float = 2.0, rng_seed: int = 7, timeout_s: float = 300.0) -> MarketResult:
    """Runs `providers` provider processes against one devnet of `block_time` blocks and about `jobs` jobs in
    `bursts` bursts (rounded to whole tiers: one per provider's price)."""
    rng = random.Random(rng_seed)
    workdir = Path(tempfile.mkdtemp(prefix="etrid-market-"))
    names = [f"market-provider-{i}" for i in range(providers)]
    prices = [int(BASE_PRICE * (1 + PRICE_STEP) ** i) for i in range(providers)]
    started = time.monotonic()
    # the chain pays a provider when the consumer confirms or CONFIRM_WINDOW blocks after the result: the latter here
    with DevnetProcess(block_time=block_time, extra_args=["--confirm-window", str(CONFIRM_WINDOW)]) as devnet:
        client = ChainClient(devnet.url)
        client.fund(dev_signer("Alice"), [dev_signer(n).address for n in names], FUNDS_EDSC * PLANCK_PER_EDSC)
        procs: list[subprocess.Popen[str]] = []
        outs = [workdir / f"{n}.json" for n in names]
        try:
            for name, price, out in zip(names, prices, outs, strict=True):
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "etrid_ray.demo.market", devnet.url, name, str(price),
                     str(workdir / f"{name}.sqlite"), str(out)], stdout=subprocess.PIPE, text=True,
                    start_new_session=True))
            for proc in procs:
                assert proc.stdout is not None
                if proc.stdout.readline().strip() != "ready":
                    raise RuntimeError(f"a provider process (pid {proc.pid}) exited before its head started")
            consumer = client.consumer(dev_signer("Charlie"), blobs=open_blob_store(devnet.http_url))
            ids: list[int] = []
            # each burst: for every provider's price a tier of jobs paying just above it, so the cheapest provider
            # may take every tier and the dearest only its own
            tiers = [int(price * 1.05) for price in prices]
            per_tier = max(1, jobs // (bursts * providers))
            manifest = {"handler": "sleep", "args": {"seconds": job_s}, "resources": {"gpus": 1}}
            for _ in range(bursts):
                for rate in rng.sample(tiers, len(tiers)):
                    for sj in consumer.submit_jobs([manifest] * per_tier, payment=rate * JOB_LIMIT_S,
                                                   max_compute_time=JOB_LIMIT_S):
                        ids.append(sj.job_id)
                time.sleep(max(2.0, 4 * block_time))
            deadline = time.monotonic() + timeout_s
            final: dict[int, Any] = {}
            while time.monotonic() < deadline and len(final) < len(ids):
                for job_id, job in consumer.reader.jobs([j for j in ids if j not in final]).items():
                    if job.status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED):
                        final[job_id] = job
                time.sleep(0.5)
            time.sleep((CONFIRM_WINDOW + 2) * block_time)  # the last payments
            events = events_in_range(client.conn, 1, client.conn.best_number())
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            client.close()
    statuses = [json.loads(out.read_text()) for out in outs if out.exists()]
    if len(statuses) != providers:
        raise RuntimeError(f"{providers - len(statuses)} provider process(es) wrote no final status")
    return _tally(names, prices, statuses, events, ids, final, time.monotonic() - started)


def _tally(names: list[str], prices: list[int], statuses: list[dict[str, Any]], events: list[Any], ids: list[int],
           final: dict[int, Any], elapsed: float) -> MarketResult:
    """Who served what, from each head's own final status and from the chain's events (payments, completions)."""
    shares = {st["address"]: ProviderShare(n, st["address"], p) for n, p, st in zip(names, prices, statuses,
                                                                                    strict=True)}
    completions: Counter[int] = Counter()
    for e in events:
        if e.is_("JobMarketplace", "JobCompleted"):
            completions[int(e.get("job_id"))] += 1
        elif e.is_("JobMarketplace", "PaymentReleased") and str(e.get("provider")) in shares:
            shares[str(e.get("provider"))].earnings_planck += int(e.get("amount"))
    for st in statuses:
        share = shares[st["address"]]
        share.claimed, share.lost = int(st["claimed"]), int(st["lost_claims"])
        share.waits = [float(w) for w in st.get("waits", [])]
        share.served = int(st["completed"]) + sum(int(n) for n in st["failed"].values())
    completed = sum(1 for j in final.values() if j.status == JobStatus.COMPLETED)
    return MarketResult(list(shares.values()), len(ids), completed, sum(1 for n in completions.values() if n > 1),
                        len(ids) - len(final), elapsed)


def market_table(result: MarketResult) -> Table:
    table = Table(title=f"{len(result.providers)} providers, {result.jobs} jobs: {result.completed} completed, "
                        f"{result.served_twice} served twice, {result.unserved} unserved; claim attempts lost "
                        f"{result.lost}/{result.claim_attempts} ({result.lost_share:.1%})")
    for col in ("provider", "price (planck/GPU-s)", "share", "served", "claims won", "claims lost",
                "earnings (ËDSC)", "wait p50 (s)"):
        table.add_column(col, justify="left" if col == "provider" else "right")
    total = sum(p.served for p in result.providers) or 1
    for p in result.providers:
        table.add_row(p.name, f"{p.price:.3g}", f"{p.served / total:.0%}", str(p.served), str(p.claimed),
                      str(p.lost), f"{p.earnings_planck / PLANCK_PER_EDSC:.3f}", f"{p.wait_p50:.2f}")
    return table


if __name__ == "__main__":
    provider_main(sys.argv[1:])
