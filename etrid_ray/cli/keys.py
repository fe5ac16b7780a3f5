"""`etrid-ray keys`: provider keys (generate, the Kubernetes Secret, inspect)."""

from __future__ import annotations

from pathlib import Path

import click

from etrid_ray.cli.common import friendly, json_option, key_file_option, print_json


@click.group("keys")
def keys_group() -> None:
    """Provider keys (sr25519): generate, render the Kubernetes Secret, inspect. The phrase is never an argument."""


def _secret_destination(out_path: Path | None, to_stdout: bool) -> None:
    if out_path is None and not to_stdout:
        raise click.UsageError("say where the secret goes: --out FILE (a new file, mode 0600) or --stdout")
    if out_path is not None and to_stdout:
        raise click.UsageError("--out and --stdout are exclusive: the secret goes to one place")


@keys_group.command("generate")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write the secret phrase to this new file (mode 0600)")
@click.option("--stdout", "to_stdout", is_flag=True,
              help="print the secret phrase (subkey's layout) instead of writing a file")
@click.option("--words", type=click.Choice(["12", "15", "18", "21", "24"]), default="12", show_default=True)
@click.option("--ss58-format", type=click.IntRange(0, 16383), default=42, show_default=True)
@click.option("--force", is_flag=True, help="replace an existing --out file")
@json_option("print the public side as JSON")
def keys_generate(out_path: Path | None, to_stdout: bool, words: str, ss58_format: int, force: bool,
                  as_json: bool) -> None:
    """A new sr25519 key, like `subkey generate --scheme sr25519`: prints its SS58 address, keeps the phrase secret."""
    from dataclasses import replace

    from etrid_ray.security.keys import generate, subkey_text, write_private_file

    _secret_destination(out_path, to_stdout)
    secret, info = generate(int(words), ss58_format)
    if to_stdout:
        click.echo(subkey_text(secret, info), nl=False)
        return
    assert out_path is not None
    try:
        write_private_file(out_path, secret.reveal() + "\n", overwrite=force)
    except FileExistsError as exc:
        raise click.UsageError(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {out_path}: {exc.strerror}") from None
    info = replace(info, source=f"file:{out_path}")
    if as_json:
        print_json(info.as_dict())
        return
    click.echo(info.address)
    click.echo(f"public key {info.public_key}; secret phrase written to {out_path} (mode 0600)", err=True)


@keys_group.command("k8s-secret")
@key_file_option("key file (default: the ETRID_SEED env var, or the file ETRID_SEED_FILE names)")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write the Secret manifest to this new file (mode 0600)")
@click.option("--stdout", "to_stdout", is_flag=True, help="print the manifest (it holds the phrase, base64)")
@click.option("--namespace", default=None, help="default: the rendered manifests' namespace")
@click.option("--name", default=None, help="default: etrid-provider-credentials")
@click.option("--force", is_flag=True, help="replace an existing --out file")
@friendly
def keys_k8s_secret(key_file: str | None, out_path: Path | None, to_stdout: bool, namespace: str | None,
                    name: str | None, force: bool) -> None:
    """The etrid-provider-credentials Secret for a key, without showing the phrase (unless --stdout)."""
    from etrid_ray.kuberay.credentials import k8s_secret_yaml
    from etrid_ray.security.keys import key_info, load_secret, write_private_file

    _secret_destination(out_path, to_stdout)
    secret, source = load_secret(file=key_file)
    info = key_info(secret, source)
    text = k8s_secret_yaml(secret, info, name=name, namespace=namespace)
    if to_stdout:
        click.echo(text, nl=False)
        return
    assert out_path is not None
    try:
        write_private_file(out_path, text, overwrite=force)
    except FileExistsError as exc:
        raise click.UsageError(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {out_path}: {exc.strerror}") from None
    click.echo(f"wrote the Secret for {info.address} to {out_path} (mode 0600); apply it with "
               f"kubectl apply -f {out_path}")


@keys_group.command("inspect")
@key_file_option("key file (default: the --env-var variable, or the file ETRID_SEED_FILE names)")
@click.option("--env-var", default="ETRID_SEED", show_default=True, help="environment variable holding the key")
@click.option("--ss58-format", type=click.IntRange(0, 16383), default=42, show_default=True)
@json_option()
@friendly
def keys_inspect(key_file: str | None, env_var: str, ss58_format: int, as_json: bool) -> None:
    """The address and public key of a key (from a file or the environment); never the phrase."""
    from etrid_ray.security.keys import key_info, load_secret

    secret, source = load_secret(file=key_file, env_var=env_var)
    info = key_info(secret, source, ss58_format)
    if as_json:
        print_json(info.as_dict())
        return
    for label, value in (("SS58 address", info.address), ("public key", info.public_key),
                         ("account id", info.account_id), ("scheme", info.scheme), ("source", info.source)):
        click.echo(f"{label + ':':<14}{value}")
