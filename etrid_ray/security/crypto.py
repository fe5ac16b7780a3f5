"""Encryption at rest: AES-256-GCM envelopes, one data key per job, wrapped by a key-encryption key.

Envelope encryption: each job's data key (32 random bytes) encrypts that job's blobs; the data
key is stored only wrapped by a key-encryption key (KEK) — a local key file (`FileKek`) or an
AWS KMS key (`KmsKek`, `GenerateDataKey`/`Decrypt` with an encryption context naming the key).
Wrapped keys live in a key store (a directory or an S3 prefix) apart from the blobs, so
destroying a job's wrapped key makes every copy of its blobs unreadable wherever they are
(backups, caches, a store without delete): erasure by crypto-shredding (`erase_job`).

A sealed blob is self-describing, so a reader needs only the keyring::

    b"ETRENC01" | u16 header length | header JSON {alg, key_ref, kek} | 12-byte nonce | ciphertext+tag

The magic, length and header are the GCM associated data: moving a blob to another key, or
editing its header, fails authentication like any flipped ciphertext bit does. The blob store
names the sealed bytes by their blake2_256 as usual, so the chain still pins what was stored.

Configuration for the provider's tasks comes from the environment (no secrets in it, only where
they are): `ETRID_KEK` = `file:///path/kek` (or a path) or `kms:<key id, alias/… or ARN>`;
`ETRID_KEYSTORE` = a directory, `file:///dir` or `s3://bucket/prefix`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import struct
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from etrid_ray.blobs import (
    BlobError,
    BlobNotFound,
    BlobStore,
    FileBlobStore,
    HttpBlobStore,
    S3BlobStore,
    normalize_hash,
)
from etrid_ray.chain.reader import ChainReader
from etrid_ray.manifest import ManifestError, parse_manifest
from etrid_ray.security import audit

MAGIC = b"ETRENC01"
ALG = "AES-256-GCM"
NONCE_BYTES = 12
KEY_BYTES = 32
MAX_HEADER = 4096
REF_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
ENV_KEK = "ETRID_KEK"
ENV_KEYSTORE = "ETRID_KEYSTORE"


class CryptoError(BlobError):
    """A sealed blob or a wrapped key cannot be opened; never worth retrying."""


class DecryptionError(CryptoError):
    """Authentication failed: the ciphertext, header or wrapped key was changed, or the key is wrong."""


class WrongKeyError(CryptoError):
    """The data key was wrapped by a different key-encryption key than this keyring holds."""


class KeyErasedError(CryptoError):
    """The data key was destroyed (crypto-shredded): the data is gone for good."""


class KeyNotFoundError(CryptoError):
    pass


class NotEncryptedError(CryptoError):
    """A blob that must be encrypted at rest is plaintext."""


class KeyringNotConfigured(CryptoError):
    pass


class KeyServiceError(BlobError):
    """The KMS could not be reached: transient, retried like any store outage."""


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def check_ref(ref: str) -> str:
    if not isinstance(ref, str) or not REF_RE.match(ref):
        raise ValueError(f"key reference {ref!r}: 1-128 of A-Z a-z 0-9 . _ -")
    return ref


def job_ref(job_id: int) -> str:
    """The data key of a job: one per job id."""
    return f"job-{int(job_id)}"


# --- key-encryption keys ------------------------------------------------------------------------------


class Kek(ABC):
    """Wraps and unwraps data keys; `id` names the key (never its material)."""

    id: str

    @abstractmethod
    def new_data_key(self, context: Mapping[str, str]) -> tuple[bytes, bytes]:
        """(plaintext data key, wrapped data key)."""

    @abstractmethod
    def unwrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes: ...


class FileKek(Kek):
    """A 256-bit key in a local file (raw 32 bytes or 64 hex digits), readable by its owner only."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raise KeyringNotConfigured(f"key-encryption key file {self.path} does not exist: "
                                       "create one with FileKek.generate(path)") from None
        key = raw if len(raw) == KEY_BYTES else _hex_key(raw)
        if key is None:
            raise KeyringNotConfigured(f"{self.path} must hold 32 raw bytes or 64 hex digits (a 256-bit key)")
        self._aead = AESGCM(key)
        self.id = "file:" + hashlib.sha256(b"etrid-kek-id\x00" + key).hexdigest()[:16]

    @classmethod
    def generate(cls, path: str | os.PathLike[str]) -> FileKek:
        """Writes a new random key with mode 0600; refuses to overwrite an existing one."""
        p = Path(path).expanduser()
        p.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(KEY_BYTES))
        return cls(p)

    def _aad(self, context: Mapping[str, str]) -> bytes:
        return _canonical({"kek": self.id, **context})

    def new_data_key(self, context: Mapping[str, str]) -> tuple[bytes, bytes]:
        key = secrets.token_bytes(KEY_BYTES)
        nonce = secrets.token_bytes(NONCE_BYTES)
        return key, nonce + self._aead.encrypt(nonce, key, self._aad(context))

    def unwrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        try:
            return self._aead.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], self._aad(context))
        except (InvalidTag, ValueError):
            raise DecryptionError(f"the wrapped data key {context} does not open with {self.id} "
                                  "(changed, or wrapped by another key)") from None


