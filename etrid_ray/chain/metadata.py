"""A read-only view of the node's V14 metadata: pallets, calls, storage, events, errors, constants.

Why: chain.md says pallet indices are not fixed and a real node may lack the
devnet's extensions (``claim_job``, ``report_telemetry``, ``Utility``). So every
name the client uses is looked up here, and "does the runtime have X?" is one
call (:meth:`ChainMetadata.has_call`). Storage keys are built from the hashers
the metadata declares, and values decode with the compiled
:class:`~etrid_ray.chain.codec.TypeRegistry`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from etrid_ray.chain.codec import HASHERS, CodecError, TypeRegistry, VariantInfo, twox_128
from etrid_ray.chain.errors import PalletError, UnsupportedError


def _raw_bytes(value: Any) -> bytes:
    """Inverts scalecodec's ``Bytes`` decoding, which yields text when the bytes are valid UTF-8."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if value is None:
        return b""
    text = str(value)
    if text.startswith("0x"):
        try:
            raw = bytes.fromhex(text[2:])
        except ValueError:
            return text.encode("utf-8")
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw
    return text.encode("utf-8")


_BOUND = re.compile(r"BoundedVec<.*,\s*ConstU32<\s*(\d+)\s*>\s*>")


@dataclass(frozen=True)
class StorageEntry:
    """One storage item, with everything needed to build its keys and decode its values."""

    pallet: str
    name: str
    prefix: bytes  # twox128(pallet prefix) ++ twox128(name)
    hashers: tuple[str, ...]
    key_types: tuple[int, ...]
    value_type: int
    optional: bool
    default: bytes
    registry: TypeRegistry = field(repr=False, compare=False)

    def key(self, *params: Any) -> bytes:
        if len(params) != len(self.hashers):
            raise ValueError(f"{self.pallet}.{self.name} takes {len(self.hashers)} key(s), got {len(params)}")
        out = self.prefix
        for hasher, ty, param in zip(self.hashers, self.key_types, params, strict=True):
            out += HASHERS[hasher](self.registry.encode_key(ty, param))
        return out

    def key_hex(self, *params: Any) -> str:
        return "0x" + self.key(*params).hex()

    def u64_keys_hex(self, ids: list[int]) -> list[str]:
        """Fast path for the hot maps keyed by ``u64`` (``Jobs``, ``GpuNodes``, ``GpuJobs``)."""
        if len(self.hashers) != 1:
            raise ValueError(f"{self.pallet}.{self.name} is not a single-key map")
        hasher = HASHERS[self.hashers[0]]
        prefix = self.prefix
        return ["0x" + (prefix + hasher(i.to_bytes(8, "little"))).hex() for i in ids]

    def decode(self, data: bytes | None) -> Any:
        """Decodes a stored value; an absent value yields ``None`` (Optional) or the default."""
        if data is None:
            if self.optional:
                return None
            data = self.default
        return self.registry.decode(self.value_type, data)


@dataclass(frozen=True)
class PalletInfo:
    name: str
    index: int
    calls: dict[str, VariantInfo]
    events: dict[str, VariantInfo]
    errors: dict[int, VariantInfo]
    storage: dict[str, StorageEntry]
    constants: dict[str, tuple[int, bytes]]


