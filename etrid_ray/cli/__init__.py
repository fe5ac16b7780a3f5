"""``etrid-ray``: the command line (devnet, chain info, provider registration, job submission, …).

One module per command group; the options several commands share (`--url`, `--key-file`, `--json`), the
signal handling of the long-running ones and the error handling are in `common`.

Why these rules: signing keys come only from ``ETRID_SEED`` or ``--key-file`` (a
path on argv is fine, a key is not); every configuration mistake exits with a
message that names the option and the fix instead of a traceback.
"""

from __future__ import annotations

import sys

import click

from etrid_ray.cli import (
    chain,
    clouds,
    compliance,
    config,
    demo,
    devnet,
    earnings,
    keys,
    kuberay,
    observe,
    provider,
    simulate,
    tee,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="etrid-ray", prog_name="etrid-ray")
def main() -> None:
    """Ray-based GPU provider for the Etrid AI-Compute chain, with an embedded devnet."""


for command in (
    devnet.devnet,
    chain.chain_group,
    chain.submit,
    provider.provider_group,
    demo.demo,
    kuberay.render,
    clouds.prices,
    clouds.spot_watch,
    earnings.earnings,
    observe.exporter_cmd,
    observe.status_cmd,
    keys.keys_group,
    tee.tee_group,
    compliance.compliance_group,
    compliance.audit_group,
    simulate.simulate,
    config.config_group,
):
    main.add_command(command)

__all__ = ["main"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
