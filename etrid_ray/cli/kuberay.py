"""`etrid-ray render`: the KubeRay manifests for a config."""

from __future__ import annotations

from pathlib import Path

import click

from etrid_ray.cli.common import friendly


@click.command("render")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="provider config (YAML or JSON); default: the built-in defaults")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="cluster", show_default=True,
              help="directory the manifests are written to")
@friendly
def render(config_path: str | None, out_dir: str) -> None:
    """Write the KubeRay manifests (RayCluster, RayJob, ConfigMaps, Secret template, Namespace) for a config.

    Only the file is read (no env overrides), so the manifests do not change with the shell they are rendered in.
    """
    from etrid_ray.config import ProviderConfig, load_config
    from etrid_ray.kuberay.render import render_all

    config = load_config(config_path, env={}) if config_path else ProviderConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in render_all(config).items():
        (out / name).write_text(text)
        click.echo(f"wrote {out / name}")
