"""Producing TEE evidence bound to a fresh nonce, submitting it on chain, and refreshing it on an interval.

Two evidence paths, both plain file I/O:

- configfs-tsm (TDX, SEV-SNP guests; Linux 6.7+): ``mkdir`` a fresh entry under
  ``/sys/kernel/config/tsm/report``, read ``generation``, write the 64-byte nonce to ``inblob``, read
  ``outblob`` (the report; the kernel produces it on this read), and ``auxblob`` (SEV-SNP: the host's
  certificate table, when it supplies one). ``generation`` counts writes to the entry: if it moved by
  more than our own write, someone else wrote meanwhile and the report may not be ours, so we retry.
- Gramine's ``/dev/attestation`` (SGX enclaves): write the nonce to ``user_report_data``, read ``quote``.

Either way the report's REPORT_DATA is checked against the nonce before it leaves this module: a TEE
interface that hands back an old report (a stuck driver, a replay) fails here, as "stale".

The nonce comes from the provider account, the GPU id and the chain's best block hash (``verify.make_nonce``).
:class:`AttestationRefresher` does it every ``interval_s``: best block → nonce → evidence → optional
local verification → ``ConfidentialCompute.submit_attestation(gpu_id, …)``. The head runs it for its own
GPUs when the head's node is the confidential one; a node agent can run it the same way.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from etrid_ray.chain.models import TeeAttestation
from etrid_ray.security.tee.config import TeeConfig
from etrid_ray.security.tee.detect import Detection, detect, remove_entry
from etrid_ray.security.tee.verify import STALE_ANSWER, ChainBlocks, EvidenceError, Verdict, make_nonce, parse_report

log = logging.getLogger(__name__)

#: the chain's TeeType has no TDX variant: a TDX quote is filed under Intel's (its header says TDX, 0x81)
CHAIN_TEE_TYPE = {"sgx": "IntelSGX", "tdx": "IntelSGX", "sev-snp": "AMDSEV"}


class AttestationError(RuntimeError):
    """No evidence could be produced: the message says which step failed (never a secret)."""


@dataclass(frozen=True)
class Evidence:
    """A report or quote and what it is bound to."""

    tee: str
    quote: bytes  # SEV-SNP ATTESTATION_REPORT, or a DCAP quote (SGX v3 / TDX v4)
    nonce: bytes
    aux: bytes = b""  # configfs-tsm auxblob (SEV-SNP certificate table), if the host supplied one
    interface: str = ""
    produced_at: float = 0.0

    @property
    def measurement(self) -> bytes:
        return parse_report(self.tee, self.quote).measurement

    def to_chain(self, timestamp: int | None = None) -> TeeAttestation:
        """The ``TeeAttestation`` for ``submit_attestation``. ``mrenclave`` holds 32 bytes: the SGX MRENCLAVE
        itself; for SEV-SNP and TDX, the SHA-256 of the 48-byte measurement (the quote has the full value)."""
        m = self.measurement
        mr = m if len(m) <= 32 else hashlib.sha256(m).digest()
        return TeeAttestation(CHAIN_TEE_TYPE[self.tee], self.quote, mr,
                              int(self.produced_at if timestamp is None else timestamp))

    def to_json(self) -> dict[str, Any]:
        b64 = base64.b64encode
        return {"tee": self.tee, "quote": b64(self.quote).decode(), "nonce": self.nonce.hex(),
                "aux": b64(self.aux).decode(), "interface": self.interface, "produced_at": self.produced_at}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Evidence:
        return cls(tee=d["tee"], quote=base64.b64decode(d["quote"]), nonce=bytes.fromhex(d["nonce"]),
                   aux=base64.b64decode(d.get("aux") or ""), interface=d.get("interface", ""),
                   produced_at=float(d.get("produced_at", 0.0)))


# --- the two evidence paths ---------------------------------------------------------------------------


def _read_int(path: Path) -> int:
    text = path.read_text().strip()
    try:
        return int(text or "0")
    except ValueError:
        raise AttestationError(f"{path} holds {text[:20]!r}, not a generation counter") from None


def tsm_report(report_dir: Path, nonce: bytes, *, timeout_s: float = 5.0, retries: int = 3) -> tuple[bytes, bytes, str]:
    """(outblob, auxblob, provider) for ``nonce`` through configfs-tsm."""
    if len(nonce) != 64:
        raise ValueError("configfs-tsm inblob takes exactly 64 bytes here")
    last = "no attempt"
    for _attempt in range(retries):
        entry = report_dir / f"etrid-{os.getpid()}-{time.monotonic_ns()}"
        try:
            entry.mkdir()
        except OSError as exc:
            raise AttestationError(f"cannot create {entry} ({type(exc).__name__})") from None
        try:
            deadline = time.monotonic() + timeout_s
            while not (entry / "generation").exists():
                if time.monotonic() > deadline:
                    raise AttestationError(f"{entry}: no attributes appeared (no TSM provider)")
                time.sleep(0.002)
            provider = (entry / "provider").read_text().strip()
            before = _read_int(entry / "generation")
            with open(entry / "inblob", "wb") as f:
                f.write(nonce)
            # the kernel bumps `generation` on the write itself; an emulation may take a moment
            while (after := _read_int(entry / "generation")) == before:
                if time.monotonic() > deadline:
                    raise AttestationError(f"{entry}: generation did not advance after writing inblob")
                time.sleep(0.002)
            outblob = (entry / "outblob").read_bytes()
            aux_path = entry / "auxblob"
            aux = aux_path.read_bytes() if aux_path.exists() else b""
            if _read_int(entry / "generation") != after or after != before + 1:
                last = "another writer changed the entry while the report was read"
                continue
            return outblob, aux, provider
        except OSError as exc:
            raise AttestationError(f"configfs-tsm I/O failed at {entry} ({type(exc).__name__}: {exc.strerror})") \
                from None
        finally:
            remove_entry(entry)
    raise AttestationError(f"configfs-tsm: {last} ({retries} tries)")


def gramine_quote(gramine_dir: Path, nonce: bytes, tee: str = "sgx", *, timeout_s: float = 5.0) -> bytes:
    """A DCAP quote for ``nonce`` through Gramine's /dev/attestation. Gramine answers synchronously; the
    loop only waits for slower emulations, and ends with the last quote read (checked by the caller)."""
    try:
        with open(gramine_dir / "user_report_data", "wb") as f:
            f.write(nonce)
        deadline = time.monotonic() + timeout_s
        while True:
            quote = (gramine_dir / "quote").read_bytes()
            try:
                if parse_report(tee, quote).report_data == nonce:
                    return quote
            except EvidenceError:
                pass
            if time.monotonic() > deadline:
                return quote
            time.sleep(0.005)
    except OSError as exc:
        raise AttestationError(f"Gramine attestation I/O failed ({type(exc).__name__}: {exc.strerror})") from None


def produce_evidence(nonce: bytes, config: TeeConfig | None = None, *, detection: Detection | None = None,
                     want: str | None = None) -> Evidence:
    """Evidence for ``nonce`` from this node's TEE. Refuses a report not bound to the nonce (stale)."""
    config = config or TeeConfig()
    detection = detection or detect(config, want=want)
    if not detection.ok or detection.tee is None:
        raise AttestationError("no usable TEE: " + ("; ".join(detection.problems) or "nothing detected"))
    tee = detection.tee
    aux = b""
    if detection.interface == "configfs-tsm":
        quote, aux, _provider = tsm_report(config.tsm, nonce, timeout_s=config.report_timeout_s)
    else:
        quote = gramine_quote(config.gramine, nonce, tee, timeout_s=config.report_timeout_s)
    try:
        report = parse_report(tee, quote)
    except EvidenceError as exc:
        raise AttestationError(f"{tee} report malformed: {exc}") from None
    if report.report_data != nonce:
        raise AttestationError(f"{tee} report is stale: its REPORT_DATA is not the nonce just written")
    return Evidence(tee=tee, quote=quote, nonce=nonce, aux=aux, interface=detection.interface or "",
                    produced_at=time.time())


