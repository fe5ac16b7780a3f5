"""Encryption in transit: with compliance on, no plaintext to anything that is not this machine.

`check_endpoint` refuses `ws://` and `http://` to any host that is not loopback (127.0.0.0/8,
::1, `localhost`) when compliance is on, with an error that says what to use instead; the
refusal happens before any socket is opened and is audited as a policy violation. Names are
never resolved to decide: a name that happens to resolve to 127.0.0.1 today is still remote.

TLS endpoints (`wss://`, `https://`) are verified: certificate chain and host name, TLS 1.2 or
newer, against the system's CAs or a CA bundle (`ETRID_CA_BUNDLE`, or passed explicitly). The
chain client's transports (websocket-client for `wss://`, requests for `https://`) and boto3
read their CA bundle from the environment; `install_ca_bundle` points all three at one file.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse, urlunparse

from etrid_ray.blobs import BlobError, BlobStore, HttpBlobStore, open_blob_store
from etrid_ray.chain.connection import Connection
from etrid_ray.chain.errors import ConfigError
from etrid_ray.config import env_setting
from etrid_ray.security import audit

ENV_CA_BUNDLE = "ETRID_CA_BUNDLE"  # the env name of the config's compliance.ca_bundle
PLAINTEXT = {"ws": "wss", "http": "https"}
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
#: env vars naming endpoints the provider talks to besides its config (AWS SDK overrides)
ENDPOINT_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_KMS")


class InsecureTransportError(ConfigError):
    """A plaintext connection to a remote endpoint while compliance is on."""


def is_loopback_host(host: str | None) -> bool:
    """127.0.0.0/8, ::1 (and IPv4-mapped loopback), `localhost` and `*.localhost`; no DNS lookups."""
    if not host:
        return False
    h = host.strip().strip("[]").rstrip(".").lower()
    if h in LOOPBACK_NAMES or h.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(h.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def redact(url: str) -> str:
    """The URL without credentials, query or fragment (safe for messages and the audit log)."""
    p = urlparse(url)
    netloc = p.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if p.port:
        netloc += f":{p.port}"
    return urlunparse((p.scheme, netloc, p.path, "", "", ""))


def check_endpoint(url: str, *, compliance: bool, what: str = "endpoint") -> str:
    """Returns `url`, or raises InsecureTransportError for plaintext to a remote host under compliance."""
    if not compliance or not url:
        return url
    p = urlparse(url)
    scheme = p.scheme.lower()
    if scheme in PLAINTEXT and not is_loopback_host(p.hostname):
        secure = PLAINTEXT[scheme]
        shown = redact(url)
        audit.record("policy_violation", rule="tls_required", what=what, endpoint=shown, action="refused")
        raise InsecureTransportError(
            f"{what} {shown} is plaintext {scheme}:// to {p.hostname}, which is not this machine: with compliance "
            f"on (ENABLE_COMPLIANCE) data in transit must be encrypted — use {secure}://{p.netloc.split('@')[-1]}"
            f"{p.path} (TLS with certificate verification; a private CA goes in {ENV_CA_BUNDLE}), "
            "or a loopback address for a local node")
    return url


def check_config(config: Any, env: Mapping[str, str] | None = None) -> list[str]:
    """Checks every endpoint a provider config (and the AWS SDK's endpoint env vars: the SDK's own names, read
    here because the SDK reads them too) names; returns them.

    Does nothing unless `config.compliance.enabled` (ENABLE_COMPLIANCE).
    """
    if not config.compliance.enabled:
        return []
    env = os.environ if env is None else env
    chain = config.chain
    endpoints = [("rpc_url", chain.rpc_url), ("websocket_url", chain.websocket_url)]
    if chain.blob_store:
        endpoints.append(("blob_store", chain.blob_store))
    endpoints += [(name, env[name]) for name in ENDPOINT_ENV if env.get(name)]
    for what, url in endpoints:
        check_endpoint(url, compliance=True, what=what)
    return [url for _, url in endpoints]


# --- verified TLS ------------------------------------------------------------------------------------


def ca_bundle(explicit: str | os.PathLike[str] | None = None) -> str | None:
    """`explicit`, else the config's `compliance.ca_bundle` as this process's env sets it (ETRID_CA_BUNDLE: task
    workers and the CLI hold no provider config), else None (the system's CAs)."""
    path = str(explicit) if explicit else env_setting("ca_bundle") or None
    if path is not None and not os.path.exists(path):
        raise ConfigError(f"CA bundle {path} does not exist (set {ENV_CA_BUNDLE} to a PEM file of trusted CAs)")
    return path


def ssl_context(ca: str | os.PathLike[str] | None = None) -> ssl.SSLContext:
    """Client context: certificate and host name verified, TLS ≥ 1.2; trusts `ca` (or ETRID_CA_BUNDLE) if given,
    else the system store."""
    bundle = ca_bundle(ca)
    ctx = ssl.create_default_context(cafile=bundle) if bundle else ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def websocket_sslopt(ca: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """`sslopt` for websocket-client: a verifying context."""
    return {"context": ssl_context(ca), "cert_reqs": ssl.CERT_REQUIRED, "check_hostname": True}


def install_ca_bundle(ca: str | os.PathLike[str], env: dict[str, str] | None = None) -> None:
    """Points websocket-client (`wss://` chain connections), requests (`https://` RPC) and boto3 at `ca`."""
    path = ca_bundle(ca)
    assert path is not None
    target = os.environ if env is None else env
    for name in (ENV_CA_BUNDLE, "WEBSOCKET_CLIENT_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "AWS_CA_BUNDLE"):
        target[name] = path


class TlsHttpBlobStore(HttpBlobStore):
    """The HTTP blob store over verified TLS, with a configurable CA bundle."""

    def __init__(self, base_url: str, *, ca: str | os.PathLike[str] | None = None, timeout: float = 30.0) -> None:
        if urlparse(base_url).scheme != "https":
            raise ValueError(f"{base_url!r}: TlsHttpBlobStore needs https://")
        super().__init__(base_url, timeout=timeout)
        self._context = ssl_context(ca)

    def _new_connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout, context=self._context)

    def _unreachable(self, exc: BaseException) -> BlobError:
        if isinstance(exc, ssl.SSLError):
            return BlobError(f"TLS to blob store {self.url} failed: {exc} (is its CA in {ENV_CA_BUNDLE}?)")
        return super()._unreachable(exc)


def open_secure_blob_store(url: str, *, compliance: bool, ca: str | os.PathLike[str] | None = None,
                           **kwargs: Any) -> BlobStore:
    """`open_blob_store` with the transit rules: plaintext to remote refused under compliance, TLS verified."""
    check_endpoint(url, compliance=compliance, what="blob store")
    p = urlparse(url)
    if p.scheme in ("https", "wss"):
        return TlsHttpBlobStore(f"https://{p.netloc}" if p.scheme == "wss" else url, ca=ca, **kwargs)
    return open_blob_store(url, **kwargs)


def connect(url: str, *, compliance: bool, ca: str | os.PathLike[str] | None = None, **kwargs: Any) -> Any:
    """A chain `Connection` under the transit rules (the CA bundle, if any, installed process-wide)."""
    check_endpoint(url, compliance=compliance, what="chain node")
    if ca is not None:
        install_ca_bundle(ca)
    return Connection(url, **kwargs)
