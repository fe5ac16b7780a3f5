"""Content-addressed blob stores: the devnet's HTTP store, a directory, and S3, behind one interface.

Why content addressing: a job on chain carries only ``input_hash``; the manifest
and results live off chain. Naming every blob by ``blake2_256`` of its bytes
makes the chain the integrity check: :meth:`BlobStore.get` re-hashes what it
fetched and refuses a mismatch, whatever store (or attacker) served it.

URLs accepted by :func:`open_blob_store`:

* ``http://host:port`` (or the devnet's ``ws://host:port``): ``PUT``/``GET /blobs/0x<hash>``
* ``file:///some/dir`` or a plain directory path
* ``s3://bucket/prefix`` (boto3; ``endpoint_url`` or ``AWS_ENDPOINT_URL`` for S3-compatible stores)
"""

from __future__ import annotations

import http.client
import os
import re
import tempfile
import threading
from abc import ABC, abstractmethod
from hashlib import blake2b
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

_HASH_RE = re.compile(r"^(0x)?([0-9a-fA-F]{64})$")


class BlobError(Exception):
    """Base of blob store errors."""


class BlobNotFound(BlobError):
    pass


class BlobIntegrityError(BlobError):
    """The bytes do not hash to the name they were stored or fetched under."""


class BlobTooLarge(BlobError):
    pass


def blob_hash(data: bytes) -> str:
    """``0x`` + hex of ``blake2_256(data)``, the name of ``data`` in every store and on chain."""
    return "0x" + blake2b(data, digest_size=32).hexdigest()


def normalize_hash(value: str) -> str:
    m = _HASH_RE.match(value.strip() if isinstance(value, str) else "")
    if not m:
        raise ValueError(f"{value!r} is not a blake2_256 hash (64 hex digits, optionally 0x-prefixed)")
    return "0x" + m.group(2).lower()


class BlobStore(ABC):
    """``put(bytes) -> hash`` and ``get(hash) -> bytes`` (verified)."""

    url: str

    def put(self, data: bytes) -> str:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError("blobs are bytes")
        data = bytes(data)
        h = blob_hash(data)
        self._put(h, data)
        return h

    def get(self, hash_hex: str) -> bytes:
        h = normalize_hash(hash_hex)
        data = self._get(h)
        if blob_hash(data) != h:
            raise BlobIntegrityError(f"blob {h} from {self.url} does not match its hash")
        return data

    def exists(self, hash_hex: str) -> bool:
        try:
            self._get(normalize_hash(hash_hex))
            return True
        except BlobNotFound:
            return False

    @abstractmethod
    def _put(self, h: str, data: bytes) -> None: ...

    @abstractmethod
    def _get(self, h: str) -> bytes: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


