"""`etrid-ray devnet`: JSON-RPC over WebSocket and HTTP POST on one port, plus the blob store.

Every limit that keeps one client from taking the node's attention or memory is enforced here
(sizes and counts before anything is parsed or decoded, bounded queues per connection, timeouts on
half-sent requests), so a hostile client gets an error or a closed connection and everyone else
keeps being served. The limits, their defaults and their options are listed in `Limits`.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import os
import signal
import sys
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from etrid_ray.devnet.blob_store import DEFAULT_MEMORY_LIMIT, BlobStore, StoreFull
from etrid_ray.devnet.node import Node
from etrid_ray.devnet.persistence import SqliteStore
from etrid_ray.devnet.rpc import MAX_SUBSCRIPTIONS, RpcError, RpcHandler, Session
from etrid_ray.devnet.runtime import RuntimeConfig

MIB = 1024 * 1024
MAX_FRAME_BYTES = 16 * MIB
MAX_BATCH = 1000
DEFAULT_BLOB_LIMIT = 64 * MIB
SMALL_BLOB = 64 * 1024  # bodies up to this size are read in one piece; larger ones stream to a temporary file
SHUTDOWN_TIMEOUT = 2.0  # seconds granted to open connections on SIGTERM/SIGINT
# `{`, `[` and `,` in one request: each is a Python object json.loads would build (a 15 MB array of `{}`
# is 5.6M dicts, 636 MB). Counted over the raw bytes before parsing; far above any real client's request
# (20,000 storage keys, or 1,000 small requests, are some 20,000).
MAX_JSON_TOKENS = 262_144
YIELD_EVERY_S = 0.01  # a batch gives other connections the loop at least this often
OVERSIZED_RESPONSE = -32008  # jsonrpsee: "Response is too big"
HEARTBEAT_S = 30.0


@dataclass(frozen=True)
class Limits:
    """What one client may ask of the devnet. Defaults follow a Substrate node's where it has one
    (--rpc-max-request-size/-response-size 15 MiB, 1024 subscriptions a connection, 100 connections)."""

    max_request_bytes: int = MAX_FRAME_BYTES    # --max-request-mb: an HTTP body or a WebSocket frame
    max_response_bytes: int = MAX_FRAME_BYTES   # --max-response-mb: one answer (a whole batch's)
    max_batch: int = MAX_BATCH                  # --max-batch: requests in one JSON-RPC array
    max_subscriptions: int = MAX_SUBSCRIPTIONS  # --max-subscriptions: per connection
    max_queued_bytes: int = MAX_FRAME_BYTES     # --max-queued-mb: unsent output per connection
    max_connections: int = 100                  # --max-connections: open WebSockets
    blob_limit: int = DEFAULT_BLOB_LIMIT        # --blob-limit-mb: one blob
    blob_memory_limit: int = DEFAULT_MEMORY_LIMIT  # --blob-store-mb: all blobs of the in-memory store
    max_uploads: int = 4                        # --max-uploads: blob uploads at once
    idle_timeout: float = 15.0                  # --idle-timeout: request headers, idle keep-alive
    request_timeout: float = 30.0               # --request-timeout: an RPC body; a blob body's pauses
    upload_timeout: float = 300.0               # one blob upload, start to end
    send_timeout: float = 30.0                  # one message to a client that stopped reading


    @classmethod
    def from_options(cls, *, max_request_mb: float = 16, max_response_mb: float = 16, max_batch: int = MAX_BATCH,
                     max_subscriptions: int = MAX_SUBSCRIPTIONS, max_queued_mb: float = 16,
                     max_connections: int = 100, blob_limit_mb: float = 64, blob_store_mb: float = 256,
                     max_uploads: int = 4, idle_timeout: float = 15.0, request_timeout: float = 30.0) -> Limits:
        """The limits from the command line's units (MiB, seconds); the defaults are the options' defaults."""
        values = {"max_request_mb": max_request_mb, "max_response_mb": max_response_mb, "max_batch": max_batch,
                  "max_subscriptions": max_subscriptions, "max_queued_mb": max_queued_mb,
                  "max_connections": max_connections, "blob_limit_mb": blob_limit_mb, "blob_store_mb": blob_store_mb,
                  "max_uploads": max_uploads, "idle_timeout": idle_timeout, "request_timeout": request_timeout}
        for option, value in values.items():
            if not value > 0:
                raise ValueError(f"--{option.replace('_', '-')} must be > 0")
        return cls(max_request_bytes=int(max_request_mb * MIB), max_response_bytes=int(max_response_mb * MIB),
                   max_batch=max_batch, max_subscriptions=max_subscriptions,
                   max_queued_bytes=int(max_queued_mb * MIB), max_connections=max_connections,
                   blob_limit=int(blob_limit_mb * MIB), blob_memory_limit=int(blob_store_mb * MIB),
                   max_uploads=max_uploads, idle_timeout=idle_timeout, request_timeout=request_timeout)


def _error(code: int, message: str, req_id: Any = None, data: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": req_id, "error": RpcError(code, message, data).json()}


class BodyTooLarge(Exception):
    pass


class Outbox:
    """One WebSocket's unsent messages, bounded in bytes.

    Responses wait for room (backpressure: a client that does not read stops being read), while
    notifications that would overflow close the connection: the node cannot wait for a subscriber,
    and a client that does not read must not hold the node's memory. Notifications raised while a
    request is answered are held back until its response is queued, as a client expects a
    subscription's id before its first notification."""

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.BaseTransport | None, limits: Limits) -> None:
        self.ws, self.transport, self.limits = ws, transport, limits
        self.queue: deque[str] = deque()
        self.bytes = 0
        self.held: list[str] | None = None
        self.closed = False      # aborted: nothing more is sent
        self.finishing = False   # the reader is done: send what is queued, then stop
        self.reason = ""
        self.session: Session | None = None
        self._wake = asyncio.Event()
        self._room = asyncio.Event()

    def notify(self, message: dict[str, Any]) -> None:
        if self.closed:
            return
        text = json.dumps(message)
        if self.held is not None:
            self.bytes += len(text)
            self.held.append(text)
            if self.bytes > self.limits.max_queued_bytes:
                self.abort("more queued notifications than --max-queued-mb: the client does not read")
            return
        self._push(text)

    def _push(self, text: str) -> None:
        if self.queue and self.bytes + len(text) > self.limits.max_queued_bytes:
            self.abort("more queued output than --max-queued-mb: the client does not read")
            return
        self.queue.append(text)
        self.bytes += len(text)
        self._wake.set()

    def hold(self) -> None:
        self.held = []

    async def respond(self, text: str | None) -> None:
        """Queues a response (waiting up to send_timeout for room), then the notifications held for it."""
        held, self.held = self.held or [], None
        self.bytes -= sum(len(t) for t in held)
        if text is not None:
            try:
                async with asyncio.timeout(self.limits.send_timeout):
                    while not self.closed and self.queue and self.bytes + len(text) > self.limits.max_queued_bytes:
                        self._room.clear()
                        await self._room.wait()
            except TimeoutError:
                self.abort("a response waited longer than the send timeout: the client does not read")
            if self.closed:
                return
            self._push(text)
        for note in held:
            if self.closed:
                return
            self._push(note)

    async def writer(self) -> None:
        while True:
            while not self.queue:
                if self.closed or self.finishing:
                    return
                self._wake.clear()
                await self._wake.wait()
            if self.closed:
                return
            text = self.queue.popleft()
            self.bytes -= len(text)
            self._room.set()
            try:
                async with asyncio.timeout(self.limits.send_timeout):
                    await self.ws.send_str(text)
            except TimeoutError:
                self.abort("a message waited longer than the send timeout: the client does not read")
                return
            except (ConnectionError, RuntimeError):
                self.abort("connection lost")
                return

    def abort(self, reason: str) -> None:
        """Drops everything queued and the connection at once (a close handshake would wait on the
        client that is not reading)."""
        if self.closed:
            return
        self.closed, self.reason = True, reason
        self.queue.clear()
        self.held = None
        self.bytes = 0
        if self.session is not None:
            self.session.close()
        if self.transport is not None:
            self.transport.abort()  # type: ignore[attr-defined]
        self._wake.set()
        self._room.set()

    def finish(self) -> None:
        """Ends the writer once the reader is done (what is queued is still sent)."""
        self.finishing = True
        self._wake.set()
        self._room.set()


