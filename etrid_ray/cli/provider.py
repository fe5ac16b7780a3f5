"""`etrid-ray provider register|run|stop`: a GPU provider's account on chain and its head."""

from __future__ import annotations

import click

from etrid_ray.cli.common import (
    friendly,
    json_option,
    key_file_option,
    prepare_ray,
    print_json,
    signer_from,
    url_option,
)


@click.group("provider")
def provider_group() -> None:
    """Act as a GPU provider."""


@provider_group.command("register")
@url_option()
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
    help="the declared benchmark score (GFLOP/s of matmul bf16 n=8192), put in the hardware attestation only "
    "where no GPU can be measured here; on a GPU the score is measured",
)
@click.option("--no-measure", is_flag=True, help="attest the declared --benchmark-score even where a GPU is here "
              "(registering another machine's GPUs)")
@click.option("--stake", required=True, help="stake per GPU in ËDSC (minimum 100), e.g. 100 or 250.5")
@click.option("--schedule", type=click.Choice(["AlwaysOn", "BusinessHours"]), default="AlwaysOn", show_default=True)
@key_file_option()
@json_option()
@friendly
def provider_register(
    url: str,
    gpus: int,
    model: str,
    vram_gb: int,
    compute_units: int,
    clock_mhz: int,
    tdp_watts: int,
    benchmark_score: int,
    no_measure: bool,
    stake: str,
    schedule: str,
    key_file: str | None,
    as_json: bool,
) -> None:
    """Register GPUs on chain (reserving the stake) and print their ids.

    The hardware attestation's benchmark score is measured with the `matmul` workload on this machine's GPU
    (etrid_ray/workloads/benchmark.py: GFLOP/s at bf16, n=8192); without a GPU the declared --benchmark-score is
    attested, and the output and the attestation's quote say which."""
    import time

    from etrid_ray.chain.client import ChainClient
    from etrid_ray.chain.models import GpuSpecs, HardwareAttestation, Schedule
    from etrid_ray.chain.units import format_edsc, to_planck
    from etrid_ray.workloads.benchmark import SCORE_UNIT, attested_score

    if len(model.encode("utf-8")) > 64:
        raise click.BadParameter("at most 64 bytes", param_hint="--model")
    stake_planck = to_planck(stake, what="--stake")
    if stake_planck == 0:
        raise click.BadParameter("must be positive (the chain's minimum stake is 100 ËDSC)", param_hint="--stake")
    signer = signer_from(key_file)
    specs = GpuSpecs(model, vram_gb, compute_units, clock_mhz, tdp_watts)
    try:
        bench = attested_score(benchmark_score, measure_gpu=not no_measure)
    except RuntimeError as err:  # a GPU that fails the benchmark (out of memory, a driver error) registers nothing
        raise click.ClickException(f"the GPU benchmark failed: {err} — fix the GPU, or register with --no-measure "
                                   "and a declared --benchmark-score") from None
    attestation = HardwareAttestation(bench.quote(), bench.score, int(time.time()))
    with ChainClient(url) as client:
        prov = client.provider(signer)
        if gpus == 1:
            ids = [prov.register_gpu(specs, stake_planck, attestation, Schedule(schedule))]
        else:
            ids = prov.register_gpus([(specs, stake_planck)] * gpus, attestation, Schedule(schedule))
        bal = prov.balance()
    if as_json:
        print_json(
            {
                "provider": signer.address,
                "gpu_ids": ids,
                "stake_per_gpu": str(stake_planck),
                "free": str(bal.free),
                "reserved": str(bal.reserved),
                "benchmark": {"score": bench.score, "source": bench.source, "unit": SCORE_UNIT,
                              "detail": bench.detail, "runs_gflops": bench.runs_gflops},
            }
        )
        return
    click.echo(f"registered {len(ids)} GPU(s) for {signer.address}: ids {', '.join(map(str, ids))}")
    click.echo(f"benchmark score {bench.score} {SCORE_UNIT}: {bench.source} ({bench.detail})")
    click.echo(
        f"stake {format_edsc(stake_planck)} each; free {format_edsc(bal.free)}, reserved {format_edsc(bal.reserved)}"
    )


@provider_group.command("run")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="provider config (YAML or JSON); env ETRID_* settings override it")
@click.option("--address", default=None, help="Ray cluster address (default: ray_address from the config, "
              "else a local Ray with the config's GPUs)")
@click.option("--run-for", type=float, default=None, help="stop after this many seconds (default: until SIGTERM)")
@click.option("--status-every", type=float, default=10.0, show_default=True)
@click.option("--detach", is_flag=True, help="run the head under a Ray Job on the cluster and return "
              "(needs --address/ray_address); stop it with `etrid-ray provider stop`")
@click.option("--now", is_flag=True, help="on stop, fail in-flight jobs on chain at once instead of finishing them")
@friendly
def provider_run(config_path: str | None, address: str | None, run_for: float | None, status_every: float,
                 detach: bool, now: bool) -> None:
    """Run the provider head (a Ray actor this command owns) against the chain in the config.

    Ctrl-C or SIGTERM drains it: no new claims, in-flight jobs finish and are settled, then it stops
    (a second Ctrl-C fails them at once). Without a Ray address it starts a local Ray that advertises
    the config's GPUs (simulated without an NVIDIA or AMD driver). The signing key comes from the env var the
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
    prepare_ray(starts_cluster=local)
    from etrid_ray.service.runner import run_provider, submit_detached

    if detach:
        submit_detached(config, address, echo=click.echo)
        return
    run_provider(config, address=address, run_for=run_for, status_every=status_every, now=now, echo=click.echo)


@provider_group.command("stop")
@click.option("--address", default="auto", envvar="RAY_ADDRESS", show_default=True,
              help="Ray cluster address (GCS, e.g. 127.0.0.1:6379; `auto`: the cluster started on this machine)")
@click.option("--namespace", default="etrid", show_default=True, help="the head actor's Ray namespace")
@click.option("--now", is_flag=True, help="fail in-flight jobs on chain at once (\"provider going offline\") "
              "instead of letting them finish")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0), default=None,
              help="wait at most this long for in-flight jobs, then fail the rest (default: their deadlines)")
@friendly
def provider_stop(address: str, namespace: str, now: bool, timeout_s: float | None) -> None:
    """Take the provider offline: the head claims nothing more, settles what it runs, and stays down.

    Works on a head started by `provider run` (foreground or --detach) or `ray job submit`; Ctrl-C here
    fails the jobs still in flight at once.
    """
    prepare_ray(starts_cluster=False)
    from etrid_ray.service.runner import stop_provider

    try:
        status = stop_provider(address, namespace, now=now, timeout=timeout_s, echo=click.echo)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"provider head stopped: {status.get('completed', 0)} completed, "
               f"{sum(status.get('failed', {}).values())} failed, {status.get('reported', 0)} settled on chain")
