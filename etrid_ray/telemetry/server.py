"""`/metrics`, `/healthz` and `/readyz` over HTTP, for the head actor and the standalone exporter.

`/healthz` answers whether the process should be restarted (its loop is dead), `/readyz` whether
it should be scraped and trusted (it reads the head or the chain right now); both return 200 or 503
with a small JSON body saying why. `/metrics` speaks the Prometheus text format, or OpenMetrics
when the scraper asks for it.

Served by a bounded pool of threads behind a 1,024-deep listen backlog, each connection with a socket
timeout: a client that sends half a request (or never reads) holds one thread for at most
`request_timeout` seconds, and a burst of scrapers waits in the backlog instead of being refused.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

log = logging.getLogger(__name__)

Check = Callable[[], tuple[bool, dict[str, Any]]]

REQUEST_TIMEOUT_S = 10.0  # a connection's whole request, and each write of the answer
MAX_THREADS = 128         # connections served at once; more wait in the backlog
# the stdlib's default backlog is 5; 128 still overflowed when the accept loop lagged behind 50 half-sent requests
# and 100 scrapers on a loaded machine: a full accept queue drops SYNs, each a 1 s retransmit for its client
BACKLOG = 1024


class _BoundedThreadingServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with a real backlog and at most `max_threads` handler threads."""

    daemon_threads = True
    request_queue_size = BACKLOG

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], max_threads: int,
                 slot_wait: float) -> None:
        self._slots = threading.BoundedSemaphore(max_threads)
        self._slot_wait = slot_wait
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Waiting here leaves further connections in the backlog; a slot frees within the request
        # timeout, so a connection still waiting after it is dropped rather than queued without end.
        if not self._slots.acquire(timeout=self._slot_wait):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class MetricsServer:
    def __init__(self, registry: CollectorRegistry, *, health: Check, ready: Check, host: str = "127.0.0.1",
                 port: int = 0, request_timeout: float = REQUEST_TIMEOUT_S, max_threads: int = MAX_THREADS) -> None:
        self.registry = registry
        self.request_timeout = request_timeout
        self.max_threads = max_threads
        self.health = health
        self.ready = ready
        self.host = host
        self.port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> MetricsServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "etrid-ray"
            timeout = server.request_timeout  # StreamRequestHandler sets it on the socket: half-sent requests end

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                path = urlparse(self.path).path
                try:
                    if path == "/metrics":
                        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                        self._send(200, content_type, encoder(server.registry))
                    elif path in ("/healthz", "/readyz"):
                        ok, detail = (server.health if path == "/healthz" else server.ready)()
                        body = json.dumps({"status": "ok" if ok else "unavailable", **detail}, default=str)
                        self._send(200 if ok else 503, "application/json", body.encode())
                    elif path == "/":
                        self._send(200, "text/plain; charset=utf-8", b"etrid-ray: /metrics /healthz /readyz\n")
                    else:
                        self._send(404, "text/plain; charset=utf-8", b"not found\n")
                except Exception as err:  # a failing check or collector is a 500, never a dead server
                    log.warning("%s failed: %s: %s", path, type(err).__name__, err)
                    self._send(500, "text/plain; charset=utf-8", f"{type(err).__name__}\n".encode())

            def _send(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
                log.debug("%s " + format, self.client_address[0], *args)

        httpd = _BoundedThreadingServer((self.host, self.port), Handler, self.max_threads, self.request_timeout)
        self._httpd = httpd
        self.port = int(httpd.server_address[1])
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="etrid-metrics-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
