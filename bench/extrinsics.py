"""Composing + signing extrinsics: the compiled builder against substrate-interface, in one process.

    .venv/bin/python bench/extrinsics.py [--runtime etrid-ray|upstream] [--single 2000] [--batches 3]

Starts an instant-seal devnet on a free loopback port (stopped by pid) only for its metadata and genesis hash:
nothing is submitted. Both paths use the same connection (whose runtime checks are cached, so neither pays a
round trip) and the same key, and are timed the way the provider's head runs them (`Submitter`):

* single: one `JobMarketplace.claim_job` composed and signed into an extrinsic, µs per extrinsic
  (`submit_result` on `--runtime upstream`, which has no `claim_job`);
* batch: 1000 such calls composed, wrapped in `Utility.batch_all` and signed, µs per inner call (etrid-ray only:
  upstream has no Utility pallet).

"new" is `Submitter` (`etrid_ray.extrinsic_builder`); "substrate-interface" is `compose_call` +
`create_signed_extrinsic` over scalecodec objects, the inner calls composed once (what `Submitter.wrap` did).
Prints the median of the repetitions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etrid_ray.chain import Call, Submitter  # noqa: E402
from etrid_ray.chain.connection import Connection  # noqa: E402
from etrid_ray.chain.keys import dev_signer  # noqa: E402
from etrid_ray.devnet.process import DevnetProcess  # noqa: E402

BATCH = 1000


def claim(i: int) -> Call:
    return Call("JobMarketplace", "claim_job", {"job_id": 1_000_000 + i, "gpu_id": i % 64})


def settle(i: int) -> Call:
    return Call("JobMarketplace", "submit_result", {"job_id": 1_000_000 + i, "result_hash": "0x" + f"{i:064x}"})


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median seconds of `repeat` runs of `fn`."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime", default="etrid-ray", choices=("etrid-ray", "upstream"))
    parser.add_argument("--single", type=int, default=2000, help="extrinsics per single-call timing")
    parser.add_argument("--batches", type=int, default=3, help="repetitions of the 1000-call batch")
    args = parser.parse_args()
    with DevnetProcess(block_time=0, extra_args=["--runtime", args.runtime]) as devnet:
        conn = Connection(devnet.url)
        submitter = Submitter(conn, dev_signer("Alice"))
        key = submitter.signer.keypair
        has_batch = conn.metadata.has_call("Utility", "batch_all")
        make = claim if conn.metadata.has_call("JobMarketplace", "claim_job") else settle

        def new_single(n: int) -> Callable[[], object]:
            return lambda: conn.run(lambda sub: [submitter._signed(sub, submitter._compose(sub, make(i)), i)
                                                 for i in range(n)])

        def old_single(n: int) -> Callable[[], object]:
            return lambda: conn.run(lambda sub: [
                sub.create_signed_extrinsic(sub.compose_call("JobMarketplace", make(i).function, make(i).params), key,
                                            nonce=i).data.data for i in range(n)])

        def new_batch() -> object:
            wrapped = submitter.wrap("batch_all", [make(i) for i in range(BATCH)])
            return conn.run(lambda sub: submitter._signed(sub, submitter._compose(sub, wrapped), 7))

        def old_batch() -> object:
            def run(sub):  # noqa: ANN001, ANN202 - substrate-interface's own objects
                inner = [sub.compose_call("JobMarketplace", make(i).function, make(i).params) for i in range(BATCH)]
                batch = sub.compose_call("Utility", "batch_all", {"calls": inner})
                return sub.create_signed_extrinsic(batch, key, nonce=7).data.data
            return conn.run(run)

        assert conn.run(submitter.builder) is not None, "the builder does not build this runtime's extrinsics"
        new_single(50)(), old_single(20)()  # warm: compiled encoders, scalecodec's type caches
        old_n = max(args.single // 10, 50)
        single_new = timed(new_single(args.single), 3) / args.single * 1e6
        single_old = timed(old_single(old_n), 3) / old_n * 1e6
        print(f"runtime {args.runtime}: µs per extrinsic, composed + signed")
        print(f"  single {make(0).function:<20} new {single_new:8.1f}   substrate-interface {single_old:8.1f}"
              f"   ({single_old / single_new:.1f}x)")
        if has_batch:
            new_batch(), old_batch()
            batch_new = timed(new_batch, args.batches) / BATCH * 1e6
            batch_old = timed(old_batch, args.batches) / BATCH * 1e6
            print(f"  per call in a {BATCH}-call batch_all  new {batch_new:8.1f}   substrate-interface "
                  f"{batch_old:8.1f}   ({batch_old / batch_new:.1f}x)")
        else:
            print("  (no Utility pallet on this runtime: no batch)")
        conn.close()


if __name__ == "__main__":
    main()
