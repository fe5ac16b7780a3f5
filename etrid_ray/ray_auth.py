"""Ray token authentication for every Ray cluster etrid-ray starts or talks to.

Ray (2.60) enforces a static bearer token when `RAY_AUTH_MODE=token`, and looks for it in
`RAY_AUTH_TOKEN`, then the file `RAY_AUTH_TOKEN_PATH` names, then `~/.ray/auth_token`.
`ray.init()` writes that last file when it starts a local cluster; `ray start` never does, so
on a machine with an empty home the first `ray start --head` with token auth on fails with
"Token authentication is enabled but no authentication token was found". Rather than turn auth
off, the clusters the project starts use a token of its own, created here on first use
(`~/.etrid-ray/ray/auth_token`, mode 0600), unless the user already has one Ray would find.
Drivers in the same process read the same source: `use_token()` exports it before `ray.init`.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

AUTH_MODE_ENV = "RAY_AUTH_MODE"
TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
RAY_DEFAULT_TOKEN = Path("~/.ray/auth_token")
ETRID_HOME_ENV = "ETRID_RAY_HOME"


def etrid_home() -> Path:
    """The project's own state directory (`ETRID_RAY_HOME`, default `~/.etrid-ray`)."""
    return Path(os.environ.get(ETRID_HOME_ENV) or "~/.etrid-ray").expanduser()


def own_token_path() -> Path:
    return etrid_home() / "ray" / "auth_token"


class RayAuthError(RuntimeError):
    """The token setting cannot work as given; the message names the variable and the fix."""


@dataclass(frozen=True)
class TokenSource:
    """Where Ray will read the token from: an env var (`value` only) or a file."""

    kind: str  # "env" | "file"
    path: Path | None

    def describe(self) -> str:
        return f"${TOKEN_ENV}" if self.kind == "env" else str(self.path)

    def read(self) -> str:
        if self.kind == "env":
            return os.environ[TOKEN_ENV].strip()
        assert self.path is not None
        return self.path.read_text().strip()


def find_token() -> TokenSource | None:
    """The token Ray itself would use in this process's environment, or None when there is none."""
    if os.environ.get(TOKEN_ENV, "").strip():
        return TokenSource("env", None)
    named = os.environ.get(TOKEN_PATH_ENV, "").strip()
    if named:
        path = Path(named).expanduser()
        if not _nonempty(path):  # Ray aborts on this too; say which variable and how to fix it
            raise RayAuthError(f"{TOKEN_PATH_ENV} names {path}, which is missing or empty: write the cluster's "
                               f"token there (`ray get-auth-token --generate` makes one) or unset {TOKEN_PATH_ENV}")
        return TokenSource("file", path)
    default = RAY_DEFAULT_TOKEN.expanduser()
    return TokenSource("file", default) if _nonempty(default) else None


def _nonempty(path: Path) -> bool:
    try:
        return bool(path.read_text().strip())
    except OSError:
        return False


def create_token(path: Path) -> Path:
    """A new random token in `path`, readable by its owner only (never overwrites one that exists)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return path


def ensure_token() -> TokenSource:
    """The token Ray would find, or a new one of the project's own when Ray would find none."""
    found = find_token()
    if found is not None:
        return found
    path = own_token_path()
    if not _nonempty(path):
        try:
            create_token(path)
        except FileExistsError:  # an empty file left by a crash, or another process won the race
            if not _nonempty(path):
                path.unlink()
                create_token(path)
    return TokenSource("file", path)


def token_env(source: TokenSource) -> dict[str, str]:
    """The environment a Ray process (`ray start`, a driver) needs to use `source` with auth on."""
    env = {AUTH_MODE_ENV: "token"}
    if source.kind == "file":
        assert source.path is not None
        env[TOKEN_PATH_ENV] = str(source.path)
    return env


def use_token() -> TokenSource:
    """Turns token auth on for this process and every Ray process it starts, creating a token when
    none exists. Call before `ray.init` (Ray's C++ loader caches the token on first use)."""
    source = ensure_token()
    os.environ.update(token_env(source))
    return source


def client_token() -> TokenSource | None:
    """The token a driver connecting to an existing cluster should present: the one Ray would find,
    else the project's own (the token of the clusters etrid-ray starts), else None."""
    found = find_token()
    if found is not None:
        return found
    own = own_token_path()
    return TokenSource("file", own) if _nonempty(own) else None


def prepare_driver(*, starts_cluster: bool) -> TokenSource | None:
    """Sets this process up for `ray.init`; must run before `import ray`, which reads `RAY_AUTH_MODE` once.

    A driver that starts its own local cluster turns token auth on with `use_token()` (so `etrid-ray
    provider stop` and `status` can reach that cluster with the same token); one that connects to a
    running cluster presents `client_token()` when there is one, and leaves the mode alone otherwise."""
    if starts_cluster:
        return use_token()
    source = client_token()
    if source is not None:
        os.environ.update(token_env(source))
    return source


def dashboard_login(url: str) -> str:
    """How to open a Ray dashboard behind the token: its URL and where the token is (never the token)."""
    source = find_token() or TokenSource("file", own_token_path())
    where = f"the value of {source.describe()}" if source.kind == "env" else f"the contents of {source.describe()}"
    return f"Ray dashboard {url} — log in with {where}"
