"""Target R8 and issue 16's market: several providers (own keys, prices, journals, heads) on one devnet of 1 s
blocks, sharing one local Ray cluster. Prints, for 3 and for 10 providers: jobs served twice (must be 0),
unserved, the share of claim attempts lost, and each provider's share, earnings and wait.

    .venv/bin/python bench/market.py [--providers 3 10] [--jobs 120]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etrid_ray.demo.market import market_table, run_market  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--providers", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--jobs", type=int, default=120)
    args = parser.parse_args()
    console = Console(width=140)
    for n in args.providers:
        result = run_market(n, args.jobs)
        console.print(market_table(result))
        console.print(f"providers={n}: lost claim share {result.lost_share:.1%} "
                      f"({result.lost} of {result.claim_attempts} attempts); served twice {result.served_twice}; "
                      f"unserved {result.unserved}; {result.elapsed_s:.0f} s")


if __name__ == "__main__":
    main()
