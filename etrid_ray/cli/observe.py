"""`etrid-ray exporter` and `etrid-ray status`: Prometheus metrics and the live view."""

from __future__ import annotations

import json

import click

from etrid_ray.cli.common import friendly, json_option, log_format_option, stop_on_signals, url_option


@click.command("exporter")
@url_option()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to listen on (0.0.0.0 inside a pod, so Prometheus can reach it)")
@click.option("--port", default=9090, show_default=True, type=click.IntRange(0, 65535),
              help="port for /metrics, /healthz and /readyz; 0 picks a free one")
@click.option("--interval", "interval_s", default=10.0, show_default=True, type=click.FloatRange(min=0.5),
              help="seconds between chain reads")
@click.option("--provider", "providers", multiple=True, help="only this provider's per-provider series (repeatable)")
@log_format_option()
@friendly
def exporter_cmd(url: str, host: str, port: int, interval_s: float, providers: tuple[str, ...],
                 log_format: str | None) -> None:
    """Serve the etrid_* Prometheus metrics from chain state alone (where no provider head runs).

    Prints the /metrics URL once listening; stops on SIGINT/SIGTERM.
    """
    from etrid_ray.chain.connection import validate_url
    from etrid_ray.telemetry.chain_source import run_exporter
    from etrid_ray.telemetry.logs import configure_logging

    validate_url(url)
    configure_logging(log_format)
    try:
        with stop_on_signals() as stop:
            run_exporter(url, host=host, port=port, interval_s=interval_s, providers=providers, stop=stop,
                         on_ready=lambda served: click.echo(f"{served}/metrics"))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port"
                                   ) from None


@click.command("status")
@url_option()
@click.option("--address", default=None, envvar="RAY_ADDRESS",
              help="Ray cluster address: read the provider head actor (default: chain state only)")
@click.option("--namespace", default="etrid", show_default=True, help="the head actor's Ray namespace")
@click.option("--once", is_flag=True, help="print one view and exit")
@json_option("JSON instead of tables (with --once: one object; without: one object a line, every --interval)")
@click.option("--interval", "interval_s", default=2.0, show_default=True, type=click.FloatRange(min=0.2),
              help="seconds between refreshes")
@log_format_option()
@friendly
def status_cmd(url: str, address: str | None, namespace: str, once: bool, as_json: bool, interval_s: float,
               log_format: str | None) -> None:
    """Live view: queue by status, running jobs, GPUs per pool, scaling decisions, spend vs budget, earnings.

    With --address, from the provider head actor; without, from chain state alone.
    """
    import time

    from etrid_ray.chain.connection import validate_url
    from etrid_ray.telemetry.logs import configure_logging
    from etrid_ray.telemetry.status_view import chain_snapshot_source, render

    configure_logging(log_format, level="WARNING")
    owns_ray = False
    if address:
        import ray

        from etrid_ray.service.actor import head_snapshot_source

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

        # SIGTERM ends the view as Ctrl-C does (that one a KeyboardInterrupt): the last view stays on screen
        with stop_on_signals(signal.SIGTERM) as stop, \
                Live(render(first, where=where), console=console, refresh_per_second=4) as live:
            while not stop.wait(interval_s):
                live.update(render(read(), where=where))
    except KeyboardInterrupt:
        pass
    finally:
        if owns_ray:
            import ray

            ray.shutdown()
