"""`etrid-ray devnet`: JSON-RPC over WebSocket and HTTP POST on one port, plus the blob store.

Limits (frame size, batch size, blob size) are enforced here so hostile
clients get errors, never the node's attention for long.
"""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from etrid_ray.devnet.blob_store import BlobStore
from etrid_ray.devnet.node import Node
from etrid_ray.devnet.persistence import SqliteStore
from etrid_ray.devnet.rpc import RpcError, RpcHandler, Session
from etrid_ray.devnet.runtime import RuntimeConfig

MAX_FRAME_BYTES = 16 * 1024 * 1024
MAX_BATCH = 1000
DEFAULT_BLOB_LIMIT = 64 * 1024 * 1024
SHUTDOWN_TIMEOUT = 2.0  # seconds granted to open connections on SIGTERM/SIGINT


def _error(code: int, message: str, req_id: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": req_id, "error": RpcError(code, message).json()}


class DevnetServer:
    def __init__(self, node: Node, blobs: BlobStore, max_frame: int = MAX_FRAME_BYTES) -> None:
        self.node = node
        self.rpc = RpcHandler(node)
        self.blobs = blobs
        self.max_frame = max_frame
        self.app = web.Application(client_max_size=max(max_frame, blobs.limit + 1024))
        self.app.router.add_get("/", self.handle_ws_or_get)
        self.app.router.add_post("/", self.handle_http)
        self.app.router.add_put("/blobs/{name}", self.put_blob)
        self.app.router.add_get("/blobs/{name}", self.get_blob)
        self.app.router.add_get("/health", self.health)
        self.runner: web.AppRunner | None = None
        self.port = 0
        self._sockets: set[web.WebSocketResponse] = set()

    # JSON-RPC payloads ----------------------------------------------------------------------------

    def answer(self, session: Session, text: str | bytes) -> Any:
        try:
            payload = json.loads(text)
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
            return _error(-32700, "Parse error")
        if isinstance(payload, list):
            if not payload:
                return _error(-32600, "Invalid request")
            if len(payload) > MAX_BATCH:
                return _error(-32600, f"Invalid request: batch larger than {MAX_BATCH}")
            answers = [self.rpc.handle(session, item) for item in payload]
            return [a for a in answers if a is not None] or None
        return self.rpc.handle(session, payload)

    async def handle_http(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if len(body) > self.max_frame:
            return web.json_response(_error(-32600, "Request too large"), status=413)
        response = self.answer(Session(send=None), body)
        return web.json_response(response if response is not None else {})

    async def handle_ws_or_get(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return web.Response(text="etrid-ray devnet: JSON-RPC over WebSocket or HTTP POST\n")
        ws = web.WebSocketResponse(max_msg_size=self.max_frame, heartbeat=30)
        await ws.prepare(request)
        self._sockets.add(ws)
        loop = asyncio.get_running_loop()
        outbox: asyncio.Queue[Any] = asyncio.Queue()

        def send_later(message: dict[str, Any]) -> None:
            # Notifications raised while a request is handled must follow its response.
            loop.call_soon(outbox.put_nowait, message)

        session = Session(send=send_later)

        async def writer() -> None:
            while True:
                message = await outbox.get()
                if message is None:
                    return
                try:
                    await ws.send_str(json.dumps(message))
                except (ConnectionError, RuntimeError):
                    return

        writer_task = asyncio.create_task(writer())
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT or msg.type == WSMsgType.BINARY:
                    response = self.answer(session, msg.data)
                    if response is not None:
                        outbox.put_nowait(response)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            self._sockets.discard(ws)
            session.close()
            outbox.put_nowait(None)
            await writer_task
        return ws

    async def health(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"peers": 0, "isSyncing": False, "shouldHavePeers": False,
                                  "best": self.node.best.number})

    # blobs ----------------------------------------------------------------------------------------

    async def put_blob(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if request.content_length is not None and request.content_length > self.blobs.limit:
            return web.json_response({"error": f"blob larger than {self.blobs.limit} bytes"}, status=413)
        data = bytearray()
        async for chunk in request.content.iter_chunked(1 << 16):
            data += chunk
            if len(data) > self.blobs.limit:
                return web.json_response({"error": f"blob larger than {self.blobs.limit} bytes"}, status=413)
        try:
            created = self.blobs.put(name, bytes(data))
        except ValueError as err:
            return web.json_response({"error": str(err)}, status=400)
        return web.json_response({"hash": name.lower(), "size": len(data)}, status=201 if created else 200)

    async def get_blob(self, request: web.Request) -> web.StreamResponse:
        try:
            data = self.blobs.get(request.match_info["name"])
        except ValueError as err:
            return web.json_response({"error": str(err)}, status=400)
        if data is None:
            return web.json_response({"error": "no such blob"}, status=404)
        return web.Response(body=data, content_type="application/octet-stream")

    # lifecycle ------------------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> str:
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port)
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


async def serve(host: str, port: int, block_time: float, data_dir: str | None, blob_limit: int,
                confirm_window_blocks: int | None = None, timeout_grace_secs: int | None = None) -> None:
    store = SqliteStore(Path(data_dir) / "chain.sqlite") if data_dir else None
    config = RuntimeConfig()
    if confirm_window_blocks is not None:
        config.confirm_window_blocks = confirm_window_blocks
    if timeout_grace_secs is not None:
        config.timeout_grace_secs = timeout_grace_secs
    node = Node(block_time=block_time, config=config, store=store)
    blobs = BlobStore(Path(data_dir) / "blobs" if data_dir else None, blob_limit)
    server = DevnetServer(node, blobs)
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
                  timeout_grace_secs: int | None = None) -> None:
    if block_time < 0:
        raise SystemExit("--block-time must be >= 0 (0 seals a block per batch of transactions)")
    if timeout_grace_secs is not None and timeout_grace_secs < 0:
        raise SystemExit("--timeout-grace must be >= 0 seconds")
    if data_dir:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(host, port, block_time, data_dir, blob_limit_bytes, confirm_window_blocks, timeout_grace_secs))
