"""The SCALE codec (Substrate's encoding) primitives both sides share: storage hashers and compact integers.

The devnet (which serves storage) and the chain client (which reads it) must hash keys and
frame integers identically, so they take these from one place.
"""

from __future__ import annotations

from collections.abc import Callable
from hashlib import blake2b

import xxhash


def blake2_128(data: bytes) -> bytes:
    return blake2b(data, digest_size=16).digest()


def blake2_256(data: bytes) -> bytes:
    return blake2b(data, digest_size=32).digest()


def twox_64_seed(data: bytes, seed: int) -> bytes:
    return xxhash.xxh64(data, seed=seed).intdigest().to_bytes(8, "little")


def twox_64(data: bytes) -> bytes:
    return twox_64_seed(data, 0)


def twox_128(data: bytes) -> bytes:
    return twox_64_seed(data, 0) + twox_64_seed(data, 1)


def twox_256(data: bytes) -> bytes:
    return b"".join(twox_64_seed(data, s) for s in range(4))


HASHERS: dict[str, Callable[[bytes], bytes]] = {
    "Blake2_128": blake2_128,
    "Blake2_256": blake2_256,
    "Blake2_128Concat": lambda b: blake2_128(b) + b,
    "Twox128": twox_128,
    "Twox256": twox_256,
    "Twox64Concat": lambda b: twox_64(b) + b,
    "Identity": lambda b: b,
}


def encode_compact(value: int) -> bytes:
    """SCALE compact integer: the length prefix of every Vec and of the extrinsic envelope."""
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


def decode_compact(data: bytes | bytearray | memoryview, offset: int = 0) -> tuple[int, int]:
    """Returns (value, new offset); raises ValueError on truncated input."""
    if offset >= len(data):
        raise ValueError("truncated compact integer")
    first = data[offset]
    mode = first & 3
    width = {0: 1, 1: 2, 2: 4}.get(mode)
    if width is not None:
        if offset + width > len(data):
            raise ValueError("truncated compact integer")
        return int.from_bytes(data[offset:offset + width], "little") >> 2, offset + width
    length = (first >> 2) + 4
    if offset + 1 + length > len(data):
        raise ValueError("truncated compact integer")
    return int.from_bytes(data[offset + 1:offset + 1 + length], "little"), offset + 1 + length
