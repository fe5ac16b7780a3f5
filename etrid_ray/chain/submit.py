"""Signing, submitting and confirming extrinsics: one at a time, many in flight, or batched.

Why not ``substrate.submit_extrinsic(wait_for_inclusion=True)``: it holds the
socket until the block arrives, so a provider settling 500 jobs would wait for
500 blocks. Here extrinsics are signed with local nonces
(:class:`~etrid_ray.chain.nonce.NonceManager`), all sent with
``author_submitExtrinsic``, and then the new blocks are scanned once for all of
their hashes; each block's events are decoded once. ``Utility.batch_all`` folds
many calls into one extrinsic when the runtime has it, and degrades to the
many-in-flight path when it does not.

Calls are composed and extrinsics signed by :class:`~etrid_ray.extrinsic_builder.ExtrinsicBuilder` (compiled
encoders over the metadata; a batch copies its inner calls' bytes); where the metadata declares something the
builder does not build, or a value has a shape its encoders do not mirror, substrate-interface does it instead.

A failed dispatch raises :class:`~etrid_ray.chain.errors.ExtrinsicFailed` with
the pallet error as the metadata names it (module, name, docs).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from substrateinterface import SubstrateInterface

from etrid_ray.chain.codec import blake2_256
from etrid_ray.chain.connection import Connection
from etrid_ray.chain.errors import ExtrinsicFailed, InclusionTimeout, PalletError, RpcError
from etrid_ray.chain.events import ChainEvent, block_events
from etrid_ray.chain.keys import Signer
from etrid_ray.chain.nonce import NonceManager
from etrid_ray.extrinsic_builder import ChainContext, ExtrinsicBuilder, UnsupportedExtrinsic
from etrid_ray.scale_encoder import ComposedCall, EncodeFallback

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Call:
    """A runtime call by name; composed against the node's metadata when submitted."""

    pallet: str
    function: str
    params: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.pallet}.{self.function}"


@dataclass
class Receipt:
    """Where an extrinsic landed and what it did."""

    extrinsic_hash: str
    block_hash: str
    block_number: int
    extrinsic_index: int
    events: list[ChainEvent]
    call: str = ""
    error: PalletError | None = None

    @property
    def success(self) -> bool:
        return any(e.is_("System", "ExtrinsicSuccess") for e in self.events) and self.error is None

    @property
    def error_message(self) -> dict[str, Any] | None:
        """Same shape as substrate-interface's ``ExtrinsicReceipt.error_message``."""
        return None if self.error is None else self.error.as_error_message()

    def find(self, pallet: str, name: str) -> list[ChainEvent]:
        return [e for e in self.events if e.is_(pallet, name)]

    def first(self, pallet: str, name: str) -> ChainEvent | None:
        found = self.find(pallet, name)
        return found[0] if found else None

    def raise_for_error(self) -> Receipt:
        if self.error is not None:
            raise ExtrinsicFailed(self.error, self, self.call)
        return self


@dataclass
class _InFlight:
    index: int
    call: str
    extrinsic_hash: str
    raw: bytes


