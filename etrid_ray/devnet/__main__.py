"""`python -m etrid_ray.devnet`: the devnet without the rest of the CLI."""

from __future__ import annotations

import argparse

from etrid_ray.devnet.assigner import DEFAULT_SLOTS
from etrid_ray.devnet.pallet import ETRID_RAY, FLAVOURS
from etrid_ray.devnet.server import Limits, main_from_cli

LIMIT_OPTIONS = (  # (option, type, default, help): the same limits and defaults as `etrid-ray devnet`
    ("--max-request-mb", float, 16, "largest JSON-RPC request: HTTP body or WebSocket frame"),
    ("--max-response-mb", float, 16, "largest JSON-RPC answer (a whole batch's); bigger ones get -32008"),
    ("--max-batch", int, 1000, "requests in one JSON-RPC batch"),
    ("--max-subscriptions", int, 1024, "subscriptions per WebSocket connection"),
    ("--max-queued-mb", float, 16, "unsent output per connection before a client that does not read is dropped"),
    ("--max-connections", int, 100, "open WebSocket connections"),
    ("--blob-limit-mb", float, 64, "largest blob"),
    ("--blob-store-mb", float, 256, "all blobs of the in-memory store (without --data-dir)"),
    ("--max-uploads", int, 4, "blob uploads read at once"),
    ("--idle-timeout", float, 15.0, "seconds for request headers to arrive, and an idle HTTP connection lives"),
    ("--request-timeout", float, 30.0, "seconds for an RPC body to arrive (and a blob body's longest pause)"),
)


def main() -> None:
    parser = argparse.ArgumentParser(prog="etrid-ray devnet", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9944, help="0 picks a free port (printed on start)")
    parser.add_argument("--block-time", type=float, default=6.0, help="seconds; 0 = a block per batch")
    parser.add_argument("--data-dir", default=None, help="persist state here (SQLite); default ephemeral")
    for option, kind, default, text in LIMIT_OPTIONS:
        parser.add_argument(option, type=kind, default=default, help=f"{text} (default {default})")
    parser.add_argument("--confirm-window", type=int, default=None, help="blocks before auto-confirm")
    parser.add_argument("--timeout-grace", type=int, default=None,
                        help="seconds past max_compute_time before a Processing job times out (default 30)")
    parser.add_argument("--runtime", choices=FLAVOURS, default=ETRID_RAY,
                        help="upstream: Etrid's AI-Compute runtime exactly; etrid-ray: with the devnet's extensions")
    parser.add_argument("--assigner", action="store_true",
                        help="built-in matcher: root assign_job of pending jobs to GPUs every block (assigner.py)")
    parser.add_argument("--assigner-slots", type=int, default=DEFAULT_SLOTS,
                        help=f"with --assigner: Processing jobs per GPU it fills (default {DEFAULT_SLOTS})")
    args = parser.parse_args()
    try:
        limits = Limits.from_options(**{o[2:].replace("-", "_"): getattr(args, o[2:].replace("-", "_"))
                                        for o, *_ in LIMIT_OPTIONS})
    except ValueError as err:
        parser.error(str(err))
    main_from_cli(args.host, args.port, args.block_time, args.data_dir, limits.blob_limit,
                  args.confirm_window, args.timeout_grace, limits=limits, runtime=args.runtime,
                  assigner_slots=args.assigner_slots if args.assigner else 0)


if __name__ == "__main__":
    main()
