"""`etrid-ray simulate`: the trace-driven simulator over the scaling policies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from etrid_ray.cli.common import RegistryChoice, friendly, json_option, print_json, random_seed_option


def _policy_names() -> tuple[str, ...]:
    """Every policy the scaling registry holds (`etrid_ray.scaling.POLICIES`), and the oracle bound."""
    from etrid_ray.sim.run import POLICY_NAMES

    return POLICY_NAMES


@click.command("simulate")
@click.option("--trace", "trace_path", default="philly", show_default=True,
              help="CSV with timestamp,duration,num_gpus (extra columns ignored; .gz read too); "
              "'philly' = the shipped Philly trace")
@click.option("--policy", "policies", multiple=True,
              type=RegistryChoice(_policy_names),
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
@random_seed_option(0, "random seed of the spot interruptions")
@click.option("--no-interruptions", is_flag=True, help="no spot interruptions")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="only the first N jobs of the trace")
@click.option("--no-plots", is_flag=True, help="write JSON only")
@click.option("--per-job", is_flag=True, help="also write each policy's jobs as profit rows (OUT/jobs-POLICY.csv: "
              "the columns `etrid-ray earnings --csv` prints for a live head)")
@json_option("print the summary JSON instead of the table")
@click.option("--explain-breakeven", is_flag=True, help="print per-GPU-hour break-even prices per pool and exit")
@click.option("--explain", "explain_job", type=int, default=None, metavar="JOB_ID",
              help="run only the profit policy (or those given with --policy) and print, per policy, one job's "
                   "timeline: its GPUs and pay on arrival, each change of placement with its reason code and the "
                   "policy's outlook, where and after what wait it started, interruptions, and its revenue or why "
                   "it was lost; JOB_ID is its position in the time-sorted trace (0 = first); writes nothing")
@friendly
def simulate(trace_path: str, policies: tuple[str, ...], local_gpus: int, price_per_gpu_hour: float,
             prices_path: str | None, edsc_usd: float, patience: float, declared_slack: float,
             config_path: str | None, out_dir: str,
             rng_seed: int, no_interruptions: bool, limit: int | None, no_plots: bool, per_job: bool, as_json: bool,
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
                               patience_s=patience or None, seed=rng_seed, interruptions=not no_interruptions,
                               declared_slack=declared_slack, base_config=base, per_job=per_job)
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
    if per_job:
        from etrid_ray.profit import to_csv

        for result in comparison.results:
            path = out / f"jobs-{result.policy}.csv"
            path.write_text(to_csv(result.job_profits, edsc_usd))
            written.append(path)
    if as_json:
        print_json(json.loads((out / "summary.json").read_text()))
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
