"""`etrid-ray config example|check`: the provider config."""

from __future__ import annotations

import json

import click

from etrid_ray.cli.common import friendly


@click.group("config")
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
@friendly
def config_check_cmd(config_path: str) -> None:
    """Validate a provider config: exit 2 naming each bad key and its fix, else print the settings that
    differ from the defaults."""
    from etrid_ray.config import load_config

    changed = load_config(config_path).model_dump(mode="json", exclude_defaults=True)
    click.echo(f"{config_path}: valid; {len(changed)} setting(s) differ from the defaults")
    if changed:
        click.echo(json.dumps(changed, indent=2, sort_keys=True))
