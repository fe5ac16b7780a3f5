"""`etrid-ray earnings`: what each job made, on which hardware (the head's profit records)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from etrid_ray.cli.common import friendly, json_option, print_json


def _since(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date: write 2026-12-01 or 2026-12-01T08:00") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


@click.command("earnings")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="the provider's config (its journal_path says where the records are)")
@click.option("--records", "records_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help="a profit records file (<journal>.profit.sqlite) instead of the config's")
@click.option("--since", default=None, help="only jobs paid (or, unpaid, ended) on or after this date (UTC)")
@click.option("--by", type=click.Choice(["pool", "day", "handler"]), default="pool", show_default=True)
@click.option("--csv", "as_csv", is_flag=True, help="every job's row as CSV")
@json_option()
@friendly
def earnings(config_path: str | None, records_path: str | None, since: str | None, by: str, as_csv: bool,
             as_json: bool) -> None:
    """Net profit per pool, day or handler: what the chain paid (after its fee) minus each job's share of its
    hardware's cost (a cloud node's billed price × the job's share of its GPUs, or local electricity)."""
    from rich.console import Console
    from rich.table import Table

    from etrid_ray.config import load_config
    from etrid_ray.profit import group, to_csv
    from etrid_ray.provider.profit import ProfitBook
    from etrid_ray.units import PLANCK_PER_EDSC

    config = load_config(config_path)
    path = records_path or ProfitBook.beside(config.journal_file)
    if path == ":memory:" or not Path(path).exists():
        raise click.ClickException(f"no profit records at {path}: a provider head writes them beside its journal "
                                   "(journal_path); pass --config or --records")
    book = ProfitBook(path)
    try:
        rows = book.rows(_since(since))
    finally:
        book.close()
    rate = config.edsc_usd
    if as_csv:
        click.echo(to_csv(rows, rate), nl=False)
        return
    groups = group(rows, by, rate)  # type: ignore[arg-type]
    if as_json:
        print_json({"by": by, "edsc_usd": rate, "groups": [
            {"key": g.key, "jobs": g.jobs, "paid_jobs": g.paid_jobs, "gpu_seconds": round(g.gpu_seconds, 3),
             "cost_usd": round(g.cost_usd, 6), "cloud_cost_usd": round(g.cloud_cost_usd, 6),
             "paid_planck": str(g.paid_planck), "fee_planck": str(g.fee_planck), "net_usd": round(g.net_usd, 6)}
            for g in groups]})
        return
    table = Table(title=f"earnings by {by} (1 ËDSC = {rate:g} USD)")
    for col in (by, "jobs", "paid", "GPU-hours", "cost (USD)", "paid (ËDSC)", "fee (ËDSC)", "net (USD)"):
        table.add_column(col, justify="left" if col == by else "right")
    for g in groups:
        table.add_row(g.key, str(g.jobs), str(g.paid_jobs), f"{g.gpu_seconds / 3600:.3f}", f"{g.cost_usd:.4f}",
                      f"{g.paid_edsc:.4f}", f"{g.fee_planck / PLANCK_PER_EDSC:.4f}", f"{g.net_usd:.4f}")
    Console().print(table)
