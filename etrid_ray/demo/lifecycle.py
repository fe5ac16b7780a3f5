"""``make demo``: one job's whole life on a fresh devnet, printed step by step.

Starts ``etrid-ray devnet`` as a subprocess on a free loopback port, then:
//Bob registers a GPU, //Charlie stores a manifest and submits a job, Bob
claims it, stores a result and submits its hash, Charlie confirms, and Bob is
paid. Each step prints its block number and the balances it moved; the devnet
is stopped by its pid at the end (also on errors and Ctrl-C).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from etrid_ray.blobs import blob_hash, open_blob_store
from etrid_ray.chain import ChainClient, GpuSpecs, HardwareAttestation, dev_signer, format_edsc, to_planck
from etrid_ray.processes import terminate


@contextmanager
def running_devnet(
    startup_timeout: float = 60.0, *, port: int = 0, data_dir: str | None = None, block_time: float = 0
) -> Iterator[tuple[str, int]]:
    """Runs ``python -m etrid_ray.devnet`` on loopback (``--port 0``: a free port); yields ``(ws_url, pid)``."""
    log_path = Path(tempfile.mkstemp(prefix="etrid-devnet-", suffix=".log")[1])
    log = log_path.open("wb")
    args = ["--host", "127.0.0.1", "--port", str(port), "--block-time", str(block_time)]
    if data_dir is not None:
        args += ["--data-dir", data_dir]
    proc = subprocess.Popen(
        [sys.executable, "-m", "etrid_ray.devnet", *args],
        stdout=subprocess.PIPE,
        stderr=log,
        stdin=subprocess.DEVNULL,
    )
    url: list[str] = []
    ready = threading.Event()

    def read_url() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").strip()
            if line.startswith("ws://") and not url:
                url.append(line)
                ready.set()
        ready.set()

    threading.Thread(target=read_url, daemon=True).start()
    try:
        if not ready.wait(startup_timeout) or not url:
            raise RuntimeError(f"the devnet did not print its URL within {startup_timeout:.0f}s; log: {log_path}")
        yield url[0], proc.pid
    finally:
        terminate(proc, 10, kill_wait_s=5)
        log.close()


def main() -> int:
    bob, charlie = dev_signer("Bob"), dev_signer("Charlie")
    with running_devnet() as (url, pid), ChainClient(url) as client:
        info = client.info()
        print(f"devnet {info.chain!r} ({info.spec_name} v{info.spec_version}) at {url}, pid {pid}")
        print(f"pallets: {', '.join(info.pallets)}")
        blobs = open_blob_store(url)
        provider = client.provider(bob)
        consumer = client.consumer(charlie, blobs)

        def balances(label: str) -> None:
            for name, who in (("Bob (provider)", bob), ("Charlie (consumer)", charlie)):
                b = client.balance(who.address)
                free, reserved = format_edsc(b.free, places=6), format_edsc(b.reserved, places=6)
                print(f"    {label:>8} {name:<19} free {free:>30}  reserved {reserved}")

        balances("genesis")

        specs = GpuSpecs("A100", 80, compute_units=108, clock_speed_mhz=1410, tdp_watts=400)
        stake = to_planck(100)
        gpu_id = provider.register_gpu(specs, stake, HardwareAttestation(b"demo-quote", 9000, int(time.time())))
        print(
            f"\n1. Bob registered GPU {gpu_id} ({specs.model}, {specs.vram_gb} GB), "
            f"staking {format_edsc(stake)} — block #{client.conn.best_number()}"
        )
        balances("after")

        manifest = {
            "handler": "matmul",
            "args": {"n": 256},
            "resources": {"gpus": 1, "min_vram_gb": 16},
            "timeout_s": 60,
        }
        payment = to_planck(10)
        job = consumer.submit_job(manifest, payment=payment, max_compute_time=60)
        print(
            f"\n2. Charlie stored manifest {job.input_hash[:18]}… in {blobs.url} and submitted job {job.job_id}, "
            f"escrowing {format_edsc(payment)} — block #{job.receipt.block_number}"
        )
        print(f"   pending queue: {client.reader.pending_job_ids()}")
        balances("after")

        claimed = provider.claim(job.job_id, gpu_id)
        print(
            f"\n3. Bob claimed job {job.job_id} for GPU {claimed.assigned_gpu}: status {claimed.status} "
            f"— block #{client.conn.best_number()}"
        )
        fetched = json.loads(blobs.get(claimed.input_hash))
        print(f"   fetched and verified the manifest: handler {fetched['handler']!r}")

        result = json.dumps({"job_id": job.job_id, "checksum": 65536.0}).encode()
        result_hash = blobs.put(result)
        assert result_hash == blob_hash(result)
        r = provider.submit_result(job.job_id, result_hash)
        print(f"\n4. Bob stored the result and submitted its hash {result_hash[:18]}… — block #{r.block_number}")

        r = consumer.confirm_job(job.job_id)
        paid = r.first("JobMarketplace", "PaymentReleased")
        amount = int(paid.get("amount")) if paid else 0
        print(f"\n5. Charlie confirmed job {job.job_id} — block #{r.block_number}")
        print(
            f"   PaymentReleased to {paid.get('provider') if paid else '?'}: {format_edsc(amount)} "
            f"(fee {format_edsc(payment - amount)}, {(payment - amount) * 10_000 // payment} bps)"
        )
        balances("after")

        final = consumer.job(job.job_id)
        print(
            f"\njob {job.job_id}: {final.status if final else '?'}; result verified: "
            f"{consumer.fetch_result(final) == result if final else False}"
        )
        print(f"Bob's earnings on chain: {[(p.job_id, format_edsc(p.amount)) for p in provider.earnings()]}")
    print(f"devnet (pid {pid}) stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
