"""Typed errors of the chain client.

Why typed: the provider head decides what to do by the *kind* of failure (retry
on a lost connection, resync the nonce on a stale one, give up on a pallet error
such as ``JobMarketplace.JobNotPending``). A pallet error keeps the module, the
error name and its docs exactly as the metadata states them, the same triple that
substrate-interface's ``ExtrinsicReceipt.error_message`` gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from etrid_ray.chain.submit import Receipt


class ChainError(Exception):
    """Base of every error raised by ``etrid_ray.chain``."""


class ConfigError(ChainError):
    """A configuration mistake (bad URL, missing key, malformed amount): the message names the fix."""


class ChainConnectionError(ChainError):
    """The node could not be reached, even after the reconnect attempts."""


class UnsupportedError(ChainError):
    """The runtime lacks a pallet, call or storage item this operation needs."""


class KeyLoadError(ConfigError):
    """A signing key could not be loaded. The message never contains the secret."""


@dataclass
class RpcError(ChainError):
    """A JSON-RPC error answer from the node (e.g. 1010 Invalid Transaction)."""

    code: int
    message: str
    data: Any = None
    method: str = ""

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        extra = f": {self.data}" if self.data not in (None, "") else ""
        where = f" ({self.method})" if self.method else ""
        return f"RPC error {self.code} {self.message}{extra}{where}"

    @property
    def text(self) -> str:
        return f"{self.message} {self.data or ''}".lower()

    @property
    def is_invalid_transaction(self) -> bool:
        return self.code == 1010

    @property
    def is_stale(self) -> bool:
        """The nonce was already used: resync and sign again."""
        return self.code == 1010 and ("stale" in self.text or "outdated" in self.text)

    @property
    def is_future(self) -> bool:
        """The nonce is ahead of the chain (a gap): resync and sign again."""
        return self.code == 1010 and "future" in self.text

    @property
    def is_already_imported(self) -> bool:
        """The very same extrinsic is already in the pool: not an error for a resend."""
        return self.code == 1013 or "already imported" in self.text

    @property
    def is_priority_too_low(self) -> bool:
        """Another extrinsic with our nonce is in the pool (1014): the local counter is behind."""
        return self.code == 1014 or "priority is too low" in self.text


@dataclass(frozen=True)
class PalletError:
    """A dispatch error as the metadata names it: ``module`` is the pallet name (or ``System``)."""

    module: str
    name: str
    docs: tuple[str, ...] = ()
    type: str = "Module"

    def __str__(self) -> str:
        doc = " ".join(self.docs).strip()
        return f"{self.module}.{self.name}" + (f" ({doc})" if doc else "")

    def as_error_message(self) -> dict[str, Any]:
        """The dict shape of substrate-interface's ``ExtrinsicReceipt.error_message``."""
        return {"type": self.type, "name": self.name, "docs": list(self.docs)}


class ExtrinsicFailed(ChainError):
    """The extrinsic was included but its dispatch failed (``System.ExtrinsicFailed``)."""

    def __init__(self, error: PalletError, receipt: Receipt | None = None, call: str = "") -> None:
        self.error = error
        self.receipt = receipt
        self.call = call
        where = f"{call}: " if call else ""
        super().__init__(f"{where}{error}")

    @property
    def module(self) -> str:
        return self.error.module

    @property
    def name(self) -> str:
        return self.error.name

    @property
    def docs(self) -> tuple[str, ...]:
        return self.error.docs


class InclusionTimeout(ChainError):
    """An extrinsic was accepted by the pool but not seen in a block in time."""

    def __init__(self, extrinsic_hashes: list[str], timeout: float) -> None:
        self.extrinsic_hashes = extrinsic_hashes
        super().__init__(f"{len(extrinsic_hashes)} extrinsic(s) not included within {timeout:.0f}s")
