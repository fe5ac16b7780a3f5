"""`etrid-ray demo`: the whole product on one machine."""

from __future__ import annotations

import click

from etrid_ray.cli.common import random_seed_option


@click.command("demo")
@click.option("--jobs", default=60, show_default=True, type=click.IntRange(1, 5000), help="trace jobs to replay")
@click.option("--speedup", default=600.0, show_default=True, type=click.FloatRange(1, 1e6),
              help="time compression of the Philly trace")
@random_seed_option(7, "random seed: picks the trace slice and the handler mix")
@click.option("--gpus", default=4, show_default=True, type=click.IntRange(1, 64), help="simulated GPUs")
@click.option("--bad", default=4, show_default=True, type=click.IntRange(0, 100), help="broken manifests to add")
@click.option("--timeout", "timeout_s", default=150.0, show_default=True, help="give up after this many seconds")
@click.option("--dashboard/--no-dashboard", default=True, show_default=True,
              help="Ray's dashboard on 127.0.0.1 (log in with the cluster's token)")
@click.option("--keep-open", is_flag=True, help="after the summary, keep the cluster up for the dashboard until Ctrl-C")
@click.option("--idle-timeout", "idle_timeout_s", default=15.0, show_default=True, type=click.FloatRange(1, 3600),
              help="idle cloud nodes go back after this many seconds (production: 300)")
def demo(jobs: int, speedup: float, rng_seed: int, gpus: int, bad: int, timeout_s: float, dashboard: bool,
         keep_open: bool, idle_timeout_s: float) -> None:
    """Everything on one machine: devnet, local Ray with simulated GPUs, the provider, a trace replay."""
    from etrid_ray.demo.replay import run_demo

    run_demo(jobs=jobs, speedup=speedup, rng_seed=rng_seed, gpus=gpus, bad=bad, timeout_s=timeout_s,
             dashboard=dashboard, keep_open=keep_open, idle_timeout_s=idle_timeout_s)
