"""One connection to a node: substrate-interface underneath, reconnect with backoff, typed RPC errors.

Why a wrapper: substrate-interface's websocket is one synchronous socket that is
not thread-safe, re-fetches the chain head and runtime version on *every*
``compose_call``/``create_signed_extrinsic`` (five round trips per extrinsic),
and on a dropped socket raises whatever the transport raised. Here:

* calls are serialized by a lock, so the provider's threads can share a connection;
* the runtime is re-checked at most every ``runtime_check_s`` (and after any
  reconnect), and the genesis hash is cached, so signing costs no round trip;
* connection failures are retried with exponential backoff and a fresh socket;
  a node that stays down raises :class:`ChainConnectionError`;
* JSON-RPC errors become :class:`RpcError` with the node's code (1010, 1014, …).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlparse

import requests
import websocket
from substrateinterface import SubstrateInterface
from substrateinterface.exceptions import SubstrateRequestException

from etrid_ray.chain.errors import ChainConnectionError, ConfigError, RpcError
from etrid_ray.chain.metadata import ChainMetadata

log = logging.getLogger(__name__)
T = TypeVar("T")

#: the exceptions that mean "the socket is gone", as opposed to "the node said no"
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    websocket.WebSocketException,
    ConnectionError,
    TimeoutError,
    OSError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff for reconnecting: 0.2 s, 0.4 s, … capped at ``max_delay``."""

    initial_delay: float = 0.2
    factor: float = 2.0
    max_delay: float = 10.0
    max_attempts: int = 8

    def delays(self) -> Iterator[float]:
        delay = self.initial_delay
        for _ in range(self.max_attempts):
            yield delay
            delay = min(delay * self.factor, self.max_delay)


def validate_url(url: str, option: str = "--url") -> str:
    """Checks the node URL early, so a typo is a clear config error and not a socket trace."""
    parsed = urlparse(url or "")
    if parsed.scheme not in ("ws", "wss", "http", "https") or not parsed.hostname:
        raise ConfigError(
            f"{option} {url!r} is not a node URL: use ws://HOST:PORT (e.g. ws://127.0.0.1:9944) or http://HOST:PORT"
        )
    return url


def rpc_error_from(exc: SubstrateRequestException, method: str = "") -> RpcError | None:
    """substrate-interface raises ``SubstrateRequestException(error_dict)``; recover the code."""
    arg = exc.args[0] if exc.args else None
    if isinstance(arg, dict) and "code" in arg:
        return RpcError(int(arg.get("code", 0)), str(arg.get("message", "")), arg.get("data"), method)
    return None


class _Substrate(SubstrateInterface):
    """SubstrateInterface that does not re-read the head and runtime version before every call."""

    runtime_check_s: float = 10.0
    _checked_at: float = 0.0
    _genesis: str | None = None

    def init_runtime(self, block_hash: str | None = None, block_id: int | None = None) -> None:
        latest = block_hash is None and block_id is None
        if latest and self.metadata is not None and time.monotonic() - self._checked_at < self.runtime_check_s:
            return
        super().init_runtime(block_hash=block_hash, block_id=block_id)
        if latest:
            self._checked_at = time.monotonic()

    def force_runtime_check(self) -> None:
        self._checked_at = 0.0

    def get_block_hash(self, block_id: int | None = None) -> str:
        if block_id == 0:
            if self._genesis is None:
                self._genesis = super().get_block_hash(0)
            return self._genesis
        return super().get_block_hash(block_id)


