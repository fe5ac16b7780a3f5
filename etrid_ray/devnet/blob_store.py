"""The devnet's content-addressed blob store: a blob's name is the blake2_256 of its bytes."""

from __future__ import annotations

import os
import re
from pathlib import Path

from etrid_ray.devnet.codec import blake2_256

NAME = re.compile(r"^0x[0-9a-fA-F]{64}$")


class BlobStore:
    """In memory, or in a directory when the devnet persists (`--data-dir`)."""

    def __init__(self, directory: Path | None, limit: int) -> None:
        self.directory = directory
        self.limit = limit
        self._memory: dict[str, bytes] = {}
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _check_name(name: str) -> str:
        if not NAME.match(name):
            raise ValueError("blob names are 0x followed by 64 hex digits (blake2_256 of the bytes)")
        return name.lower()

    def put(self, name: str, data: bytes) -> bool:
        """Stores `data` under `name` if it hashes to it; returns False if it was already there."""
        name = self._check_name(name)
        if len(data) > self.limit:
            raise ValueError(f"blob larger than {self.limit} bytes")
        actual = "0x" + blake2_256(data).hex()
        if actual != name:
            raise ValueError(f"content hashes to {actual}, not {name}")
        if self.directory is None:
            existed = name in self._memory
            self._memory[name] = data
            return not existed
        path = self.directory / name[2:]
        if path.exists():
            return False
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return True

    def get(self, name: str) -> bytes | None:
        name = self._check_name(name)
        if self.directory is None:
            return self._memory.get(name)
        path = self.directory / name[2:]
        return path.read_bytes() if path.exists() else None
