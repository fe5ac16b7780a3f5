"""`etrid-ray tee`: confidential compute (detect, attest, the worker's node-env)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from etrid_ray.chain.errors import ConfigError
from etrid_ray.cli.common import (
    F,
    friendly,
    json_option,
    key_file_option,
    print_json,
    signer_from,
    stop_on_signals,
    url_option,
)


@click.group("tee")
def tee_group() -> None:
    """Confidential compute: detect this node's TEE, attest it against a fresh nonce, file it on chain."""


TEE_CONFIG_HELP = "TEE settings (YAML/JSON: trust roots, measurement allow-list, paths); env ETRID_TEE_CONFIG"
TEE_ROOT_HELP = "prefix for /dev and /sys (a fake tree); env ETRID_TEE_ROOT"


def tee_config_options(fn: F) -> F:
    """`--tee-config` and `--root`, which every tee command reads through `_tee_config`."""
    fn = click.option("--root", default=None, help=TEE_ROOT_HELP)(fn)
    return click.option("--tee-config", default=None, help=TEE_CONFIG_HELP)(fn)


def _tee_config(path: str | None, root: str | None) -> Any:
    from etrid_ray.security.tee.config import load_tee_config

    config = load_tee_config(path)
    return config.model_copy(update={"root": Path(root)}) if root else config


@tee_group.command("detect")
@tee_config_options
@click.option("--want", type=click.Choice(["sgx", "sev-snp", "tdx"]), default=None, help="only this TEE type")
@json_option()
@friendly
def tee_detect(tee_config: str | None, root: str | None, want: str | None, as_json: bool) -> None:
    """Which TEE this node has (exit 0) or why none is usable (exit 1)."""
    from etrid_ray.security.tee.detect import detect

    found = detect(_tee_config(tee_config, root), want=want)
    if as_json:
        print_json(found.as_dict())
    elif found.ok:
        click.echo(f"{found.tee} via {found.interface}")
    else:
        click.echo("no usable TEE")
    for problem in found.problems if not as_json else ():
        click.echo(f"  {problem}", err=True)
    if not found.ok:
        sys.exit(1)


@tee_group.command("attest")
@url_option()
@click.option("--gpu-id", "gpu_ids", type=click.IntRange(0, 2**64 - 1), multiple=True, required=True,
              help="GPU the attestation is filed under (repeatable; ours on chain)")
@tee_config_options
@key_file_option()
@click.option("--no-submit", is_flag=True, help="produce and verify only; file nothing on chain")
@click.option("--watch", is_flag=True, help="keep refreshing every --interval seconds until stopped")
@click.option("--interval", type=click.FloatRange(min=0.1), default=None,
              help="seconds between refreshes (default: refresh_interval_s of the TEE settings)")
@click.option("--run-for", type=float, default=None, help="with --watch: stop after this many seconds")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING"]), default="WARNING", show_default=True)
@json_option()
@friendly
def tee_attest(url: str, gpu_ids: tuple[int, ...], tee_config: str | None, root: str | None, key_file: str | None,
               no_submit: bool, watch: bool, interval: float | None, run_for: float | None, log_level: str,
               as_json: bool) -> None:
    """Attest this node's TEE for our GPUs: a report bound to (account, GPU, best block), verified offline
    when trust roots are configured, filed with ConfidentialCompute.submit_attestation."""
    import logging
    import signal
    import time

    from etrid_ray.chain.client import ChainClient
    from etrid_ray.security.tee.attest import AttestationRefresher, ProviderChain, produce_evidence
    from etrid_ray.security.tee.verify import ReplayGuard, TeePolicy, verify_evidence

    logging.basicConfig(level=getattr(logging, log_level), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = _tee_config(tee_config, root)
    signer = signer_from(key_file)
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
        deadline = None if run_for is None else time.monotonic() + run_for
        with stop_on_signals(signal.SIGTERM) as stop:  # Ctrl-C aborts, as before
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                show(refresher.refresh_once())
                stop.wait(refresher.interval_s if deadline is None else
                          max(0.0, min(refresher.interval_s, deadline - time.monotonic())))


@tee_group.command("node-env")
@click.option("--pool", required=True, help="the worker group (pool) this node belongs to")
@click.option("--tee", "pool_tee", type=click.Choice(["sgx", "sev-snp", "tdx"]), required=True,
              help="the pool's TEE type")
@url_option("node WebSocket URL", default=None)
@click.option("--provider-address", default=None, envvar="ETRID_PROVIDER_ADDRESS",
              help="the provider's SS58 address (public; from the Secret)")
@click.option("--gpu-id", type=click.IntRange(0, 2**64 - 1), default=0, envvar="ETRID_TEE_GPU_ID", show_default=True)
@tee_config_options
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
