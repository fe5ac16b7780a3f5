"""A small local HTTP(S) server that replays recorded JSON API responses.

Why: GCP and Azure have no local emulator for the Compute APIs we read (regions, zones,
accelerator types, resource SKUs, usages), so their real SDK clients are pointed — through
their own endpoint options, never by patching the SDK — at this server on 127.0.0.1, which
answers with responses written from the APIs' documented shapes (`tests/recorded/`). A route
can answer a sequence (e.g. a 429 with `Retry-After`, then the 200), so the SDKs' retry and
error paths run for real over a socket.

A route matches on method, exact path, a subset of query parameters, a subset of headers
(e.g. `X-Amz-Target` for AWS JSON APIs) and a subset of urlencoded form fields (`Action` for
AWS query APIs such as EC2) and of top-level JSON body fields (AWS JSON APIs: `QuotaCode`);
the first matching route answers. Bodies are JSON, or `text`
sent as is (EC2 answers XML).
Each route serves its replies in order and repeats the last one. Unmatched requests get a 404
JSON error naming the request, and are kept in `unmatched` so a test can assert none happened.

Fixture file format (JSON)::

    {"description": "...", "routes": [
        {"method": "GET", "path": "/compute/v1/projects/p/regions/r", "query": {"alt": "json"},
         "replies": [{"status": 429, "headers": {"Retry-After": "0"}, "body": {...}},
                     {"status": 200, "body": {...}}]}]}

Strings in bodies may contain `{base_url}`, replaced by the server's own URL when it starts
(for self links and token URIs that must point back at the server).
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON value; None = empty body
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # wait before answering (to exercise client timeouts)
    text: str | None = None  # a non-JSON body (e.g. EC2's XML), sent as is instead of `body`

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Reply:
        return cls(status=int(d.get("status", 200)), body=d.get("body"), headers=dict(d.get("headers", {})),
                   delay_s=float(d.get("delay_s", 0.0)), text=d.get("text"))


@dataclass
class Route:
    method: str
    path: str
    replies: list[Reply]
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    form: dict[str, str] = field(default_factory=dict)  # urlencoded body fields (AWS query APIs: Action=…)
    json: dict[str, Any] = field(default_factory=dict)  # top-level fields of a JSON body (AWS JSON APIs)
    hits: int = 0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Route:
        replies = [Reply.from_dict(r) for r in d.get("replies", [])] or [Reply(200, {})]
        return cls(method=d.get("method", "GET").upper(), path=d["path"], replies=replies,
                   query={k: str(v) for k, v in d.get("query", {}).items()},
                   headers={k.lower(): str(v) for k, v in d.get("headers", {}).items()},
                   form={k: str(v) for k, v in d.get("form", {}).items()}, json=dict(d.get("json", {})))

    def matches(self, req: SeenRequest) -> bool:
        return (req.method == self.method and req.path == self.path
                and all(req.query.get(k) == v for k, v in self.query.items())
                and all(req.headers.get(k) == v for k, v in self.headers.items())
                and all(req.form.get(k) == v for k, v in self.form.items())
                and all(req.json.get(k) == v for k, v in self.json.items()))

    def next_reply(self) -> Reply:
        reply = self.replies[min(self.hits, len(self.replies) - 1)]
        self.hits += 1
        return reply


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def form(self) -> dict[str, str]:
        if "x-www-form-urlencoded" not in self.headers.get("content-type", ""):
            return {}
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))

    @property
    def json(self) -> dict[str, Any]:
        try:
            value = json.loads(self.body or b"null")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


def load_routes(path: str | Path) -> list[Route]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return [Route.from_dict(r) for r in data["routes"]]


class RecordedApi:
    """Replays routes on 127.0.0.1 (an OS-chosen free port); use as a context manager."""

    def __init__(self, routes: Iterable[Route] = (), *, tls: tuple[str | Path, str | Path] | None = None) -> None:
        self.routes: list[Route] = list(routes)
        self.requests: list[SeenRequest] = []
        self.unmatched: list[SeenRequest] = []
        self._tls = tls
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None  # kept after stop(), so late answers still render their URLs

    @classmethod
    def from_files(cls, *paths: str | Path, tls: tuple[str | Path, str | Path] | None = None) -> RecordedApi:
        routes: list[Route] = []
        for p in paths:
            routes += load_routes(p)
        return cls(routes, tls=tls)

    # routes ---------------------------------------------------------------------------------------

    def add(self, method: str, path: str, *replies: Reply | Mapping[str, Any], query: Mapping[str, str] | None = None,
            headers: Mapping[str, str] | None = None, form: Mapping[str, str] | None = None,
            json_fields: Mapping[str, Any] | None = None, first: bool = False) -> Route:
        """Adds a route (`first=True` puts it before the loaded ones, to override a recording)."""
        route = Route(method.upper(), path, [r if isinstance(r, Reply) else Reply.from_dict(r) for r in replies]
                      or [Reply(200, {})], dict(query or {}), {k.lower(): v for k, v in (headers or {}).items()},
                      dict(form or {}), dict(json_fields or {}))
        with self._lock:
            if first:
                self.routes.insert(0, route)
            else:
                self.routes.append(route)
        return route

    def hits(self, path: str, method: str | None = None) -> int:
        return sum(1 for r in self.requests if r.path == path and (method is None or r.method == method))

    # serving --------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    def _answer(self, req: SeenRequest) -> Reply:
        with self._lock:
            self.requests.append(req)
            for route in self.routes:
                if route.matches(req):
                    return route.next_reply()
            self.unmatched.append(req)
        return Reply(404, {"error": {"code": 404, "message": f"no recorded response for {req.method} {req.path}",
                                     "status": "NOT_FOUND"}})

    def _render(self, body: Any) -> bytes:
        if body is None:
            return b""
        text = json.dumps(body)
        return text.replace("{base_url}", self.url).encode()

    def start(self) -> RecordedApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10  # idle keep-alive connections close by themselves after stop()

            def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read `requests`
                pass

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = SeenRequest(self.command, parts.path, dict(parse_qsl(parts.query, keep_blank_values=True)),
                                   {k.lower(): v for k, v in self.headers.items()}, body)
                reply = api._answer(seen)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.text is not None:
                    payload = reply.text.replace("{base_url}", api.url).encode()
                    content_type = "text/xml; charset=utf-8" if reply.text.lstrip().startswith("<") else "text/plain"
                else:
                    payload, content_type = api._render(reply.body), "application/json; charset=utf-8"
                try:
                    self.send_response(reply.status)
                    headers = {"Content-Type": content_type, **reply.headers}
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._port = server.server_address[1]
        if self._tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(self._tls[0]), str(self._tls[1]))
            server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"recorded-api-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = None
            self._thread = None

    def __enter__(self) -> RecordedApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def self_signed_cert(directory: str | Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1/localhost (Azure's SDK sends bearer tokens only over TLS).

    Returns (cert.pem, key.pem); clients trust the cert file (`connection_verify=cert`).
    Uses `cryptography`, which google-auth already requires.
    """
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = d / "cert.pem", d / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path
