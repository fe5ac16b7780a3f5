"""`python -m etrid_ray.devnet`: the devnet without the rest of the CLI."""

from __future__ import annotations

import argparse

from etrid_ray.devnet.server import DEFAULT_BLOB_LIMIT, main_from_cli


def main() -> None:
    parser = argparse.ArgumentParser(prog="etrid-ray devnet", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9944, help="0 picks a free port (printed on start)")
    parser.add_argument("--block-time", type=float, default=6.0, help="seconds; 0 = a block per batch")
    parser.add_argument("--data-dir", default=None, help="persist state here (SQLite); default ephemeral")
    parser.add_argument("--blob-limit-mb", type=float, default=DEFAULT_BLOB_LIMIT / (1024 * 1024))
    parser.add_argument("--confirm-window", type=int, default=None, help="blocks before auto-confirm")
    parser.add_argument("--timeout-grace", type=int, default=None,
                        help="seconds past max_compute_time before a Processing job times out (default 30)")
    args = parser.parse_args()
    main_from_cli(args.host, args.port, args.block_time, args.data_dir, int(args.blob_limit_mb * 1024 * 1024),
                  args.confirm_window, args.timeout_grace)


if __name__ == "__main__":
    main()