class DevnetServer:
    def __init__(self, node: Node, blobs: BlobStore, limits: Limits | None = None) -> None:
        self.node = node
        self.limits = limits or Limits(blob_limit=blobs.limit, blob_memory_limit=blobs.memory_limit)
        self.rpc = RpcHandler(node)
        self.blobs = blobs
        # Bodies are read by the handlers themselves, chunk by chunk against their own limits;
        # client_max_size only guards aiohttp's request.read()/post(), which nothing here calls.
        self.app = web.Application(client_max_size=self.limits.max_request_bytes)
        self.app.router.add_get("/", self.handle_ws_or_get)
        self.app.router.add_post("/", self.handle_http)
        self.app.router.add_put("/blobs/{name}", self.put_blob)
        self.app.router.add_get("/blobs/{name}", self.get_blob)
        self.app.router.add_get("/health", self.health)
        self.runner: web.AppRunner | None = None
        self.port = 0
        self._sockets: set[web.WebSocketResponse] = set()
        self._uploads = 0

    # JSON-RPC payloads ----------------------------------------------------------------------------

    async def answer(self, session: Session, text: str | bytes) -> str | None:
        """The serialized answer to one JSON-RPC payload (None when it holds only notifications).

        Bounded before parsing (token count), while answering (batch length, response size), and
        fair: a batch hands the loop to other connections every few milliseconds."""
        tokens = text.count("{") + text.count("[") + text.count(",") if isinstance(text, str) else \
            text.count(b"{") + text.count(b"[") + text.count(b",")
        if tokens > MAX_JSON_TOKENS:
            return json.dumps(_error(-32600, "Invalid request",
                                     data=f"more than {MAX_JSON_TOKENS} JSON objects, arrays and elements"))
        try:
            payload = json.loads(text)
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
            return json.dumps(_error(-32700, "Parse error"))
        max_response = self.limits.max_response_bytes
        too_big = json.dumps(_error(OVERSIZED_RESPONSE, "Response is too big",
                                    data=f"Exceeded max limit of {max_response}"))
        if not isinstance(payload, list):
            reply = await self.rpc.handle(session, payload)
            if reply is None:
                return None
            out = json.dumps(reply)
            if len(out) > max_response:
                return json.dumps(_error(OVERSIZED_RESPONSE, "Response is too big", reply.get("id"),
                                         f"Exceeded max limit of {max_response}"))
            return out
        if not payload:
            return json.dumps(_error(-32600, "Invalid request"))
        if len(payload) > self.limits.max_batch:
            return json.dumps(_error(-32600, f"Invalid request: batch larger than {self.limits.max_batch}"))
        loop = asyncio.get_running_loop()
        parts: list[str] = []
        size = 2
        since = loop.time()
        for item in payload:
            reply = await self.rpc.handle(session, item)
            if reply is not None:
                part = json.dumps(reply)
                size += len(part) + 1
                if size > max_response:
                    return too_big
                parts.append(part)
            if loop.time() - since > YIELD_EVERY_S:
                await asyncio.sleep(0)
                since = loop.time()
        return "[" + ",".join(parts) + "]" if parts else None

    async def _read_body(self, request: web.Request, limit: int) -> bytes:
        """The body, refused (BodyTooLarge) as soon as it passes `limit`, and within request_timeout."""
        if request.content_length is not None and request.content_length > limit:
            raise BodyTooLarge
        body = bytearray()
        async with asyncio.timeout(self.limits.request_timeout):
            async for chunk in request.content.iter_chunked(1 << 16):
                body += chunk
                if len(body) > limit:
                    raise BodyTooLarge
        return bytes(body)

    async def handle_http(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._read_body(request, self.limits.max_request_bytes)
        except BodyTooLarge:
            return web.json_response(_error(-32600, "Request too large",
                                            data=f"more than {self.limits.max_request_bytes} bytes"), status=413)
        except TimeoutError:
            return self._timed_out(request)
        response = await self.answer(Session(send=None), body)
        return web.Response(text=response if response is not None else "{}", content_type="application/json")

    def _timed_out(self, request: web.Request) -> web.StreamResponse:
        response = web.json_response({"error": f"request body not received within {self.limits.request_timeout}s"},
                                     status=408)
        response.force_close()
        return response

    async def handle_ws_or_get(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return web.Response(text="etrid-ray devnet: JSON-RPC over WebSocket or HTTP POST\n")
        if len(self._sockets) >= self.limits.max_connections:
            return web.json_response({"error": f"more than {self.limits.max_connections} connections"}, status=503,
                                     headers={"Retry-After": "1"})
        ws = web.WebSocketResponse(max_msg_size=self.limits.max_request_bytes, heartbeat=HEARTBEAT_S)
        await ws.prepare(request)
        self._sockets.add(ws)
        outbox = Outbox(ws, request.transport, self.limits)
        session = Session(send=outbox.notify, max_subscriptions=self.limits.max_subscriptions)
        outbox.session = session
        writer_task = asyncio.create_task(outbox.writer())
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT or msg.type == WSMsgType.BINARY:
                    outbox.hold()
                    response = await self.answer(session, msg.data)
                    await outbox.respond(response)
                elif msg.type == WSMsgType.ERROR:
                    break
                if outbox.closed:
                    break
        finally:
            self._sockets.discard(ws)
            session.close()
            outbox.finish()
            await writer_task
        return ws

    async def health(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"peers": 0, "isSyncing": False, "shouldHavePeers": False,
                                  "best": self.node.best.number})

    # blobs ----------------------------------------------------------------------------------------

    async def put_blob(self, request: web.Request) -> web.StreamResponse:
        """Streams the body to a temporary file while hashing it: memory stays at one chunk whatever
        the blob's size, and no more than max_uploads bodies are read at once."""
        try:
            name = self.blobs.check_name(request.match_info["name"])
        except ValueError as err:
            return web.json_response({"error": str(err)}, status=400)
        limit = self.blobs.limit
        if request.content_length is not None and request.content_length > limit:
            return web.json_response({"error": f"blob larger than {limit} bytes"}, status=413)
        if not self.blobs.room_for(request.content_length or 0):
            return web.json_response({"error": "the in-memory blob store is full"}, status=507)
        if self._uploads >= self.limits.max_uploads:
            return web.json_response({"error": f"more than {self.limits.max_uploads} uploads at once"}, status=503,
                                     headers={"Retry-After": "1"})
        if request.content_length is not None and request.content_length <= SMALL_BLOB:
            return await self._put_small(request, name, request.content_length)
        self._uploads += 1
        fd, upload_name = tempfile.mkstemp(prefix=".upload-", dir=self.blobs.directory)
        upload = Path(upload_name)
        try:
            hasher, size = hashlib.blake2b(digest_size=32), 0
            with os.fdopen(fd, "wb") as out:
                async with asyncio.timeout(self.limits.upload_timeout):
                    while True:
                        async with asyncio.timeout(self.limits.request_timeout):
                            chunk = await request.content.readany()
                        if not chunk:
                            break
                        size += len(chunk)
                        if size > limit:
                            return web.json_response({"error": f"blob larger than {limit} bytes"}, status=413)
                        hasher.update(chunk)
                        out.write(chunk)
            actual = "0x" + hasher.hexdigest()
            if actual != name:
                return web.json_response({"error": f"content hashes to {actual}, not {name}"}, status=400)
            try:
                created = self.blobs.put_file(name, upload, size)
            except StoreFull as err:
                return web.json_response({"error": str(err)}, status=507)
        except TimeoutError:
            return self._timed_out(request)
        finally:
            self._uploads -= 1
            upload.unlink(missing_ok=True)
        return web.json_response({"hash": name, "size": size}, status=201 if created else 200)

    async def _put_small(self, request: web.Request, name: str, size: int) -> web.StreamResponse:
        """A body of declared size up to `SMALL_BLOB` (a job's result, a manifest) read in one piece: no temporary
        file, which cost the devnet twice the request itself for every job's result (bench/throughput.py)."""
        self._uploads += 1
        try:
            async with asyncio.timeout(self.limits.request_timeout):
                data = await request.content.readexactly(size)
            created = self.blobs.put(name, data)
        except TimeoutError:
            return self._timed_out(request)
        except (asyncio.IncompleteReadError, ConnectionResetError):  # the client went before its body was complete
            return web.json_response({"error": f"body shorter than its Content-Length of {size}"}, status=400)
        except ValueError as err:  # the bytes do not hash to the name
            return web.json_response({"error": str(err)}, status=400)
        except StoreFull as err:
            return web.json_response({"error": str(err)}, status=507)
        finally:
            self._uploads -= 1
        return web.json_response({"hash": name, "size": size}, status=201 if created else 200)

    async def get_blob(self, request: web.Request) -> web.StreamResponse:
        try:
            path = self.blobs.path(request.match_info["name"])
            data = None if path is not None else self.blobs.get(request.match_info["name"])
        except ValueError as err:
            return web.json_response({"error": str(err)}, status=400)
        if path is not None:
            return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})
        if data is None:
            return web.json_response({"error": "no such blob"}, status=404)
        return web.Response(body=data, content_type="application/octet-stream")

    # lifecycle ------------------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> str:
        # keepalive_timeout also bounds a connection's wait for complete request headers (aiohttp
        # arms it at connect); lingering_time bounds how long a refused body is read and dropped.
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT,
                                    keepalive_timeout=self.limits.idle_timeout, lingering_time=2.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port, backlog=128)
        await site.start()
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1] if sockets else port
        return f"ws://{host}:{self.port}"

    async def stop(self) -> None:
        """Closes every client websocket (1001 going away) first: aiohttp would otherwise wait for
        connected clients to leave before the process can exit."""
        if self._sockets:
            closing = [ws.close(code=WSCloseCode.GOING_AWAY, message=b"devnet shutting down")
                       for ws in list(self._sockets)]
            await asyncio.wait([asyncio.ensure_future(c) for c in closing], timeout=SHUTDOWN_TIMEOUT)
        if self.runner is not None:
            await self.runner.cleanup()
        self.rpc.decoder.shutdown(wait=False, cancel_futures=True)


