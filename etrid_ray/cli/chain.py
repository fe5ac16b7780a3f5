"""`etrid-ray chain info` and `etrid-ray submit`: reading the chain, and a consumer's job submission."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from etrid_ray.cli.common import friendly, json_option, key_file_option, print_json, signer_from, url_option


@click.group("chain")
def chain_group() -> None:
    """Inspect the chain."""


@chain_group.command("info")
@url_option()
@click.option("--address", "addresses", multiple=True, help="also show this account's balance (repeatable)")
@key_file_option()
@json_option("print JSON instead of a table")
@friendly
def chain_info(url: str, addresses: tuple[str, ...], key_file: str | None, as_json: bool) -> None:
    """Chain name, runtime, best/finalized block, pallets, and balances of our account."""
    from etrid_ray.chain.client import ChainClient
    from etrid_ray.chain.codec import account_bytes
    from etrid_ray.chain.units import format_edsc

    for a in addresses:
        try:
            account_bytes(a)
        except Exception:  # noqa: BLE001 - any decoding failure means the same thing to the user
            raise click.BadParameter(f"{a!r} is not an SS58 address", param_hint="--address") from None
    signer = signer_from(key_file, required=False)
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
        print_json(data)
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
        console.print("[dim]no account: set ETRID_SEED or pass --key-file / --address to see balances[/dim]")


# submit -----------------------------------------------------------------------------------------
@click.command("submit")
@url_option()
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
@key_file_option()
@json_option()
@friendly
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
    key_file: str | None,
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
    signer = signer_from(key_file)
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
        print_json(
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
