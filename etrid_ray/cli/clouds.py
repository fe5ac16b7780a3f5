"""`etrid-ray prices` and `etrid-ray spot-watch`: what the clouds charge, and their interruption notices."""

from __future__ import annotations

import sys

import click

from etrid_ray.cli.common import friendly, json_option, print_json, stop_on_signals
from etrid_ray.clouds.registry import notice_clouds


@click.command("prices")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="provider config (YAML or JSON); default: the built-in defaults and ETRID_* env vars")
@click.option("--live/--catalog", "live", default=None,
              help="read the cloud APIs (needs credentials) / only the shipped catalog; default: live_prices")
@json_option("print JSON instead of a table")
@friendly
def prices(config_path: str | None, live: bool | None, as_json: bool) -> None:
    """What each pool costs now: $/node-h, $/GPU-h, spot discount, interruption bucket, quota headroom, source, age.

    Live prices, quotas and capacity come from the cloud APIs when asked (--live or live_prices) and the
    credentials exist; otherwise, or when a call fails or a live price is older than price_max_age_s,
    the shipped catalog's price is shown with its date.
    """
    from etrid_ray.clouds.feed import MarketFeed
    from etrid_ray.clouds.report import price_rows, price_table
    from etrid_ray.config import load_config, pools_from_config

    config = load_config(config_path)
    feed = MarketFeed.from_config(config, live=live)
    rows = price_rows(feed, pools_from_config(config))
    if as_json:
        print_json(rows)
        return
    from rich.console import Console

    Console(width=None if sys.stdout.isatty() else 200).print(price_table(rows))  # piped: don't wrap at 80


@click.command("spot-watch")
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

    from etrid_ray.clouds.interruptions import DRAIN_KINDS
    from etrid_ray.kuberay.spot_watch import run_spot_watch

    kinds = [k.strip() for k in drain_on.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(DRAIN_KINDS))
    if unknown:
        raise click.BadParameter(f"unknown kind(s) {', '.join(unknown)}; choose from {', '.join(DRAIN_KINDS)}",
                                 param_hint="--drain-on")
    with stop_on_signals() as stop:
        code = run_spot_watch(cloud, endpoint=endpoint, interval_s=interval_s, request_timeout_s=request_timeout_s,
                              drain_kinds=kinds, notice_s=notice_s, address=address, node_id=node_id,
                              locate_timeout_s=locate_timeout_s, poll_s=poll_s, linger=linger, stop=stop,
                              echo=click.echo)
    sys.exit(code)
