"""Encryption at rest: envelope round trips with a key file and with AWS KMS (moto's server on loopback),
wrong keys, corrupted ciphertext, crypto-shredding, and the provider task sealing results."""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from etrid_ray.blobs import BlobIntegrityError, FileBlobStore, blob_hash, open_blob_store
from etrid_ray.security import audit
from etrid_ray.security.audit import AuditLog, verify
from etrid_ray.security.crypto import (
    MAGIC,
    DecryptionError,
    DirKeyStore,
    EncryptedBlobStore,
    FileKek,
    KeyErasedError,
    Keyring,
    KeyringNotConfigured,
    KeyServiceError,
    KmsKek,
    NotEncryptedError,
    S3KeyStore,
    WrongKeyError,
    blob_status,
    envelope_header,
    erase_job,
    job_ref,
    keyring_from_env,
    open_kek,
)

SECRET = b"patient 4711: diagnosis J45.909, DOB 1984-02-29"


def file_keyring(tmp_path: Path, name: str = "kek") -> Keyring:
    return Keyring(FileKek.generate(tmp_path / name), DirKeyStore(tmp_path / "keys"))


@pytest.fixture()
def ring(tmp_path: Path) -> Keyring:
    return file_keyring(tmp_path)


def test_file_kek_round_trip_through_a_blob_store(tmp_path: Path, ring: Keyring) -> None:
    inner = FileBlobStore(tmp_path / "blobs")
    store = EncryptedBlobStore(inner, ring, job_ref(7))
    h = store.put(SECRET)
    stored = (tmp_path / "blobs" / h).read_bytes()
    assert h == blob_hash(stored)  # the store and the chain name the sealed bytes
    assert stored.startswith(MAGIC) and SECRET not in stored
    assert envelope_header(stored) == {"alg": "AES-256-GCM", "key_ref": "job-7", "kek": ring.kek.id}
    assert store.get(h) == SECRET
    assert store.put(SECRET) != h  # a fresh nonce per seal
    # the key file: 0600, 32 bytes; the wrapped key file holds no plaintext key
    assert (tmp_path / "kek").stat().st_mode & 0o777 == 0o600 and len((tmp_path / "kek").read_bytes()) == 32
    record = json.loads((tmp_path / "keys" / "job-7.key").read_bytes())
    assert set(record) == {"ref", "kek", "alg", "created_at", "wrapped"} and record["kek"] == ring.kek.id
    assert (tmp_path / "keys" / "job-7.key").stat().st_mode & 0o777 == 0o600
    # a second keyring (another process) with the same KEK and key store reads it
    other = Keyring(FileKek(tmp_path / "kek"), DirKeyStore(tmp_path / "keys"))
    assert EncryptedBlobStore(inner, other).get(h) == SECRET
    assert blob_status(inner, h, other) | {"bytes": 0} == {
        "blob": h, "present": True, "encrypted": True, "bytes": 0, "alg": "AES-256-GCM", "key_ref": "job-7",
        "kek": ring.kek.id, "key": "present"}


def test_hex_key_files_and_bad_key_files(tmp_path: Path) -> None:
    (tmp_path / "hex").write_text("11" * 32 + "\n")
    (tmp_path / "short").write_bytes(b"\x01" * 16)
    assert open_kek(f"file://{tmp_path / 'hex'}").id.startswith("file:")
    with pytest.raises(KeyringNotConfigured, match="256-bit"):
        FileKek(tmp_path / "short")
    with pytest.raises(KeyringNotConfigured, match="does not exist"):
        FileKek(tmp_path / "absent")
    FileKek.generate(tmp_path / "k")
    with pytest.raises(FileExistsError):
        FileKek.generate(tmp_path / "k")  # never overwrites a key


def test_a_different_kek_cannot_open_the_data(tmp_path: Path, ring: Keyring) -> None:
    inner = FileBlobStore(tmp_path / "blobs")
    h = EncryptedBlobStore(inner, ring, "job-1").put(SECRET)
    stranger = Keyring(FileKek.generate(tmp_path / "other-kek"), DirKeyStore(tmp_path / "keys"))
    with pytest.raises(WrongKeyError, match="wrapped by file:"):
        EncryptedBlobStore(inner, stranger).get(h)
    # relabelling the wrapped key as the stranger's does not help: the unwrap fails authentication
    path = tmp_path / "keys" / "job-1.key"
    record = json.loads(path.read_bytes())
    path.write_text(json.dumps({**record, "kek": stranger.kek.id}))
    with pytest.raises(DecryptionError):
        EncryptedBlobStore(inner, stranger).get(h)


