"""Compiled SCALE encoders over a runtime's portable type registry, shared by the devnet and the chain client.

scalecodec builds a tree of objects per value it encodes (a `Utility.batch_all` of 1000 claims is
thousands of objects, built again when the signed extrinsic re-encodes the batch). Here each type id
compiles once into a closure over the value shapes scalecodec accepts (ints, bools, 0x-hex, bytes, SS58
addresses, dicts, lists, variant names, `{call_module, call_function, call_args}` calls) and produces
exactly scalecodec's bytes. A shape the closures do not mirror raises :class:`EncodeFallback`, and the
caller hands the value to scalecodec, so results and errors stay scalecodec's.

The devnet encodes storage and events with it (`etrid_ray.devnet.codec.Codec`); the client composes calls
with it (`etrid_ray.extrinsic_builder`). Everything is read from the metadata: pallet and call indices,
field names and types, variant indices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scalecodec import types as sc
from scalecodec.base import RuntimeConfigurationObject
from scalecodec.utils.ss58 import ss58_decode

from etrid_ray.scale_codec import encode_compact

Encoder = Callable[[Any], bytes]


class EncodeFallback(Exception):
    """The compiled encoders met a value shape (or a type) they do not mirror: scalecodec encodes it instead."""


def derives(cls: Any, base: Any) -> bool:
    """`issubclass` along the class's own bases. scalecodec's types are ABCs, and every devnet `Codec` derives new
    classes from them; ABC's `issubclass` walks (and caches against) all subclasses ever made, so it grew slower
    with every devnet a process had started (a test session's 3rd data-dir node took 40 s). The MRO is enough:
    nothing here registers virtual subclasses."""
    bases = getattr(cls, "__mro__", ())
    return any(b in bases for b in base) if isinstance(base, tuple) else base in bases


@dataclass(frozen=True, slots=True)
class ComposedCall:
    """A RuntimeCall already encoded: `data` is pallet index ‖ call index ‖ args. Inside a batch or a signed
    extrinsic its bytes are used as they are, never encoded again from values. `args` are the values it was
    composed from, for a caller that must hand the call to scalecodec after all."""

    module: str
    function: str
    data: bytes
    args: Any = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.module}.{self.function}"


_UINT_BITS = {"u8": 8, "u16": 16, "u32": 32, "u64": 64, "u128": 128}
_SS58_CACHE_MAX = 65_536


def _hex_bytes(value: str) -> bytes:
    try:
        return bytes.fromhex(value[2:])
    except ValueError as err:
        raise EncodeFallback from err


class FastEncoder:
    """Compiled SCALE encoders for one metadata's types, byte-for-byte what scalecodec produces.

    `pallets` maps a pallet name to (index, call type id) as the metadata lists them: what scalecodec's
    `GenericCall` encodes a `{call_module, call_function, call_args}` value with. Without it, RuntimeCall
    values fall back to scalecodec.
    """

    def __init__(self, types: list[dict[str, Any]], config: RuntimeConfigurationObject,
                 pallets: dict[str, tuple[int, int]] | None = None) -> None:
        self._types = {int(t["id"]): t["type"] for t in types}
        self._config = config
        self._pallets = pallets or {}
        self._encoders: dict[int, Encoder] = {}
        self._calls: dict[tuple[str, str], Encoder] = {}
        self._ss58: dict[str, bytes] = {}

    @classmethod
    def from_metadata(cls, v14: dict[str, Any], config: RuntimeConfigurationObject) -> FastEncoder:
        """From a V14 metadata value (`MetadataVersioned.value[1]["V14"]`) and the scalecodec config that
        registered its portable registry."""
        pallets = {p["name"]: (int(p["index"]), int(p["calls"]["ty"]))
                   for p in v14["pallets"] if p.get("calls") is not None}
        return cls(v14["types"]["types"], config, pallets)

    # public -------------------------------------------------------------------------------------------
    def encoder(self, type_id: int) -> Encoder:
        enc = self._encoders.get(type_id)
        if enc is None:
            cell: list[Encoder] = []
            self._encoders[type_id] = lambda v: cell[0](v)  # recursion (RuntimeCall) terminates
            real = self._compile(type_id)
            cell.append(real)
            self._encoders[type_id] = real
            enc = real
        return enc

    def encode_call(self, module: str, function: str, args: dict[str, Any]) -> bytes:
        """pallet index ‖ call index ‖ each argument in the metadata's order (extra keys ignored, as scalecodec
        does); raises EncodeFallback for an unknown pallet or call, a missing argument or a shape not mirrored."""
        if type(args) is not dict:
            raise EncodeFallback
        return self.call_encoder(module, function)(args)

    def call_encoder(self, module: str, function: str) -> Encoder:
        enc = self._calls.get((module, function))
        if enc is None:
            enc = self._compile_call(module, function)
            self._calls[(module, function)] = enc
        return enc

    def account_id(self, value: Any) -> bytes:
        """An AccountId32 from 0x-hex or an SS58 address (any prefix, as scalecodec's `GenericAccountId`)."""
        if type(value) is not str:
            raise EncodeFallback
        if value[0:2] == "0x":
            if len(value) != 66:
                raise EncodeFallback
            return _hex_bytes(value)
        raw = self._ss58.get(value)
        if raw is None:
            try:
                raw = bytes.fromhex(ss58_decode(value))
            except ValueError as err:
                raise EncodeFallback from err
            if len(raw) != 32:
                raise EncodeFallback
            if len(self._ss58) < _SS58_CACHE_MAX:
                self._ss58[value] = raw
        return raw

    # compiling ----------------------------------------------------------------------------------------
    def _is_u8(self, type_id: int) -> bool:
        return self._types[type_id]["def"].get("primitive") == "u8"

    def _compile_call(self, module: str, function: str) -> Encoder:
        found = self._pallets.get(module)
        if found is None:
            raise EncodeFallback
        pallet_index, call_ty = found
        variant = next((v for v in self._types[call_ty]["def"].get("variant", {}).get("variants", [])
                        if v["name"] == function), None)
        if variant is None:
            raise EncodeFallback
        prefix = bytes((pallet_index, int(variant["index"])))
        fields = [(f["name"], int(f["type"])) for f in variant.get("fields") or []]
        if not all(name for name, _ in fields):
            raise EncodeFallback
        encoders = [(name, self.encoder(ty)) for name, ty in fields]

        def enc_call(args: dict[str, Any]) -> bytes:
            try:
                return prefix + b"".join([enc(args[name]) for name, enc in encoders])
            except KeyError as err:
                raise EncodeFallback from err
        return enc_call

    def _runtime_call(self) -> Encoder:
        def enc_runtime_call(value: Any) -> bytes:
            kind = type(value)
            if kind is ComposedCall:
                return value.data
            if kind is not dict:
                raise EncodeFallback
            try:
                module, function, args = value["call_module"], value["call_function"], value["call_args"]
            except KeyError as err:
                raise EncodeFallback from err
            if type(module) is not str or type(function) is not str:
                raise EncodeFallback
            return self.encode_call(module, function, args)
        return enc_runtime_call

    def _multi_address(self, type_id: int, enum: Encoder) -> Encoder:
        """`GenericMultiAddress.process_encode`: an SS58 or 0x-hex account is `Id`; ints and short names are
        account indices and 20-byte hex is `Address20`, which scalecodec handles."""
        variants = {v["name"]: v for v in self._types[type_id]["def"]["variant"]["variants"]}
        id_variant = variants.get("Id")
        id_prefix = bytes((int(id_variant["index"]),)) if id_variant else None

        def enc_address(value: Any) -> bytes:
            if type(value) is str:
                if id_prefix is None or len(value) <= 8 and value[0:2] != "0x":
                    raise EncodeFallback
                if value[0:2] == "0x" and len(value) != 66:
                    raise EncodeFallback
                return id_prefix + self.account_id(value)
            if type(value) is dict:
                return enum(value)
            raise EncodeFallback
        return enc_address

    def _compile(self, type_id: int) -> Encoder:  # noqa: C901 - one branch per scalecodec class
        entry = self._types[type_id]
        definition = entry["def"]
        cls = self._config.get_decoder_class(f"scale_info::{type_id}")

        def fallback(value: Any) -> bytes:
            raise EncodeFallback

        if cls is None or derives(cls, sc.Era):
            return fallback
        if derives(cls, sc.GenericCall):
            return self._runtime_call() if self._pallets else fallback
        if derives(cls, sc.GenericAccountId):
            return self.account_id
        if derives(cls, sc.H256):
            def enc_h256(value: Any) -> bytes:
                if type(value) is not str or value[0:2] != "0x" or len(value) != 66:
                    raise EncodeFallback
                return _hex_bytes(value)
            return enc_h256
        if "primitive" in definition:
            prim = definition["primitive"]
            if prim == "bool":
                def enc_bool(value: Any) -> bytes:
                    if value is True:
                        return b"\x01"
                    if value is False:
                        return b"\x00"
                    raise EncodeFallback
                return enc_bool
            bits = _UINT_BITS.get(prim)
            if bits is None:
                return fallback
            size, limit = bits // 8, 1 << bits

            def enc_uint(value: Any) -> bytes:
                if type(value) is not int or not 0 <= value < limit:
                    raise EncodeFallback
                return value.to_bytes(size, "little")
            return enc_uint
        if derives(cls, sc.Option):
            inner_id = int(entry["params"][0]["type"])

            def enc_option(value: Any) -> bytes:
                if value is None:
                    return b"\x00"
                return b"\x01" + self.encoder(inner_id)(value)
            return enc_option
        if derives(cls, sc.Vec):  # Vec and BoundedVec (whose element type is its first param)
            elem_id = int(entry["params"][0]["type"]) if derives(cls, sc.BoundedVec) else \
                int(definition["sequence"]["type"])
            if self._is_u8(elem_id):
                def enc_bytes(value: Any) -> bytes:
                    kind = type(value)
                    if kind is str:
                        value = _hex_bytes(value) if value[0:2] == "0x" else value.encode()
                    elif kind is bytearray:
                        value = bytes(value)
                    elif kind is not bytes:
                        raise EncodeFallback
                    return encode_compact(len(value)) + value
                return enc_bytes

            def enc_seq(value: Any) -> bytes:
                if type(value) is not list:
                    raise EncodeFallback
                enc = self.encoder(elem_id)
                return encode_compact(len(value)) + b"".join([enc(v) for v in value])
            return enc_seq
        if derives(cls, sc.FixedLengthArray):
            length, elem_id = int(definition["array"]["len"]), int(definition["array"]["type"])
            if not self._is_u8(elem_id):
                return fallback

            def enc_array(value: Any) -> bytes:
                if type(value) is str and value[0:2] == "0x":
                    value = _hex_bytes(value)
                if type(value) is not bytes or len(value) != length:
                    raise EncodeFallback
                return value
            return enc_array
        if derives(cls, sc.Compact):
            def enc_compact(value: Any) -> bytes:
                if type(value) is not int or value < 0 or value >= 1 << 536:
                    raise EncodeFallback
                return encode_compact(value)
            return enc_compact
        if derives(cls, sc.Struct) and "composite" in definition:
            fields = [(f["name"], int(f["type"])) for f in definition["composite"]["fields"]]
            if not all(name for name, _ in fields):
                return fallback

            def enc_struct(value: Any) -> bytes:
                if type(value) is not dict:
                    raise EncodeFallback
                try:
                    return b"".join([self.encoder(ty)(value[name]) for name, ty in fields])
                except KeyError as err:
                    raise EncodeFallback from err
            return enc_struct
        if derives(cls, sc.Tuple) and ("composite" in definition or "tuple" in definition):
            member_ids = ([int(f["type"]) for f in definition["composite"]["fields"]] if "composite" in definition
                          else [int(t) for t in definition["tuple"]])

            def enc_tuple(value: Any) -> bytes:
                if type(value) not in (list, tuple):
                    value = [value]
                if len(value) != len(member_ids):
                    raise EncodeFallback
                return b"".join([self.encoder(ty)(v) for ty, v in zip(member_ids, value, strict=True)])
            return enc_tuple
        if derives(cls, sc.Enum) and "variant" in definition:
            enum = self._enum(definition)
            return self._multi_address(type_id, enum) if derives(cls, sc.GenericMultiAddress) else enum
        return fallback

    def _enum(self, definition: dict[str, Any]) -> Encoder:
        by_name: dict[str, tuple[int, Any]] = {}
        for variant in sorted(definition["variant"]["variants"], key=lambda v: int(v["index"])):
            fields = variant.get("fields") or []
            if not fields:
                shape: Any = None
            elif all(f.get("name") for f in fields):
                shape = [(f["name"], int(f["type"])) for f in fields]
            elif len(fields) == 1:
                shape = int(fields[0]["type"])
            else:
                shape = False  # several unnamed fields: left to scalecodec
            by_name.setdefault(variant["name"], (int(variant["index"]), shape))

        def enc_enum(value: Any) -> bytes:
            if type(value) is str:
                name, inner = value, None
            elif type(value) is dict and len(value) == 1:
                (name, inner), = value.items()
            else:
                raise EncodeFallback
            found = by_name.get(name)
            if found is None:
                raise EncodeFallback
            index, shape = found
            if shape is None:
                if inner is not None:
                    raise EncodeFallback
                return bytes((index,))
            if shape is False or inner is None:
                raise EncodeFallback
            if type(shape) is int:
                return bytes((index,)) + self.encoder(shape)(inner)
            if type(inner) is not dict:
                raise EncodeFallback
            try:
                return bytes((index,)) + b"".join([self.encoder(ty)(inner[n]) for n, ty in shape])
            except KeyError as err:
                raise EncodeFallback from err
        return enc_enum
