"""Local HTTP servers that answer like each cloud's instance metadata service, for the interruption
watcher's tests and demos: AWS IMDSv2 (session tokens included), GCP's metadata server, Azure's
Scheduled Events. Each binds 127.0.0.1 on a free port, runs in a thread of this process, and stops by
its handle (`stop()` or the context manager).

They start quiet (no interruption); `announce(...)` is the switch that makes them answer with one,
`clear()` takes it back, and `respond(path, status, body)` forces any answer (malformed ones included)
for a path. Every request is recorded (`requests`) so tests can check what a client sent.

    python -m tests.helpers.metadata_servers --cloud aws --announce-after 10 --notice-s 120

serves one on the command line until interrupted.
"""

from __future__ import annotations

import argparse
import json
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from etrid_ray.clouds.aws import Aws
from etrid_ray.clouds.azure import Azure
from etrid_ray.clouds.gcp import Gcp


@dataclass(frozen=True)
class Seen:
    method: str
    path: str  # with its query
    headers: dict[str, str]  # names lower-cased (HTTP header names are case-insensitive)
    status: int


@dataclass
class Forced:
    status: int
    body: bytes
    headers: dict[str, str]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class MetadataServer:
    cloud = ""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.requests: list[Seen] = []
        self.forced: dict[str, Forced] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timers: list[threading.Timer] = []

    # lifecycle ------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MetadataServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(min(length, 1 << 16))
                status, body, headers = owner._answer(self.command, self.path, dict(self.headers.items()))
                with owner.lock:
                    owner.requests.append(Seen(self.command, self.path,
                                               {k.lower(): v for k, v in self.headers.items()}, status))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_POST = _serve  # noqa: N815 - http.server's naming

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{self.cloud}-metadata", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> MetadataServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # switches -------------------------------------------------------------------------------------

    def respond(self, path: str, status: int, body: bytes | str, headers: dict[str, str] | None = None) -> None:
        """Answer `path` (without its query) with exactly this, whatever the state; `unforce` undoes it."""
        with self.lock:
            self.forced[path] = Forced(status, body.encode() if isinstance(body, str) else body, headers or {})

    def unforce(self, path: str | None = None) -> None:
        with self.lock:
            if path is None:
                self.forced.clear()
            else:
                self.forced.pop(path, None)

    def announce(self, deadline: float | None = None, **kwargs: Any) -> float:
        """Start announcing an interruption whose deadline is `deadline` (Unix seconds; default: the
        cloud's usual notice from now). Returns the deadline as the endpoint will state it."""
        raise NotImplementedError

    def announce_after(self, delay_s: float, deadline_in_s: float | None = None, **kwargs: Any) -> None:
        """Flip the switch `delay_s` from now, for a deadline `deadline_in_s` after that."""
        def flip() -> None:
            self.announce(None if deadline_in_s is None else time.time() + deadline_in_s, **kwargs)
        timer = threading.Timer(delay_s, flip)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def clear(self) -> None:
        raise NotImplementedError

    def seen(self, method: str | None = None, prefix: str = "") -> list[Seen]:
        with self.lock:
            return [r for r in self.requests if (method is None or r.method == method) and r.path.startswith(prefix)]

    # answering ------------------------------------------------------------------------------------

    def _answer(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        with self.lock:
            forced = self.forced.get(urlsplit(path).path)
            if forced is not None:
                return forced.status, forced.body, forced.headers
            return self.answer(method, path, {k.lower(): v for k, v in headers.items()})

    def answer(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        raise NotImplementedError


TEXT = {"Content-Type": "text/plain"}
JSON = {"Content-Type": "application/json"}


class AwsImdsServer(MetadataServer):
    """IMDSv2 as EC2 answers it: `PUT /latest/api/token` with a TTL of 1..21600 s gives a token;
    metadata GETs without a valid one get 401; `spot/instance-action` and the rebalance
    recommendation are 404 until announced."""

    cloud = "aws"
    NOTICE_S = Aws.notice_s

    def __init__(self, instance_id: str = "i-0123456789abcdef0") -> None:
        super().__init__()
        self.instance_id = instance_id
        self.tokens: dict[str, float] = {}  # token -> expiry (monotonic)
        self.action: dict[str, str] | None = None
        self.rebalance: dict[str, str] | None = None

    def announce(self, deadline: float | None = None, action: str = "terminate", **_: Any) -> float:
        deadline = float(int(time.time() + self.NOTICE_S if deadline is None else deadline))  # whole seconds
        with self.lock:
            self.action = {"action": action, "time": _iso(deadline)}
        return deadline

    def announce_rebalance(self) -> None:
        with self.lock:
            self.rebalance = {"noticeTime": _iso(time.time())}

    def clear(self) -> None:
        with self.lock:
            self.action = self.rebalance = None

    def revoke_tokens(self) -> None:
        """As if every session token had expired."""
        with self.lock:
            self.tokens.clear()

    def answer(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        path = urlsplit(path).path
        if path == "/latest/api/token":
            if method != "PUT":
                return 405, b"", TEXT
            ttl = headers.get("x-aws-ec2-metadata-token-ttl-seconds", "")
            if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                return 400, b"", TEXT
            token = secrets.token_urlsafe(32)
            self.tokens[token] = time.monotonic() + int(ttl)
            return 200, token.encode(), {**TEXT, "X-aws-ec2-metadata-token-ttl-seconds": ttl}
        if method != "GET":
            return 405, b"", TEXT
        token = headers.get("x-aws-ec2-metadata-token", "")
        if self.tokens.get(token, 0.0) < time.monotonic():
            return 401, b"", TEXT
        if path == "/latest/meta-data/spot/instance-action":
            return (200, json.dumps(self.action).encode(), JSON) if self.action else (404, b"Not Found", TEXT)
        if path == "/latest/meta-data/events/recommendations/rebalance":
            return (200, json.dumps(self.rebalance).encode(), JSON) if self.rebalance else (404, b"Not Found", TEXT)
        if path == "/latest/meta-data/instance-id":
            return 200, self.instance_id.encode(), TEXT
        return 404, b"Not Found", TEXT


class GcpMetadataServer(MetadataServer):
    """GCE's metadata server: requests need `Metadata-Flavor: Google` (403 otherwise) and answers carry
    it; `instance/preempted` is FALSE until announced; `instance/maintenance-event` NONE."""

    cloud = "gcp"
    NOTICE_S = Gcp.notice_s
    FLAVOR = {"Metadata-Flavor": "Google"}

    def __init__(self) -> None:
        super().__init__()
        self.preempted = False
        self.maintenance = "NONE"

    def announce(self, deadline: float | None = None, **_: Any) -> float:
        """GCP states no time: the deadline is the usual 30 s from now (returned for the tests' clocks)."""
        with self.lock:
            self.preempted = True
        return time.time() + self.NOTICE_S if deadline is None else deadline

    def announce_maintenance(self, event: str = "TERMINATE_ON_HOST_MAINTENANCE") -> None:
        with self.lock:
            self.maintenance = event

    def clear(self) -> None:
        with self.lock:
            self.preempted = False
            self.maintenance = "NONE"

    def answer(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        path = urlsplit(path).path
        if headers.get("metadata-flavor") != "Google" or "x-forwarded-for" in headers:
            return 403, b"Missing Metadata-Flavor:Google header.", {**TEXT, **self.FLAVOR}
        if method != "GET":
            return 405, b"", {**TEXT, **self.FLAVOR}
        if path == "/computeMetadata/v1/instance/preempted":
            return 200, b"TRUE" if self.preempted else b"FALSE", {**TEXT, **self.FLAVOR}
        if path == "/computeMetadata/v1/instance/maintenance-event":
            return 200, self.maintenance.encode(), {**TEXT, **self.FLAVOR}
        return 404, b"Not Found", {**TEXT, **self.FLAVOR}


class AzureScheduledEventsServer(MetadataServer):
    """Azure IMDS Scheduled Events: requests need `Metadata: true` and an `api-version` (400 otherwise);
    the document lists every announced event with `Resources` naming the VMs it affects;
    `DocumentIncarnation` grows with each change. `compute/name` gives this VM's name."""

    cloud = "azure"
    NOTICE_S = Azure.notice_s

    def __init__(self, vm_name: str = "etrid-spot-vm-0") -> None:
        super().__init__()
        self.vm_name = vm_name
        self.events: list[dict[str, Any]] = []
        self.incarnation = 1

    def announce(self, deadline: float | None = None, event_type: str = "Preempt",
                 resources: list[str] | None = None, status: str = "Scheduled", **_: Any) -> float:
        deadline = float(int(time.time() + self.NOTICE_S if deadline is None else deadline))
        event = {"EventId": secrets.token_hex(8).upper(), "EventStatus": status, "EventType": event_type,
                 "ResourceType": "VirtualMachine", "Resources": resources if resources is not None else [self.vm_name],
                 "NotBefore": format_datetime(datetime.fromtimestamp(deadline, UTC), usegmt=True),
                 "Description": f"{event_type} scheduled by the emulator", "EventSource": "Platform",
                 "DurationInSeconds": -1}
        with self.lock:
            self.events.append(event)
            self.incarnation += 1
        return deadline

    def clear(self) -> None:
        with self.lock:
            self.events = []
            self.incarnation += 1

    def answer(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        parts = urlsplit(path)
        query = parse_qs(parts.query)
        if headers.get("metadata") != "true" or "x-forwarded-for" in headers:
            return 400, json.dumps({"error": "Bad request. Required metadata header not specified"}).encode(), JSON
        if not query.get("api-version"):
            return 400, json.dumps({"error": "Bad request. api-version was not specified"}).encode(), JSON
        if parts.path == "/metadata/scheduledevents" and method == "GET":
            return 200, json.dumps({"DocumentIncarnation": self.incarnation, "Events": self.events}).encode(), JSON
        if parts.path == "/metadata/instance/compute/name" and method == "GET":
            return 200, self.vm_name.encode(), TEXT
        return 404, json.dumps({"error": "Not found"}).encode(), JSON


SERVERS: dict[str, type[MetadataServer]] = {"aws": AwsImdsServer, "gcp": GcpMetadataServer,
                                            "azure": AzureScheduledEventsServer}


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - a manual tool
    parser = argparse.ArgumentParser(prog="python -m tests.helpers.metadata_servers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cloud", choices=sorted(SERVERS), required=True)
    parser.add_argument("--announce-after", type=float, default=None, help="seconds until the notice appears")
    parser.add_argument("--notice-s", type=float, default=None, help="deadline this long after the notice")
    args = parser.parse_args(argv)
    server = SERVERS[args.cloud]().start()
    print(f"{args.cloud} metadata emulator at {server.url}", flush=True)
    if args.announce_after is not None:
        server.announce_after(args.announce_after, args.notice_s)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
