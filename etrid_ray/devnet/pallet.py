"""The pallet framework: how a pallet declares its types, storage, calls, events, errors and constants.

A pallet's declarations build both the metadata and the dispatch table, so a
call's index, argument names and types exist in exactly one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from etrid_ray.devnet.storage import StorageItem
from etrid_ray.devnet.type_registry import Field, TypeRegistry, Variant

if TYPE_CHECKING:
    from etrid_ray.devnet.runtime import Runtime


class DispatchError(Exception):
    """A failed dispatch, in the shape of `sp_runtime::DispatchError` (as a scalecodec value)."""

    def __init__(self, value: Any, description: str = "") -> None:
        super().__init__(description or str(value))
        self.value = value


class BadOrigin(DispatchError):
    def __init__(self) -> None:
        super().__init__("BadOrigin", "bad origin")


@dataclass(frozen=True)
class Origin:
    """Who dispatches a call: a signed account (0x-hex public key), Root (via Sudo) or None (inherents)."""

    kind: str  # "Signed" | "Root" | "None"
    account: str | None = None

    @staticmethod
    def signed(account: str) -> Origin:
        return Origin("Signed", account)


ROOT = Origin("Root")
NONE = Origin("None")

#: The two runtimes the devnet serves (`etrid-ray devnet --runtime`). `upstream` is the Etrid AI-Compute runtime's
#: shape exactly, as its source declares it; `etrid-ray` is that shape with the devnet's extensions appended after
#: upstream's items (calls, events, errors, constants, storage, pallets), so a client built for upstream works on it.
ETRID_RAY = "etrid-ray"
UPSTREAM = "upstream"
FLAVOURS = (ETRID_RAY, UPSTREAM)


@dataclass
class CallDef:
    name: str
    index: int
    args: list[tuple[str, int, str]]
    handler: Callable[..., None]
    docs: tuple[str, ...] = ()
    weight: int = 10_000_000


@dataclass
class ConstantDef:
    name: str
    ty: int
    value: Any
    docs: tuple[str, ...] = ()


@dataclass
class Pallet:
    """Base class. Subclasses set `name`, `index`, `module` (Rust crate name) and implement `declare`."""

    runtime: Runtime
    name: str = ""
    index: int = 0
    module: str = ""
    storage_prefix: str = ""
    storage_items: list[StorageItem] = field(default_factory=list)
    calls: list[CallDef] = field(default_factory=list)
    events: list[Variant] = field(default_factory=list)
    errors: list[Variant] = field(default_factory=list)
    constants: list[ConstantDef] = field(default_factory=list)
    call_ty: int | None = None
    event_ty: int | None = None
    error_ty: int | None = None
    _error_index: dict[str, int] = field(default_factory=dict)
    _event_fields: dict[str, tuple[Field, ...]] = field(default_factory=dict)

    # declaration helpers --------------------------------------------------------------------------

    @property
    def reg(self) -> TypeRegistry:
        return self.runtime.registry

    @property
    def extended(self) -> bool:
        """Whether the devnet's extensions are on (the `etrid-ray` runtime), or this is upstream's shape alone."""
        return self.runtime.config.flavour != UPSTREAM

    def declare(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def storage(self, name: str, value_ty: int, default: Any = None, *, key_ty: int | None = None,
                hasher: str = "Blake2_128Concat", optional: bool = False, docs: str = "") -> StorageItem:
        item = StorageItem(self.storage_prefix or self.name, name, value_ty, default, key_ty,
                           hasher if key_ty is not None else None, optional, (docs,) if docs else ())
        self.storage_items.append(item)
        return item

    def call(self, index: int, name: str, args: list[tuple[str, int, str]], handler: Callable[..., None],
             docs: str = "", weight: int = 10_000_000) -> None:
        self.calls.append(CallDef(name, index, args, handler, (docs,) if docs else (), weight))

    def event(self, name: str, fields: list[tuple[str, int, str]], docs: str = "") -> None:
        fs = tuple(Field(n, t, tn) for n, t, tn in fields)
        self._event_fields[name] = fs
        self.events.append(Variant(name, len(self.events), fs, (docs,) if docs else ()))

    def error(self, name: str, docs: str = "") -> None:
        self._error_index[name] = len(self.errors)
        self.errors.append(Variant(name, len(self.errors), (), (docs,) if docs else ()))

    def constant(self, name: str, ty: int, value: Any, docs: str = "") -> None:
        self.constants.append(ConstantDef(name, ty, value, (docs,) if docs else ()))

    def build_enums(self) -> None:
        """Turns the declared calls, events and errors into the pallet's `Call`, `Event` and `Error` types."""
        path = (self.module, "pallet")
        if self.calls:
            variants = [Variant(c.name, c.index, tuple(Field(n, t, tn) for n, t, tn in c.args), c.docs)
                        for c in sorted(self.calls, key=lambda c: c.index)]
            self.call_ty = self.reg.variant(path + ("Call",), variants, params=(("T", None),))
        if self.events:
            self.event_ty = self.reg.variant(path + ("Event",), self.events, params=(("T", None),))
        if self.errors:
            self.error_ty = self.reg.variant(path + ("Error",), self.errors, params=(("T", None),))

    # runtime helpers ------------------------------------------------------------------------------

    def fail(self, error: str) -> DispatchError:
        """Builds the `DispatchError::Module` for one of this pallet's errors (raise the result)."""
        idx = self._error_index[error]
        return DispatchError({"Module": {"index": self.index, "error": "0x" + bytes([idx, 0, 0, 0]).hex()}},
                             f"{self.name}.{error}")

    def emit(self, name: str, **fields: Any) -> None:
        expected = self._event_fields[name]
        if len(expected) != len(fields):
            raise TypeError(f"{self.name}.{name} takes {[f.name for f in expected]}")
        self.runtime.deposit_event(self.name, name, fields if fields else None)

    @staticmethod
    def ensure_signed(origin: Origin) -> str:
        if origin.kind != "Signed" or origin.account is None:
            raise BadOrigin()
        return origin.account

    @staticmethod
    def ensure_root(origin: Origin) -> None:
        if origin.kind != "Root":
            raise BadOrigin()

    def genesis(self) -> None:
        """Writes the pallet's genesis state; most pallets start empty."""

    def on_initialize(self, block_number: int) -> None:
        """Runs at the start of every block, before extrinsics."""