# --- refreshing ---------------------------------------------------------------------------------------


class ChainAccess(Protocol):
    """What the refresher needs from the chain: the best block, and a way to file an attestation."""

    def best(self) -> tuple[int, bytes]: ...

    def submit(self, gpu_id: int, attestation: TeeAttestation) -> None: ...


class ProviderChain:
    """:class:`ChainAccess` over a ``ProviderClient`` (the provider's signer files the attestation)."""

    def __init__(self, provider: Any) -> None:
        self.provider = provider
        self.blocks = ChainBlocks(provider.conn)

    def best(self) -> tuple[int, bytes]:
        return self.blocks.best()

    def submit(self, gpu_id: int, attestation: TeeAttestation) -> None:
        self.provider.submit_tee_attestation(gpu_id, attestation).raise_for_error()


@dataclass
class RefreshResult:
    gpu_id: int
    ok: bool
    reason: str
    block_number: int | None = None
    tee: str | None = None
    at: float = 0.0
    submitted: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"gpu_id": self.gpu_id, "ok": self.ok, "reason": self.reason, "block": self.block_number,
                "tee": self.tee, "at": self.at, "submitted": self.submitted}


Producer = Callable[[bytes], Evidence]
Checker = Callable[[Evidence, int], Verdict]


@dataclass
class AttestationRefresher:
    """Attests ``gpu_ids`` every ``interval_s`` with a nonce from the best block and files it on chain.

    ``produce(nonce)`` returns evidence (default: this node's TEE, :func:`produce_evidence`); ``check`` (if
    given) verifies it before it is filed, so nothing unverifiable goes on chain. A refresh on the same
    best block as the last good one is skipped: the nonce would repeat, and freshness needs a new block.
    """

    account_id: bytes
    gpu_ids: Sequence[int]
    chain: ChainAccess
    produce: Producer
    check: Checker | None = None
    interval_s: float = 300.0
    submit: bool = True
    last: dict[int, RefreshResult] = field(default_factory=dict)
    _last_block: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def refresh_once(self) -> list[RefreshResult]:
        try:
            number, block_hash = self.chain.best()
        except Exception as exc:  # the chain is unreachable: nothing fresh can be produced
            out = [RefreshResult(g, False, f"no recent block: {type(exc).__name__}", at=time.time())
                   for g in self.gpu_ids]
            self.last.update({r.gpu_id: r for r in out})
            return out
        results = []
        for gpu_id in self.gpu_ids:
            if self._last_block.get(gpu_id) == number and gpu_id in self.last and self.last[gpu_id].ok:
                continue
            results.append(self._one(gpu_id, number, block_hash))
        return results

    def _one(self, gpu_id: int, number: int, block_hash: bytes) -> RefreshResult:
        now = time.time()
        nonce = make_nonce(self.account_id, gpu_id, block_hash)
        try:
            evidence = self.produce(nonce)
        except Exception as exc:  # AttestationError, a Ray task failure, …: reported, never raised
            result = RefreshResult(gpu_id, False, str(exc) if isinstance(exc, AttestationError)
                                   else f"{type(exc).__name__}: {exc}", number, at=now)
        else:
            try:
                answered = parse_report(evidence.tee, evidence.quote).report_data == nonce
            except EvidenceError as exc:
                answered, malformed = False, f"malformed: {exc}"
            else:
                malformed = STALE_ANSWER
            verdict = self.check(evidence, gpu_id) if self.check is not None and answered else None
            if not answered:
                result = RefreshResult(gpu_id, False, malformed, number, evidence.tee, now)
            elif verdict is not None and not verdict.ok:
                result = RefreshResult(gpu_id, False, verdict.reason, number, evidence.tee, now)
            else:
                result = RefreshResult(gpu_id, True, "ok", number, evidence.tee, now)
                if self.submit:
                    try:
                        self.chain.submit(gpu_id, evidence.to_chain(int(now)))
                        result.submitted = True
                    except Exception as exc:
                        result = RefreshResult(gpu_id, False, f"submit failed: {type(exc).__name__}: {exc}",
                                               number, evidence.tee, now)
        if result.ok:
            self._last_block[gpu_id] = number
        self.last[gpu_id] = result
        log.info("TEE attestation gpu %d: %s (block #%s)", gpu_id, result.reason, number)
        return result

    def start(self) -> AttestationRefresher:
        self._thread = threading.Thread(target=self._loop, name="etrid-tee-refresher", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh_once()
            except Exception:  # never let one bad pass end the refresher
                log.exception("TEE refresh failed")
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def status(self) -> dict[int, dict[str, Any]]:
        return {g: r.as_dict() for g, r in self.last.items()}
