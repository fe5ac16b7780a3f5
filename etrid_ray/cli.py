"""``etrid-ray``: the command line (devnet, chain info, provider registration, job submission).

Why these rules: secrets come only from ``ETRID_SEED`` or ``--seed-file`` (a
path on argv is fine, a seed is not); every configuration mistake exits with a
message that names the option and the fix instead of a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from etrid_ray.chain.errors import (
    ChainConnectionError,
    ChainError,
    ConfigError,
    ExtrinsicFailed,
    KeyLoadError,
)
from etrid_ray.clouds.registry import notice_clouds

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_URL = "ws://127.0.0.1:9944"
URL_HELP = "node WebSocket URL (env ETRID_WS_URL)"
SEED_FILE_HELP = "file holding the seed phrase or //Dev URI (default: the ETRID_SEED env var)"


def _friendly(fn: F) -> F:
    """Turns the client's typed errors into one clear line and a non-zero exit, never a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from etrid_ray.blobs import BlobError

        try:
            return fn(*args, **kwargs)
        except KeyLoadError as exc:
            raise click.UsageError(str(exc)) from None
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None
        except ChainConnectionError as exc:
            raise click.ClickException(f"{exc}\n  check --url, or start a devnet: etrid-ray devnet") from None
        except ExtrinsicFailed as exc:
            raise click.ClickException(f"the chain rejected {exc.call or 'the call'}: {exc.error}") from None
        except BlobError as exc:
            raise click.ClickException(f"blob store: {exc}") from None
        except ChainError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def _signer(seed_file: str | None, *, required: bool = True) -> Any:
    from etrid_ray.chain.keys import load_signer

    if not required:
        try:
            return load_signer(file=seed_file)
        except KeyLoadError:
            if seed_file is not None:
                raise
            return None
    return load_signer(file=seed_file)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="etrid-ray", prog_name="etrid-ray")
def main() -> None:
    """Ray-based GPU provider for the Etrid AI-Compute chain, with an embedded devnet."""


# devnet -----------------------------------------------------------------------------------------
@main.command()
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
                  **extra)


# chain ------------------------------------------------------------------------------------------
@main.group()
def chain() -> None:
    """Inspect the chain."""


@chain.command("info")
@click.option("--url", default=DEFAULT_URL, envvar="ETRID_WS_URL", show_default=True, help=URL_HELP)
@click.option("--address", "addresses", multiple=True, help="also show this account's balance (repeatable)")
@click.option("--seed-file", type=click.Path(dir_okay=False), default=None, help=SEED_FILE_HELP)
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
@_friendly
def chain_info(url: str, addresses: tuple[str, ...], seed_file: str | None, as_json: bool) -> None:
    """Chain name, runtime, best/finalized block, pallets, and balances of our account."""
    from etrid_ray.chain.client import ChainClient
    from etrid_ray.chain.codec import account_bytes
    from etrid_ray.chain.units import format_edsc

    for a in addresses:
        try:
            account_bytes(a)
        except Exception:  # noqa: BLE001 - any decoding failure means the same thing to the user
            raise click.BadParameter(f"{a!r} is not an SS58 address", param_hint="--address") from None
    signer = _signer(seed_file, required=False)
    with ChainClient(url) as client:
        info = client.info()
        accounts: list[tuple[str, str]] = []
        if signer is not None:
            accounts.append(("ours", signer.address))
        accounts.extend(("--address", a) for a in addresses)
        balances = [(label, client.balance(a)) for label, a in accounts]
    if as_json:
        data = asdict(info)
        data["balances"] = [{"label": label, **asdict(b)} for label, b in balances]
        _print_json(data)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{info.chain} ({info.url})", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    table.add_row("runtime", f"{info.spec_name} v{info.spec_version}")
    table.add_row("best block", f"#{info.best_number} {info.best_hash}")
    table.add_row("finalized block", f"#{info.finalized_number}")
    table.add_row("token", f"{info.token_symbol} ({info.token_decimals} decimals), SS58 prefix {info.ss58_format}")
    table.add_row("pallets", ", ".join(info.pallets))
    console.print(table)
    if balances:
        bt = Table(title="balances")
        for col in ("account", "address", "free", "reserved", "nonce"):
            bt.add_column(col, justify="right" if col in ("free", "reserved", "nonce") else "left")
        for label, b in balances:
            bt.add_row(label, b.address, format_edsc(b.free), format_edsc(b.reserved), str(b.nonce))
        console.print(bt)
    else:
        console.print("[dim]no account: set ETRID_SEED or pass --seed-file / --address to see balances[/dim]")


# provider ---------------------------------------------------------------------------------------
@main.group()
def provider() -> None:
    """Act as a GPU provider."""


@provider.command("register")
@click.option("--url", default=DEFAULT_URL, envvar="ETRID_WS_URL", show_default=True, help=URL_HELP)
@click.option("--gpus", default=1, show_default=True, type=click.IntRange(1, 100), help="how many GPUs to register")
@click.option("--model", required=True, help="GPU model, e.g. A100 (at most 64 bytes)")
@click.option("--vram-gb", required=True, type=click.IntRange(1, 65535), help="memory per GPU in GB")
@click.option("--compute-units", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1))
@click.option("--clock-mhz", default=0, show_default=True, type=click.IntRange(0, 65535))
@click.option("--tdp-watts", default=0, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--benchmark-score",
    default=1000,
    show_default=True,
    type=click.IntRange(1, 2**32 - 1),
    help="measured benchmark score put in the hardware attestation",
)
@click.option("--stake", required=True, help="stake per GPU in ËDSC (minimum 100), e.g. 100 or 250.5")
@click.option("--schedule", type=click.Choice(["AlwaysOn", "BusinessHours"]), default="AlwaysOn", show_default=True)
@click.option("--seed-file", type=click.Path(dir_okay=False), default=None, help=SEED_FILE_HELP)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@_friendly
def provider_register(
    url: str,
    gpus: int,
    model: str,
    vram_gb: int,
    compute_units: int,
    clock_mhz: int,
    tdp_watts: int,
    benchmark_score: int,
    stake: str,
    schedule: str,
    seed_file: str | None,
    as_json: bool,
) -> None:
    """Register GPUs on chain (reserving the stake) and print their ids."""
    import time

    from etrid_ray.chain.client import ChainClient
    from etrid_ray.chain.models import GpuSpecs, HardwareAttestation, Schedule
    from etrid_ray.chain.units import format_edsc, to_planck

    if len(model.encode("utf-8")) > 64:
        raise click.BadParameter("at most 64 bytes", param_hint="--model")
    stake_planck = to_planck(stake, what="--stake")
    if stake_planck == 0:
        raise click.BadParameter("must be positive (the chain's minimum stake is 100 ËDSC)", param_hint="--stake")
    signer = _signer(seed_file)
    specs = GpuSpecs(model, vram_gb, compute_units, clock_mhz, tdp_watts)
    attestation = HardwareAttestation(b"", benchmark_score, int(time.time()))
    with ChainClient(url) as client:
        prov = client.provider(signer)
        if gpus == 1:
            ids = [prov.register_gpu(specs, stake_planck, attestation, Schedule(schedule))]
        else:
            ids = prov.register_gpus([(specs, stake_planck)] * gpus, attestation, Schedule(schedule))
        bal = prov.balance()
    if as_json:
        _print_json(
            {
                "provider": signer.address,
                "gpu_ids": ids,
                "stake_per_gpu": str(stake_planck),
                "free": str(bal.free),
                "reserved": str(bal.reserved),
            }
        )
        return
    click.echo(f"registered {len(ids)} GPU(s) for {signer.address}: ids {', '.join(map(str, ids))}")
    click.echo(
        f"stake {format_edsc(stake_planck)} each; free {format_edsc(bal.free)}, reserved {format_edsc(bal.reserved)}"
    )


