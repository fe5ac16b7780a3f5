"""Encryption in transit: plaintext to remote endpoints refused under compliance (before any socket opens);
wss:// and https:// verified against a test CA, through a TLS front to a real devnet on loopback."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from etrid_ray.blobs import BlobError, HttpBlobStore
from etrid_ray.chain import ChainClient
from etrid_ray.chain.errors import ChainConnectionError
from etrid_ray.config import ProviderConfig
from etrid_ray.security import audit, transport
from etrid_ray.security.audit import AuditLog
from etrid_ray.security.transport import InsecureTransportError, TlsHttpBlobStore, check_endpoint, is_loopback_host

CA_ENV = ("ETRID_CA_BUNDLE", "WEBSOCKET_CLIENT_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "AWS_CA_BUNDLE", "SSL_CERT_FILE")


# --- refusing plaintext ---------------------------------------------------------------------------------


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connect() during the test fails it: a refusal must come before a socket is opened."""

    def refuse(self: socket.socket, address: Any) -> None:
        raise AssertionError(f"a connection to {address} was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("LOCALHOST.", True), ("node.localhost", True), ("::ffff:127.0.0.1", True),
    ("10.0.0.7", False), ("192.168.1.2", False), ("0.0.0.0", False), ("example.com", False),
    ("localhost.example.com", False), ("127.0.0.1.nip.io", False), ("", False), (None, False),
])
def test_loopback_is_decided_without_dns(host: str | None, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize("url", [
    "ws://10.0.0.7:9944", "http://rpc.etrid.example:9933", "ws://[2001:db8::1]:9944", "http://0.0.0.0:9944",
    "ws://user:hunter2@node.example.org:9944/path?token=abc",
])
def test_plaintext_to_a_remote_endpoint_is_refused_under_compliance(url: str, no_network: None) -> None:
    with pytest.raises(InsecureTransportError) as err:
        check_endpoint(url, compliance=True, what="websocket_url")
    msg = str(err.value)
    assert "websocket_url" in msg and "plaintext" in msg and "not this machine" in msg
    assert ("wss://" if url.startswith("ws://") else "https://") in msg
    assert "hunter2" not in msg and "token" not in msg  # credentials never echoed
    assert check_endpoint(url, compliance=False) == url  # without compliance: allowed as before


@pytest.mark.parametrize("url", [
    "ws://127.0.0.1:9944", "http://localhost:9933", "ws://[::1]:9944", "wss://node.example.org",
    "https://rpc.example.org:443", "s3://bucket/prefix", "file:///var/blobs", "/var/blobs",
])
def test_loopback_tls_and_non_network_urls_pass(url: str, no_network: None) -> None:
    assert check_endpoint(url, compliance=True) == url


def test_a_provider_config_with_a_remote_plaintext_endpoint_is_refused(no_network: None, tmp_path: Path) -> None:
    ok = ProviderConfig(ENABLE_COMPLIANCE=True, websocket_url="wss://node.example.org", rpc_url="https://node.example.org",
                        blob_store="s3://etrid-blobs/jobs")
    assert transport.check_config(ok, env={}) == ["https://node.example.org", "wss://node.example.org",
                                                  "s3://etrid-blobs/jobs"]
    local = ProviderConfig(ENABLE_COMPLIANCE=True)  # the defaults: a devnet on 127.0.0.1
    assert transport.check_config(local, env={})
    cases = [
        (ProviderConfig(ENABLE_COMPLIANCE=True, websocket_url="ws://10.1.2.3:9944"), {}, "websocket_url"),
        (ProviderConfig(ENABLE_COMPLIANCE=True, rpc_url="http://10.1.2.3:9933"), {}, "rpc_url"),
        (ProviderConfig(ENABLE_COMPLIANCE=True, blob_store="http://blobs.internal:8080"), {}, "blob_store"),
        (local, {"AWS_ENDPOINT_URL_KMS": "http://kms.internal:4566"}, "AWS_ENDPOINT_URL_KMS"),
    ]
    log_path = tmp_path / "audit.jsonl"
    audit.configure(log_path, fsync=False)
    try:
        for config, env, what in cases:
            with pytest.raises(InsecureTransportError, match=what):
                transport.check_config(config, env=env)
        # without compliance the same config is not checked
        assert transport.check_config(ProviderConfig(websocket_url="ws://10.1.2.3:9944"), env={}) == []
        violations = [r for r in AuditLog(log_path).records() if r.kind == "policy_violation"]
        assert [r.fields["what"] for r in violations] == [w for _, _, w in cases]
        assert all(r.fields["rule"] == "tls_required" and r.fields["action"] == "refused" for r in violations)
    finally:
        audit.configure(None)


def test_opening_a_remote_plaintext_store_or_node_is_refused(no_network: None) -> None:
    with pytest.raises(InsecureTransportError, match="blob store"):
        transport.open_secure_blob_store("http://blobs.example.com:8080", compliance=True)
    with pytest.raises(InsecureTransportError, match="chain node"):
        transport.connect("ws://node.example.com:9944", compliance=True)
    assert isinstance(transport.open_secure_blob_store("http://127.0.0.1:1", compliance=True), HttpBlobStore)
    assert isinstance(transport.open_secure_blob_store("https://blobs.example.com", compliance=True),
                      TlsHttpBlobStore)


# --- verified TLS against a test CA ----------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_leaf(ca_key: Any, ca_cert: x509.Certificate, dns: list[str], ips: list[str]) -> tuple[Any, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    san = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (x509.CertificateBuilder().subject_name(_name(dns[0] if dns else ips[0])).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def write_pem(path: Path, cert: x509.Certificate, key: Any | None = None) -> Path:
    data = cert.public_bytes(serialization.Encoding.PEM)
    if key is not None:
        data += key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    path.write_bytes(data)
    return path


class TlsFront:
    """TLS termination on 127.0.0.1 in front of a plaintext loopback service (the devnet): wss://, https://."""

    def __init__(self, target_port: int, certfile: Path) -> None:
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(certfile)
        self.target_port = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.stopping = threading.Event()
        self.sockets: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.handshake_failures = 0
        self.accepter = threading.Thread(target=self._accept, daemon=True)
        self.accepter.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.server.accept()
            except (TimeoutError, OSError):
                continue
            conn.settimeout(10)
            try:
                tls = self.ctx.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                self.handshake_failures += 1
                conn.close()
                continue
            tls.settimeout(None)
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.sockets += [tls, upstream]
            for a, b in ((tls, upstream), (upstream, tls)):
                t = threading.Thread(target=self._pump, args=(a, b), daemon=True)
                t.start()
                self.threads.append(t)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        self.stopping.set()
        self.accepter.join(timeout=5)
        self.server.close()
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes the pumps blocked in recv()
            except OSError:
                pass
            s.close()
        for t in self.threads:
            t.join(timeout=5)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    ca_key, ca = make_ca("etrid test CA")
    _, other_ca = make_ca("someone else's CA")
    leaf_key, leaf = make_leaf(ca_key, ca, ["localhost"], ["127.0.0.1"])
    name_key, name_only = make_leaf(ca_key, ca, ["localhost"], [])
    return {"ca": write_pem(d / "ca.pem", ca), "other_ca": write_pem(d / "other-ca.pem", other_ca),
            "server": write_pem(d / "server.pem", leaf, leaf_key),
            "name_only": write_pem(d / "name-only.pem", name_only, name_key)}


@pytest.fixture()
def clean_ca_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CA_ENV:
        monkeypatch.setenv(name, "")  # recorded, so whatever the test installs is undone afterwards
        monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def front(devnet: Any, pki: dict[str, Path]) -> Iterator[TlsFront]:
    proxy = TlsFront(devnet.port, pki["server"])
    yield proxy
    proxy.stop()


def test_wss_chain_connection_verified_against_the_test_ca(front: TlsFront, pki: dict[str, Path],
                                                           clean_ca_env: None) -> None:
    conn = transport.connect(f"wss://localhost:{front.port}", compliance=True, ca=pki["ca"])
    try:
        assert conn.rpc("system_chain") == "Etrid AI-Compute Devnet"
    finally:
        conn.close()
    with ChainClient(f"wss://localhost:{front.port}") as client:  # the installed bundle serves every client
        assert client.info().best_number >= 0
    # https:// JSON-RPC through requests, same CA
    with ChainClient(f"https://127.0.0.1:{front.port}") as https_client:
        assert https_client.info().chain == "Etrid AI-Compute Devnet"


def test_wss_without_the_ca_or_with_another_ca_is_refused(front: TlsFront, pki: dict[str, Path],
                                                          clean_ca_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from etrid_ray.chain.connection import Connection, RetryPolicy

    once = RetryPolicy(initial_delay=0.01, max_attempts=1)
    failures = front.handshake_failures
    with pytest.raises(ChainConnectionError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        Connection(f"wss://localhost:{front.port}", connect_retry=once)
    transport.install_ca_bundle(pki["other_ca"])
    with pytest.raises(ChainConnectionError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        Connection(f"wss://localhost:{front.port}", connect_retry=once)
    deadline = time.monotonic() + 5  # the front counts the failed handshakes a moment after the client gives up
    while front.handshake_failures < failures + 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert front.handshake_failures >= failures + 2  # refused in the handshake: no request was ever sent


def test_https_blob_store_over_verified_tls(devnet: Any, front: TlsFront, pki: dict[str, Path],
                                            clean_ca_env: None) -> None:
    url = f"https://127.0.0.1:{front.port}"
    store = transport.open_secure_blob_store(url, compliance=True, ca=pki["ca"])
    h = store.put(b"over TLS")
    assert store.get(h) == b"over TLS"
    assert HttpBlobStore(devnet.http_url).get(h) == b"over TLS"  # the same devnet store behind the front
    # wss:// store URLs (the devnet's form) map to its https:// blob endpoint
    assert transport.open_secure_blob_store(f"wss://127.0.0.1:{front.port}", compliance=True,
                                            ca=pki["ca"]).get(h) == b"over TLS"
    for bad in (None, pki["other_ca"]):
        with pytest.raises(BlobError, match="TLS to blob store .* failed.*CERTIFICATE_VERIFY_FAILED"):
            TlsHttpBlobStore(url, ca=bad).get(h)


def test_the_host_name_is_verified_too(devnet: Any, pki: dict[str, Path], clean_ca_env: None) -> None:
    proxy = TlsFront(devnet.port, pki["name_only"])  # a certificate for "localhost" only
    try:
        assert TlsHttpBlobStore(f"https://localhost:{proxy.port}", ca=pki["ca"]).exists("0x" + "00" * 32) is False
        with pytest.raises(BlobError, match="IP address mismatch|doesn't match|not valid for"):
            TlsHttpBlobStore(f"https://127.0.0.1:{proxy.port}", ca=pki["ca"]).get("0x" + "00" * 32)
    finally:
        proxy.stop()


def test_tls_contexts_verify_and_refuse_old_protocols(pki: dict[str, Path], clean_ca_env: None) -> None:
    ctx = transport.ssl_context(pki["ca"])
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    opt = transport.websocket_sslopt(pki["ca"])
    assert opt["cert_reqs"] == ssl.CERT_REQUIRED and opt["context"].check_hostname
    from etrid_ray.chain.errors import ConfigError

    with pytest.raises(ConfigError, match="does not exist"):
        transport.ssl_context("/nonexistent/ca.pem")
