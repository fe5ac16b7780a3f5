"""`etrid-ray devnet`: the embedded development chain."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("devnet")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option(
    "--port",
    default=9944,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="RPC port (WebSocket and HTTP); 0 picks a free one",
)
@click.option(
    "--block-time",
    default=6.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="seconds between blocks; 0 seals a block per ready batch of extrinsics",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="persist chain state here (SQLite); without it the chain is ephemeral",
)
@click.option("--blob-limit-mb", default=64.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="largest blob the built-in blob store accepts")
@click.option("--blob-store-mb", default=256.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="all blobs of the in-memory store together (without --data-dir); full: HTTP 507")
@click.option("--max-uploads", default=4, show_default=True, type=click.IntRange(min=1),
              help="blob uploads read at once (bodies stream to a temp file); more: HTTP 503")
@click.option("--max-request-mb", default=16.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="largest JSON-RPC request (HTTP body or WebSocket frame), refused while it is read")
@click.option("--max-response-mb", default=16.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="largest JSON-RPC answer, a whole batch's; bigger: error -32008")
@click.option("--max-batch", default=1000, show_default=True, type=click.IntRange(min=1),
              help="requests in one JSON-RPC batch")
@click.option("--max-subscriptions", default=1024, show_default=True, type=click.IntRange(min=1),
              help="subscriptions per WebSocket connection; more: error -32006")
@click.option("--max-queued-mb", default=16.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="unsent output per connection; a client that lets more pile up is disconnected")
@click.option("--max-connections", default=100, show_default=True, type=click.IntRange(min=1),
              help="open WebSocket connections; more: HTTP 503")
@click.option("--idle-timeout", default=15.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="seconds for a request's headers to arrive, and for an idle HTTP connection to live")
@click.option("--request-timeout", default=30.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="seconds for an RPC body to arrive (and the longest pause inside a blob upload)")
@click.option(
    "--confirm-window",
    type=click.IntRange(min=1),
    default=None,
    help="blocks after a result before the job auto-confirms (devnet default when omitted)",
)
@click.option(
    "--timeout-grace",
    type=click.IntRange(min=0),
    default=None,
    help="seconds past max_compute_time before a Processing job times out and is refunded",
)
@click.option("--runtime", type=click.Choice(["etrid-ray", "upstream"]), default="etrid-ray", show_default=True,
              help="upstream: the Etrid AI-Compute runtime's shape exactly (indices, calls, errors, constants, no "
                   "Utility, no claim_job); etrid-ray: that shape with the devnet's extensions appended")
@click.option("--assigner", is_flag=True, default=False,
              help="built-in matcher standing in for upstream's off-chain worker: each block, root assign_job of "
                   "pending jobs (Premium first, then queue order) to the least-busy Active GPU")
@click.option("--assigner-slots", default=4, show_default=True, type=click.IntRange(min=1),
              help="with --assigner: Processing jobs per GPU the matcher fills")
def devnet(
    host: str,
    port: int,
    block_time: float,
    data_dir: Path | None,
    blob_limit_mb: float,
    blob_store_mb: float,
    max_uploads: int,
    max_request_mb: float,
    max_response_mb: float,
    max_batch: int,
    max_subscriptions: int,
    max_queued_mb: float,
    max_connections: int,
    idle_timeout: float,
    request_timeout: float,
    confirm_window: int | None,
    timeout_grace: int | None,
    runtime: str,
    assigner: bool,
    assigner_slots: int,
) -> None:
    """Run the embedded Etrid AI-Compute development chain (prints its ws:// URL when ready).

    The limits below keep one misbehaving client from stopping everyone else: requests are refused by
    size and count before they are parsed or decoded (an extrinsic's signature and its batch length are
    checked before its calls are decoded), answers and per-connection output are capped, half-sent
    requests time out. Unsigned or badly signed extrinsics never cost more than reading their envelope.
    """
    from etrid_ray.devnet.server import Limits, main_from_cli

    extra = {}
    if confirm_window is not None:
        extra["confirm_window_blocks"] = confirm_window
    if timeout_grace is not None:
        extra["timeout_grace_secs"] = timeout_grace
    limits = Limits.from_options(
        max_request_mb=max_request_mb, max_response_mb=max_response_mb, max_batch=max_batch,
        max_subscriptions=max_subscriptions, max_queued_mb=max_queued_mb, max_connections=max_connections,
        blob_limit_mb=blob_limit_mb, blob_store_mb=blob_store_mb, max_uploads=max_uploads,
        idle_timeout=idle_timeout, request_timeout=request_timeout)
    main_from_cli(host, port, block_time, str(data_dir) if data_dir else None, limits.blob_limit, limits=limits,
                  runtime=runtime, assigner_slots=assigner_slots if assigner else 0, **extra)
