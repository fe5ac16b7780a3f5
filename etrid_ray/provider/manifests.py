"""Manifests from the blob store: fetched in parallel, verified, parsed once, cached by hash.

A manifest the store does not have yet (or cannot be reached for) is `None`: asked again later, nothing
touched. One whose bytes do not match its hash, or that the schema refuses, is a `ManifestError`: the job is
claimed and failed on chain with the reason (a bad manifest costs its consumer, never the head).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from etrid_ray.blobs import BlobIntegrityError, BlobNotFound
from etrid_ray.manifest import Manifest, ManifestError, parse_manifest

log = logging.getLogger(__name__)

CACHE = 4096
Fetched = Manifest | ManifestError | None


class ManifestSource:
    def __init__(self, store: Any, *, workers: int = 8, cache: int = CACHE) -> None:
        self.store = store
        self._cache: OrderedDict[str, Manifest | ManifestError] = OrderedDict()
        self._texts: dict[str, str] = {}
        self._size = cache
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="etrid-manifest")

    def one(self, input_hash: str) -> Fetched:
        cached = self._cache.get(input_hash)
        if cached is not None:
            return cached
        try:
            data = self.store.get(input_hash)
        except BlobIntegrityError:
            result: Manifest | ManifestError = ManifestError("manifest hash mismatch")
        except BlobNotFound:
            return None
        except Exception as err:  # store unreachable: try again later, touch nothing
            log.warning("manifest %s: %s", input_hash, err)
            return None
        else:
            try:
                result = parse_manifest(data)
            except ManifestError as err:
                result = err
        self._cache[input_hash] = result
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return result

    def many(self, hashes: Iterable[str]) -> dict[str, Fetched]:
        distinct = list(dict.fromkeys(hashes))
        uncached = [h for h in distinct if h not in self._cache]
        if len(uncached) <= 1:  # nothing to overlap: no thread hand-off
            return {h: self.one(h) for h in distinct}
        return dict(zip(distinct, self.pool.map(self.one, distinct), strict=True))

    def text(self, input_hash: str, manifest: Manifest) -> str:
        """The manifest as a task receives it, serialized once per distinct manifest."""
        text = self._texts.get(input_hash)
        if text is None:
            if len(self._texts) > self._size:
                self._texts.clear()
            text = self._texts[input_hash] = manifest.model_dump_json()
        return text

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