# submit -----------------------------------------------------------------------------------------
@main.command()
@click.option("--url", default=DEFAULT_URL, envvar="ETRID_WS_URL", show_default=True, help=URL_HELP)
@click.option(
    "--manifest",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="job manifest (JSON) to store and hash",
)
@click.option("--payment", required=True, help="payment in ËDSC, escrowed until the job is confirmed")
@click.option("--max-compute-time", required=True, type=click.IntRange(1, 2**32 - 1), help="seconds")
@click.option(
    "--blob-store",
    default=None,
    help="where to store the manifest: http://…, file://DIR or s3://BUCKET/PREFIX "
    "(default: the devnet's store on the --url host:port)",
)
@click.option(
    "--model-type",
    default="Custom",
    show_default=True,
    type=click.Choice(["LLM", "ImageGen", "ImageRecognition", "AudioProcessing", "VideoProcessing", "Custom"]),
)
@click.option("--model-id", default=0, show_default=True, type=click.IntRange(0, 2**64 - 1))
@click.option(
    "--priority", default="Standard", show_default=True, type=click.Choice(["Economy", "Standard", "Premium"])
)
@click.option("--output-format", default="json", show_default=True, help="at most 32 bytes")
@click.option("--seed-file", type=click.Path(dir_okay=False), default=None, help=SEED_FILE_HELP)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@_friendly
def submit(
    url: str,
    manifest: Path,
    payment: str,
    max_compute_time: int,
    blob_store: str | None,
    model_type: str,
    model_id: int,
    priority: str,
    output_format: str,
    seed_file: str | None,
    as_json: bool,
) -> None:
    """Store a job manifest, submit the job, and print its id."""
    from etrid_ray.blobs import open_blob_store
    from etrid_ray.chain.client import ChainClient
    from etrid_ray.chain.connection import validate_url
    from etrid_ray.chain.units import to_planck

    validate_url(url)
    payment_planck = to_planck(payment, what="--payment")
    if payment_planck == 0:
        raise click.BadParameter("must be positive", param_hint="--payment")
    if len(output_format.encode("utf-8")) > 32:
        raise click.BadParameter("at most 32 bytes", param_hint="--output-format")
    data = manifest.read_bytes()
    try:
        json.loads(data)
    except ValueError as exc:
        raise click.BadParameter(f"{manifest} is not JSON ({exc})", param_hint="--manifest") from None
    try:
        store = open_blob_store(blob_store or url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--blob-store") from None
    signer = _signer(seed_file)
    with ChainClient(url) as client:
        job = client.consumer(signer, store).submit_job(
            data,
            payment=payment_planck,
            max_compute_time=max_compute_time,
            model_id=model_id,
            model_type=model_type,
            output_format=output_format,
            priority=priority,
        )
    if as_json:
        _print_json(
            {
                "job_id": job.job_id,
                "input_hash": job.input_hash,
                "payment": str(job.payment),
                "block": job.receipt.block_number,
                "submitter": signer.address,
                "blob_store": store.url,
            }
        )
        return
    click.echo(job.job_id)
    click.echo(
        f"input_hash {job.input_hash} stored in {store.url}; included in block #{job.receipt.block_number}",
        err=True,
    )


def _prepare_ray(*, starts_cluster: bool) -> None:
    """Token auth set up before Ray is imported (Ray reads RAY_AUTH_MODE once, at import). A Ray this
    command starts itself listens on loopback only: it is one machine's, and Ray would otherwise bind the
    first interface (and `ray.init(_node_ip_address="127.0.0.1")` is turned back into that address)."""
    from etrid_ray.ray_auth import RayAuthError, prepare_driver

    if starts_cluster:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        prepare_driver(starts_cluster=starts_cluster)
    except RayAuthError as exc:
        raise click.UsageError(str(exc)) from None


@provider.command("run")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="provider config (YAML or JSON); env ETRID_* settings override it")
@click.option("--address", default=None, help="Ray cluster address (default: ray_address from the config, "
              "else a local Ray with the config's GPUs)")
@click.option("--run-for", type=float, default=None, help="stop after this many seconds (default: until SIGTERM)")
@click.option("--status-every", type=float, default=10.0, show_default=True)
@click.option("--detach", is_flag=True, help="run the head under a Ray Job on the cluster and return "
              "(needs --address/ray_address); stop it with `etrid-ray provider stop`")
@click.option("--now", is_flag=True, help="on stop, fail in-flight jobs on chain at once instead of finishing them")
@_friendly
def provider_run(config_path: str | None, address: str | None, run_for: float | None, status_every: float,
                 detach: bool, now: bool) -> None:
    """Run the provider head (a Ray actor this command owns) against the chain in the config.

    Ctrl-C or SIGTERM drains it: no new claims, in-flight jobs finish and are settled, then it stops
    (a second Ctrl-C fails them at once). Without a Ray address it starts a local Ray that advertises
    the config's GPUs (simulated without an NVIDIA driver). The signing key comes from the env var the
    config names (ETRID_SEED by default) or its seed_file — on a remote cluster, on its head node.
    """
    from etrid_ray.chain.keys import load_signer
    from etrid_ray.config import load_config

    config = load_config(config_path)
    if detach and run_for is not None:
        raise click.UsageError("--run-for applies to the foreground only: drop it, or drop --detach")
    local = not (address or config.ray_address)
    if detach and local:
        raise click.UsageError("--detach needs a running Ray cluster that outlives this command: set --address or "
                               "ray_address (start one with `ray start --head`), or run in the foreground")
    if local:
        # the head will run here, on a Ray this command starts: the key must be here (fail fast, clearly)
        load_signer(env_var=config.seed_env, file=config.seed_file)
    _prepare_ray(starts_cluster=local)
    from etrid_ray.provider.runner import run_provider, submit_detached

    if detach:
        submit_detached(config, address, echo=click.echo)
        return
    run_provider(config, address=address, run_for=run_for, status_every=status_every, now=now, echo=click.echo)


@provider.command("stop")
@click.option("--address", default="auto", envvar="RAY_ADDRESS", show_default=True,
              help="Ray cluster address (GCS, e.g. 127.0.0.1:6379; `auto`: the cluster started on this machine)")
@click.option("--namespace", default="etrid", show_default=True, help="the head actor's Ray namespace")
@click.option("--now", is_flag=True, help="fail in-flight jobs on chain at once (\"provider going offline\") "
              "instead of letting them finish")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0), default=None,
              help="wait at most this long for in-flight jobs, then fail the rest (default: their deadlines)")
