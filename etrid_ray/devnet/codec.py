"""SCALE encoding and decoding over the runtime's own portable registry, via scalecodec.

The runtime keeps values in the shapes scalecodec produces and accepts (dicts
for structs, variant names or one-key dicts for enums, 0x-hex for byte
strings and account ids), so one codec serves metadata, storage, events and
calls alike.
"""

from __future__ import annotations

import threading
from typing import Any

from scalecodec.base import RuntimeConfigurationObject, ScaleBytes
from scalecodec.exceptions import RemainingScaleBytesNotEmptyException
from scalecodec.type_registry import load_type_registry_preset
from scalecodec.types import U8, U16, U32, U64, U128, Compact, GenericCall, Vec

from etrid_ray.scale_codec import (  # noqa: F401 - re-exported: the devnet's modules import them from here
    blake2_128,
    blake2_256,
    decode_compact,
    encode_compact,
    twox_64,
    twox_64_seed,
    twox_128,
)
from etrid_ray.scale_encoder import FastEncoder, derives

# Shared with the chain client (one definition in etrid_ray.scale_codec), under the devnet's names.
twox64 = twox_64
twox128 = twox_128
twox64_seed = twox_64_seed
compact_encode = encode_compact


class NonCanonicalError(ValueError):
    """A SCALE value that a real runtime refuses to decode: an over-long or non-minimal Compact."""


def check_compact(first: int, value: int, length: int, bits: int) -> None:
    """Raises NonCanonicalError unless `value` is in the shortest form `parity-scale-codec` accepts.

    Substrate's `Compact<T>` decoder refuses a value written in a wider mode than it needs (1 in the
    4-byte mode), a big-integer mode with a zero top byte or more bytes than `T` has, and a value
    over `T::MAX`; scalecodec accepts all of them, so the devnet checks here what the runtime would.
    """
    mode = first & 3
    if mode == 1 and value < 1 << 6 or mode == 2 and value < 1 << 14:
        raise NonCanonicalError(f"compact integer {value} is not minimally encoded ({length} bytes)")
    if mode == 3:
        if length - 1 > bits // 8:
            raise NonCanonicalError(f"compact integer of {length - 1} bytes overflows u{bits}")
        if value < 1 << 30 or value >> (8 * (length - 2)) == 0:
            raise NonCanonicalError(f"compact integer {value} is not minimally encoded ({length} bytes)")
    if value >> bits:
        raise NonCanonicalError(f"compact integer {value} overflows u{bits}")


def compact_decode(data: bytes | bytearray | memoryview, offset: int = 0, bits: int = 128) -> tuple[int, int]:
    """Returns (value, new offset) of a canonical `Compact<u{bits}>`; raises ValueError on truncated or
    non-canonical input (NonCanonicalError), as the runtime's decoder does."""
    value, end = decode_compact(data, offset)
    check_compact(data[offset], value, end - offset, bits)
    return value, end


_COMPACT_BITS = {U8: 8, U16: 16, U32: 32, U64: 64, U128: 128}


class CanonicalCompact(Compact):
    """scalecodec's Compact, refusing the encodings a real runtime refuses (see `check_compact`)."""

    def process(self) -> Any:
        value = super().process()
        bits = 128
        sub_type = getattr(self, "sub_type", None)
        if sub_type:
            sub = self.runtime_config.get_decoder_class(sub_type)
            bits = next((b for cls, b in _COMPACT_BITS.items() if sub is not None and derives(sub, cls)), 128)
        if isinstance(value, int):
            assert self.compact_bytes is not None
            check_compact(self.compact_bytes[0] if self.compact_length <= 4 else (self.compact_length - 5) * 4 + 3,
                          value, self.compact_length, bits)
        return value


class CallBudgetExceeded(ValueError):
    """A call tree with more calls than one extrinsic may carry (see `Codec.decode_call`)."""


class _Budget(threading.local):
    remaining: int | None = None


_budget = _Budget()


class _BudgetedCall(GenericCall):
    """Counts every RuntimeCall scalecodec decodes, so a nested batch cannot make decoding unbounded."""

    def process(self) -> Any:
        if _budget.remaining is not None:
            _budget.remaining -= 1
            if _budget.remaining < 0:
                raise CallBudgetExceeded("too many calls in one extrinsic")
        return super().process()