def test_a_wrapped_key_moved_to_another_job_does_not_open(tmp_path: Path, ring: Keyring) -> None:
    inner = FileBlobStore(tmp_path / "blobs")
    EncryptedBlobStore(inner, ring, "job-1").put(b"one")
    h2 = EncryptedBlobStore(inner, ring, "job-2").put(SECRET)
    keys = tmp_path / "keys"
    (keys / "job-2.key").write_bytes((keys / "job-1.key").read_bytes().replace(b'"job-1"', b'"job-2"'))
    fresh = Keyring(FileKek(tmp_path / "kek"), DirKeyStore(keys))
    with pytest.raises(DecryptionError):  # the wrap is bound to its key reference
        EncryptedBlobStore(inner, fresh).get(h2)


@pytest.mark.parametrize("where", ["ciphertext", "tag", "nonce", "header"])
def test_corrupted_ciphertext_is_refused(ring: Keyring, where: str) -> None:
    sealed = bytearray(ring.seal(SECRET, "job-3"))
    header_end = len(MAGIC) + 2 + int.from_bytes(sealed[len(MAGIC):len(MAGIC) + 2], "big")
    pos = {"ciphertext": header_end + 12 + 5, "tag": len(sealed) - 1, "nonce": header_end + 1,
           "header": bytes(sealed).index(b'"kek":"file:') + 14}[where]  # the KEK id in the header
    sealed[pos] ^= 0x01
    with pytest.raises(DecryptionError):
        ring.open(bytes(sealed))


def test_a_header_pointing_at_another_jobs_key_is_refused(ring: Keyring) -> None:
    ring.seal(b"x", "job-4")
    sealed = ring.seal(SECRET, "job-5")
    forged = sealed.replace(b'"job-5"', b'"job-4"')
    with pytest.raises(DecryptionError):
        ring.open(forged)


def test_truncated_and_plaintext_blobs_are_refused(tmp_path: Path, ring: Keyring) -> None:
    sealed = ring.seal(SECRET, "job-6")
    for cut in (len(MAGIC) + 1, len(sealed) - 20, len(sealed) - 1):
        with pytest.raises(DecryptionError):
            ring.open(sealed[:cut])
    inner = FileBlobStore(tmp_path / "blobs")
    plain = inner.put(SECRET)
    with pytest.raises(NotEncryptedError, match="not encrypted at rest"):
        EncryptedBlobStore(inner, ring).get(plain)
    assert EncryptedBlobStore(inner, ring, allow_plaintext=True).get(plain) == SECRET
    # corruption at rest is caught by the content address before decryption is even tried
    h = EncryptedBlobStore(inner, ring, "job-6").put(SECRET)
    raw = bytearray((tmp_path / "blobs" / h).read_bytes())
    raw[-3] ^= 0xFF
    (tmp_path / "blobs" / h).write_bytes(bytes(raw))
    with pytest.raises(BlobIntegrityError):
        EncryptedBlobStore(inner, ring).get(h)


# --- crypto-shredding --------------------------------------------------------------------------------


def _all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


def test_crypto_shredding_leaves_nothing_readable(tmp_path: Path, ring: Keyring) -> None:
    log_path = tmp_path / "audit.jsonl"
    audit.configure(log_path, fsync=False)
    try:
        inner = FileBlobStore(tmp_path / "blobs")
        consumer = EncryptedBlobStore(inner, ring)  # the consumer's own data key: data-<random>
        h_in = consumer.put(SECRET)
        h_out = EncryptedBlobStore(inner, ring, job_ref(42)).put(b'{"result": "' + SECRET + b'"}')
        backup = tmp_path / "backup"
        shutil.copytree(tmp_path / "blobs", backup)  # copies the erasure cannot reach
        data_key = ring.data_key(job_ref(42))
        wrapped_before = (tmp_path / "keys" / "job-42.key").read_bytes()

        erasure = erase_job(42, ring, inner, [h_in, h_out])
        assert erasure.complete
        assert sorted(erasure.keys_destroyed) == sorted([job_ref(42), consumer.key_ref])
        assert sorted(erasure.blobs_deleted) == sorted([h_in, h_out])
        assert not (tmp_path / "blobs" / h_in).exists() and not (tmp_path / "blobs" / h_out).exists()
        # the backups still exist, but no keyring — not even a fresh process with the KEK — can open them
        fresh = Keyring(FileKek(tmp_path / "kek"), DirKeyStore(tmp_path / "keys"))
        backup_store = FileBlobStore(backup)
        for h in (h_in, h_out):
            for kr in (ring, fresh):
                with pytest.raises(KeyErasedError, match="crypto-shredded"):
                    EncryptedBlobStore(backup_store, kr).get(h)
            assert blob_status(backup_store, h, fresh)["key"] == "erased"
        # nothing on disk holds the plaintext, the data key or its wrapped form any more
        everything = _all_bytes(tmp_path)
        assert SECRET not in everything and data_key not in everything
        assert wrapped_before not in everything
        assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == sorted(
            [f"{consumer.key_ref}.erased", "job-42.erased"])
        # recorded: key destruction and the erasure itself, in a log that verifies
        recs = list(AuditLog(log_path).records())
        erasures = [r for r in recs if r.kind == "erasure"]
        assert len(erasures) == 1 and erasures[0].fields["job"] == 42 and erasures[0].fields["complete"] is True
        assert {r.fields["key_ref"] for r in recs if r.kind == "key_use" and r.fields["op"] == "destroy"} == {
            job_ref(42), consumer.key_ref}
        assert verify(log_path).ok
    finally:
        audit.configure(None)