class Submitter:
    """Signs as one account and submits; thread-safe through the connection's lock."""

    #: calls per ``Utility.batch_all`` extrinsic; large enough to amortize, small enough for a block
    max_batch: int = 256
    #: ``None``: batch when the runtime has ``Utility``; ``False``: always one extrinsic per call
    use_batch: bool | None = None

    def __init__(
        self,
        conn: Connection,
        signer: Signer,
        *,
        nonces: NonceManager | None = None,
        inclusion_timeout: float = 120.0,
    ) -> None:
        self.conn = conn
        self.signer = signer
        self.nonces = nonces or NonceManager(conn, signer.address)
        self.inclusion_timeout = inclusion_timeout
        self._built: tuple[Any, ExtrinsicBuilder | None] | None = None

    # composing ------------------------------------------------------------------------------------
    def builder(self, sub: SubstrateInterface) -> ExtrinsicBuilder | None:
        """The builder for the runtime `sub` holds now (rebuilt when its metadata changes); ``None`` when the
        metadata declares something it does not build, and then substrate-interface composes and signs."""
        sub.init_runtime()  # what compose_call does first: keeps the runtime checks as they were
        metadata = sub.metadata
        if self._built is None or self._built[0] is not metadata:
            try:
                builder: ExtrinsicBuilder | None = ExtrinsicBuilder(metadata.value[1]["V14"], sub.runtime_config)
            except (UnsupportedExtrinsic, KeyError, TypeError) as err:
                log.info("signing through substrate-interface: the metadata has %s", err)
                builder = None
            self._built = (metadata, builder)
        return self._built[1]

    def _compose(self, sub: SubstrateInterface, call: Call) -> ComposedCall | Any:
        self.conn.metadata.require_call(call.pallet, call.function)
        builder = self.builder(sub)
        if builder is not None:
            try:
                return builder.compose(call.pallet, call.function, call.params)
            except EncodeFallback:
                pass
        return sub.compose_call(call.pallet, call.function, _scalecodec_values(sub, call.params))

    def _signed(self, sub: SubstrateInterface, composed: ComposedCall | Any, nonce: int) -> tuple[str, bytes]:
        """(0x extrinsic hash, extrinsic bytes) of `composed` signed with `nonce`."""
        builder = self.builder(sub)
        if builder is not None:
            call = composed if isinstance(composed, ComposedCall) else bytes(composed.data.data)
            context = ChainContext(bytes.fromhex(sub.get_block_hash(0)[2:]), int(sub.runtime_version),
                                   int(sub.transaction_version))
            try:
                ext = builder.sign(call, self.signer.keypair, nonce, context)
                return "0x" + ext.hash.hex(), ext.data
            except UnsupportedExtrinsic as err:
                log.info("signing through substrate-interface: %s", err)
        signed = sub.create_signed_extrinsic(_scalecodec_values(sub, composed), self.signer.keypair, nonce=nonce)
        return "0x" + signed.extrinsic_hash.hex(), bytes(signed.data.data)

    def has_batch(self, function: str = "batch_all") -> bool:
        """Whether to batch: ``use_batch`` when set, else whether the runtime has ``Utility.<function>``."""
        if self.use_batch is not None:
            return self.use_batch
        return self.conn.metadata.has_call("Utility", function)

    # sending --------------------------------------------------------------------------------------
    def _sign_and_send(self, call: Call, index: int) -> _InFlight:
        """Signs with the next local nonce and sends; resyncs and signs again on a nonce rejection.

        Taking a nonce and sending happen under the connection's lock, so two threads sharing this
        submitter cannot send nonces out of order (a node refuses a nonce from the future)."""
        with self.conn.lock:
            return self._sign_and_send_locked(call, index)

    def _sign_and_send_locked(self, call: Call, index: int) -> _InFlight:
        attempts = 0
        while True:
            attempts += 1
            reconnects_before = self.conn.reconnects

            def sign(sub: SubstrateInterface) -> tuple[str, bytes]:
                composed = self._compose(sub, call)
                return self._signed(sub, composed, self.nonces.take())

            ext_hash, raw = self.conn.run(sign)
            try:
                self.conn.rpc("author_submitExtrinsic", ["0x" + raw.hex()])
                return _InFlight(index, str(call), ext_hash, raw)
            except RpcError as err:
                resent = self.conn.reconnects != reconnects_before
                if err.is_already_imported or (resent and err.is_stale):
                    # our own bytes reached the node before the socket dropped: track them
                    return _InFlight(index, str(call), ext_hash, raw)
                if (err.is_stale or err.is_future or err.is_priority_too_low) and attempts < 4:
                    log.info("nonce rejected for %s (%s); resyncing", call, err.message)
                    self.nonces.resync()
                    continue
                if err.is_invalid_transaction and "proof" in err.text:
                    self.conn.refresh_runtime()  # spec version moved under us
                self.nonces.invalidate()
                raise

    def submit(self, call: Call, *, wait: bool = True, check: bool = True) -> Receipt | str:
        """One extrinsic. Returns its :class:`Receipt` (or just its hash with ``wait=False``)."""
        result = self.submit_many([call], wait=wait, check=check)
        return result[0]

    def submit_many(self, calls: Sequence[Call], *, wait: bool = True, check: bool = True) -> list[Any]:
        """Sends every call as its own extrinsic, all in flight together, then waits for all of them.

        Each succeeds or fails on its own (unlike a batch). With ``check`` the first failure raises
        :class:`ExtrinsicFailed` (its ``receipts`` attribute holds all receipts).
        """
        if not calls:
            return []
        start = self.conn.best_number()
        flights = [self._sign_and_send(c, i) for i, c in enumerate(calls)]
        if not wait:
            return [f.extrinsic_hash for f in flights]
        receipts = self.wait_for(flights, start)
        if check:
            for r in receipts:
                if r.error is not None:
                    exc = ExtrinsicFailed(r.error, r, r.call)
                    exc.receipts = receipts  # type: ignore[attr-defined]
                    raise exc
        return receipts

    def batch(self, calls: Sequence[Call], *, atomic: bool = True, check: bool = True) -> list[Receipt]:
        """Many calls in few extrinsics through ``Utility.batch_all`` (or ``batch`` when not atomic).

        Without the Utility pallet the calls go one extrinsic each, in flight together.
        """
        calls = list(calls)
        if not calls:
            return []
        fn = "batch_all" if atomic else "batch"
        if not self.has_batch(fn):
            return self.submit_many(calls, check=check)
        if len(calls) == 1:
            return self.submit_many(calls, check=check)
        wrapped = []
        for i in range(0, len(calls), self.max_batch):
            chunk = calls[i : i + self.max_batch]
            wrapped.append(_BatchCall(fn, chunk))
        start = self.conn.best_number()
        flights = [self._send_batch(b, i) for i, b in enumerate(wrapped)]
        receipts = self.wait_for(flights, start)
        for r in receipts:
            interrupted = r.first("Utility", "BatchInterrupted")
            if interrupted is not None and r.error is None:
                err = self.conn.metadata.dispatch_error(interrupted.get("error"))
                r.error = PalletError(
                    err.module, err.name, err.docs + (f"batch item {interrupted.get('index')}",), err.type
                )
        if check:
            for r in receipts:
                r.raise_for_error()
        return receipts

    def _send_batch(self, batch: _BatchCall, index: int) -> _InFlight:
        return self._sign_and_send(self.wrap(batch.function, batch.calls), index)

    def wrap(self, function: str, calls: Sequence[Call]) -> Call:
        """``Utility.<function>`` over `calls`, each composed once. The inner calls stay composed (their bytes, or
        scalecodec objects where substrate-interface composed them), not their values: the batch then copies their
        bytes (pallet ‖ call ‖ Compact(n) ‖ inner calls) where values would be encoded again, call by call."""
        inner = self.conn.run(lambda sub: [self._compose(sub, c) for c in calls])
        return Call("Utility", function, {"calls": inner})

    # waiting --------------------------------------------------------------------------------------
    def wait_for(self, flights: list[_InFlight], start_number: int, timeout: float | None = None) -> list[Receipt]:
        """Scans blocks after ``start_number`` until every extrinsic is found (or the timeout)."""
        timeout = self.inclusion_timeout if timeout is None else timeout
        by_hash = {f.extrinsic_hash: f for f in flights}
        found: dict[str, Receipt] = {}
        scanned = start_number
        deadline = time.monotonic() + timeout
        delay = 0.005
        meta = self.conn.metadata
        while len(found) < len(by_hash):
            best = self.conn.best_number()
            progressed = best > scanned
            while scanned < best and len(found) < len(by_hash):
                scanned += 1
                block_hash = self.conn.block_hash(scanned)
                block = self.conn.rpc("chain_getBlock", [block_hash])
                exts = block["block"]["extrinsics"] if block else []
                hits: dict[int, _InFlight] = {}
                for idx, ext_hex in enumerate(exts):
                    h = "0x" + blake2_256(bytes.fromhex(ext_hex[2:])).hex()
                    f = by_hash.get(h)
                    if f is not None and h not in found:
                        hits[idx] = f
                if not hits:
                    continue
                events = block_events(self.conn, block_hash, scanned)
                for idx, f in hits.items():
                    own = [e for e in events if e.extrinsic_index == idx]
                    error = None
                    for e in own:
                        if e.is_("System", "ExtrinsicFailed"):
                            error = meta.dispatch_error(e.get("dispatch_error"))
                    found[f.extrinsic_hash] = Receipt(f.extrinsic_hash, block_hash, scanned, idx, own, f.call, error)
            if len(found) == len(by_hash):
                break
            if time.monotonic() > deadline:
                missing = [h for h in by_hash if h not in found]
                raise InclusionTimeout(missing, timeout)
            delay = 0.005 if progressed else min(delay * 2, 0.25)
            time.sleep(delay)
        return [found[f.extrinsic_hash] for f in flights]


@dataclass(frozen=True)
class _BatchCall:
    function: str
    calls: list[Call]


def _scalecodec_values(sub: SubstrateInterface, value: Any) -> Any:
    """`value` with every ComposedCall in it (inner calls of a batch, sudo's call) composed again by
    substrate-interface, from the values it was composed from: scalecodec re-encodes a batch's inner calls from
    their values, which a call decoded from bytes does not hold in the shape it encodes."""
    if isinstance(value, ComposedCall):
        return sub.compose_call(value.module, value.function, _scalecodec_values(sub, value.args))
    if isinstance(value, dict):
        return {k: _scalecodec_values(sub, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scalecodec_values(sub, v) for v in value]
    return value


def calls_of(pallet: str, function: str, params: Iterable[dict[str, Any]]) -> list[Call]:
    """``[Call(pallet, function, p) for p in params]``, for building batches."""
    return [Call(pallet, function, p) for p in params]