def _hex_key(raw: bytes) -> bytes | None:
    try:
        key = bytes.fromhex(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        return None
    return key if len(key) == KEY_BYTES else None


class KmsKek(Kek):
    """An AWS KMS symmetric key: `GenerateDataKey` (AES_256) and `Decrypt`, bound by an encryption context.

    `client_kwargs` go to `boto3.client("kms", …)` (region_name, endpoint_url for a local KMS).
    """

    def __init__(self, key_id: str, *, client: Any = None, **client_kwargs: Any) -> None:
        if client is None:
            import boto3

            client = boto3.client("kms", **client_kwargs)
        self.client = client
        try:
            meta = self._call(client.describe_key, KeyId=key_id)["KeyMetadata"]
        except CryptoError as err:
            raise KeyringNotConfigured(f"KMS key {key_id!r}: {err}") from None
        self.key_arn = meta["Arn"]
        self.id = "kms:" + self.key_arn

    def _call(self, fn: Any, *, unwrapping: bool = False, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if unwrapping and code == "AccessDeniedException":
                # KMS answers this when the ciphertext names another key than KeyId (or IAM forbids ours)
                raise DecryptionError(f"KMS will not unwrap the data key with {self.key_arn}: wrapped by another "
                                      "key, or this identity may not use it") from None
            if code in ("InvalidCiphertextException", "IncorrectKeyException"):
                raise DecryptionError(f"KMS refused to unwrap the data key ({code}): changed, "
                                      "or wrapped by another key") from None
            if code in ("NotFoundException", "DisabledException", "KMSInvalidStateException",
                        "AccessDeniedException"):
                raise KeyringNotConfigured(f"KMS: {code}: {err.response['Error'].get('Message', '')}") from None
            if code in ("ThrottlingException", "KMSInternalException", "DependencyTimeoutException"):
                raise KeyServiceError(f"KMS: {code}") from None
            raise CryptoError(f"KMS: {code}") from None
        except BotoCoreError as err:  # endpoint unreachable, timeouts, credentials
            raise KeyServiceError(f"KMS unreachable: {type(err).__name__}") from None

    def new_data_key(self, context: Mapping[str, str]) -> tuple[bytes, bytes]:
        out = self._call(self.client.generate_data_key, KeyId=self.key_arn, KeySpec="AES_256",
                         EncryptionContext=dict(context))
        return out["Plaintext"], out["CiphertextBlob"]

    def unwrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        out = self._call(self.client.decrypt, unwrapping=True, CiphertextBlob=wrapped, KeyId=self.key_arn,
                         EncryptionContext=dict(context))
        return out["Plaintext"]


def open_kek(url: str, **client_kwargs: Any) -> Kek:
    """`kms:<key id|alias/…|arn:…>`, `file:///path` or a path."""
    if url.startswith("kms:"):
        return KmsKek(url[4:].lstrip("/") if url.startswith("kms://") else url[4:], **client_kwargs)
    if url.startswith("file://"):
        return FileKek(urlparse(url).path)
    return FileKek(url)


# --- key stores (wrapped keys only) ------------------------------------------------------------------


class KeyStore(ABC):
    """Wrapped data keys by reference, and tombstones of destroyed ones."""

    url: str

    @abstractmethod
    def create(self, ref: str, record: Mapping[str, Any]) -> bool:
        """Stores `record` unless `ref` exists; returns whether it stored it."""

    @abstractmethod
    def get(self, ref: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def destroy(self, ref: str, tombstone: Mapping[str, Any]) -> bool:
        """Removes the wrapped key for good and leaves a tombstone; returns whether a key was there."""

    @abstractmethod
    def tombstone(self, ref: str) -> dict[str, Any] | None: ...


class DirKeyStore(KeyStore):
    """`<dir>/<ref>.key` (mode 0600) and `<ref>.erased` tombstones."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory).expanduser()
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.url = f"file://{self.dir.resolve()}"

    def _path(self, ref: str, suffix: str) -> Path:
        return self.dir / f"{check_ref(ref)}.{suffix}"

    def create(self, ref: str, record: Mapping[str, Any]) -> bool:
        try:
            fd = os.open(self._path(ref, "key"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(_canonical(dict(record)))
            f.flush()
            os.fsync(f.fileno())
        return True

    def get(self, ref: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._path(ref, "key").read_bytes())
        except FileNotFoundError:
            return None

    def destroy(self, ref: str, tombstone: Mapping[str, Any]) -> bool:
        path = self._path(ref, "key")
        self._path(ref, "erased").write_bytes(_canonical(dict(tombstone)))
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return False
        # overwrite before unlinking (on flash the old blocks may survive: the KEK still guards them)
        with path.open("r+b") as f:
            f.write(secrets.token_bytes(size))
            f.flush()
            os.fsync(f.fileno())
        path.unlink()
        dfd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return True

    def tombstone(self, ref: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._path(ref, "erased").read_bytes())
        except FileNotFoundError:
            return None


class S3KeyStore(KeyStore):
    """`<prefix>/<ref>.key` and `<ref>.erased` objects (boto3; a bucket apart from the blobs)."""

    def __init__(self, bucket: str, prefix: str = "", *, client: Any = None, **client_kwargs: Any) -> None:
        if client is None:
            import boto3

            client = boto3.client("s3", **client_kwargs)
        self.client, self.bucket, self.prefix = client, bucket, prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"

    def _key(self, ref: str, suffix: str) -> str:
        name = f"{check_ref(ref)}.{suffix}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def _read(self, key: str) -> dict[str, Any] | None:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=key)
        except self.client.exceptions.NoSuchKey:
            return None
        return json.loads(obj["Body"].read())

    def create(self, ref: str, record: Mapping[str, Any]) -> bool:
        if self._read(self._key(ref, "key")) is not None:
            return False
        self.client.put_object(Bucket=self.bucket, Key=self._key(ref, "key"), Body=_canonical(dict(record)))
        return True

    def get(self, ref: str) -> dict[str, Any] | None:
        return self._read(self._key(ref, "key"))

    def destroy(self, ref: str, tombstone: Mapping[str, Any]) -> bool:
        self.client.put_object(Bucket=self.bucket, Key=self._key(ref, "erased"), Body=_canonical(dict(tombstone)))
        existed = self.get(ref) is not None
        self.client.delete_object(Bucket=self.bucket, Key=self._key(ref, "key"))
        return existed

    def tombstone(self, ref: str) -> dict[str, Any] | None:
        return self._read(self._key(ref, "erased"))


def open_keystore(url: str, **client_kwargs: Any) -> KeyStore:
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        return S3KeyStore(parsed.netloc, parsed.path.lstrip("/"), **client_kwargs)
    if parsed.scheme == "file":
        return DirKeyStore(parsed.path)
    if parsed.scheme == "":
        return DirKeyStore(url)
    raise ValueError(f"unsupported key store URL {url!r}: use a directory, file://DIR or s3://BUCKET/PREFIX")


# --- the keyring ---------------------------------------------------------------------------------------


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Keyring:
    """Data keys by reference: created on first use, unwrapped on demand (briefly cached), destroyed on erasure."""

    def __init__(self, kek: Kek, store: KeyStore, *, cache_s: float = 300.0) -> None:
        self.kek = kek
        self.store = store
        self.cache_s = cache_s
        self._cache: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _context(ref: str) -> dict[str, str]:
        return {"etrid:key_ref": ref}

    def data_key(self, ref: str, *, create: bool = False) -> bytes:
        check_ref(ref)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(ref)
            if hit is not None and hit[1] > now:
                return hit[0]
        record = self.store.get(ref)
        if record is None:
            stone = self.store.tombstone(ref)
            if stone is not None:
                raise KeyErasedError(f"data key {ref} was erased at {stone.get('erased_at', '?')} (crypto-shredded)")
            if not create:
                raise KeyNotFoundError(f"no data key {ref} in {self.store.url}")
            key, wrapped = self.kek.new_data_key(self._context(ref))
            record = {"ref": ref, "kek": self.kek.id, "alg": ALG, "created_at": _now_iso(),
                      "wrapped": base64.b64encode(wrapped).decode()}
            if self.store.create(ref, record):
                audit.record("key_use", op="create", key_ref=ref, kek_id=self.kek.id, store=self.store.url)
                with self._lock:
                    self._cache[ref] = (key, now + self.cache_s)
                return key
            record = self.store.get(ref)  # another process created it first: use theirs
            if record is None:
                raise KeyNotFoundError(f"data key {ref} vanished from {self.store.url}")
        if record.get("kek") != self.kek.id:
            raise WrongKeyError(f"data key {ref} is wrapped by {record.get('kek')}; this keyring holds {self.kek.id}")
        key = self.kek.unwrap(base64.b64decode(record["wrapped"]), self._context(ref))
        audit.record("key_use", op="unwrap", key_ref=ref, kek_id=self.kek.id)
        with self._lock:
            self._cache[ref] = (key, now + self.cache_s)
        return key

    def erase(self, ref: str, *, reason: str = "") -> bool:
        """Destroys the wrapped key (and this process's cached copy); returns whether one existed."""
        with self._lock:
            self._cache.pop(check_ref(ref), None)
        existed = self.store.destroy(ref, {"ref": ref, "erased_at": _now_iso(), "reason": reason})
        audit.record("key_use", op="destroy", key_ref=ref, kek_id=self.kek.id, existed=existed)
        return existed

    def key_state(self, ref: str) -> str:
        """`present`, `erased` or `missing` (without unwrapping anything)."""
        if self.store.get(ref) is not None:
            return "present"
        return "erased" if self.store.tombstone(ref) is not None else "missing"

    # sealing ----------------------------------------------------------------------------------------

    def seal(self, plaintext: bytes, ref: str) -> bytes:
        header = _canonical({"alg": ALG, "key_ref": check_ref(ref), "kek": self.kek.id})
        prefix = MAGIC + struct.pack(">H", len(header)) + header
        nonce = secrets.token_bytes(NONCE_BYTES)
        return prefix + nonce + AESGCM(self.data_key(ref, create=True)).encrypt(nonce, bytes(plaintext), prefix)

    def open(self, sealed: bytes) -> bytes:
        header, prefix, body = parse_envelope(sealed)
        if header.get("alg") != ALG:
            raise DecryptionError(f"unsupported algorithm {header.get('alg')!r}")
        key = self.data_key(str(header.get("key_ref")))
        try:
            return AESGCM(key).decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], prefix)
        except (InvalidTag, ValueError):
            raise DecryptionError(f"blob sealed under {header.get('key_ref')} fails authentication "
                                  "(corrupted or tampered)") from None


def is_sealed(data: bytes) -> bool:
    return data[: len(MAGIC)] == MAGIC


def parse_envelope(sealed: bytes) -> tuple[dict[str, Any], bytes, bytes]:
    """(header, authenticated prefix, nonce+ciphertext); NotEncryptedError for a plaintext blob."""
    if not is_sealed(sealed):
        raise NotEncryptedError("the blob is not an etrid envelope (plaintext at rest)")
    if len(sealed) < len(MAGIC) + 2:
        raise DecryptionError("truncated envelope")
    (n,) = struct.unpack(">H", sealed[len(MAGIC): len(MAGIC) + 2])
    end = len(MAGIC) + 2 + n
    if n > MAX_HEADER or len(sealed) < end + NONCE_BYTES + 16:
        raise DecryptionError("truncated or malformed envelope")
    try:
        header = json.loads(sealed[len(MAGIC) + 2: end])
    except ValueError:
        raise DecryptionError("envelope header is not JSON (corrupted)") from None
    if not isinstance(header, dict):
        raise DecryptionError("envelope header is not an object (corrupted)")
    return header, sealed[:end], sealed[end:]


def envelope_header(data: bytes) -> dict[str, Any] | None:
    """The header of a sealed blob, None for plaintext (or an unreadable header)."""
    try:
        return parse_envelope(data)[0]
    except CryptoError:
        return None


# --- the encrypted blob store ---------------------------------------------------------------------------


class EncryptedBlobStore(BlobStore):
    """Seals on `put` (under `key_ref`, default a fresh `data-<random>` key), opens on `get`; any store inside.

    The hash `put` returns names the sealed bytes (what the inner store and the chain see).
    `get` refuses plaintext with NotEncryptedError unless `allow_plaintext`.
    """

    def __init__(self, inner: BlobStore, keyring: Keyring, key_ref: str | None = None, *,
                 allow_plaintext: bool = False) -> None:
        self.inner = inner
        self.keyring = keyring
        self.key_ref = check_ref(key_ref) if key_ref else f"data-{secrets.token_hex(8)}"
        self.allow_plaintext = allow_plaintext
        self.url = inner.url

    def put(self, data: bytes) -> str:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError("blobs are bytes")
        return self.inner.put(self.keyring.seal(bytes(data), self.key_ref))

    def get(self, hash_hex: str) -> bytes:
        data = self.inner.get(hash_hex)
        if not is_sealed(data):
            if self.allow_plaintext:
                return data
            raise NotEncryptedError(f"blob {normalize_hash(hash_hex)} in {self.inner.url} is not encrypted at rest")
        return self.keyring.open(data)

    def exists(self, hash_hex: str) -> bool:
        return self.inner.exists(hash_hex)

    def _put(self, h: str, data: bytes) -> None:  # pragma: no cover - put/get are overridden
        self.inner._put(h, data)

    def _get(self, h: str) -> bytes:  # pragma: no cover
        return self.inner._get(h)

    def __repr__(self) -> str:
        return f"EncryptedBlobStore({self.inner!r}, key_ref={self.key_ref!r})"


_ENV_KEYRING: dict[tuple[str, str], Keyring] = {}
_ENV_LOCK = threading.Lock()


def keyring_from_env(env: Mapping[str, str] | None = None) -> Keyring:
    """The keyring `ETRID_KEK` and `ETRID_KEYSTORE` describe (one per process and setting).

    An env read outside etrid_ray.config on purpose: this runs inside the Ray task workers that run jobs
    (provider/task.py), which hold no provider config and get these from the pod's env (the ConfigMap and
    Secret); the key-encryption key is key material's address, kept out of the config model like the seed."""
    env = os.environ if env is None else env
    kek_url, store_url = env.get(ENV_KEK, ""), env.get(ENV_KEYSTORE, "")
    if not kek_url or not store_url:
        raise KeyringNotConfigured(f"encryption at rest needs {ENV_KEK} (file:///path or kms:<key>) and "
                                   f"{ENV_KEYSTORE} (a directory or s3://bucket/prefix)")
    with _ENV_LOCK:
        ring = _ENV_KEYRING.get((kek_url, store_url))
        if ring is None:
            ring = _ENV_KEYRING[(kek_url, store_url)] = Keyring(open_kek(kek_url), open_keystore(store_url))
        return ring


def job_store(inner: BlobStore, job_id: int, keyring: Keyring | None = None) -> EncryptedBlobStore:
    """The store a job's task reads inputs from and writes results to when its template needs encryption."""
    return EncryptedBlobStore(inner, keyring or keyring_from_env(), job_ref(job_id))


COMPLIANCE_ENV = ("ENABLE_COMPLIANCE", "ETRID_ENABLE_COMPLIANCE")  # the seed's name (ConfigMap) and ours


def compliance_mode(env: Mapping[str, str] | None = None) -> bool:
    """Whether this process serves under ENABLE_COMPLIANCE (workers get it from the provider's ConfigMap). Read
    from the env here on purpose: it runs inside the Ray task workers, which hold no provider config."""
    env = os.environ if env is None else env
    return any(env.get(k, "").strip().lower() in ("1", "true", "yes", "on") for k in COMPLIANCE_ENV)


def store_for_job(inner: BlobStore, job_id: int, env: Mapping[str, str] | None = None) -> BlobStore:
    """The store the task of a job whose template requires encryption at rest uses.

    Under ENABLE_COMPLIANCE: inputs must be sealed and the result is sealed under the job's data key;
    no keyring configured raises KeyringNotConfigured (fail closed: nothing is stored in the clear).
    Without it, a configured keyring still seals the result (plaintext inputs are accepted), and a
    provider with no keyring stores as before — its compliance report then shows every plaintext blob.
    """
    env = os.environ if env is None else env
    strict = compliance_mode(env)
    if not strict and not (env.get(ENV_KEK) and env.get(ENV_KEYSTORE)):
        return inner
    return EncryptedBlobStore(inner, keyring_from_env(env), job_ref(job_id), allow_plaintext=not strict)


# --- blob status and erasure -------------------------------------------------------------------------


def blob_status(store: BlobStore, hash_hex: str, keyring: Keyring | None = None) -> dict[str, Any]:
    """Whether a stored blob is encrypted at rest, under which key, and whether that key still exists."""
    inner = store.inner if isinstance(store, EncryptedBlobStore) else store
    h = normalize_hash(hash_hex)
    try:
        data = inner.get(h)
    except BlobNotFound:
        return {"blob": h, "present": False, "encrypted": None}
    header = envelope_header(data)
    out: dict[str, Any] = {"blob": h, "present": True, "encrypted": header is not None, "bytes": len(data)}
    if header is not None:
        out.update(alg=header.get("alg"), key_ref=header.get("key_ref"), kek=header.get("kek"))
        if keyring is not None and header.get("key_ref"):
            out["key"] = keyring.key_state(str(header["key_ref"]))
    return out


def delete_blob(store: BlobStore, hash_hex: str) -> bool | None:
    """Deletes a blob where the store can: True deleted, False absent, None the store cannot delete."""
    inner = store.inner if isinstance(store, EncryptedBlobStore) else store
    h = normalize_hash(hash_hex)
    if isinstance(inner, FileBlobStore):
        try:
            inner._path(h).unlink()
            return True
        except FileNotFoundError:
            return False
    if isinstance(inner, S3BlobStore):
        existed = inner.exists(h)
        inner.client.delete_object(Bucket=inner.bucket, Key=inner._key(h))
        return existed
    if isinstance(inner, HttpBlobStore):
        status, _ = inner.request("DELETE", h)
        if status in (200, 204):
            return True
        if status == 404:
            return False
        return None  # 405/501: this store has no delete (the devnet's): crypto-shredding carries erasure
    return None


@dataclass
class Erasure:
    job_id: int
    keys_destroyed: list[str] = field(default_factory=list)
    keys_absent: list[str] = field(default_factory=list)
    blobs_deleted: list[str] = field(default_factory=list)
    blobs_absent: list[str] = field(default_factory=list)
    blobs_kept_sealed: list[str] = field(default_factory=list)  # the store cannot delete; unreadable now
    blobs_kept_plaintext: list[str] = field(default_factory=list)  # the store cannot delete; still readable

    @property
    def complete(self) -> bool:
        return not self.blobs_kept_plaintext

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "complete": self.complete}


def job_blobs_from_chain(conn: Any, store: BlobStore, job_id: int) -> list[str]:
    """The job's manifest (`input_hash`), the inputs it names, and its result, as the chain records them."""
    job = ChainReader(conn).job(job_id)
    if job is None:
        raise KeyNotFoundError(f"job {job_id} is not on chain")
    hashes = [job.input_hash]
    inner = store.inner if isinstance(store, EncryptedBlobStore) else store
    try:
        manifest = parse_manifest(inner.get(job.input_hash))
        hashes += [ref.hash for ref in manifest.inputs]
    except (BlobError, ManifestError):
        pass
    if job.result_hash:
        hashes.append(job.result_hash)
    return list(dict.fromkeys(normalize_hash(h) for h in hashes))


def erase_job(job_id: int, keyring: Keyring, store: BlobStore, blobs: Iterable[str] = (), *,
              reason: str = "erasure request") -> Erasure:
    """Crypto-shreds a job: destroys its data key and the keys its blobs were sealed under, deletes the
    blobs where the store can, and records the erasure in the audit log."""
    out = Erasure(job_id)
    hashes = list(dict.fromkeys(normalize_hash(h) for h in blobs))
    inner = store.inner if isinstance(store, EncryptedBlobStore) else store
    refs = [job_ref(job_id)]
    sealed: dict[str, bool] = {}
    for h in hashes:
        try:
            header = envelope_header(inner.get(h))
        except BlobNotFound:
            continue
        sealed[h] = header is not None
        if header is not None and header.get("key_ref") and header["key_ref"] not in refs:
            refs.append(str(header["key_ref"]))
    for ref in refs:
        (out.keys_destroyed if keyring.erase(ref, reason=f"job {job_id}: {reason}") else out.keys_absent).append(ref)
    for h in hashes:
        deleted = delete_blob(inner, h)
        if deleted:
            out.blobs_deleted.append(h)
        elif deleted is False or h not in sealed:
            out.blobs_absent.append(h)
        elif sealed[h]:
            out.blobs_kept_sealed.append(h)
        else:
            out.blobs_kept_plaintext.append(h)
    audit.record("erasure", job=job_id, reason=reason, **{k: v for k, v in out.to_json().items() if k != "job_id"})
    return out