def test_erasure_on_a_store_without_delete_relies_on_the_shredded_key(devnet: Any, tmp_path: Path,
                                                                      ring: Keyring) -> None:
    """The devnet's HTTP store cannot delete: the sealed blob stays, unreadable; a plaintext one is reported."""
    inner = open_blob_store(devnet.http_url)
    sealed = EncryptedBlobStore(inner, ring, job_ref(77)).put(SECRET + b" (77)")
    plain = inner.put(b"manifest of job 77 " + os.urandom(8))
    erasure = erase_job(77, ring, inner, [sealed, plain])
    assert erasure.keys_destroyed == [job_ref(77)]
    assert erasure.blobs_kept_sealed == [sealed] and erasure.blobs_kept_plaintext == [plain]
    assert not erasure.complete
    assert SECRET not in inner.get(sealed)
    with pytest.raises(KeyErasedError):
        EncryptedBlobStore(inner, Keyring(FileKek(tmp_path / "kek"), DirKeyStore(tmp_path / "keys"))).get(sealed)


def test_keyring_from_env(tmp_path: Path) -> None:
    FileKek.generate(tmp_path / "kek")
    env = {"ETRID_KEK": f"file://{tmp_path / 'kek'}", "ETRID_KEYSTORE": str(tmp_path / "keys")}
    ring = keyring_from_env(env)
    assert keyring_from_env(env) is ring
    assert ring.open(ring.seal(SECRET, "job-1")) == SECRET
    with pytest.raises(KeyringNotConfigured, match="ETRID_KEK"):
        keyring_from_env({})


# --- AWS KMS (moto's server on loopback) ------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture()
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KMS", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    return {"endpoint_url": moto_url, "region_name": "us-east-1"}


def _kms_key(aws: dict[str, Any], alias: str | None = None) -> str:
    import boto3

    kms = boto3.client("kms", **aws)
    key_id = kms.create_key(Description="etrid test KEK", KeySpec="SYMMETRIC_DEFAULT")["KeyMetadata"]["KeyId"]
    if alias:
        kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    return key_id


def test_kms_round_trip_with_an_s3_key_store(aws: dict[str, Any], tmp_path: Path) -> None:
    import boto3

    boto3.client("s3", **aws).create_bucket(Bucket="etrid-keys")
    key_id = _kms_key(aws, "alias/etrid-test-kek")
    kek = open_kek("kms:alias/etrid-test-kek", **aws)
    assert isinstance(kek, KmsKek) and kek.id.startswith("kms:arn:aws:kms:us-east-1:") and kek.id.endswith(key_id)
    ring = Keyring(kek, S3KeyStore("etrid-keys", "wrapped", **aws))
    inner = FileBlobStore(tmp_path / "blobs")
    h = EncryptedBlobStore(inner, ring, job_ref(9)).put(SECRET)
    assert SECRET not in (tmp_path / "blobs" / h).read_bytes()
    fresh = Keyring(KmsKek(key_id, **aws), S3KeyStore("etrid-keys", "wrapped", **aws))
    assert EncryptedBlobStore(inner, fresh).get(h) == SECRET
    obj = boto3.client("s3", **aws).get_object(Bucket="etrid-keys", Key="wrapped/job-9.key")
    assert json.loads(obj["Body"].read())["kek"] == kek.id
    # shredding: the wrapped key object is gone, a tombstone says when
    assert fresh.erase(job_ref(9))
    keys = [o["Key"] for o in boto3.client("s3", **aws).list_objects_v2(Bucket="etrid-keys")["Contents"]]
    assert keys == ["wrapped/job-9.erased"]
    with pytest.raises(KeyErasedError):
        EncryptedBlobStore(inner, Keyring(KmsKek(key_id, **aws), S3KeyStore("etrid-keys", "wrapped", **aws))).get(h)


