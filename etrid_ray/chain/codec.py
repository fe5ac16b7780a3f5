"""Fast SCALE decoding and storage-key building, compiled from the chain's own V14 metadata.

Why this exists: scalecodec builds a tree of Python objects per value, which is
fine for one storage read and far too slow for the provider's hot path (10,000
pending jobs must be read in under a second). Here each type id of the metadata's
portable registry is compiled once into a plain closure over ``memoryview``
offsets; decoding a ``Job`` then costs a few microseconds. Nothing is hard-coded:
field names, variant indices and hashers all come from the metadata the node
serves, so the same code reads the devnet and a real Etrid node.

Decoded shapes (chosen to be easy to map onto dataclasses):

* composite with named fields -> ``dict``; one unnamed field -> the inner value
  (transparent newtypes such as ``BoundedVec``); several unnamed -> ``tuple``
* variant -> ``str`` for a unit variant, else ``{name: payload}``;
  ``Option`` -> ``None`` or the payload
* ``Vec<u8>`` / ``[u8; N]`` -> ``bytes``; ``AccountId32`` -> SS58 string;
  ``H256``-like hashes -> ``"0x…"`` hex
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from substrateinterface.utils.ss58 import ss58_encode

from etrid_ray.scale_codec import (  # noqa: F401 - re-exported for the client's modules
    HASHERS,
    blake2_128,
    blake2_256,
    decode_compact,
    encode_compact,
    twox_64,
    twox_64_seed,
    twox_128,
    twox_256,
)

Decoder = Callable[[memoryview, int], tuple[Any, int]]


class CodecError(ValueError):
    """Bytes that do not decode as the metadata says they should."""


# --- hashing -------------------------------------------------------------------------------------


# Hashers and compact integers are shared with the devnet (one definition: etrid_ray.scale_codec).


# --- primitive readers ---------------------------------------------------------------------------

_INT = {
    "u8": (1, False),
    "u16": (2, False),
    "u32": (4, False),
    "u64": (8, False),
    "u128": (16, False),
    "u256": (32, False),
    "i8": (1, True),
    "i16": (2, True),
    "i32": (4, True),
    "i64": (8, True),
    "i128": (16, True),
    "i256": (32, True),
}
_STRUCT = {
    "u8": "<B",
    "u16": "<H",
    "u32": "<I",
    "u64": "<Q",
    "i8": "<b",
    "i16": "<h",
    "i32": "<i",
    "i64": "<q",
}


def read_compact(buf: memoryview, pos: int) -> tuple[int, int]:
    """SCALE compact integer (the length prefix of every Vec)."""
    try:
        return decode_compact(buf, pos)
    except (ValueError, IndexError) as exc:
        raise CodecError("unexpected end of input reading compact") from exc


def _int_decoder(name: str) -> Decoder:
    size, signed = _INT[name]
    if name in _STRUCT:
        unpack = struct.Struct(_STRUCT[name]).unpack_from

        def dec(buf: memoryview, pos: int) -> tuple[Any, int]:
            try:
                return unpack(buf, pos)[0], pos + size
            except struct.error as exc:
                raise CodecError(f"unexpected end of input reading {name}") from exc

        return dec

    def dec_big(buf: memoryview, pos: int) -> tuple[Any, int]:
        end = pos + size
        if end > len(buf):
            raise CodecError(f"unexpected end of input reading {name}")
        return int.from_bytes(buf[pos:end], "little", signed=signed), end

    return dec_big


def _bool(buf: memoryview, pos: int) -> tuple[Any, int]:
    try:
        b = buf[pos]
    except IndexError as exc:
        raise CodecError("unexpected end of input reading bool") from exc
    if b > 1:
        raise CodecError(f"invalid bool byte {b}")
    return b == 1, pos + 1


def _str(buf: memoryview, pos: int) -> tuple[Any, int]:
    n, pos = read_compact(buf, pos)
    end = pos + n
    if end > len(buf):
        raise CodecError("unexpected end of input reading str")
    return bytes(buf[pos:end]).decode("utf-8", errors="replace"), end


def _compact_dec(buf: memoryview, pos: int) -> tuple[Any, int]:
    return read_compact(buf, pos)


# --- the compiled registry -----------------------------------------------------------------------


@dataclass(frozen=True)
class VariantInfo:
    name: str
    index: int
    field_names: tuple[str | None, ...]
    field_types: tuple[int, ...]
    docs: tuple[str, ...]
    field_type_names: tuple[str, ...] = ()  # the Rust type names (`BoundedVec<u8, ConstU32<512>>`)


class TypeRegistry:
    """Compiles the portable registry of a V14 metadata into decoders (and a few encoders), lazily."""

    def __init__(self, types: list[dict[str, Any]], ss58_format: int = 42) -> None:
        self._types: dict[int, dict[str, Any]] = {}
        for entry in types:
            self._types[int(entry["id"])] = entry["type"]
        self.ss58_format = ss58_format
        self._decoders: dict[int, Decoder] = {}

    # introspection -------------------------------------------------------------------------------
    def type_def(self, type_id: int) -> dict[str, Any]:
        return self._types[type_id]["def"]

    def path(self, type_id: int) -> tuple[str, ...]:
        return tuple(self._types[type_id].get("path") or ())

    def composite_fields(self, type_id: int) -> list[tuple[str | None, int, str]]:
        """A struct's fields as (name, type id, Rust type name); empty for a type that is not a struct."""
        d = self.type_def(type_id)
        fields = (d["composite"].get("fields") or []) if "composite" in d else []
        return [(f.get("name"), int(f["type"]), f.get("typeName") or f.get("type_name") or "") for f in fields]

    def variants(self, type_id: int) -> list[VariantInfo]:
        d = self.type_def(type_id)
        if "variant" not in d:
            raise CodecError(f"type {type_id} is not a variant")
        out = []
        for v in d["variant"].get("variants") or []:
            fields = v.get("fields") or []
            out.append(
                VariantInfo(
                    v["name"],
                    int(v["index"]),
                    tuple(f.get("name") for f in fields),
                    tuple(int(f["type"]) for f in fields),
                    tuple(v.get("docs") or ()),
                    tuple(f.get("typeName") or f.get("type_name") or "" for f in fields),
                )
            )
        return out

    def _is_u8(self, type_id: int) -> bool:
        return self.type_def(type_id).get("primitive") == "u8"

    # decoding -----------------------------------------------------------------------------------
    def decoder(self, type_id: int) -> Decoder:
        dec = self._decoders.get(type_id)
        if dec is None:
            # A trampoline first, so recursive types (RuntimeCall inside Utility.batch) terminate.
            cell: list[Decoder] = []

            def tramp(buf: memoryview, pos: int) -> tuple[Any, int]:
                return cell[0](buf, pos)

            self._decoders[type_id] = tramp
            real = self._compile(type_id)
            cell.append(real)
            self._decoders[type_id] = real
            dec = real
        return dec

    def decode(self, type_id: int, data: bytes | bytearray | memoryview, *, exact: bool = True) -> Any:
        buf = memoryview(data)
        try:
            value, pos = self.decoder(type_id)(buf, 0)
        except (IndexError, struct.error) as exc:
            raise CodecError(f"truncated input for type {type_id}") from exc
        if exact and pos != len(buf):
            raise CodecError(f"{len(buf) - pos} trailing bytes after type {type_id}")
        return value

    def _compile(self, type_id: int) -> Decoder:  # noqa: C901 - one branch per scale-info kind
        entry = self._types[type_id]
        d = entry["def"]
        path = tuple(entry.get("path") or ())
        if path and path[-1] == "AccountId32":
            return self._account_decoder()
        if "primitive" in d:
            prim = d["primitive"]
            if prim in _INT:
                return _int_decoder(prim)
            if prim == "bool":
                return _bool
            if prim == "str":
                return _str
            if prim == "char":
                return _int_decoder("u32")
            raise CodecError(f"unsupported primitive {prim}")
        if "compact" in d:
            return _compact_dec
        if "sequence" in d:
            inner = int(d["sequence"]["type"])
            if self._is_u8(inner):

                def dec_bytes(buf: memoryview, pos: int) -> tuple[Any, int]:
                    n, pos = read_compact(buf, pos)
                    end = pos + n
                    if end > len(buf):
                        raise CodecError("unexpected end of input reading bytes")
                    return bytes(buf[pos:end]), end

                return dec_bytes
            prim = self.type_def(inner).get("primitive")
            if prim in _STRUCT:  # a vector of fixed-width integers (e.g. PendingJobs: up to 10,000 u64) in one call
                fmt = _STRUCT[prim][1]
                width = _INT[prim][0]

                def dec_ints(buf: memoryview, pos: int) -> tuple[Any, int]:
                    n, pos = read_compact(buf, pos)
                    end = pos + n * width
                    if end > len(buf):
                        raise CodecError("sequence length exceeds input")
                    return list(struct.unpack_from(f"<{n}{fmt}", buf, pos)), end

                return dec_ints
            item = self.decoder(inner)

            def dec_seq(buf: memoryview, pos: int) -> tuple[Any, int]:
                n, pos = read_compact(buf, pos)
                if n > len(buf) - pos + 1:  # each element is at least 0 bytes; guard absurd lengths
                    raise CodecError("sequence length exceeds input")
                out = []
                append = out.append
                for _ in range(n):
                    v, pos = item(buf, pos)
                    append(v)
                return out, pos

            return dec_seq
        if "array" in d:
            length = int(d["array"]["len"])
            inner = int(d["array"]["type"])
            if self._is_u8(inner):
                hexify = bool(path) or length == 32

                def dec_fixed(buf: memoryview, pos: int) -> tuple[Any, int]:
                    end = pos + length
                    if end > len(buf):
                        raise CodecError("unexpected end of input reading byte array")
                    raw = bytes(buf[pos:end])
                    return ("0x" + raw.hex()) if hexify else raw, end

                return dec_fixed
            item = self.decoder(inner)

            def dec_arr(buf: memoryview, pos: int) -> tuple[Any, int]:
                out = []
                for _ in range(length):
                    v, pos = item(buf, pos)
                    out.append(v)
                return out, pos

            return dec_arr
        if "tuple" in d:
            items = [self.decoder(int(t)) for t in d["tuple"]]
            if not items:
                return lambda buf, pos: (None, pos)

            def dec_tuple(buf: memoryview, pos: int) -> tuple[Any, int]:
                out = []
                for it in items:
                    v, pos = it(buf, pos)
                    out.append(v)
                return tuple(out), pos

            return dec_tuple
        if "composite" in d:
            fields = d["composite"].get("fields") or []
            if len(fields) == 1 and not fields[0].get("name"):
                inner_id = int(fields[0]["type"])
                # H256 and friends: a newtype over [u8; 32] -> hex string
                inner_def = self.type_def(inner_id)
                if "array" in inner_def and self._is_u8(int(inner_def["array"]["type"])):
                    length = int(inner_def["array"]["len"])

                    def dec_hash(buf: memoryview, pos: int) -> tuple[Any, int]:
                        end = pos + length
                        if end > len(buf):
                            raise CodecError("unexpected end of input reading hash")
                        return "0x" + bytes(buf[pos:end]).hex(), end

                    return dec_hash
                return self.decoder(inner_id)
            decs = [self.decoder(int(f["type"])) for f in fields]
            if fields and all(f.get("name") for f in fields):
                names = [f["name"] for f in fields]
                pairs = list(zip(names, decs, strict=True))

                def dec_struct(buf: memoryview, pos: int) -> tuple[Any, int]:
                    out = {}
                    for name, it in pairs:
                        out[name], pos = it(buf, pos)
                    return out, pos

                return dec_struct

            def dec_unnamed(buf: memoryview, pos: int) -> tuple[Any, int]:
                out = []
                for it in decs:
                    v, pos = it(buf, pos)
                    out.append(v)
                return tuple(out), pos

            return dec_unnamed
        if "variant" in d:
            table: dict[int, tuple[str, Decoder | None]] = {}
            for v in self.variants(type_id):
                table[v.index] = (v.name, self._variant_payload(v))
            is_option = path == ("Option",)

            def dec_variant(buf: memoryview, pos: int) -> tuple[Any, int]:
                try:
                    idx = buf[pos]
                except IndexError as exc:
                    raise CodecError("unexpected end of input reading variant") from exc
                hit = table.get(idx)
                if hit is None:
                    raise CodecError(f"unknown variant index {idx} for type {type_id} {path}")
                name, payload = hit
                if payload is None:
                    return (None if is_option else name), pos + 1
                value, pos = payload(buf, pos + 1)
                return (value if is_option else {name: value}), pos

            return dec_variant
        if "bitsequence" in d:

            def dec_bits(buf: memoryview, pos: int) -> tuple[Any, int]:
                nbits, pos = read_compact(buf, pos)
                nbytes = (nbits + 7) // 8
                return bytes(buf[pos : pos + nbytes]), pos + nbytes

            return dec_bits
        if "phantom" in d:
            return lambda buf, pos: (None, pos)
        raise CodecError(f"unsupported type definition {d!r} for type {type_id}")

    def _variant_payload(self, v: VariantInfo) -> Decoder | None:
        if not v.field_types:
            return None
        decs = [self.decoder(t) for t in v.field_types]
        if all(v.field_names):
            pairs = list(zip(v.field_names, decs, strict=True))

            def dec_named(buf: memoryview, pos: int) -> tuple[Any, int]:
                out = {}
                for name, it in pairs:
                    out[name], pos = it(buf, pos)
                return out, pos

            return dec_named
        if len(decs) == 1:
            return decs[0]

        def dec_many(buf: memoryview, pos: int) -> tuple[Any, int]:
            out = []
            for it in decs:
                val, pos = it(buf, pos)
                out.append(val)
            return tuple(out), pos

        return dec_many

    def _account_decoder(self) -> Decoder:
        fmt = self.ss58_format
        cache: dict[bytes, str] = {}

        def dec_account(buf: memoryview, pos: int) -> tuple[Any, int]:
            end = pos + 32
            if end > len(buf):
                raise CodecError("unexpected end of input reading AccountId32")
            raw = bytes(buf[pos:end])
            addr = cache.get(raw)
            if addr is None:
                addr = ss58_encode(raw, fmt)
                if len(cache) < 4096:
                    cache[raw] = addr
            return addr, end

        return dec_account

    # encoding (only what storage keys need) -----------------------------------------------------
    def encode_key(self, type_id: int, value: Any) -> bytes:
        """SCALE-encodes a map key: unsigned ints, AccountId32 (SS58 or hex) and 32-byte hashes."""
        d = self.type_def(type_id)
        path = self.path(type_id)
        if path and path[-1] == "AccountId32":
            return account_bytes(value)
        if "primitive" in d and d["primitive"] in _INT:
            size, signed = _INT[d["primitive"]]
            return int(value).to_bytes(size, "little", signed=signed)
        if "composite" in d:
            fields = d["composite"].get("fields") or []
            if len(fields) == 1:
                return self.encode_key(int(fields[0]["type"]), value)
        if "array" in d and self._is_u8(int(d["array"]["type"])):
            raw = bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)
            if len(raw) != int(d["array"]["len"]):
                raise CodecError(f"expected {d['array']['len']} bytes, got {len(raw)}")
            return raw
        raise CodecError(f"cannot encode a storage key of type {type_id} ({d})")


def account_bytes(value: str | bytes) -> bytes:
    """An AccountId32 from an SS58 address, a 0x hex public key or raw bytes."""
    from substrateinterface.utils.ss58 import ss58_decode

    if isinstance(value, bytes | bytearray):
        raw = bytes(value)
    elif value.startswith("0x"):
        raw = bytes.fromhex(value[2:])
    else:
        raw = bytes.fromhex(ss58_decode(value))
    if len(raw) != 32:
        raise CodecError(f"an AccountId32 is 32 bytes, got {len(raw)}")
    return raw