@_friendly
def provider_stop(address: str, namespace: str, now: bool, timeout_s: float | None) -> None:
    """Take the provider offline: the head claims nothing more, settles what it runs, and stays down.

    Works on a head started by `provider run` (foreground or --detach) or `ray job submit`; Ctrl-C here
    fails the jobs still in flight at once.
    """
    _prepare_ray(starts_cluster=False)
    from etrid_ray.provider.runner import stop_provider

    try:
        status = stop_provider(address, namespace, now=now, timeout=timeout_s, echo=click.echo)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"provider head stopped: {status.get('completed', 0)} completed, "
               f"{sum(status.get('failed', {}).values())} failed, {status.get('reported', 0)} settled on chain")


@main.command()
@click.option("--jobs", default=60, show_default=True, type=click.IntRange(1, 5000), help="trace jobs to replay")
@click.option("--speedup", default=600.0, show_default=True, type=click.FloatRange(1, 1e6),
              help="time compression of the Philly trace")
@click.option("--seed", default=7, show_default=True, help="picks the trace slice and the handler mix")
@click.option("--gpus", default=4, show_default=True, type=click.IntRange(1, 64), help="simulated GPUs")
@click.option("--bad", default=4, show_default=True, type=click.IntRange(0, 100), help="broken manifests to add")
@click.option("--timeout", "timeout_s", default=150.0, show_default=True, help="give up after this many seconds")
@click.option("--dashboard/--no-dashboard", default=True, show_default=True,
              help="Ray's dashboard on 127.0.0.1 (log in with the cluster's token)")
@click.option("--keep-open", is_flag=True, help="after the summary, keep the cluster up for the dashboard until Ctrl-C")
@click.option("--idle-timeout", "idle_timeout_s", default=15.0, show_default=True, type=click.FloatRange(1, 3600),
              help="idle cloud nodes go back after this many seconds (production: 300)")
def demo(jobs: int, speedup: float, seed: int, gpus: int, bad: int, timeout_s: float, dashboard: bool,
         keep_open: bool, idle_timeout_s: float) -> None:
    """Everything on one machine: devnet, local Ray with simulated GPUs, the provider, a trace replay."""
    from etrid_ray.demo import run_demo

    run_demo(jobs=jobs, speedup=speedup, seed=seed, gpus=gpus, bad=bad, timeout_s=timeout_s, dashboard=dashboard,
             keep_open=keep_open, idle_timeout_s=idle_timeout_s)


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="provider config (YAML or JSON); default: the built-in defaults")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="cluster", show_default=True,
              help="directory the manifests are written to")
@_friendly
def render(config_path: str | None, out_dir: str) -> None:
    """Write the KubeRay manifests (RayCluster, RayJob, ConfigMaps, Secret template, Namespace) for a config.

    Only the file is read (no env overrides), so the manifests do not change with the shell they are rendered in.
    """
    from etrid_ray.config import ProviderConfig, load_config
    from etrid_ray.kuberay.render import render_all

    config = load_config(config_path, env={}) if config_path else ProviderConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in render_all(config).items():
        (out / name).write_text(text)
        click.echo(f"wrote {out / name}")


@main.command("spot-watch")
@click.option("--cloud", type=click.Choice(notice_clouds()), required=True,
              help="whose notice endpoint to poll: AWS IMDSv2, GCP metadata or Azure Scheduled Events")
@click.option("--endpoint", envvar="ETRID_METADATA_ENDPOINT", default=None,
              help="metadata base URL (env ETRID_METADATA_ENDPOINT; default: the cloud's own, or "
              "AWS_EC2_METADATA_SERVICE_ENDPOINT / GCE_METADATA_HOST)")
@click.option("--interval", "interval_s", type=click.FloatRange(0.05, 300), default=2.0, show_default=True,
              help="seconds between polls")
@click.option("--request-timeout", "request_timeout_s", type=click.FloatRange(0.1, 60), default=None,
              help="seconds per metadata request (default 2, Azure 5)")
@click.option("--drain-on", "drain_on", default="terminate,maintenance,rebalance", show_default=True,
              help="notice kinds that drain the node (of terminate, maintenance, rebalance)")
@click.option("--notice-s", type=click.FloatRange(1, 3600), default=None,
              help="deadline after first sight when the cloud gives no time (default: AWS 120, GCP/Azure 30)")
@click.option("--address", default=None, help="Ray GCS address (default: RAY_ADDRESS or the local cluster)")
@click.option("--node-id", default=None, help="hex id of this instance's Ray node (default: from the pod's env)")
@click.option("--locate-timeout", "locate_timeout_s", type=click.FloatRange(0, 3600), default=300.0,
              show_default=True, help="give up finding this instance's Ray node after this")
@click.option("--poll-s", type=click.FloatRange(0.05, 60), default=1.0, show_default=True,
              help="how often to check whether the drained node has stopped")
@click.option("--linger/--exit", default=False, show_default=True,
              help="after a handled notice, stay running until terminated (a sidecar) or exit")
def spot_watch(cloud: str, endpoint: str | None, interval_s: float, request_timeout_s: float | None, drain_on: str,
               notice_s: float | None, address: str | None, node_id: str | None, locate_timeout_s: float,
               poll_s: float, linger: bool) -> None:
    """Watch this instance's spot interruption notice and drain its Ray node before the deadline.

    Runs on each cloud worker node (a sidecar of the Ray worker pod). On a notice it drains the node
    through Ray's drain API with the notice's time as deadline: no new task lands there, short tasks
    finish, the rest are re-run elsewhere by Ray. Exit status: 0 handled (or stopped), 1 no Ray node
    found in --locate-timeout, 2 nothing identifies this instance's node.
    """
    import signal
    import threading

    from etrid_ray.clouds.interruptions import DRAIN_KINDS
    from etrid_ray.clouds.interruptions.watcher import run_spot_watch

    kinds = [k.strip() for k in drain_on.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(DRAIN_KINDS))
    if unknown:
        raise click.BadParameter(f"unknown kind(s) {', '.join(unknown)}; choose from {', '.join(DRAIN_KINDS)}",
                                 param_hint="--drain-on")
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    code = run_spot_watch(cloud, endpoint=endpoint, interval_s=interval_s, request_timeout_s=request_timeout_s,
                          drain_kinds=kinds, notice_s=notice_s, address=address, node_id=node_id,
                          locate_timeout_s=locate_timeout_s, poll_s=poll_s, linger=linger, stop=stop, echo=click.echo)
    sys.exit(code)


# observability ----------------------------------------------------------------------------------
LOG_FORMAT_HELP = "log lines as text (default) or one JSON object a line (env ETRID_LOG_FORMAT)"


@main.command("exporter")
@click.option("--url", default=DEFAULT_URL, envvar="ETRID_WS_URL", show_default=True, help=URL_HELP)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to listen on (0.0.0.0 inside a pod, so Prometheus can reach it)")
@click.option("--port", default=9090, show_default=True, type=click.IntRange(0, 65535),
              help="port for /metrics, /healthz and /readyz; 0 picks a free one")
@click.option("--interval", "interval_s", default=10.0, show_default=True, type=click.FloatRange(min=0.5),
              help="seconds between chain reads")
@click.option("--provider", "providers", multiple=True, help="only this provider's per-provider series (repeatable)")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None, envvar="ETRID_LOG_FORMAT",
              help=LOG_FORMAT_HELP)