def test_kms_wrong_key_and_a_forged_wrap_are_refused(aws: dict[str, Any], tmp_path: Path) -> None:
    ring = Keyring(KmsKek(_kms_key(aws), **aws), DirKeyStore(tmp_path / "keys"))
    inner = FileBlobStore(tmp_path / "blobs")
    h = EncryptedBlobStore(inner, ring, job_ref(1)).put(SECRET)
    other = Keyring(KmsKek(_kms_key(aws), **aws), DirKeyStore(tmp_path / "keys"))
    with pytest.raises(WrongKeyError, match="wrapped by kms:"):
        EncryptedBlobStore(inner, other).get(h)
    path = tmp_path / "keys" / "job-1.key"
    record = json.loads(path.read_bytes())
    path.write_text(json.dumps({**record, "kek": other.kek.id}))  # claim the other key wrapped it
    with pytest.raises(DecryptionError):
        EncryptedBlobStore(inner, other).get(h)
    # the encryption context binds the wrap to its job: job-1's wrapped key under job-2's name fails
    path.write_text(json.dumps(record))
    (tmp_path / "keys" / "job-2.key").write_text(json.dumps({**record, "ref": "job-2"}))
    sealed_as_2 = Keyring(ring.kek, DirKeyStore(tmp_path / "keys"))
    with pytest.raises(DecryptionError):
        sealed_as_2.data_key("job-2")


def test_kms_missing_and_unreachable(aws: dict[str, Any]) -> None:
    from botocore.config import Config

    with pytest.raises(KeyringNotConfigured, match="NotFoundException"):
        KmsKek("alias/does-not-exist", **aws)
    closed = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(KeyServiceError, match="unreachable"):
        KmsKek("alias/x", endpoint_url=closed, region_name="us-east-1",
               config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=1))


# --- the provider task seals results under its job's key ---------------------------------------------


def _execute(manifest: dict[str, Any], store_url: str, job_id: int = 11) -> Any:
    from etrid_ray.manifest import Manifest
    from etrid_ray.provider.task import execute

    return execute(job_id, Manifest.model_validate(manifest).model_dump_json(), store_url, 1 << 20)


def test_task_reads_sealed_inputs_and_seals_results_under_the_jobs_key(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    FileKek.generate(tmp_path / "kek")
    monkeypatch.setenv("ENABLE_COMPLIANCE", "true")  # what a compliance provider's ConfigMap gives its workers
    monkeypatch.setenv("ETRID_KEK", str(tmp_path / "kek"))
    monkeypatch.setenv("ETRID_KEYSTORE", str(tmp_path / "keys"))
    ring = keyring_from_env()
    inner = FileBlobStore(tmp_path / "blobs")
    h_in = EncryptedBlobStore(inner, ring).put(SECRET)
    manifest = {"handler": "echo", "inputs": [{"name": "record", "hash": h_in}],
                "compliance": {"template": "HIPAA"}}
    out = _execute(manifest, inner.url, job_id=31)
    assert out.ok, out.reason
    sealed = inner.get(out.result_hash)
    assert envelope_header(sealed)["key_ref"] == "job-31" and SECRET not in sealed
    assert json.loads(EncryptedBlobStore(inner, ring).get(out.result_hash))["result"] == {
        "inputs": {"record": SECRET.decode()}}
    # a plaintext input under an encryption template is refused, not processed
    plain = inner.put(SECRET)
    refused = _execute({**manifest, "inputs": [{"name": "record", "hash": plain}]}, inner.url, job_id=32)
    assert not refused.ok and refused.reason == "input record: NotEncryptedError"
    # no template: plaintext as before
    free = _execute({"handler": "echo", "args": {"payload": 1}}, inner.url, job_id=33)
    assert free.ok and envelope_header(inner.get(free.result_hash)) is None
    # a provider not in compliance mode but with a keyring accepts plaintext inputs and still seals results
    monkeypatch.setenv("ENABLE_COMPLIANCE", "false")
    lenient = _execute({**manifest, "inputs": [{"name": "record", "hash": plain}]}, inner.url, job_id=34)
    assert lenient.ok and envelope_header(inner.get(lenient.result_hash))["key_ref"] == "job-34"


def test_task_fails_closed_without_a_key_under_compliance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ETRID_KEK", raising=False)
    monkeypatch.delenv("ETRID_KEYSTORE", raising=False)
    monkeypatch.delenv("ETRID_ENABLE_COMPLIANCE", raising=False)
    monkeypatch.setenv("ENABLE_COMPLIANCE", "true")
    inner = FileBlobStore(tmp_path / "blobs")
    gdpr = {"handler": "echo", "args": {"payload": "x"}, "compliance": {"template": "GDPR"}}
    out = _execute(gdpr, inner.url)
    assert not out.ok and out.reason == "GDPR needs encryption at rest: no key configured (ETRID_KEK, ETRID_KEYSTORE)"
    assert list((tmp_path / "blobs").iterdir()) == []  # nothing stored in the clear
    # a provider that has not enabled compliance serves it as before (its report shows the plaintext result)
    monkeypatch.setenv("ENABLE_COMPLIANCE", "false")
    out = _execute(gdpr, inner.url)
    assert out.ok and envelope_header(inner.get(out.result_hash)) is None
