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
@click.option("--providers", default=1, show_default=True, type=click.IntRange(1, 20),
              help="more than 1: that many competing providers (own keys, prices and Ray clusters) on one devnet of "
                   "1 s blocks, with each one's share, earnings and wait in the summary")
def demo(jobs: int, speedup: float, rng_seed: int, gpus: int, bad: int, timeout_s: float, dashboard: bool,
         keep_open: bool, idle_timeout_s: float, providers: int) -> None:
    """Everything on one machine: devnet, local Ray with simulated GPUs, the provider, a trace replay."""
    if providers > 1:
        from rich.console import Console

        from etrid_ray.demo.market import market_table, run_market

        Console().print(market_table(run_market(providers, jobs, rng_seed=rng_seed, timeout_s=max(timeout_s, 300))))
        return
    from etrid_ray.demo.replay import run_demo

    run_demo(jobs=jobs, speedup=speedup, rng_seed=rng_seed, gpus=gpus, bad=bad, timeout_s=timeout_s,
             dashboard=dashboard, keep_open=keep_open, idle_timeout_s=idle_timeout_s)
