"""Blob stores: file://, s3:// (moto's real HTTP server on loopback) and the devnet's HTTP store."""

from __future__ import annotations

import socket
import time
from hashlib import blake2b

import pytest

from etrid_ray.blobs import (
    BlobIntegrityError,
    BlobNotFound,
    FileBlobStore,
    HttpBlobStore,
    S3BlobStore,
    blob_hash,
    normalize_hash,
    open_blob_store,
)
from etrid_ray.devnet.process import DevnetProcess
from etrid_ray.devnet.server import SMALL_BLOB

DATA = b'{"handler": "matmul", "args": {"n": 64}}'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_blob_hash_is_blake2_256() -> None:
    assert blob_hash(DATA) == "0x" + blake2b(DATA, digest_size=32).hexdigest()
    assert len(blob_hash(b"")) == 66


def test_normalize_hash_accepts_both_forms_and_rejects_junk() -> None:
    h = blob_hash(DATA)
    assert normalize_hash(h[2:].upper()) == h
    for bad in ("", "0x12", "zz" * 32, h + "00"):
        with pytest.raises(ValueError):
            normalize_hash(bad)


def test_open_blob_store_dispatches_on_scheme(tmp_path) -> None:
    assert isinstance(open_blob_store(f"file://{tmp_path}"), FileBlobStore)
    assert isinstance(open_blob_store(str(tmp_path / "plain")), FileBlobStore)
    http = open_blob_store("ws://127.0.0.1:9944")
    assert isinstance(http, HttpBlobStore) and http.url == "http://127.0.0.1:9944"
    with pytest.raises(ValueError, match="unsupported blob store"):
        open_blob_store("ftp://example/x")


def test_file_store_roundtrip_and_integrity(tmp_path) -> None:
    store = open_blob_store(f"file://{tmp_path}")
    h = store.put(DATA)
    assert h == blob_hash(DATA)
    assert store.get(h) == DATA
    assert store.get(h[2:]) == DATA
    assert store.exists(h)
    assert store.put(DATA) == h  # idempotent
    missing = blob_hash(b"nope")
    assert not store.exists(missing)
    with pytest.raises(BlobNotFound):
        store.get(missing)
    # a tampered file must be refused, not served
    (tmp_path / h).write_bytes(b"tampered")
    with pytest.raises(BlobIntegrityError):
        store.get(h)
    assert not list(tmp_path.glob(".tmp-*"))


@pytest.fixture(scope="module")
def moto_s3():
    """moto's S3 server over real HTTP on a free loopback port; stopped through its handle."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def test_s3_store_roundtrip_against_moto_server(moto_s3, monkeypatch) -> None:
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1")
    client.create_bucket(Bucket="etrid-blobs")
    store = open_blob_store("s3://etrid-blobs/jobs/manifests", endpoint_url=moto_s3, region_name="us-east-1")
    assert isinstance(store, S3BlobStore)
    h = store.put(DATA)
    assert h == blob_hash(DATA)
    assert store.get(h) == DATA
    assert store.exists(h)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="etrid-blobs")["Contents"]]
    assert keys == [f"jobs/manifests/{h}"]
    missing = blob_hash(b"absent")
    assert not store.exists(missing)
    with pytest.raises(BlobNotFound):
        store.get(missing)
    # an object overwritten behind our back fails verification
    client.put_object(Bucket="etrid-blobs", Key=f"jobs/manifests/{h}", Body=b"evil")
    with pytest.raises(BlobIntegrityError):
        store.get(h)


def test_http_store_against_devnet(devnet) -> None:
    store = open_blob_store(devnet.url)  # ws:// URL -> the devnet's HTTP store on the same port
    h = store.put(DATA)
    assert h == blob_hash(DATA)
    assert store.get(h) == DATA
    assert HttpBlobStore(devnet.http_url).get(h) == DATA
    with pytest.raises(BlobNotFound):
        store.get(blob_hash(b"never stored"))
    # the server refuses bytes that do not hash to their name
    with pytest.raises(BlobIntegrityError):
        store._put(blob_hash(b"other"), DATA)


def test_http_store_keeps_one_connection_per_thread(devnet) -> None:
    """Every job's worker stores a result: one keep-alive connection, not a TCP connection per blob."""
    store = HttpBlobStore(devnet.http_url)
    hashes = [store.put(f"result {i}".encode()) for i in range(20)]
    conn = store._local.conn
    assert conn is not None and conn.sock is not None
    local_port = conn.sock.getsockname()[1]
    assert [store.get(h) for h in hashes] == [f"result {i}".encode() for i in range(20)]
    assert store._local.conn.sock.getsockname()[1] == local_port


def test_http_store_resends_on_a_connection_the_server_closed_while_idle() -> None:
    with DevnetProcess(block_time=0, extra_args=["--idle-timeout", "0.3"]) as short_idle:
        store = HttpBlobStore(short_idle.http_url)
        first = store.put(b"before the idle timeout")
        time.sleep(1.0)  # the devnet closes the idle keep-alive connection
        second = store.put(b"after the idle timeout")
        assert store.get(first) == b"before the idle timeout"
        assert store.get(second) == b"after the idle timeout"


def test_http_store_small_and_streamed_uploads_agree(devnet) -> None:
    """Bodies up to SMALL_BLOB are read in one piece, larger ones streamed to a file: same store, same checks."""
    store = HttpBlobStore(devnet.http_url)
    for size in (SMALL_BLOB, SMALL_BLOB + 1):
        data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        assert store.get(store.put(data)) == data
        with pytest.raises(BlobIntegrityError):
            store._put(blob_hash(b"not these bytes"), data)


def test_devnet_stores_nothing_from_a_client_that_leaves_mid_body(devnet) -> None:
    h = blob_hash(b"0123456789")
    with socket.create_connection(("127.0.0.1", devnet.port)) as sock:
        sock.sendall(f"PUT /blobs/{h} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234".encode())
    store = HttpBlobStore(devnet.http_url)
    with pytest.raises(BlobNotFound):
        store.get(h)
    assert store.get(store.put(b"0123456789")) == b"0123456789"  # and the devnet serves on