@_friendly
def exporter_cmd(url: str, host: str, port: int, interval_s: float, providers: tuple[str, ...],
                 log_format: str | None) -> None:
    """Serve the etrid_* Prometheus metrics from chain state alone (where no provider head runs).

    Prints the /metrics URL once listening; stops on SIGINT/SIGTERM.
    """
    import signal
    import threading

    from etrid_ray.chain.connection import validate_url
    from etrid_ray.telemetry.chain_source import run_exporter
    from etrid_ray.telemetry.logs import configure_logging

    validate_url(url)
    configure_logging(log_format)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    try:
        run_exporter(url, host=host, port=port, interval_s=interval_s, providers=providers, stop=stop,
                     on_ready=lambda served: click.echo(f"{served}/metrics"))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port"
                                   ) from None


@main.command("status")
@click.option("--url", default=DEFAULT_URL, envvar="ETRID_WS_URL", show_default=True, help=URL_HELP)
@click.option("--address", default=None, envvar="RAY_ADDRESS",
              help="Ray cluster address: read the provider head actor (default: chain state only)")
@click.option("--namespace", default="etrid", show_default=True, help="the head actor's Ray namespace")
@click.option("--once", is_flag=True, help="print one view and exit")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of tables (with --once: one object; "
              "without: one object a line, every --interval)")
@click.option("--interval", "interval_s", default=2.0, show_default=True, type=click.FloatRange(min=0.2),
              help="seconds between refreshes")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None, envvar="ETRID_LOG_FORMAT",
              help=LOG_FORMAT_HELP)
@_friendly
def status_cmd(url: str, address: str | None, namespace: str, once: bool, as_json: bool, interval_s: float,
               log_format: str | None) -> None:
    """Live view: queue by status, running jobs, GPUs per pool, scaling decisions, spend vs budget, earnings.

    With --address, from the provider head actor; without, from chain state alone.
    """
    import time

    from etrid_ray.chain.connection import validate_url
    from etrid_ray.telemetry.logs import configure_logging
    from etrid_ray.telemetry.status_view import (
        chain_snapshot_source,
        head_snapshot_source,
        render,
    )

    configure_logging(log_format, level="WARNING")
    owns_ray = False
    if address:
        import ray

        owns_ray = not ray.is_initialized()  # connect for this command only; never end a caller's Ray
        try:
            read = head_snapshot_source(address, namespace)
        except LookupError as exc:
            raise click.ClickException(str(exc)) from None
        where = f"ray {address}"
    else:
        read = chain_snapshot_source(validate_url(url))
        where = url

    try:
        first = read()
        if not first.ok and not first.best_block:  # never read anything: say why, not an empty view
            raise click.ClickException(f"cannot read {where}: {first.error}")
        if as_json:
            click.echo(json.dumps(first.to_dict(), sort_keys=True, default=str))
            while not once:
                time.sleep(interval_s)
                click.echo(json.dumps(read().to_dict(), sort_keys=True, default=str))
            return
        from rich.console import Console
        from rich.live import Live

        console = Console()
        if once:
            console.print(render(first, where=where))
            return
        import signal

        def _interrupt(*_: object) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, _interrupt)  # stop like Ctrl-C: the last view stays on screen
        with Live(render(first, where=where), console=console, refresh_per_second=4) as live:
            while True:
                time.sleep(interval_s)
                live.update(render(read(), where=where))
    except KeyboardInterrupt:
        pass
    finally:
        if owns_ray:
            import ray

            ray.shutdown()


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="provider config (YAML or JSON); default: the built-in defaults and ETRID_* env vars")
@click.option("--live/--catalog", "live", default=None,
              help="read the cloud APIs (needs credentials) / only the shipped catalog; default: live_prices")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
@_friendly
def prices(config_path: str | None, live: bool | None, as_json: bool) -> None:
    """What each pool costs now: $/node-h, $/GPU-h, spot discount, interruption bucket, quota headroom, source, age.

    Live prices, quotas and capacity come from the cloud APIs when asked (--live or live_prices) and the
    credentials exist; otherwise, or when a call fails or a live price is older than price_max_age_s,
    the shipped catalog's price is shown with its date.
    """
    from etrid_ray.clouds.feed import MarketFeed
    from etrid_ray.clouds.report import price_rows, price_table
    from etrid_ray.config import load_config
    from etrid_ray.pools import pools_from_config

    config = load_config(config_path)
    feed = MarketFeed.from_config(config, live=live)
    rows = price_rows(feed, pools_from_config(config))
    if as_json:
        _print_json(rows)
        return
    from rich.console import Console

    Console(width=None if sys.stdout.isatty() else 200).print(price_table(rows))  # piped: don't wrap at 80


# keys -------------------------------------------------------------------------------------------
@main.group()
def keys() -> None:
    """Provider keys (sr25519): generate, render the Kubernetes Secret, inspect. The phrase is never an argument."""


def _secret_destination(out_path: Path | None, to_stdout: bool) -> None:
    if out_path is None and not to_stdout:
        raise click.UsageError("say where the secret goes: --out FILE (a new file, mode 0600) or --stdout")
    if out_path is not None and to_stdout:
        raise click.UsageError("--out and --stdout are exclusive: the secret goes to one place")


@keys.command("generate")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write the secret phrase to this new file (mode 0600)")
@click.option("--stdout", "to_stdout", is_flag=True,
              help="print the secret phrase (subkey's layout) instead of writing a file")
