"""`/metrics`, `/healthz` and `/readyz` over HTTP, for the head actor and the standalone exporter.

`/healthz` answers whether the process should be restarted (its loop is dead), `/readyz` whether
it should be scraped and trusted (it reads the head or the chain right now); both return 200 or 503
with a small JSON body saying why. `/metrics` speaks the Prometheus text format, or OpenMetrics
when the scraper asks for it.
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


class MetricsServer:
    def __init__(self, registry: CollectorRegistry, *, health: Check, ready: Check, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.registry = registry
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

        httpd = ThreadingHTTPServer((self.host, self.port), Handler)
        httpd.daemon_threads = True
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
