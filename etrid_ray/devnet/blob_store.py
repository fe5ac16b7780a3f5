"""The devnet's content-addressed blob store: a blob's name is the blake2_256 of its bytes.

Uploads arrive as a file (the server streams the body to a temporary file while hashing it), so a
blob is never held in memory twice; the in-memory store has a total size cap on top of the
per-blob limit, so uploads cannot grow the devnet without bound.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from etrid_ray.devnet.codec import blake2_256

NAME = re.compile(r"^0x[0-9a-fA-F]{64}$")
DEFAULT_MEMORY_LIMIT = 256 * 1024 * 1024


class StoreFull(Exception):
    """The in-memory store would exceed its total size cap (HTTP 507)."""


class BlobStore:
    """In memory (capped at `memory_limit` bytes in all), or in a directory when the devnet persists."""

    def __init__(self, directory: Path | None, limit: int, memory_limit: int = DEFAULT_MEMORY_LIMIT) -> None:
        self.directory = directory
        self.limit = limit
        self.memory_limit = memory_limit
        self._memory: dict[str, bytes] = {}
        self.used = 0  # bytes held in memory
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def check_name(name: str) -> str:
        if not NAME.match(name):
            raise ValueError("blob names are 0x followed by 64 hex digits (blake2_256 of the bytes)")
        return name.lower()

    def has(self, name: str) -> bool:
        name = self.check_name(name)
        if self.directory is None:
            return name in self._memory
        return (self.directory / name[2:]).exists()

    def room_for(self, size: int) -> bool:
        """Whether `size` more bytes fit (always true for a directory store)."""
        return self.directory is not None or self.used + size <= self.memory_limit

    def put(self, name: str, data: bytes) -> bool:
        """Stores `data` under `name` if it hashes to it; returns False if it was already there."""
        name = self.check_name(name)
        if len(data) > self.limit:
            raise ValueError(f"blob larger than {self.limit} bytes")
        actual = "0x" + blake2_256(data).hex()
        if actual != name:
            raise ValueError(f"content hashes to {actual}, not {name}")
        if self.directory is None:
            if name in self._memory:
                return False
            if not self.room_for(len(data)):
                raise StoreFull(f"the in-memory blob store is full ({self.used} of {self.memory_limit} bytes)")
            self._memory[name] = data
            self.used += len(data)
            return True
        path = self.directory / name[2:]
        if path.exists():
            return False
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return True

    def put_file(self, name: str, upload: Path, size: int) -> bool:
        """Stores an upload whose bytes the caller already hashed to `name`: moved into the directory,
        or read once into memory. Returns False if the blob was already there."""
        name = self.check_name(name)
        if self.directory is None:
            if name in self._memory:
                return False
            if not self.room_for(size):
                raise StoreFull(f"the in-memory blob store is full ({self.used} of {self.memory_limit} bytes)")
            self._memory[name] = upload.read_bytes()
            self.used += size
            return True
        path = self.directory / name[2:]
        if path.exists():
            return False
        os.replace(upload, path)
        return True

    def get(self, name: str) -> bytes | None:
        name = self.check_name(name)
        if self.directory is None:
            return self._memory.get(name)
        path = self.directory / name[2:]
        return path.read_bytes() if path.exists() else None

    def path(self, name: str) -> Path | None:
        """The file holding a blob of a directory store (served without reading it into memory)."""
        name = self.check_name(name)
        if self.directory is None:
            return None
        path = self.directory / name[2:]
        return path if path.exists() else None
