"""Provider keys: generate one, inspect it — without showing the phrase (the Kubernetes Secret holding it is
rendered by `kuberay.credentials`, beside the template it fills).

Why so careful: the secret phrase controls the provider's stake and earnings. It never travels on a
command line (``ps`` shows every argument to every user), is never logged, and reaches a terminal only
when the caller asks for it by flag (``--stdout``). Otherwise it goes to a file created with mode
0600 (``O_EXCL``: an existing file is never clobbered unless asked, and a symlink is never followed).
Reading goes through the same two doors as everywhere else in the project: an environment variable
(``ETRID_SEED``) or a file (``--key-file`` / ``ETRID_SEED_FILE``) — see ``etrid_ray.chain.keys``.

Keys are sr25519, as ``subkey generate --scheme sr25519``: a BIP-39 mnemonic, its mini-secret seed,
the public key and the SS58 address (prefix 42, generic Substrate, unless asked otherwise).
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from substrateinterface import Keypair, KeypairType

from etrid_ray.chain.errors import KeyLoadError
from etrid_ray.chain.keys import DEFAULT_SEED_ENV, DEFAULT_SEED_FILE_ENV, keypair_from_secret

SCHEME = "sr25519"
WORD_COUNTS = (12, 15, 18, 21, 24)
SEED_KEY = "ETRID_SEED"  # the Secret's key the head reads (render.SECRET_KEYS)
ADDRESS_KEY = "ETRID_PROVIDER_ADDRESS"  # public: lets TEE workers bind attestations to the provider


class Secret:
    """A secret string that shows nothing in ``repr``/``str``/f-strings and refuses to be pickled."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself: only for signing, for writing to a 0600 file, or for an explicit --stdout."""
        return self._value

    def __repr__(self) -> str:
        return "Secret(<hidden>)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __reduce__(self) -> Any:
        raise TypeError("a Secret is not picklable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", len(self._value)))


@dataclass(frozen=True)
class KeyInfo:
    """The public side of a key: safe to print, log and commit."""

    address: str
    public_key: str  # 0x-hex, 32 bytes
    account_id: str  # the same bytes: the chain's AccountId32
    ss58_format: int
    scheme: str
    source: str  # where it came from (``env:ETRID_SEED``, ``file:/run/secrets/seed``, ``generated``)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _info(keypair: Keypair, source: str, ss58_format: int) -> KeyInfo:
    pub = "0x" + bytes(keypair.public_key).hex()
    return KeyInfo(address=keypair.ss58_address, public_key=pub, account_id=pub, ss58_format=ss58_format,
                   scheme=SCHEME, source=source)


def generate(words: int = 12, ss58_format: int = 42) -> tuple[Secret, KeyInfo]:
    """A fresh sr25519 key: (the mnemonic, its public side)."""
    if words not in WORD_COUNTS:
        raise ValueError(f"a BIP-39 phrase has {', '.join(map(str, WORD_COUNTS))} words, not {words}")
    phrase = Keypair.generate_mnemonic(words)
    keypair = Keypair.create_from_mnemonic(phrase, ss58_format=ss58_format, crypto_type=KeypairType.SR25519)
    return Secret(phrase), _info(keypair, "generated", ss58_format)


def key_info(secret: Secret, source: str = "", ss58_format: int = 42) -> KeyInfo:
    return _info(keypair_from_secret(secret.reveal(), ss58_format), source, ss58_format)


def load_secret(*, file: str | os.PathLike[str] | None = None, env_var: str = DEFAULT_SEED_ENV,
                environ: dict[str, str] | None = None) -> tuple[Secret, str]:
    """The secret phrase itself (for ``k8s-secret``), from the same places ``load_signer`` reads: an explicit
    file, else ``env_var``, else the file ``ETRID_SEED_FILE`` names. Validated as a key before it is returned."""
    env = os.environ if environ is None else environ
    if file is not None:
        text, source = _read_secret_file(Path(file)), f"file:{file}"
    elif env.get(env_var):
        text, source = env[env_var], f"env:{env_var}"
    elif env.get(DEFAULT_SEED_FILE_ENV):
        path = env[DEFAULT_SEED_FILE_ENV]
        text, source = _read_secret_file(Path(path)), f"file:{path}"
    else:
        raise KeyLoadError(f"no key: pass --key-file FILE (e.g. one written by `etrid-ray keys generate --out FILE`), "
                           f"or set {env_var} or {DEFAULT_SEED_FILE_ENV}")
    secret = Secret(text.strip())
    keypair_from_secret(secret.reveal())  # refuses a malformed key without quoting it
    return secret, source


def _read_secret_file(path: Path) -> str:
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise KeyLoadError(f"key file {path} is not a regular file")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyLoadError(f"key file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyLoadError(f"key file {path} cannot be read ({type(exc).__name__})") from None


def write_private_file(path: str | os.PathLike[str], text: str, *, overwrite: bool = False) -> Path:
    """Writes ``text`` to a new file readable by its owner only (0600), whatever the umask.

    Without ``overwrite`` an existing path is refused (``O_EXCL``, which also never follows a symlink).
    With it, the text goes to a fresh 0600 file beside it that then replaces the old one, so the secret is
    never, even briefly, in a file with wider permissions."""
    target = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    if not overwrite:
        try:
            fd = os.open(target, flags, 0o600)
        except FileExistsError:
            raise FileExistsError(f"{target} exists: choose another path or pass --force to replace it") from None
        _write_fd(fd, text)
        return target
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, flags, 0o600)
    try:
        _write_fd(fd, text)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return target


def _write_fd(fd: int, text: str) -> None:
    try:
        os.fchmod(fd, 0o600)  # the umask can only narrow the mode; this pins it exactly
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise


def subkey_text(secret: Secret, info: KeyInfo) -> str:
    """``subkey generate --scheme sr25519``'s layout (phrase included): only for an explicit ``--stdout``."""
    keypair = keypair_from_secret(secret.reveal(), info.ss58_format)
    seed = keypair.seed_hex
    seed_hex = seed.hex() if isinstance(seed, bytes | bytearray) else str(seed or "").removeprefix("0x")
    lines = [f"Secret phrase:       {secret.reveal()}",
             f"  Network ID:        {'substrate' if info.ss58_format == 42 else info.ss58_format}",
             f"  Secret seed:       0x{seed_hex}",
             f"  Public key (hex):  {info.public_key}",
             f"  Account ID:        {info.account_id}",
             f"  Public key (SS58): {info.address}",
             f"  SS58 Address:      {info.address}"]
    return "\n".join(lines) + "\n"
