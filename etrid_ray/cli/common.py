"""What every command group shares: the options that recur (`--url`, `--key-file`, `--json`), the one way a
long-running command stops on a signal, and the error handling that turns the client's typed errors into one
line and an exit status instead of a traceback."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeVar

import click

from etrid_ray.chain.errors import (
    ChainConnectionError,
    ChainError,
    ConfigError,
    ExtrinsicFailed,
    KeyLoadError,
)
from etrid_ray.config import WEBSOCKET_URL_ENVVARS

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_URL = "ws://127.0.0.1:9944"
URL_ENV = list(WEBSOCKET_URL_ENVVARS)  # the config's names for it, canonical first: one URL, one set of names
URL_HELP = f"node WebSocket URL (env {URL_ENV[0]}; {', '.join(URL_ENV[1:])} also read)"
KEY_FILE_HELP = "file holding the signing key: a secret phrase or //Dev URI (default: the ETRID_SEED env var)"
LOG_FORMAT_HELP = "log lines as text (default) or one JSON object a line (env ETRID_LOG_FORMAT)"


# options ----------------------------------------------------------------------------------------
class HiddenAliasOption(click.Option):
    """An option with old names that still work but are not shown (in --help and in error hints)."""

    def __init__(self, *args: Any, hidden_aliases: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hidden_aliases = tuple(hidden_aliases)

    @contextmanager
    def _shown_names(self) -> Iterator[None]:
        opts = self.opts
        self.opts = [o for o in opts if o not in self.hidden_aliases] or opts
        try:
            yield
        finally:
            self.opts = opts

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        with self._shown_names():
            return super().get_help_record(ctx)

    def get_error_hint(self, ctx: click.Context | None) -> str:
        with self._shown_names():
            return super().get_error_hint(ctx)


class RegistryChoice(click.Choice):
    """A `click.Choice` whose values come from a registry, read when first needed: the registry's module is
    imported only by a command that uses it, never by `etrid-ray --help` or another command."""

    def __init__(self, load: Callable[[], Iterable[str]], case_sensitive: bool = True) -> None:
        self._load = load
        self._choices: tuple[str, ...] | None = None
        self.case_sensitive = case_sensitive

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        if self._choices is None:
            self._choices = tuple(self._load())
        return self._choices


def url_option(help: str = URL_HELP, *, default: str | None = DEFAULT_URL,
               envvar: str | Sequence[str] = URL_ENV) -> Callable[[F], F]:
    """`--url`: the node's WebSocket URL (default: a devnet on this machine; None where it is optional)."""
    return click.option("--url", default=default, envvar=envvar, show_default=default is not None, help=help)


def key_file_option(help: str = KEY_FILE_HELP) -> Callable[[F], F]:
    """`--key-file`: the file holding the signing key (the value is the `key_file` argument). Its old name
    `--seed-file` still works, unlisted ("seed" is the original specification's word, not the key's)."""
    return click.option("--key-file", "--seed-file", "key_file", cls=HiddenAliasOption, hidden_aliases=("--seed-file",),
                        type=click.Path(dir_okay=False), default=None, help=help)


def random_seed_option(default: int, help: str) -> Callable[[F], F]:
    """`--random-seed` (the value is the `rng_seed` argument); its old name `--seed` still works, unlisted."""
    return click.option("--random-seed", "--seed", "rng_seed", cls=HiddenAliasOption, hidden_aliases=("--seed",),
                        type=int, default=default, show_default=True, help=help)


def json_option(help: str | None = "print JSON") -> Callable[[F], F]:
    """`--json`: machine-readable output (the value is the `as_json` argument)."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def log_format_option() -> Callable[[F], F]:
    return click.option("--log-format", type=click.Choice(["text", "json"]), default=None, envvar="ETRID_LOG_FORMAT",
                        help=LOG_FORMAT_HELP)


# signals ----------------------------------------------------------------------------------------
@contextmanager
def stop_on_signals(*signums: int) -> Iterator[threading.Event]:
    """The one way a long-running command is told to stop: an Event set by any of `signums` (default SIGINT and
    SIGTERM) while the block runs. Handlers are installed only on the main thread (where Python allows them; a
    command run from another thread just gets an Event nothing sets) and the previous ones are put back after."""
    stop = threading.Event()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in signums or (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# errors and output ------------------------------------------------------------------------------
def friendly(fn: F) -> F:
    """Turns the client's typed errors into one clear line and a non-zero exit, never a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from etrid_ray.blobs import BlobError

        try:
            return fn(*args, **kwargs)
        except KeyLoadError as exc:
            raise click.UsageError(str(exc)) from None
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None
        except ChainConnectionError as exc:
            raise click.ClickException(f"{exc}\n  check --url, or start a devnet: etrid-ray devnet") from None
        except ExtrinsicFailed as exc:
            raise click.ClickException(f"the chain rejected {exc.call or 'the call'}: {exc.error}") from None
        except BlobError as exc:
            raise click.ClickException(f"blob store: {exc}") from None
        except ChainError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def signer_from(key_file: str | None, *, required: bool = True) -> Any:
    """The signing key from `key_file` or the environment; with `required=False`, None when neither has one."""
    from etrid_ray.chain.keys import load_signer

    if not required:
        try:
            return load_signer(file=key_file)
        except KeyLoadError:
            if key_file is not None:
                raise
            return None
    return load_signer(file=key_file)


def prepare_ray(*, starts_cluster: bool) -> None:
    """Token auth set up before Ray is imported (Ray reads RAY_AUTH_MODE once, at import). A Ray this
    command starts itself listens on loopback only: it is one machine's, and Ray would otherwise bind the
    first interface (and `ray.init(_node_ip_address="127.0.0.1")` is turned back into that address)."""
    from etrid_ray.ray_auth import RayAuthError, prepare_driver

    if starts_cluster:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        prepare_driver(starts_cluster=starts_cluster)
    except RayAuthError as exc:
        raise click.UsageError(str(exc)) from None