@click.option("--words", type=click.Choice(["12", "15", "18", "21", "24"]), default="12", show_default=True)
@click.option("--ss58-format", type=click.IntRange(0, 16383), default=42, show_default=True)
@click.option("--force", is_flag=True, help="replace an existing --out file")
@click.option("--json", "as_json", is_flag=True, help="print the public side as JSON")
def keys_generate(out_path: Path | None, to_stdout: bool, words: str, ss58_format: int, force: bool,
                  as_json: bool) -> None:
    """A new sr25519 key, like `subkey generate --scheme sr25519`: prints its SS58 address, keeps the phrase secret."""
    from dataclasses import replace

    from etrid_ray.security.keys import generate, subkey_text, write_private_file

    _secret_destination(out_path, to_stdout)
    secret, info = generate(int(words), ss58_format)
    if to_stdout:
        click.echo(subkey_text(secret, info), nl=False)
        return
    assert out_path is not None
    try:
        write_private_file(out_path, secret.reveal() + "\n", overwrite=force)
    except FileExistsError as exc:
        raise click.UsageError(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {out_path}: {exc.strerror}") from None
    info = replace(info, source=f"file:{out_path}")
    if as_json:
        _print_json(info.as_dict())
        return
    click.echo(info.address)
    click.echo(f"public key {info.public_key}; secret phrase written to {out_path} (mode 0600)", err=True)


@keys.command("k8s-secret")
@click.option("--seed-file", type=click.Path(dir_okay=False), default=None,
              help="key file (default: the ETRID_SEED env var, or the file ETRID_SEED_FILE names)")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write the Secret manifest to this new file (mode 0600)")
@click.option("--stdout", "to_stdout", is_flag=True, help="print the manifest (it holds the phrase, base64)")
@click.option("--namespace", default=None, help="default: the rendered manifests' namespace")
@click.option("--name", default=None, help="default: etrid-provider-credentials")
@click.option("--force", is_flag=True, help="replace an existing --out file")
@_friendly
def keys_k8s_secret(seed_file: str | None, out_path: Path | None, to_stdout: bool, namespace: str | None,
                    name: str | None, force: bool) -> None:
    """The etrid-provider-credentials Secret for a key, without showing the phrase (unless --stdout)."""
    from etrid_ray.security.keys import k8s_secret_yaml, key_info, load_secret, write_private_file

    _secret_destination(out_path, to_stdout)
    secret, source = load_secret(file=seed_file)
    info = key_info(secret, source)
    text = k8s_secret_yaml(secret, info, name=name, namespace=namespace)
    if to_stdout:
        click.echo(text, nl=False)
        return
    assert out_path is not None
    try:
        write_private_file(out_path, text, overwrite=force)
    except FileExistsError as exc:
        raise click.UsageError(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {out_path}: {exc.strerror}") from None
    click.echo(f"wrote the Secret for {info.address} to {out_path} (mode 0600); apply it with "
               f"kubectl apply -f {out_path}")


@keys.command("inspect")
@click.option("--seed-file", type=click.Path(dir_okay=False), default=None,
              help="key file (default: the --env-var variable, or the file ETRID_SEED_FILE names)")
@click.option("--env-var", default="ETRID_SEED", show_default=True, help="environment variable holding the key")
@click.option("--ss58-format", type=click.IntRange(0, 16383), default=42, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@_friendly
def keys_inspect(seed_file: str | None, env_var: str, ss58_format: int, as_json: bool) -> None:
    """The address and public key of a key (from a file or the environment); never the phrase."""
    from etrid_ray.security.keys import key_info, load_secret

    secret, source = load_secret(file=seed_file, env_var=env_var)
    info = key_info(secret, source, ss58_format)
    if as_json:
        _print_json(info.as_dict())
        return
    for label, value in (("SS58 address", info.address), ("public key", info.public_key),
                         ("account id", info.account_id), ("scheme", info.scheme), ("source", info.source)):
        click.echo(f"{label + ':':<14}{value}")


# tee --------------------------------------------------------------------------------------------
@main.group()
def tee() -> None:
    """Confidential compute: detect this node's TEE, attest it against a fresh nonce, file it on chain."""


TEE_CONFIG_HELP = "TEE settings (YAML/JSON: trust roots, measurement allow-list, paths); env ETRID_TEE_CONFIG"
TEE_ROOT_HELP = "prefix for /dev and /sys (a fake tree); env ETRID_TEE_ROOT"


def _tee_config(path: str | None, root: str | None) -> Any:
    from etrid_ray.security.tee.config import load_tee_config

    config = load_tee_config(path)
    return config.model_copy(update={"root": Path(root)}) if root else config


@tee.command("detect")
@click.option("--tee-config", default=None, help=TEE_CONFIG_HELP)
@click.option("--root", default=None, help=TEE_ROOT_HELP)
@click.option("--want", type=click.Choice(["sgx", "sev-snp", "tdx"]), default=None, help="only this TEE type")
@click.option("--json", "as_json", is_flag=True)
@_friendly
def tee_detect(tee_config: str | None, root: str | None, want: str | None, as_json: bool) -> None:
    """Which TEE this node has (exit 0) or why none is usable (exit 1)."""
    from etrid_ray.security.tee.detect import detect

    found = detect(_tee_config(tee_config, root), want=want)
    if as_json:
        _print_json(found.as_dict())
    elif found.ok:
        click.echo(f"{found.tee} via {found.interface}")
    else:
        click.echo("no usable TEE")
    for problem in found.problems if not as_json else ():
        click.echo(f"  {problem}", err=True)
    if not found.ok:
        sys.exit(1)


@tee.command("attest")
@click.option("--url", default=DEFAULT_URL, envvar="ETRID_WS_URL", show_default=True, help=URL_HELP)
@click.option("--gpu-id", "gpu_ids", type=click.IntRange(0, 2**64 - 1), multiple=True, required=True,
              help="GPU the attestation is filed under (repeatable; ours on chain)")
@click.option("--tee-config", default=None, help=TEE_CONFIG_HELP)
@click.option("--root", default=None, help=TEE_ROOT_HELP)
@click.option("--seed-file", type=click.Path(dir_okay=False), default=None, help=SEED_FILE_HELP)
@click.option("--no-submit", is_flag=True, help="produce and verify only; file nothing on chain")
@click.option("--watch", is_flag=True, help="keep refreshing every --interval seconds until stopped")
@click.option("--interval", type=click.FloatRange(min=0.1), default=None,
              help="seconds between refreshes (default: refresh_interval_s of the TEE settings)")
@click.option("--run-for", type=float, default=None, help="with --watch: stop after this many seconds")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING"]), default="WARNING", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@_friendly
def tee_attest(url: str, gpu_ids: tuple[int, ...], tee_config: str | None, root: str | None, seed_file: str | None,
               no_submit: bool, watch: bool, interval: float | None, run_for: float | None, log_level: str,
               as_json: bool) -> None:
    """Attest this node's TEE for our GPUs: a report bound to (account, GPU, best block), verified offline
    when trust roots are configured, filed with ConfidentialCompute.submit_attestation."""
    import logging
    import signal
    import threading
    import time

    from etrid_ray.chain.client import ChainClient
    from etrid_ray.security.tee.attest import AttestationRefresher, ProviderChain, produce_evidence
    from etrid_ray.security.tee.verify import ReplayGuard, TeePolicy, verify_evidence

    logging.basicConfig(level=getattr(logging, log_level), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = _tee_config(tee_config, root)
    signer = _signer(seed_file)
    policy = TeePolicy.from_config(config)
    guard = ReplayGuard()
    with ChainClient(url) as client:
        chain = ProviderChain(client.provider(signer))

        def check(evidence: Any, gpu_id: int) -> Any:
            return verify_evidence(evidence.tee, evidence.quote, aux=evidence.aux, account_id=signer.public_key,
                                   gpu_id=gpu_id, policy=policy, blocks=chain.blocks, guard=guard)

        refresher = AttestationRefresher(
            account_id=signer.public_key, gpu_ids=list(gpu_ids), chain=chain,
            produce=lambda nonce: produce_evidence(nonce, config), check=check if policy.trust_anchors else None,
            interval_s=interval or config.refresh_interval_s, submit=not no_submit)

        def show(results: list[Any]) -> None:
            for r in results:
                if as_json:
                    click.echo(json.dumps(r.as_dict(), sort_keys=True))
                else:
                    state = "ok" if r.ok else "FAILED"
                    filed = ", filed on chain" if r.submitted else ""
                    click.echo(f"gpu {r.gpu_id}: {state} ({r.reason}; {r.tee or '-'}, block #{r.block_number}{filed})")

        if not watch:
            results = refresher.refresh_once()
            show(results)
            if not all(r.ok for r in results):
                sys.exit(1)
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        deadline = None if run_for is None else time.monotonic() + run_for
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            show(refresher.refresh_once())
            stop.wait(refresher.interval_s if deadline is None else
                      max(0.0, min(refresher.interval_s, deadline - time.monotonic())))


@tee.command("node-env")
@click.option("--pool", required=True, help="the worker group (pool) this node belongs to")
@click.option("--tee", "pool_tee", type=click.Choice(["sgx", "sev-snp", "tdx"]), required=True,
              help="the pool's TEE type")
@click.option("--url", default=None, envvar=["ETRID_WS_URL", "WEBSOCKET_URL"], help="node WebSocket URL")
@click.option("--provider-address", default=None, envvar="ETRID_PROVIDER_ADDRESS",
              help="the provider's SS58 address (public; from the Secret)")
@click.option("--gpu-id", type=click.IntRange(0, 2**64 - 1), default=0, envvar="ETRID_TEE_GPU_ID", show_default=True)
@click.option("--tee-config", default=None, help=TEE_CONFIG_HELP)
@click.option("--root", default=None, help=TEE_ROOT_HELP)
def tee_node_env(pool: str, pool_tee: str, url: str | None, provider_address: str | None, gpu_id: int,
                 tee_config: str | None, root: str | None) -> None:
    """Shell exports for `ray start` on a TEE worker: tee:<type> only when detected and freshly attested.

    Used by the TEE worker group's container command: eval "$(python -m etrid_ray tee node-env …)".
    Always exits 0 and prints the fail-closed override when anything is missing; the reason goes to stderr.
    """
    from etrid_ray.security.tee.node import NodeTeeStatus, node_status, ray_env

    status: NodeTeeStatus
    try:
        from etrid_ray.chain.codec import account_bytes
        from etrid_ray.security.tee.verify import ChainBlocks, TeePolicy

        config = _tee_config(tee_config, root)
        account = account_bytes(provider_address) if provider_address else None
        policy = TeePolicy.from_config(config) if config.trust_roots else None
        client = None
        if url:
            from etrid_ray.chain.client import ChainClient
            from etrid_ray.chain.connection import RetryPolicy

            client = ChainClient(url, retry=RetryPolicy(max_attempts=3), timeout=20)
        try:
            blocks = ChainBlocks(client.conn) if client is not None else None

            def best() -> tuple[int, bytes]:
                if blocks is None:
                    raise ConfigError("no chain URL (set WEBSOCKET_URL or --url)")
                return blocks.best()

            status = node_status(config, want=pool_tee, account_id=account, gpu_id=gpu_id, best=best,
                                 policy=policy, blocks=blocks)
        finally:
            if client is not None:
                client.close()
    except Exception as exc:  # fail closed, whatever went wrong
        status = NodeTeeStatus(None, False, f"{type(exc).__name__}: {exc}")
    click.echo(ray_env(status, pool_tee), nl=False)
    state = "attested" if status.attested else "NOT attested"
    click.echo(f"etrid-ray tee: pool {pool}: {pool_tee} {state}: {status.reason}", err=True)


# compliance and audit -----------------------------------------------------------------------------
AUDIT_LOG_HELP = "audit log (JSON lines; env ETRID_AUDIT_LOG)"
TEMPLATE_CHOICE = click.Choice(["HIPAA", "GDPR", "SOC2", "CCPA", "FedRAMP"], case_sensitive=False)


def _audit_log_path(path: str | None) -> Path:
    from etrid_ray.security.audit import DEFAULT_PATH

    return Path(path).expanduser() if path else DEFAULT_PATH.expanduser()


def _keyring(kek: str | None, keystore: str | None, *, required: bool = True) -> Any:
    from etrid_ray.security.crypto import ENV_KEK, ENV_KEYSTORE, CryptoError, keyring_from_env

    env = {ENV_KEK: kek or os.environ.get(ENV_KEK, ""), ENV_KEYSTORE: keystore or os.environ.get(ENV_KEYSTORE, "")}
    try:
        return keyring_from_env(env)
    except CryptoError as exc:
        if required:
            raise click.UsageError(f"{exc} (or pass --kek and --keystore)") from None
        return None


@main.group("compliance")
def compliance_group() -> None:
    """Compliance templates (HIPAA, GDPR, SOC2, CCPA, FedRAMP): enable on chain, erase a job's data, report."""


@compliance_group.command("enable")
@click.option("--template", required=True, type=TEMPLATE_CHOICE, help="the compliance template")
@click.option("--residency", default=None, help="data residency put on chain (≤ 32 bytes; default: the "
              "template's, e.g. EU for GDPR)")
@click.option("--url", default=DEFAULT_URL, envvar="ETRID_WS_URL", show_default=True, help=URL_HELP)
@click.option("--seed-file", type=click.Path(dir_okay=False), default=None, help=SEED_FILE_HELP)
@click.option("--audit-log", "audit_log", default=None, envvar="ETRID_AUDIT_LOG", help=AUDIT_LOG_HELP)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@_friendly
def compliance_enable(template: str, residency: str | None, url: str, seed_file: str | None, audit_log: str | None,
                      as_json: bool) -> None:
    """Call Compliance.enable_compliance(template, data_residency) for our account and audit it."""
    from etrid_ray.security import audit, transport
    from etrid_ray.security.compliance import enable_on_chain, policy_for

    policy = policy_for(template)
    assert policy is not None
    transport.check_endpoint(url, compliance=True, what="--url")
    signer = _signer(seed_file)
    audit.configure(_audit_log_path(audit_log))
    try:
        with transport.connect(url, compliance=True) as conn:
            try:
                receipt = enable_on_chain(conn, signer, policy.template, residency)
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--residency") from None
    finally:
        audit.configure(None)
    out = {"account": signer.address, "template": policy.template,
           "data_residency": policy.data_residency if residency is None else residency,
           "block": receipt.block_number, "policy": policy.to_json()}
    if as_json:
        _print_json(out)
        return
    click.echo(f"{policy.template} enabled for {signer.address} in block #{receipt.block_number} "
               f"(residency {out['data_residency'] or 'none'})")
    regions = ", ".join(policy.allowed_regions) if policy.allowed_regions is not None else "any"
    click.echo(f"policy: encryption at rest {'required' if policy.encryption_required else 'off'}, audit "
               f"{'required' if policy.audit_required else 'off'}, TLS in transit, regions {regions}, "
               f"audit kept {policy.audit_retention_days} days")


@compliance_group.command("erase")
@click.option("--job", "job_id", required=True, type=click.IntRange(0, 2**64 - 1), help="the job to erase")
@click.option("--url", default=None, envvar="ETRID_WS_URL",
              help="node URL: find the job's manifest, inputs and result on chain")
@click.option("--blob-store", default=None, help="where the job's blobs are (default: the --url node's store)")
@click.option("--blob", "extra_blobs", multiple=True, help="another blob hash of the job (repeatable)")
@click.option("--kek", default=None, help="key-encryption key: file:///path or kms:<key id> (env ETRID_KEK)")
@click.option("--keystore", default=None, help="wrapped data keys: a directory or s3://… (env ETRID_KEYSTORE)")
@click.option("--reason", default="erasure request", show_default=True, help="recorded with the erasure")
@click.option("--audit-log", "audit_log", default=None, envvar="ETRID_AUDIT_LOG", help=AUDIT_LOG_HELP)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@_friendly
def compliance_erase(job_id: int, url: str | None, blob_store: str | None, extra_blobs: tuple[str, ...],
                     kek: str | None, keystore: str | None, reason: str, audit_log: str | None, as_json: bool) -> None:
    """Crypto-shred a job: destroy its data keys, delete its blobs where the store can, and record it.

    Exits non-zero when a plaintext blob had to be left behind (a store without delete).
    """
    from etrid_ray.blobs import normalize_hash
    from etrid_ray.security import audit, transport
    from etrid_ray.security.crypto import erase_job, job_blobs_from_chain

    for h in extra_blobs:
        try:
            normalize_hash(h)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--blob") from None
    if not url and not blob_store:
        raise click.UsageError("pass --url (to find the job's blobs on chain) or --blob-store with --blob")
    ring = _keyring(kek, keystore)
    store = transport.open_secure_blob_store(blob_store or str(url), compliance=True)
    blobs = list(extra_blobs)
    audit.configure(_audit_log_path(audit_log))
    try:
        if url:
            with transport.connect(url, compliance=True) as conn:
                blobs = job_blobs_from_chain(conn, store, job_id) + blobs
        result = erase_job(job_id, ring, store, blobs, reason=reason)
    finally:
        audit.configure(None)
    if as_json:
        _print_json(result.to_json())
    else:
        click.echo(f"job {job_id}: destroyed keys {', '.join(result.keys_destroyed) or 'none'}; "
                   f"deleted {len(result.blobs_deleted)} blob(s); {len(result.blobs_kept_sealed)} sealed blob(s) "
                   "kept by a store without delete (unreadable now)")
    if not result.complete:
        raise click.ClickException(f"erasure incomplete: {len(result.blobs_kept_plaintext)} plaintext blob(s) "
                                   f"could not be deleted from {store.url}: {', '.join(result.blobs_kept_plaintext)}")


@compliance_group.command("report")
@click.option("--template", required=True, type=TEMPLATE_CHOICE, help="the compliance template")
@click.option("--since", required=True, help="start of the period: a date or ISO 8601 time (UTC)")
@click.option("--until", default=None, help="end of the period (default: now)")
@click.option("--format", "fmt", type=click.Choice(["md", "json", "html"]), default="md", show_default=True)
@click.option("--audit-log", "audit_log", default=None, envvar="ETRID_AUDIT_LOG", help=AUDIT_LOG_HELP)
@click.option("--url", default=None, envvar="ETRID_WS_URL",
              help="node URL: check anchors, read attestations and the on-chain config")
@click.option("--address", default=None, help="the provider account (default: from ETRID_SEED / --seed-file)")
@click.option("--seed-file", type=click.Path(dir_okay=False), default=None, help=SEED_FILE_HELP)
@click.option("--blob-store", default=None, help="check every blob's encryption in this store")
@click.option("--kek", default=None, help="with --keystore: also say whether each blob's key still exists")
@click.option("--keystore", default=None)
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write the report here instead of stdout")
@_friendly
def compliance_report(template: str, since: str, until: str | None, fmt: str, audit_log: str | None, url: str | None,
                      address: str | None, seed_file: str | None, blob_store: str | None, kek: str | None,
                      keystore: str | None, out_path: Path | None) -> None:
    """Evidence for a template over a period: jobs and regions, encryption of every blob, audit chain and
    anchors, attestations, erasures and refused violations."""
    from etrid_ray.security import transport
    from etrid_ray.security.audit import parse_time
    from etrid_ray.security.report import build_report, render

    for value, hint in ((since, "--since"), (until, "--until")):
        if value is not None:
            try:
                parse_time(value)
            except ValueError:
                raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD or ISO 8601)", param_hint=hint) from None
    if address is None:
        signer = _signer(seed_file, required=False)
        address = signer.address if signer is not None else None
    store = transport.open_secure_blob_store(blob_store, compliance=True) if blob_store else None
    ring = _keyring(kek, keystore, required=False) if store is not None else None
    conn = transport.connect(url, compliance=True) if url else None
    try:
        report = build_report(template, since, _audit_log_path(audit_log), until=until, conn=conn, account=address,
                              store=store, keyring=ring)
    finally:
        if conn is not None:
            conn.close()
    text = render(report, fmt)
    if out_path is not None:
        out_path.write_text(text)
        click.echo(f"wrote {out_path} ({'compliant' if report['summary']['compliant'] else 'NOT compliant'})",
                   err=True)
    else:
        click.echo(text)


@main.group("audit")
def audit_group() -> None:
    """The hash-chained audit log."""


@audit_group.command("verify")
@click.option("--audit-log", "audit_log", default=None, envvar="ETRID_AUDIT_LOG", help=AUDIT_LOG_HELP)
@click.option("--url", default=None, envvar="ETRID_WS_URL", help="node URL: check the anchors on chain")
@click.option("--account", default=None,
              help="the account that anchors; its anchors on chain are the evidence (default: from the anchor records)")
@click.option("--from-block", type=click.IntRange(1), default=None,
              help="oldest block to scan for the account's anchors (default: 1; the scan walks back from the best "
                   "block and stops early once the log's own anchors are covered)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@_friendly
def audit_verify(audit_log: str | None, url: str | None, account: str | None, from_block: int | None,
                 as_json: bool) -> None:
    """Check the log's hash chain, seq run and head file, and its anchors on chain; exit 1 on the first problem.

    With --url the account's anchors on chain are the evidence: the log must back the newest one the
    account put there, so a log swapped for another, emptied or deleted fails instead of passing as
    "0/0 anchors"."""
    from etrid_ray.security import transport
    from etrid_ray.security.audit import verify

    path = _audit_log_path(audit_log)
    conn = transport.connect(url, compliance=True) if url else None
    try:
        res = verify(path, conn, account=account, from_block=from_block)
    finally:
        if conn is not None:
            conn.close()
    newest = res.newest_anchor
    if as_json:
        _print_json(res.to_json())
    else:
        on_chain = sum(1 for a in res.anchors if a.on_chain)
        if not res.chain_checked:
            anchors = f"{len(res.anchors)} anchors (not checked on chain: pass --url)"
        else:
            anchors = f"{on_chain}/{len(res.anchors)} of this log's anchors on chain"
            if res.account is not None and res.scanned is not None:
                anchors += (f"; {res.account}'s newest anchor in blocks {res.scanned[1]}..{res.scanned[0]}: "
                            f"{newest if newest is not None else 'none'}")
        click.echo(f"{path}: {res.records} records, head seq {res.head_seq} {res.head_hash[:16]}…, {anchors}")
        for problem in res.problems:
            click.echo(f"PROBLEM {problem}", err=True)
    if not res.ok:
        first = res.first_problem
        raise click.ClickException(f"audit log does not verify: {first}")
    if not as_json:
        if res.chain_checked and newest is not None:
            click.echo(f"OK: the chain of hashes is intact and backs {res.account}'s newest anchor "
                       f"(block {newest.block}, seq {newest.seq})")
        else:
            click.echo("OK: the chain of hashes is intact (not checked on chain: pass --url)")


# simulate ---------------------------------------------------------------------------------------
@main.command()
@click.option("--trace", "trace_path", default="philly", show_default=True,
              help="CSV with timestamp,duration,num_gpus (extra columns ignored; .gz read too); "
              "'philly' = the shipped Philly trace")
@click.option("--policy", "policies", multiple=True,
              type=click.Choice(["profit", "seed-hpa", "ray-default", "never-burst", "cheapest-burst", "oracle"]),
              help="policy to run (repeatable; default: all, and the oracle bound)")
@click.option("--local-gpus", default=320, show_default=True, type=click.IntRange(0, 8000),
              help="local A100s (nodes of 8; fewer than 8 make one node)")
@click.option("--price-per-gpu-hour", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="USD a consumer pays per GPU-hour, before the chain's 5 % fee")
@click.option("--prices", "prices_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="price catalog CSV in the shipped format (default: the shipped catalog)")
@click.option("--edsc-usd", default=0.10, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="ËDSC→USD rate (the seed's 0.10)")
@click.option("--patience", default=3600.0, show_default=True, type=click.FloatRange(min=0),
              help="seconds a job waits before another provider claims it; 0 = waits forever")
@click.option("--declared-slack", default=1.0, show_default=True, type=click.FloatRange(min=1),
              help="consumers declare max_compute_time as this many times the real duration (the policy sees "
                   "only that; 1 = exact)")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="provider config (pools, budget, thresholds); default: the built-in defaults")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="sim-out", show_default=True,
              help="directory for JSON per policy and the PNG plots")
@click.option("--seed", default=0, show_default=True, type=int, help="seed of the spot interruptions")
@click.option("--no-interruptions", is_flag=True, help="no spot interruptions")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="only the first N jobs of the trace")
@click.option("--no-plots", is_flag=True, help="write JSON only")
@click.option("--json", "as_json", is_flag=True, help="print the summary JSON instead of the table")
@click.option("--explain-breakeven", is_flag=True, help="print per-GPU-hour break-even prices per pool and exit")
@click.option("--explain", "explain_job", type=int, default=None, metavar="JOB_ID",
              help="run only the profit policy (or those given with --policy) and print, per policy, one job's "
                   "timeline: its GPUs and pay on arrival, each change of placement with its reason code and the "
                   "policy's outlook, where and after what wait it started, interruptions, and its revenue or why "
                   "it was lost; JOB_ID is its position in the time-sorted trace (0 = first); writes nothing")
@_friendly
def simulate(trace_path: str, policies: tuple[str, ...], local_gpus: int, price_per_gpu_hour: float,
             prices_path: str | None, edsc_usd: float, patience: float, declared_slack: float,
             config_path: str | None, out_dir: str,
             seed: int, no_interruptions: bool, limit: int | None, no_plots: bool, as_json: bool,
             explain_breakeven: bool, explain_job: int | None) -> None:
    """Replay a job trace through the scaling policies (the head's own code) and compare their economics."""
    from etrid_ray.config import load_config
    from etrid_ray.sim import report
    from etrid_ray.sim.breakeven import explain
    from etrid_ray.sim.run import POLICY_NAMES, compare
    from etrid_ray.sim.scenario import SimSettings, build_scenario, prices_from_file
    from etrid_ray.sim.trace import TraceError, load_trace, philly_trace

    base = load_config(config_path, env={}) if config_path else None
    try:
        settings = SimSettings(local_gpus=local_gpus, price_per_gpu_hour=price_per_gpu_hour, edsc_usd=edsc_usd,
                               patience_s=patience or None, seed=seed, interruptions=not no_interruptions,
                               declared_slack=declared_slack, base_config=base)
        scenario = build_scenario(settings)
        if prices_path:
            from dataclasses import replace

            scenario = replace(scenario, prices=prices_from_file(prices_path, scenario.pools))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if explain_breakeven:
        click.echo(explain(scenario))
        return
    try:
        trace = philly_trace() if trace_path == "philly" else load_trace(trace_path)
    except TraceError as exc:
        raise click.BadParameter(str(exc), param_hint="--trace") from None
    for bad in trace.bad[:20]:
        click.echo(f"skipped line {bad.line}: {bad.reason}", err=True)
    if len(trace.bad) > 20:
        click.echo(f"… and {len(trace.bad) - 20} more bad rows", err=True)
    if trace.bad:
        click.echo(f"{len(trace.bad)} bad row(s) skipped, {len(trace)} jobs read from {trace.source}", err=True)
    if not trace.was_sorted:
        click.echo(f"{trace.source}: rows were not in time order; sorted by timestamp", err=True)
    if limit:
        trace = trace.head(limit)
    if not len(trace):
        raise click.BadParameter("no valid jobs in the trace", param_hint="--trace")
    if explain_job is not None:
        _explain_job(trace, scenario, policies, explain_job)
        return
    comparison = compare(trace, scenario, policies or POLICY_NAMES,
                         progress=None if as_json else lambda line: click.echo(line, err=True))
    out = Path(out_dir)
    extra = {"trace": {"source": trace.source, "jobs": len(trace), "bad_rows": len(trace.bad)},
             "cpu_s": {k: round(v, 2) for k, v in comparison.cpu_s.items()}}
    written = report.write_json(out, scenario, comparison.results, comparison.oracle, extra)
    if not no_plots:
        written += report.plot(out, comparison.results, comparison.oracle)
    if as_json:
        _print_json(json.loads((out / "summary.json").read_text()))
        return
    report.print_table(comparison.results, comparison.oracle,
                       title=f"{len(trace):,} jobs · {scenario.local_gpus} local GPUs · "
                       f"{price_per_gpu_hour:g} USD/GPU-h ({price_per_gpu_hour / edsc_usd:g} ËDSC at {edsc_usd:g}) · "
                       f"patience "
                       f"{'∞' if not patience else f'{patience:g} s'}")
    click.echo(f"wrote {', '.join(str(p) for p in written)}")


def _explain_job(trace: Any, scenario: Any, policies: tuple[str, ...], job_id: int) -> None:
    """`simulate --explain`: one job's timeline under each policy asked for (default: profit)."""
    from dataclasses import replace

    from etrid_ray.sim.engine import Simulator, format_explanation
    from etrid_ray.sim.run import ORACLE

    if not 0 <= job_id < len(trace):
        raise click.BadParameter(f"job {job_id} is not in the trace: ids run from 0 to {len(trace) - 1} "
                                 "(positions in the time-sorted trace)", param_hint="--explain")
    names = [p for p in (policies or ("profit",)) if p != ORACLE]
    if not names:
        raise click.BadParameter("the oracle is a bound, not a policy: name a policy to explain a job under",
                                 param_hint="--policy")
    settings = replace(scenario.settings, record=False)
    scenario = replace(scenario, settings=settings)
    job = next(j for j in trace.jobs if j.job_id == job_id)
    for i, name in enumerate(names):
        result = Simulator(trace, name, scenario, explain=job_id).run()
        if i:
            click.echo("")
        click.echo(f"job {job_id} under {name} (arrives at {job.submit_s:g} s into the trace; times below are "
                   "from its arrival):")
        for line in format_explanation(result.explanation) or ["  (no events: the run never reached it)"]:
            click.echo(f"  {line}")


@main.group("config")
def config_group() -> None:
    """The provider config: a complete example, and a check of yours."""


@config_group.command("example")
def config_example_cmd() -> None:
    """Print a provider.yaml with every setting, its default and what it does."""
    from etrid_ray.config_example import example_yaml

    click.echo(example_yaml(), nl=False)


@config_group.command("check")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), required=True,
              help="provider config (YAML or JSON); ETRID_* environment settings apply on top, as in provider run")
@_friendly
def config_check_cmd(config_path: str) -> None:
    """Validate a provider config: exit 2 naming each bad key and its fix, else print the settings that
    differ from the defaults."""
    from etrid_ray.config import load_config

    changed = load_config(config_path).model_dump(mode="json", exclude_defaults=True)
    click.echo(f"{config_path}: valid; {len(changed)} setting(s) differ from the defaults")
    if changed:
        click.echo(json.dumps(changed, indent=2, sort_keys=True))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