class Connection:
    """A thread-safe, self-healing connection to one node."""

    def __init__(
        self,
        url: str,
        *,
        retry: RetryPolicy | None = None,
        connect_retry: RetryPolicy | None = None,
        timeout: float = 60.0,
        runtime_check_s: float = 10.0,
        connect: bool = True,
    ) -> None:
        self.url = validate_url(url)
        self.retry = retry or RetryPolicy()
        #: the first connection gives up sooner: a refusal at start is usually a wrong --url
        self.connect_retry = connect_retry or RetryPolicy(max_attempts=3)
        self.timeout = timeout
        self.runtime_check_s = runtime_check_s
        self.reconnects = 0
        #: decoded events of the newest blocks, by block hash (`events.block_events`): a block's events never
        #: change, and the queue watcher and the submitter waiting for its extrinsics read the same blocks
        self.block_events: OrderedDict[str, list[Any]] = OrderedDict()
        self._lock = threading.RLock()
        self._substrate: _Substrate | None = None
        self._metadata: ChainMetadata | None = None
        self._metadata_version: Any = None
        self._listeners: list[Callable[[], None]] = []
        if connect:
            with self._lock:
                self._reconnect(first=True)

    # lifecycle -----------------------------------------------------------------------------------
    def _open(self) -> _Substrate:
        is_ws = self.url.startswith(("ws://", "wss://"))
        sub = _Substrate(
            url=self.url,
            # websocket-client validates UTF-8 in pure Python (0.8 s for 10,000 jobs); json does it anyway
            ws_options={"timeout": self.timeout, "skip_utf8_validation": True} if is_ws else None,
            auto_reconnect=False,
            use_remote_preset=False,
        )
        sub.runtime_check_s = self.runtime_check_s
        sub.init_runtime()
        return sub

    def _reconnect(self, *, first: bool = False) -> None:
        self._drop()
        policy = self.connect_retry if first else self.retry
        last: BaseException | None = None
        for attempt, delay in enumerate(policy.delays(), start=1):
            try:
                self._substrate = self._open()
                if not first:
                    self.reconnects += 1
                    log.info("reconnected to %s after %d attempt(s)", self.url, attempt)
                    for cb in list(self._listeners):
                        cb()
                return
            except CONNECTION_ERRORS as exc:
                last = exc
                if attempt == policy.max_attempts:
                    break
                log.warning("cannot reach %s (%s); retrying in %.1fs", self.url, type(exc).__name__, delay)
                time.sleep(delay)
        raise ChainConnectionError(
            f"cannot connect to {self.url} after {policy.max_attempts} attempts "
            f"({type(last).__name__}: {last}); is the node running? (etrid-ray devnet starts one)"
        )

    def _drop(self) -> None:
        if self._substrate is not None:
            try:
                self._substrate.close()
            except Exception:  # noqa: BLE001 - a dead socket may fail to close; nothing to do
                pass
        self._substrate = None

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        """Registers a callback run after every successful reconnect (the nonce manager resyncs)."""
        self._listeners.append(callback)

    # calls ---------------------------------------------------------------------------------------
    def run(self, fn: Callable[[SubstrateInterface], T], *, retry: bool = True) -> T:
        """Runs ``fn(substrate)`` under the lock; reconnects and retries on a lost connection."""
        with self._lock:
            attempts = 0
            while True:
                if self._substrate is None:
                    self._reconnect()
                assert self._substrate is not None
                try:
                    return fn(self._substrate)
                except SubstrateRequestException as exc:
                    err = rpc_error_from(exc)
                    if err is not None:
                        raise err from None
                    raise
                except CONNECTION_ERRORS as exc:
                    attempts += 1
                    if not retry or attempts > self.retry.max_attempts:
                        self._drop()
                        raise ChainConnectionError(f"lost connection to {self.url}: {exc}") from exc
                    log.warning("connection to %s lost (%s); reconnecting", self.url, type(exc).__name__)
                    self._reconnect()

    def rpc(self, method: str, params: list[Any] | None = None, *, retry: bool = True) -> Any:
        """One JSON-RPC call; returns ``result`` or raises :class:`RpcError`."""

        def call(sub: SubstrateInterface) -> Any:
            try:
                response = sub.rpc_request(method, params or [])
            except SubstrateRequestException as exc:
                err = rpc_error_from(exc, method)
                if err is not None:
                    raise err from None
                raise
            if "error" in response:
                e = response["error"]
                raise RpcError(int(e.get("code", 0)), str(e.get("message", "")), e.get("data"), method)
            return response.get("result")

        return self.run(call, retry=retry)

    @property
    def substrate(self) -> SubstrateInterface:
        """The underlying interface (hold :attr:`lock` while using it from several threads)."""
        with self._lock:
            if self._substrate is None:
                self._reconnect()
            assert self._substrate is not None
            return self._substrate

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    @property
    def metadata(self) -> ChainMetadata:
        """The node's metadata, compiled once per runtime version."""

        def get(sub: SubstrateInterface) -> ChainMetadata:
            sub.init_runtime()
            if self._metadata is None or self._metadata_version != sub.runtime_version:
                self._metadata = ChainMetadata(sub.metadata.value, ss58_format=sub.ss58_format or 42)
                self._metadata_version = sub.runtime_version
            return self._metadata

        return self.run(get)

    def refresh_runtime(self) -> None:
        """Forces a runtime-version check on the next call (after a 1010 bad-proof, for instance)."""
        with self._lock:
            if self._substrate is not None:
                self._substrate.force_runtime_check()

    # small conveniences --------------------------------------------------------------------------
    def best_number(self) -> int:
        header = self.rpc("chain_getHeader", [])
        return int(header["number"], 16)

    def finalized_number(self) -> int:
        head = self.rpc("chain_getFinalizedHead", [])
        header = self.rpc("chain_getHeader", [head])
        return int(header["number"], 16)

    def block_hash(self, number: int | None = None) -> str:
        return self.rpc("chain_getBlockHash", [] if number is None else [number])

    def storage(self, key_hex: str, at: str | None = None) -> bytes | None:
        value = self.rpc("state_getStorage", [key_hex, at] if at else [key_hex])
        return None if value is None else bytes.fromhex(value[2:])

    def storage_many(self, keys_hex: list[str], at: str | None = None, chunk: int = 4096) -> dict[str, bytes | None]:
        """Reads many keys with ``state_queryStorageAt``, ``chunk`` keys per request, at one block."""
        out: dict[str, bytes | None] = {}
        if not keys_hex:
            return out
        if at is None:
            at = self.block_hash()
        for i in range(0, len(keys_hex), chunk):
            part = keys_hex[i : i + chunk]
            result = self.rpc("state_queryStorageAt", [part, at])
            for group in result or []:
                for key, value in group["changes"]:
                    out[key] = None if value is None else bytes.fromhex(value[2:])
        for key in keys_hex:
            out.setdefault(key, None)
        return out
