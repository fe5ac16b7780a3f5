"""Signing keys: loaded from an environment variable or a file, never from argv, never shown.

Why so strict: a seed phrase on a command line lands in shell history and in
``ps`` output; one in a log lands in every log shipper. So the secret is only
read from ``ETRID_SEED`` (or another variable the caller names) or from a file
(a Kubernetes Secret mounted as a file, for instance), and the object that holds
it shows nothing but the public address in ``repr``/``str``.

Accepted secrets: a ``//Dev`` URI (``//Alice``), a BIP-39 mnemonic with an
optional derivation path (``word … word//hard/soft``), or a 0x-prefixed 32-byte
seed in hex.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from substrateinterface import Keypair, KeypairType

from etrid_ray.chain.errors import KeyLoadError

DEFAULT_SEED_ENV = "ETRID_SEED"
DEFAULT_SEED_FILE_ENV = "ETRID_SEED_FILE"


class Signer:
    """An sr25519 key pair whose secret never appears in ``repr``, ``str``, logs or pickles."""

    __slots__ = ("_keypair", "source")

    def __init__(self, keypair: Keypair, source: str) -> None:
        self._keypair = keypair
        #: where the key came from, e.g. ``env:ETRID_SEED`` or ``file:/run/secrets/seed`` (no secret)
        self.source = source

    @property
    def keypair(self) -> Keypair:
        """The substrate-interface key pair, for signing. Do not print it."""
        return self._keypair

    @property
    def address(self) -> str:
        return self._keypair.ss58_address

    @property
    def public_key(self) -> bytes:
        return bytes(self._keypair.public_key)

    def sign(self, payload: bytes) -> bytes:
        return self._keypair.sign(payload)

    def __repr__(self) -> str:
        return f"Signer(address={self.address!r}, source={self.source!r})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("a Signer holds a secret and is not picklable; pass the key's source instead")


def keypair_from_secret(secret: str, ss58_format: int = 42) -> Keypair:
    """Builds an sr25519 key pair from a dev URI, a mnemonic (optionally with a path) or a hex seed."""
    secret = secret.strip()
    if not secret:
        raise KeyLoadError("the key is empty")
    try:
        if "/" in secret:
            return Keypair.create_from_uri(secret, ss58_format=ss58_format, crypto_type=KeypairType.SR25519)
        if secret.startswith("0x"):
            return Keypair.create_from_seed(secret, ss58_format=ss58_format, crypto_type=KeypairType.SR25519)
        return Keypair.create_from_mnemonic(secret, ss58_format=ss58_format, crypto_type=KeypairType.SR25519)
    except Exception as exc:  # noqa: BLE001 - the library's errors may quote the secret: never chain them
        kind = type(exc).__name__
        raise KeyLoadError(f"the key is not a valid //Dev URI, BIP-39 mnemonic or 0x hex seed ({kind})") from None


def dev_signer(name: str, ss58_format: int = 42) -> Signer:
    """A well-known development account (``Alice`` … ``Ferdie``); public test keys, not secrets."""
    uri = name if name.startswith("//") else f"//{name}"
    return Signer(keypair_from_secret(uri, ss58_format), source=f"dev:{uri}")


def load_signer(
    *,
    env_var: str = DEFAULT_SEED_ENV,
    file: str | os.PathLike[str] | None = None,
    environ: dict[str, str] | None = None,
    ss58_format: int = 42,
) -> Signer:
    """Loads the signing key from ``file`` when given, else from the environment.

    Order: an explicit ``file``; the variable ``env_var`` (default ``ETRID_SEED``); a file named by
    ``ETRID_SEED_FILE``. The error says which of these to set when none is.
    """
    env = os.environ if environ is None else environ
    if file is not None:
        return _from_file(Path(file), ss58_format)
    value = env.get(env_var)
    if value:
        return Signer(keypair_from_secret(value, ss58_format), source=f"env:{env_var}")
    path = env.get(DEFAULT_SEED_FILE_ENV)
    if path:
        return _from_file(Path(path), ss58_format)
    raise KeyLoadError(
        f"no signing key: set the environment variable {env_var} to a seed phrase or //Dev URI "
        f"(e.g. export {env_var}=//Alice on a devnet), or pass --key-file PATH "
        f"(or set {DEFAULT_SEED_FILE_ENV}) naming a file that contains it"
    )


def _from_file(path: Path, ss58_format: int) -> Signer:
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise KeyLoadError(f"key file {path} is not a regular file: --key-file must name a file")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyLoadError(f"key file {path} does not exist: check --key-file / ETRID_SEED_FILE") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyLoadError(f"key file {path} cannot be read ({type(exc).__name__})") from None
    return Signer(keypair_from_secret(text, ss58_format), source=f"file:{path}")