class ChainMetadata:
    """Everything the client reads from ``state_getMetadata``, indexed by name."""

    def __init__(self, metadata_value: Any, ss58_format: int = 42) -> None:
        versioned = metadata_value[1] if isinstance(metadata_value, list | tuple) else metadata_value
        if not isinstance(versioned, dict) or "V14" not in versioned:
            keys = list(versioned) if isinstance(versioned, dict) else type(versioned).__name__
            raise UnsupportedError(f"only V14 metadata is supported (node served {keys})")
        v14 = versioned["V14"]
        types = v14["types"]["types"] if isinstance(v14["types"], dict) else v14["types"]
        self.registry = TypeRegistry(types, ss58_format=ss58_format)
        self.pallets: dict[str, PalletInfo] = {}
        self.by_index: dict[int, PalletInfo] = {}
        self.extrinsic_type: int = int(v14["extrinsic"]["ty"])
        for p in v14["pallets"]:
            info = self._pallet(p)
            self.pallets[info.name] = info
            self.by_index[info.index] = info

    def _pallet(self, p: dict[str, Any]) -> PalletInfo:
        name = p["name"]
        reg = self.registry
        calls = {v.name: v for v in reg.variants(int(p["calls"]["ty"]))} if p.get("calls") else {}
        events = {v.name: v for v in reg.variants(int(p["event"]["ty"]))} if p.get("event") else {}
        errors = {v.index: v for v in reg.variants(int(p["error"]["ty"]))} if p.get("error") else {}
        storage: dict[str, StorageEntry] = {}
        if p.get("storage"):
            pallet_prefix = twox_128(p["storage"]["prefix"].encode())
            for e in p["storage"]["entries"]:
                ty = e["type"]
                if "Plain" in ty:
                    hashers: tuple[str, ...] = ()
                    key_types: tuple[int, ...] = ()
                    value_type = int(ty["Plain"])
                else:
                    m = ty["Map"]
                    hashers = tuple(m["hashers"])
                    key_id = int(m["key"])
                    if len(hashers) > 1:
                        kd = reg.type_def(key_id)
                        key_types = tuple(int(t) for t in kd["tuple"])
                    else:
                        key_types = (key_id,)
                    value_type = int(m["value"])
                storage[e["name"]] = StorageEntry(
                    pallet=name,
                    name=e["name"],
                    prefix=pallet_prefix + twox_128(e["name"].encode()),
                    hashers=hashers,
                    key_types=key_types,
                    value_type=value_type,
                    optional=e["modifier"] == "Optional",
                    default=_raw_bytes(e.get("default")),
                    registry=reg,
                )
        constants = {c["name"]: (int(c["type"]), _raw_bytes(c["value"])) for c in p.get("constants") or []}
        return PalletInfo(name, int(p["index"]), calls, events, errors, storage, constants)

    # lookups ------------------------------------------------------------------------------------
    def has_pallet(self, pallet: str) -> bool:
        return pallet in self.pallets

    def has_call(self, pallet: str, call: str) -> bool:
        p = self.pallets.get(pallet)
        return p is not None and call in p.calls

    def has_storage(self, pallet: str, name: str) -> bool:
        p = self.pallets.get(pallet)
        return p is not None and name in p.storage

    def require_call(self, pallet: str, call: str) -> VariantInfo:
        p = self.pallets.get(pallet)
        if p is None:
            raise UnsupportedError(f"the runtime has no pallet {pallet}")
        if call not in p.calls:
            raise UnsupportedError(f"the runtime's {pallet} pallet has no call {call}")
        return p.calls[call]

    def bound(self, pallet: str, call: str, *path: str) -> int | None:
        """The `N` of the `BoundedVec<_, ConstU32<N>>` at `path` (an argument of `pallet.call`, then struct fields):
        V14 metadata encodes a bounded vector as a plain sequence and names its bound only in the Rust type name,
        so this is the one place a client learns it. None when the runtime declares no bound there."""
        info = self.require_call(pallet, call)
        names, types, type_names = info.field_names, info.field_types, info.field_type_names
        if not path or path[0] not in names:
            raise UnsupportedError(f"{pallet}.{call} has no argument {path[0] if path else '(none given)'}")
        i = names.index(path[0])
        ty, type_name = types[i], type_names[i] if i < len(type_names) else ""
        for name in path[1:]:
            fields = {n: (t, tn) for n, t, tn in self.registry.composite_fields(ty)}
            if name not in fields:
                raise UnsupportedError(f"{pallet}.{call}: {'.'.join(path)} is not in the runtime's types")
            ty, type_name = fields[name]
        found = _BOUND.search(type_name)
        return int(found.group(1)) if found else None

    def storage(self, pallet: str, name: str) -> StorageEntry:
        p = self.pallets.get(pallet)
        if p is None or name not in p.storage:
            raise UnsupportedError(f"the runtime has no storage {pallet}.{name}")
        return p.storage[name]

    def constant(self, pallet: str, name: str) -> Any:
        p = self.pallets.get(pallet)
        if p is None or name not in p.constants:
            raise UnsupportedError(f"the runtime has no constant {pallet}.{name}")
        ty, raw = p.constants[name]
        return self.registry.decode(ty, raw)

    def module_error(self, module_index: int, error: Any) -> PalletError:
        """Maps ``DispatchError::Module { index, error }`` to the pallet's error name and docs."""
        if isinstance(error, bytes | bytearray):
            error_index = error[0] if error else 0
        elif isinstance(error, str) and error.startswith("0x"):
            error_index = int(error[2:4], 16)
        else:
            error_index = int(error)
        p = self.by_index.get(int(module_index))
        if p is None or error_index not in p.errors:
            where = p.name if p else f"pallet #{module_index}"
            return PalletError(where, f"Error#{error_index}", ())
        v = p.errors[error_index]
        return PalletError(p.name, v.name, v.docs)

    def dispatch_error(self, value: Any) -> PalletError:
        """Turns a decoded ``DispatchError`` into a :class:`PalletError` (System errors included)."""
        if isinstance(value, str):
            return PalletError("System", value, (), type="System")
        if isinstance(value, dict) and len(value) == 1:
            ((kind, payload),) = value.items()
            if kind == "Module":
                if isinstance(payload, dict):
                    return self.module_error(payload["index"], payload["error"])
                if isinstance(payload, tuple | list):
                    return self.module_error(payload[0], payload[1])
            detail = payload if isinstance(payload, str) else repr(payload)
            return PalletError("System", f"{kind}.{detail}" if detail else kind, (), type="System")
        raise CodecError(f"cannot interpret DispatchError {value!r}")

    def pallet_names(self) -> list[str]:
        return [p.name for p in sorted(self.pallets.values(), key=lambda p: p.index)]