class HttpBlobStore(BlobStore):
    """The devnet's store: ``PUT``/``GET {base}/blobs/0x<hash>``.

    Each thread keeps one keep-alive connection: every job's worker stores a result, and a new TCP connection
    plus urllib's handler chain per request cost client and server twice what the request itself does
    (bench/throughput.py). Requests are idempotent (content-addressed PUT, GET, DELETE), so one that met a
    connection the server had closed while idle is sent once more on a fresh one."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.url = base_url.rstrip("/")
        self.timeout = timeout
        parsed = urlparse(self.url)
        self._host, self._port, self._prefix = parsed.hostname or "", parsed.port, parsed.path.rstrip("/")
        self._local = threading.local()

    def _endpoint(self, h: str) -> str:
        return f"{self.url}/blobs/{h}"

    def _new_connection(self) -> http.client.HTTPConnection:
        """A transport brings its own (TLS with its own CA: `security.transport.TlsHttpBlobStore`)."""
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def request(self, method: str, h: str, body: bytes | None = None) -> tuple[int, bytes]:
        """One request on this thread's connection: the status and the body. Raises `BlobError` when the
        store cannot be reached."""
        headers = {"Content-Type": "application/octet-stream"} if body is not None else {}
        path = f"{self._prefix}/blobs/{h}"
        for attempt in (0, 1):
            conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
            fresh = conn is None
            if conn is None:
                conn = self._local.conn = self._new_connection()
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    self._drop()
                return resp.status, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.CannotSendRequest, http.client.BadStatusLine) as exc:
                self._drop()
                if fresh or attempt:  # not an idle connection the server closed: the store is gone
                    raise self._unreachable(exc) from None
            except OSError as exc:  # refused, timed out, TLS failures
                self._drop()
                raise self._unreachable(exc) from None
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def _unreachable(self, exc: BaseException) -> BlobError:
        return BlobError(f"cannot reach blob store {self.url}: {type(exc).__name__}: {exc}")

    def _put(self, h: str, data: bytes) -> None:
        status, body = self.request("PUT", h, data)
        if status in (200, 201):
            return
        text = body[:200].decode("utf-8", "replace")
        if status == 413:
            raise BlobTooLarge(f"{len(data)} bytes exceed the blob limit of {self.url} ({text})")
        if status == 400:
            raise BlobIntegrityError(f"{self.url} refused blob {h}: {text}")
        raise BlobError(f"PUT {self._endpoint(h)} failed: HTTP {status} {text}")

    def _get(self, h: str) -> bytes:
        status, body = self.request("GET", h)
        if status == 200:
            return body
        if status == 404:
            raise BlobNotFound(f"blob {h} not in {self.url}")
        raise BlobError(f"GET {self._endpoint(h)} failed: HTTP {status}")


class FileBlobStore(BlobStore):
    """One file per blob, named by its hash; written atomically (temp file + rename)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.url = f"file://{self.dir.resolve()}"

    def _path(self, h: str) -> Path:
        return self.dir / h

    def _put(self, h: str, data: bytes) -> None:
        target = self._path(h)
        if target.exists():
            return
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _get(self, h: str) -> bytes:
        try:
            return self._path(h).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(f"blob {h} not in {self.url}") from None


class S3BlobStore(BlobStore):
    """Objects ``<prefix>/0x<hash>`` in one bucket (boto3)."""

    def __init__(self, bucket: str, prefix: str = "", *, client: Any = None, **client_kwargs: Any) -> None:
        if not bucket:
            raise ValueError("an s3:// blob store URL needs a bucket: s3://BUCKET/PREFIX")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if client is None:
            import boto3  # imported lazily: only S3 users pay for it

            client = boto3.client("s3", **client_kwargs)
        self.client = client
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"

    def _key(self, h: str) -> str:
        return f"{self.prefix}/{h}" if self.prefix else h

    def _put(self, h: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(h), Body=data)

    def _get(self, h: str) -> bytes:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._key(h))
        except self.client.exceptions.NoSuchKey:
            raise BlobNotFound(f"blob {h} not in {self.url}") from None
        return obj["Body"].read()

    def exists(self, hash_hex: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(normalize_hash(hash_hex)))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise


def open_blob_store(url: str, **kwargs: Any) -> BlobStore:
    """A store for ``url``; see the module docstring for the accepted forms."""
    parsed = urlparse(url)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        return HttpBlobStore(url, **kwargs)
    if scheme in ("ws", "wss"):
        # the devnet serves its blob store over HTTP on the RPC port
        http = "https" if scheme == "wss" else "http"
        return HttpBlobStore(f"{http}://{parsed.netloc}", **kwargs)
    if scheme == "file":
        return FileBlobStore(parsed.path if not parsed.netloc else parsed.netloc + parsed.path)
    if scheme == "s3":
        return S3BlobStore(parsed.netloc, parsed.path.lstrip("/"), **kwargs)
    if scheme == "":
        return FileBlobStore(url)
    raise ValueError(f"unsupported blob store URL {url!r}: use http://, file://, s3:// or a directory path")