def _process_raw_bytes(self: Any) -> bytes:
    length = self.process_type("Compact<u32>").value
    self.value_object = self.get_next_bytes(length)
    return bytes(self.value_object)


class Codec:
    """Encodes and decodes `scale_info::<id>` types of one metadata."""

    def __init__(self, metadata_bytes: bytes, ss58_format: int) -> None:
        self.config = RuntimeConfigurationObject(ss58_format=ss58_format)
        self.config.update_type_registry(load_type_registry_preset("core"))
        self.metadata = self.config.create_scale_object("MetadataVersioned", data=ScaleBytes(metadata_bytes))
        self.metadata.decode()
        self.config.add_portable_registry(self.metadata)
        self._bytes_as_bytes()
        self._strict_decoding()
        self._classes: dict[int, Any] = {}
        self.fast = FastEncoder.from_metadata(self.metadata.value[1]["V14"], self.config)

    def _bytes_as_bytes(self) -> None:
        """Makes every `Vec<u8>` decode to `bytes`.

        scalecodec hands back text when the bytes happen to be UTF-8 and 0x-hex otherwise, so a
        model name "0xbeef" and the bytes be ef would look alike; the runtime needs the real bytes.
        """
        types = self.config.type_registry["types"]
        for name, cls in list(types.items()):
            if (isinstance(cls, type) and derives(cls, Vec) and getattr(cls, "sub_type", None)
                    and self.config.get_decoder_class(cls.sub_type) is U8):
                types[name] = type(cls.__name__, (cls,), {"process": _process_raw_bytes})

    def _strict_decoding(self) -> None:
        """Swaps in canonical Compacts and budgeted calls for every registered class (and `compact`, from
        which scalecodec derives the `Compact<u32>` of every Vec length)."""
        types = self.config.type_registry["types"]
        for name, cls in list(types.items()):
            if not isinstance(cls, type):
                continue
            if derives(cls, Compact) and not derives(cls, CanonicalCompact):
                types[name] = type(cls.__name__, (CanonicalCompact, cls), {})
            elif derives(cls, GenericCall) and not derives(cls, _BudgetedCall):
                types[name] = type(cls.__name__, (_BudgetedCall, cls), {})

    def _cls(self, type_id: int) -> Any:
        cls = self._classes.get(type_id)
        if cls is None:
            cls = self.config.get_decoder_class(f"scale_info::{type_id}")
            self._classes[type_id] = cls
        return cls

    def encode(self, type_id: int, value: Any) -> bytes:
        try:
            return self.fast.encoder(type_id)(value)
        except Exception:  # EncodeFallback, or a shape the fast path does not mirror: scalecodec decides
            pass
        return self.encode_slow(type_id, value)

    def encode_slow(self, type_id: int, value: Any) -> bytes:
        """scalecodec's own encoding (the reference the fast path is tested against)."""
        obj = self._cls(type_id)(data=None, runtime_config=self.config, metadata=self.metadata)
        return bytes(obj.encode(value).data)

    def encode_call(self, module: str, function: str, args: dict[str, Any]) -> bytes:
        obj = self.config.create_scale_object("Call", metadata=self.metadata)
        return bytes(obj.encode({"call_module": module, "call_function": function, "call_args": args}).data)

    def decode(self, type_id: int, data: bytes) -> Any:
        obj = self._cls(type_id)(data=ScaleBytes(bytearray(data)), runtime_config=self.config,
                                 metadata=self.metadata)
        value = obj.decode(check_remaining=True)
        return value

    def decode_call(self, data: bytes, max_calls: int | None = None) -> dict[str, Any]:
        """Decodes a RuntimeCall into scalecodec's {call_module, call_function, call_args} form.

        `max_calls` bounds the calls decoded in the whole tree (batches in batches under sudo):
        scalecodec spends ~0.15 ms a call, so the bound is what keeps one extrinsic's decoding short.
        Safe to call from a worker thread: the budget is per thread."""
        _budget.remaining = max_calls
        try:
            obj = self.config.create_scale_object("Call", data=ScaleBytes(bytearray(data)), metadata=self.metadata)
            obj.decode(check_remaining=True)
        except RemainingScaleBytesNotEmptyException as err:
            raise ValueError(f"trailing bytes after the call: {err}") from err
        finally:
            _budget.remaining = None
        return obj.value