async def serve(host: str, port: int, block_time: float, data_dir: str | None, limits: Limits,
                confirm_window_blocks: int | None = None, timeout_grace_secs: int | None = None) -> None:
    store = SqliteStore(Path(data_dir) / "chain.sqlite") if data_dir else None
    config = RuntimeConfig()
    if confirm_window_blocks is not None:
        config.confirm_window_blocks = confirm_window_blocks
    if timeout_grace_secs is not None:
        config.timeout_grace_secs = timeout_grace_secs
    node = Node(block_time=block_time, config=config, store=store)
    blobs = BlobStore(Path(data_dir) / "blobs" if data_dir else None, limits.blob_limit, limits.blob_memory_limit)
    server = DevnetServer(node, blobs, limits)
    # The runtime's type machinery (scalecodec classes, metadata) is a large, long-lived object graph:
    # keep it out of the cyclic GC, or every full collection (and the one at exit, for seconds) walks it.
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before the URL is printed: a client may stop us at once
        loop.add_signal_handler(sig, stop.set)
    url = await server.start(host, port)
    print(url, flush=True)
    print(f"etrid-ray devnet: chain {server.rpc.chain_name!r}, best block #{node.best.number}, "
          f"block time {'instant' if block_time == 0 else f'{block_time}s'}, "
          f"state {'in ' + str(data_dir) if data_dir else 'in memory (ephemeral)'}", file=sys.stderr, flush=True)
    author = asyncio.create_task(node.run())
    await stop.wait()
    author.cancel()
    await server.stop()
    if store is not None:
        store.close()
    print("etrid-ray devnet: stopped", file=sys.stderr, flush=True)


def main_from_cli(host: str = "127.0.0.1", port: int = 9944, block_time: float = 6.0, data_dir: str | None = None,
                  blob_limit_bytes: int = DEFAULT_BLOB_LIMIT, confirm_window_blocks: int | None = None,
                  timeout_grace_secs: int | None = None, limits: Limits | None = None) -> None:
    if block_time < 0:
        raise SystemExit("--block-time must be >= 0 (0 seals a block per batch of transactions)")
    if timeout_grace_secs is not None and timeout_grace_secs < 0:
        raise SystemExit("--timeout-grace must be >= 0 seconds")
    limits = limits or Limits()
    if blob_limit_bytes != limits.blob_limit:
        limits = Limits(**{**limits.__dict__, "blob_limit": blob_limit_bytes})
    if data_dir:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(host, port, block_time, data_dir, limits, confirm_window_blocks, timeout_grace_secs))
