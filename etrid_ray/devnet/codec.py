"""SCALE encoding and decoding over the runtime's own portable registry, via scalecodec.

The runtime keeps values in the shapes scalecodec produces and accepts (dicts
for structs, variant names or one-key dicts for enums, 0x-hex for byte
strings and account ids), so one codec serves metadata, storage, events and
calls alike.
"""

from __future__ import annotations

import hashlib
from typing import Any

import xxhash
from scalecodec.base import RuntimeConfigurationObject, ScaleBytes
from scalecodec.type_registry import load_type_registry_preset
from scalecodec.types import U8, Vec


def blake2_128(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def blake2_256(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


def twox64(data: bytes) -> bytes:
    return twox64_seed(data, 0)


def twox128(data: bytes) -> bytes:
    return twox64_seed(data, 0) + twox64_seed(data, 1)


def twox64_seed(data: bytes, seed: int) -> bytes:
    return xxhash.xxh64(data, seed=seed).intdigest().to_bytes(8, "little")


def compact_encode(value: int) -> bytes:
    """SCALE compact integer: the length prefix of every Vec and the extrinsic envelope."""
    if value < 0:
        raise ValueError("compact integers are unsigned")
    if value < 1 << 6:
        return bytes([value << 2])
    if value < 1 << 14:
        return ((value << 2) | 1).to_bytes(2, "little")
    if value < 1 << 30:
        return ((value << 2) | 2).to_bytes(4, "little")
    raw = value.to_bytes((value.bit_length() + 7) // 8, "little")
    return bytes([((len(raw) - 4) << 2) | 3]) + raw


def compact_decode(data: bytes | bytearray | memoryview, offset: int = 0) -> tuple[int, int]:
    """Returns (value, new offset); raises ValueError on truncated input."""
    if offset >= len(data):
        raise ValueError("truncated compact integer")
    first = data[offset]
    mode = first & 3
    if mode == 0:
        return first >> 2, offset + 1
    if mode == 1:
        if offset + 2 > len(data):
            raise ValueError("truncated compact integer")
        return int.from_bytes(data[offset:offset + 2], "little") >> 2, offset + 2
    if mode == 2:
        if offset + 4 > len(data):
            raise ValueError("truncated compact integer")
        return int.from_bytes(data[offset:offset + 4], "little") >> 2, offset + 4
    length = (first >> 2) + 4
    if offset + 1 + length > len(data):
        raise ValueError("truncated compact integer")
    return int.from_bytes(data[offset + 1:offset + 1 + length], "little"), offset + 1 + length


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
        self._classes: dict[int, Any] = {}

    def _bytes_as_bytes(self) -> None:
        """Makes every `Vec<u8>` decode to `bytes`.

        scalecodec hands back text when the bytes happen to be UTF-8 and 0x-hex otherwise, so a
        model name "0xbeef" and the bytes be ef would look alike; the runtime needs the real bytes.
        """
        types = self.config.type_registry["types"]
        for name, cls in list(types.items()):
            if (isinstance(cls, type) and issubclass(cls, Vec) and getattr(cls, "sub_type", None)
                    and self.config.get_decoder_class(cls.sub_type) is U8):
                types[name] = type(cls.__name__, (cls,), {"process": _process_raw_bytes})

    def _cls(self, type_id: int) -> Any:
        cls = self._classes.get(type_id)
        if cls is None:
            cls = self.config.get_decoder_class(f"scale_info::{type_id}")
            self._classes[type_id] = cls
        return cls

    def encode(self, type_id: int, value: Any) -> bytes:
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

    def decode_call(self, data: bytes) -> dict[str, Any]:
        """Decodes a RuntimeCall into scalecodec's {call_module, call_function, call_args} form."""
        obj = self.config.create_scale_object("Call", data=ScaleBytes(bytearray(data)), metadata=self.metadata)
        obj.decode(check_remaining=True)
        return obj.value
