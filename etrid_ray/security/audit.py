"""The audit trail: an append-only, hash-chained log of every security-relevant event, anchored on chain.

One JSON object per line: `seq` (0, 1, 2, …), `time` (UTC, ISO 8601), `kind`, `fields`, `prev`
(the previous record's hash; 64 zeros for the first) and `hash` = SHA-256 of the canonical JSON
of the other five. Editing a record breaks its hash; re-hashing it breaks the next record's
`prev`; deleting or reordering records breaks the `seq` run; cutting the tail is caught by the
`.head` file written after every append and, against an attacker who rewrites both, by the
anchors: the head hash is put on chain now and then with `System.remark_with_event`
(remark `etrid-audit/1 <log id> <seq> <hash>`; the chain keeps `blake2_256(remark)` in the
`System.Remarked` event). `verify` reports the first problem it finds and checks every anchor,
both the ones the log records and the ones the chain holds.

Against a chain, the anchoring account's remarks are the evidence and the file is what must back
them, not the other way round: a file can be swapped wholesale for a fresh, self-consistent log
(new `log_opened`, so a new log id, and no anchors), emptied or deleted, and nothing inside the
file shows it. So `verify` with a connection finds the newest anchor the account put on chain
(whatever log it names) and passes only if this log backs it; an account with no anchors, or no
account to ask about, is a failure too, because then nothing on chain vouches for the file.

Record 0 is `log_opened` with a random nonce; the log's id is the first 32 hex digits of its hash.
Event kinds: claim, placement (pool, region, reason), admission, data_access, result, failure,
key_use, erasure, config_change, policy_violation, attestation, anchor.

Several processes may append (the head, `etrid-ray compliance erase`): appends hold an exclusive
`flock` and re-read the tail when the file grew under them. Secrets are refused as field names.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from etrid_ray.chain.codec import account_bytes
from etrid_ray.chain.events import block_events, events_in_range
from etrid_ray.chain.submit import Call
from etrid_ray.config import ConfigError, env_setting, section_from_env
from etrid_ray.scale_codec import blake2_256

log = logging.getLogger(__name__)

GENESIS = "0" * 64
REMARK_PREFIX = "etrid-audit/1"
REMARK_RE = re.compile(rb"etrid-audit/1 ([0-9a-f]{32}) ([0-9]{1,20}) ([0-9a-f]{64})")
KINDS = frozenset({
    "log_opened", "claim", "placement", "admission", "data_access", "result", "failure", "key_use", "erasure",
    "config_change", "policy_violation", "attestation", "anchor",
})
#: field names that must never reach the log (the log is evidence that gets shared; secrets are not)
SECRET_FIELDS = frozenset({"seed", "secret", "private_key", "data_key", "plaintext", "password", "phrase",
                           "mnemonic", "kek", "key_material", "token"})
DEFAULT_PATH = Path("~/.etrid-ray/audit.jsonl")
ENV_PATH = "ETRID_AUDIT_LOG"  # the env name of the config's compliance.audit_log (read through etrid_ray.config)


class AuditError(Exception):
    """The log cannot be appended to (partial tail, unreadable) or a field is not allowed."""


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    """`2025-03-01`, `2025-03-01T12:00`, `…Z` or `…+02:00` → an aware UTC datetime."""
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    dt = datetime.fromisoformat(value)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _plain(value: Any) -> Any:
    """JSON types only, so a record re-hashes identically after a round trip through the file."""
    if isinstance(value, bytes | bytearray | memoryview):
        return "0x" + bytes(value).hex()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "value") and isinstance(value.value, str):  # enums
        return value.value
    return str(value)


def _check_secret_free(fields: Mapping[str, Any], where: str = "") -> None:
    for k, v in fields.items():
        if k.lower() in SECRET_FIELDS:
            raise AuditError(f"refusing to write field {where}{k!r} to the audit log: secrets never go there")
        if isinstance(v, Mapping):
            _check_secret_free(v, f"{where}{k}.")


def record_hash(seq: int, time_: str, kind: str, fields: Mapping[str, Any], prev: str) -> str:
    return hashlib.sha256(_canonical({"seq": seq, "time": time_, "kind": kind, "fields": fields,
                                      "prev": prev})).hexdigest()


@dataclass(frozen=True)
class Record:
    seq: int
    time: str
    kind: str
    fields: dict[str, Any]
    prev: str
    hash: str

    def expected_hash(self) -> str:
        return record_hash(self.seq, self.time, self.kind, self.fields, self.prev)

    def line(self) -> bytes:
        return _canonical({"seq": self.seq, "time": self.time, "kind": self.kind, "fields": self.fields,
                           "prev": self.prev, "hash": self.hash}) + b"\n"

    @property
    def when(self) -> datetime:
        return parse_time(self.time)

    @classmethod
    def from_json(cls, obj: Any) -> Record:
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        seq, t, kind, fields, prev, h = (obj[k] for k in ("seq", "time", "kind", "fields", "prev", "hash"))
        if not (isinstance(seq, int) and isinstance(t, str) and isinstance(kind, str) and isinstance(fields, dict)
                and isinstance(prev, str) and isinstance(h, str)):
            raise ValueError("a field has the wrong type")
        return cls(seq, t, kind, fields, prev, h)


def remark_for(log_id: str, seq: int, head_hash: str) -> str:
    return f"{REMARK_PREFIX} {log_id} {seq} {head_hash}"


class AuditLog:
    """One log file (JSON lines) plus its `.head` file (the last seq and hash written)."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.path = Path(path).expanduser()
        self.head_path = self.path.with_name(self.path.name + ".head")
        self.fsync = fsync
        self._lock = threading.Lock()
        self._tail: tuple[int, int, str] | None = None  # (file size, last seq, last hash) as we last saw it
        self.log_id: str | None = None

    # writing --------------------------------------------------------------------------------------

    def append(self, kind: str, **fields: Any) -> Record:
        return self.append_many([(kind, fields)])[-1]

    def append_many(self, events: Iterable[tuple[str, Mapping[str, Any]]]) -> list[Record]:
        """Appends several records with one write and one fsync (the head's batched claims)."""
        prepared: list[tuple[str, Any]] = []
        for kind, fields in events:
            if kind not in KINDS:
                raise AuditError(f"unknown audit event kind {kind!r}: one of {', '.join(sorted(KINDS))}")
            _check_secret_free(fields)
            prepared.append((kind, _plain(dict(fields))))
        if not prepared:
            return []
        wanted = len(prepared)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                size = os.fstat(fd).st_size
                if self._tail is None or self._tail[0] != size:
                    self._tail = self._read_tail(fd, size)
                _, seq, prev = self._tail
                if seq < 0:  # a new log starts with its own random identity
                    prepared.insert(0, ("log_opened", {"nonce": secrets.token_hex(16), "path": str(self.path)}))
                out: list[Record] = []
                for kind, fields in prepared:
                    seq += 1
                    t = utc_now()
                    rec = Record(seq, t, kind, fields, prev, record_hash(seq, t, kind, fields, prev))
                    out.append(rec)
                    prev = rec.hash
                data = b"".join(r.line() for r in out)
                written = os.write(fd, data)
                if written != len(data):
                    raise AuditError(f"short write to {self.path}: {written} of {len(data)} bytes")
                if self.fsync:
                    os.fsync(fd)
                self._tail = (size + len(data), seq, prev)
                if out[0].kind == "log_opened" and out[0].seq == 0:
                    self.log_id = out[0].hash[:32]
                self._write_head(seq, prev)
            finally:
                os.close(fd)  # closing releases the flock
        return out[-wanted:]

    def _read_tail(self, fd: int, size: int) -> tuple[int, int, str]:
        if size == 0:
            return (0, -1, GENESIS)
        chunk = min(size, 1 << 16)
        while True:
            data = os.pread(fd, chunk, size - chunk)
            if not data.endswith(b"\n"):
                raise AuditError(f"audit log {self.path} ends in a partial record (cut short or a crash mid-write); "
                                 "run `etrid-ray audit verify` and start a new log")
            body = data[:-1]
            nl = body.rfind(b"\n")
            if nl >= 0 or chunk == size:
                last = body[nl + 1:]
                break
            chunk = min(size, chunk * 4)
        try:
            rec = Record.from_json(json.loads(last))
        except (ValueError, KeyError) as err:
            raise AuditError(f"audit log {self.path}: the last record is not readable ({err})") from None
        if self.log_id is None:
            first = os.pread(fd, min(size, 1 << 16), 0).split(b"\n", 1)[0]
            try:
                self.log_id = Record.from_json(json.loads(first)).hash[:32]
            except (ValueError, KeyError):
                pass
        return (size, rec.seq, rec.hash)

    def _write_head(self, seq: int, head_hash: str) -> None:
        tmp = self.head_path.with_name(self.head_path.name + ".tmp")
        tmp.write_text(json.dumps({"seq": seq, "hash": head_hash, "log_id": self.log_id, "time": utc_now()}))
        os.replace(tmp, self.head_path)

    # reading --------------------------------------------------------------------------------------

    def records(self) -> Iterator[Record]:
        """Every well-formed record in file order (use `verify` to judge them)."""
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    return
                try:
                    yield Record.from_json(json.loads(line))
                except (ValueError, KeyError):
                    continue

    def head(self) -> tuple[int, str]:
        """(last seq, last hash); (-1, GENESIS) for an empty log."""
        if not self.path.exists():
            return (-1, GENESIS)
        with self._lock:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
                size = os.fstat(fd).st_size
                self._tail = self._read_tail(fd, size)
                return self._tail[1], self._tail[2]
            finally:
                os.close(fd)

    def identity(self) -> str | None:
        if self.log_id is None:
            self.head()
        return self.log_id

    # anchoring ------------------------------------------------------------------------------------

    def anchor(self, submitter: Any) -> Record | None:
        """Puts the head hash on chain with `System.remark_with_event` and records where it landed.

        `submitter` is a `chain.submit.Submitter` (the head passes its own, so nonces stay in order).
        Returns None when nothing was recorded since the last anchor.
        """
        seq, head_hash = self.head()
        if seq < 0:
            self.append("config_change", setting="audit", action="opened")
            seq, head_hash = self.head()
        last = self._last_record()
        if last is not None and last.kind == "anchor":
            return None
        log_id = self.identity()
        assert log_id is not None
        remark = remark_for(log_id, seq, head_hash)
        receipt = submitter.submit(Call("System", "remark_with_event", {"remark": remark.encode()}))
        expected = "0x" + blake2_256(remark.encode()).hex()
        ev = next((e for e in receipt.find("System", "Remarked") if _hex(e.get("hash")) == expected), None)
        if ev is None:
            raise AuditError(f"the anchor extrinsic {receipt.extrinsic_hash} emitted no matching System.Remarked")
        return self.append("anchor", anchored_seq=seq, anchored_hash=head_hash, remark=remark,
                           block=receipt.block_number, block_hash=receipt.block_hash,
                           extrinsic_index=receipt.extrinsic_index, account=submitter.signer.address)

    def _last_record(self) -> Record | None:
        last = None
        if not self.path.exists():
            return None
        size = self.path.stat().st_size
        with self.path.open("rb") as f:
            f.seek(max(0, size - (1 << 16)))
            lines = f.read().splitlines()
        for line in reversed(lines):
            try:
                last = Record.from_json(json.loads(line))
                break
            except (ValueError, KeyError):
                continue
        return last


def _hex(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    text = str(value).lower()
    return text if text.startswith("0x") else "0x" + text


class Anchorer:
    """Anchors a log every `interval_s`: call `maybe_anchor()` from a loop, or `start()` a thread."""

    def __init__(self, audit_log: AuditLog, submitter: Any, interval_s: float = 300.0) -> None:
        self.log = audit_log
        self.submitter = submitter
        self.interval_s = interval_s
        self.last_at = 0.0
        self.anchors = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def maybe_anchor(self, now: float | None = None) -> Record | None:
        now = time.monotonic() if now is None else now
        if now - self.last_at < self.interval_s:
            return None
        self.last_at = now
        try:
            rec = self.log.anchor(self.submitter)
        except Exception:  # the chain may be down; the next interval tries again (verify shows the gap)
            self.errors += 1
            log.exception("anchoring the audit log failed")
            return None
        if rec is not None:
            self.anchors += 1
        return rec

    def start(self) -> Anchorer:
        def loop() -> None:
            while not self._stop.wait(min(self.interval_s, 5.0)):
                self.maybe_anchor()

        self._thread = threading.Thread(target=loop, name="etrid-audit-anchor", daemon=True)
        self._thread.start()
        return self

    def stop(self, final: bool = True) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if final:
            self.last_at = 0.0
            self.maybe_anchor()


# --- verification -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    kind: str  # edited | deleted | reordered | truncated | malformed | anchor | replaced | unanchored
    seq: int | None  # the first record concerned (None when unknown)
    line: int | None  # 1-based line in the file
    detail: str

    def __str__(self) -> str:
        where = f"record {self.seq}" if self.seq is not None else "the log"
        at = f" (line {self.line})" if self.line is not None else ""
        return f"{self.kind}: {where}{at}: {self.detail}"


@dataclass(frozen=True)
class AnchorCheck:
    seq: int
    hash: str
    block: int | None
    block_hash: str | None
    on_chain: bool | None  # None: not checked (no chain given)
    matches_log: bool
    source: str  # "log" (an anchor record) or "chain" (found by scanning the chain)
    detail: str = ""


@dataclass(frozen=True)
class ChainAnchor:
    """One `etrid-audit/1` remark an account put on chain: a head hash some log must back."""

    log_id: str
    seq: int
    hash: str
    block: int
    block_hash: str
    sender: str

    def __str__(self) -> str:
        return f"block {self.block}: log {self.log_id} seq {self.seq} head {self.hash}"


@dataclass
class VerifyResult:
    path: str
    records: int = 0
    head_seq: int = -1
    head_hash: str = GENESIS
    log_id: str | None = None
    problems: list[Problem] = field(default_factory=list)
    anchors: list[AnchorCheck] = field(default_factory=list)
    chain_checked: bool = False
    #: with a chain: the account whose anchors are the evidence, and its anchors found (newest first)
    account: str | None = None
    account_anchors: list[ChainAnchor] = field(default_factory=list)
    #: blocks scanned for the account's anchors (newest, oldest); None when the chain was not read
    scanned: tuple[int, int] | None = None

    @property
    def newest_anchor(self) -> ChainAnchor | None:
        """The anchor this log must back for `verify` to pass against the chain."""
        return self.account_anchors[0] if self.account_anchors else None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_problem(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path, "ok": self.ok, "records": self.records, "head_seq": self.head_seq,
            "head_hash": self.head_hash, "log_id": self.log_id, "chain_checked": self.chain_checked,
            "problems": [{"kind": p.kind, "seq": p.seq, "line": p.line, "detail": p.detail} for p in self.problems],
            "anchors": [a.__dict__ for a in self.anchors],
            "account": self.account,
            "newest_anchor": self.newest_anchor.__dict__ if self.newest_anchor else None,
            "account_anchors": [a.__dict__ for a in self.account_anchors],
            "scanned": list(self.scanned) if self.scanned else None,
        }


def _scan(path: Path) -> tuple[list[tuple[int, Record | None, bytes]], bool]:
    """(line number, record or None, raw line) for each line, and whether the file ends mid-line."""
    out: list[tuple[int, Record | None, bytes]] = []
    data = path.read_bytes()
    torn = bool(data) and not data.endswith(b"\n")
    parts = data.split(b"\n")
    if not torn:
        parts.pop()  # the empty string after the final newline
    for n, raw in enumerate(parts, start=1):
        try:
            rec: Record | None = Record.from_json(json.loads(raw))
        except (ValueError, KeyError):
            rec = None
        out.append((n, rec, raw))
    return out, torn


def verify(path: str | os.PathLike[str], conn: Any = None, *, account: str | None = None,
           from_block: int | None = None) -> VerifyResult:
    """Checks the chain of hashes, the seq run, the `.head` file and, with `conn`, the anchors on chain.

    Every anchor record must match the log and its `System.Remarked` event. With `conn`, the chain is
    the judge: the anchoring `account` (default: the one the anchor records name) must have anchors
    on chain, and this log must back the newest of them, whatever log id it names, because a file
    swapped for another self-consistent log, emptied or deleted shows nothing wrong by itself. The
    scan walks back from the best block to `from_block` (default 1), stopping early once the newest
    anchor is this log's and the log's first recorded anchor is behind it; remarks of this log the
    file no longer backs (a cut tail, a rewritten history) are reported too.
    """
    p = Path(path).expanduser()
    res = VerifyResult(str(p))
    if not p.exists():
        # a deleted log is still measured against the chain: the account's anchors say what it should hold
        res.problems.append(Problem("truncated", None, None, f"{p} does not exist"))
        _check_anchors(res, {}, conn, account=account, from_block=from_block)
        return res
    lines, torn = _scan(p)
    by_seq: dict[int, Record] = {}
    seqs_later = [rec.seq for _, rec, _ in lines if rec is not None]
    expected, prev = 0, GENESIS
    first_problem: Problem | None = None

    def problem(pr: Problem) -> None:
        nonlocal first_problem
        if first_problem is None:
            first_problem = pr

    for i, (n, rec, _raw) in enumerate(lines):
        is_last = i == len(lines) - 1
        if rec is None:
            if is_last and torn:
                problem(Problem("truncated", expected, n, "the last line is a partial record (tail cut mid-record)"))
            else:
                problem(Problem("malformed" if not is_last else "truncated", expected, n,
                                "not a well-formed audit record (edited by hand?)"))
            continue
        if first_problem is not None:
            by_seq.setdefault(rec.seq, rec)
            continue
        if rec.seq != expected:
            if rec.seq > expected and expected in seqs_later[i:]:
                problem(Problem("reordered", rec.seq, n, f"seq {rec.seq} where {expected} was due; "
                                                         f"{expected} comes later in the file"))
            elif rec.seq > expected:
                gone = f"{expected}" if rec.seq == expected + 1 else f"{expected}..{rec.seq - 1}"
                problem(Problem("deleted", expected, n, f"record(s) {gone} missing before seq {rec.seq}"))
            else:
                problem(Problem("reordered", rec.seq, n, f"seq {rec.seq} after seq {expected - 1} "
                                                         "(moved or duplicated)"))
        elif rec.expected_hash() != rec.hash:
            problem(Problem("edited", rec.seq, n, "its contents do not match its hash"))
        elif rec.prev != prev:
            problem(Problem("edited", rec.seq - 1 if rec.seq > 0 else 0, n - 1 if n > 1 else n,
                            f"record {rec.seq}'s prev hash does not match record {rec.seq - 1}: "
                            f"record {rec.seq - 1} was changed and re-hashed"))
        if rec.seq == 0 and rec.kind != "log_opened" and first_problem is None:
            problem(Problem("edited", 0, n, "the first record is not log_opened"))
        by_seq.setdefault(rec.seq, rec)
        if first_problem is None:
            res.records += 1
            res.head_seq, res.head_hash = rec.seq, rec.hash
            expected, prev = rec.seq + 1, rec.hash
    if 0 in by_seq:
        res.log_id = by_seq[0].hash[:32]
    # the .head file: the last seq/hash the writer saw
    head_file = p.with_name(p.name + ".head")
    if first_problem is None and head_file.exists():
        try:
            head = json.loads(head_file.read_text())
            hseq, hhash = int(head["seq"]), str(head["hash"])
        except (ValueError, KeyError, TypeError):
            problem(Problem("malformed", None, None, f"{head_file.name} is not readable"))
        else:
            if hseq > res.head_seq:
                problem(Problem("truncated", res.head_seq + 1, None,
                                f"the log ends at seq {res.head_seq}, but {res.head_seq + 1}..{hseq} were written"))
            elif hseq == res.head_seq and hhash != res.head_hash:
                problem(Problem("edited", hseq, None, "the last record differs from the one written"))
    if first_problem is not None:
        res.problems.append(first_problem)
    _check_anchors(res, by_seq, conn, account=account, from_block=from_block)
    return res


def _check_anchors(res: VerifyResult, by_seq: dict[int, Record], conn: Any, *, account: str | None,
                   from_block: int | None) -> None:
    anchor_records = [r for r in by_seq.values() if r.kind == "anchor" and r.seq <= res.head_seq]
    valid_upto = res.head_seq  # records past the first problem are not trusted
    events_cache: dict[str, list[Any]] = {}

    def events_at(block_hash: str) -> list[Any]:
        if block_hash not in events_cache:
            events_cache[block_hash] = block_events(conn, block_hash)
        return events_cache[block_hash]

    # which account's anchors to read: the caller's word, else the anchor records' (trusted ones first; past a
    # problem they are only a hint, but the log fails anyway and the chain's evidence still gets named)
    hints = anchor_records + sorted((r for r in by_seq.values() if r.kind == "anchor" and r.seq > res.head_seq),
                                    key=lambda r: r.seq)
    account = account or next((str(r.fields["account"]) for r in hints if r.fields.get("account")), None)
    for r in sorted(anchor_records, key=lambda r: r.seq):
        f = r.fields
        aseq, ahash, remark = int(f.get("anchored_seq", -1)), str(f.get("anchored_hash", "")), str(f.get("remark"))
        target = by_seq.get(aseq)
        matches = (target is not None and target.hash == ahash and aseq <= valid_upto
                   and remark == remark_for(res.log_id or "", aseq, ahash))
        on_chain: bool | None = None
        detail = "" if matches else "the anchored hash or remark does not match the log"
        if conn is not None:
            digest = "0x" + blake2_256(remark.encode()).hex()
            try:
                evs = events_at(str(f.get("block_hash")))
            except Exception as err:  # noqa: BLE001 - an unknown block hash is a failed check, not a crash
                evs, detail = [], f"block {f.get('block')} not readable: {type(err).__name__}"
            on_chain = any(e.is_("System", "Remarked") and _hex(e.get("hash")) == digest
                           and (account is None or _account_key(str(e.get("sender"))) == _account_key(account))
                           and e.extrinsic_index == f.get("extrinsic_index") for e in evs)
            if not on_chain and not detail:
                detail = f"no System.Remarked with this remark's hash in block {f.get('block')}"
        res.anchors.append(AnchorCheck(aseq, ahash, f.get("block"), f.get("block_hash"), on_chain, matches,
                                       "log", detail))
        if not matches or on_chain is False:
            res.problems.append(Problem("anchor", aseq, None, f"anchor in record {r.seq}: {detail}"))
    if conn is None:
        return
    res.chain_checked = True
    res.account = account
    if account is None:
        res.problems.append(Problem(
            "unanchored", None, None, "nothing on chain was checked: the log names no anchoring account (it has "
            "no anchor records); pass --account, the account that anchors this provider's log"))
        return
    best = conn.best_number()
    floor = max(1, from_block or 1)
    blocks = [int(r.fields["block"]) for r in anchor_records if isinstance(r.fields.get("block"), int)]
    # below the log's own first anchor only the search for the account's newest anchor goes on; a log
    # with no anchor records stops at the newest one of its own (its hash vouches for all before it)
    claimed_start: int | None = floor if from_block is not None else max(floor, min(blocks)) if blocks else None

    def more(number: int) -> bool:
        newest = res.newest_anchor
        if newest is None or newest.log_id != res.log_id:
            return True  # still looking for the evidence, or naming all of another log's anchors
        return claimed_start is not None and number >= claimed_start

    oldest = best + 1
    for number, found in _scan_back(conn, best, floor, account=account, more=more):
        oldest = number
        res.account_anchors.extend(found)
    low = min(oldest, best)
    res.scanned = (best, low)
    seen = {(a.seq, a.hash) for a in res.anchors}
    for a in res.account_anchors:
        if a.log_id != res.log_id or (a.seq, a.hash) in seen:
            continue
        seen.add((a.seq, a.hash))
        target = by_seq.get(a.seq)
        if a.seq > res.head_seq and (target is None or a.seq > max(by_seq, default=-1)):
            detail = f"the chain holds an anchor for seq {a.seq} (block {a.block}); the log ends at seq {res.head_seq}"
            res.problems.append(Problem("truncated", res.head_seq + 1, None, detail))
            ok = False
        elif target is None or target.hash != a.hash:
            detail = f"the chain's anchor at block {a.block} says seq {a.seq} has hash {a.hash[:16]}…; the log differs"
            res.problems.append(Problem("edited", a.seq, None, detail + " (history rewritten at or before it)"))
            ok = False
        else:
            detail, ok = "", True
        res.anchors.append(AnchorCheck(a.seq, a.hash, a.block, a.block_hash, True, ok, "chain", detail))
    newest = res.newest_anchor
    if newest is None:
        res.problems.append(Problem(
            "unanchored", None, None, f"{account} has no audit anchors on chain in blocks {low}..{best}: "
            "nothing on chain backs this log"))
    elif newest.log_id != res.log_id:
        what = f"its id is {res.log_id} and it" if res.log_id else "it has no records (no log id), so it"
        named = "; ".join(str(a) for a in res.account_anchors[:5])
        more_text = f"; and {len(res.account_anchors) - 5} older" if len(res.account_anchors) > 5 else ""
        # first: whatever else the file shows, it is not the evidence the chain vouches for
        res.problems.insert(0, Problem(
            "replaced", None, None,
            f"{what} backs none of {account}'s anchors on chain (blocks {low}..{best}), newest first: "
            f"{named}{more_text}; the chain vouches only for the log behind the newest one (this file was "
            "replaced, emptied, or is an older log the account no longer anchors)"))


def _account_key(value: str) -> str:
    """An account as its public key in hex, so SS58 addresses of any prefix (or 0x keys) compare equal."""
    try:
        return account_bytes(value).hex()
    except Exception:  # noqa: BLE001 - not an address: compare it as written
        return value


def _remarks_in(conn: Any, ev: Any, blocks: dict[str, list[str]]) -> Iterator[tuple[str, int, str]]:
    """(log id, seq, hash) of the audit remark behind one `System.Remarked` event, if it is one.

    The event names only the sender and `blake2_256(remark)`; the remark itself is found in the
    extrinsic's bytes and accepted only if it hashes to what the event says.
    """
    if ev.block_hash not in blocks:
        block = conn.rpc("chain_getBlock", [ev.block_hash]) or {}
        blocks[ev.block_hash] = list((block.get("block") or {}).get("extrinsics") or [])
    exts = blocks[ev.block_hash]
    if ev.extrinsic_index >= len(exts):
        return
    raw = bytes.fromhex(str(exts[ev.extrinsic_index]).removeprefix("0x"))
    for m in REMARK_RE.finditer(raw):
        if "0x" + blake2_256(m.group(0)).hex() == _hex(ev.get("hash")):
            yield m.group(1).decode(), int(m.group(2)), m.group(3).decode()


def _scan_back(conn: Any, best: int, floor: int, *, account: str,
               more: Callable[[int], bool] | None = None) -> Iterator[tuple[int, list[ChainAnchor]]]:
    """(block number, the account's audit anchors in it, newest first) from `best` down to `floor`.

    Backwards, so that the newest anchor (the one a log must back) is found after as few blocks as
    the anchor interval allows; `more(number)` is asked before each block and ends the walk with False.
    """
    key = _account_key(account)
    blocks: dict[str, list[str]] = {}
    for number in range(best, floor - 1, -1):
        if more is not None and not more(number):
            return
        block_hash = conn.block_hash(number)
        if block_hash is None:
            continue
        found: list[ChainAnchor] = []
        for ev in reversed(block_events(conn, block_hash, number)):
            if not ev.is_("System", "Remarked") or ev.extrinsic_index is None:
                continue
            sender = str(ev.get("sender"))
            if _account_key(sender) != key:
                continue
            for log_id, seq, h in reversed(list(_remarks_in(conn, ev, blocks))):
                found.append(ChainAnchor(log_id, seq, h, number, str(block_hash), sender))
        yield number, found


def scan_chain_anchors(conn: Any, log_id: str, from_block: int, *,
                       account: str | None = None) -> Iterator[tuple[int, str, int, str]]:
    """(seq, hash, block number, block hash) of every anchor of `log_id` on chain from `from_block` on."""
    best = conn.best_number()
    blocks: dict[str, list[str]] = {}
    key = _account_key(account) if account is not None else None
    for ev in events_in_range(conn, max(1, from_block), best):
        if not ev.is_("System", "Remarked") or ev.extrinsic_index is None:
            continue
        if key is not None and _account_key(str(ev.get("sender"))) != key:
            continue
        for lid, seq, h in _remarks_in(conn, ev, blocks):
            if lid == log_id:
                yield seq, h, int(ev.block_number or 0), str(ev.block_hash)


# --- the process-wide log the head and the CLI write to ------------------------------------------------

_default: AuditLog | None = None
_default_lock = threading.Lock()
write_failures = 0


def configure(path: str | os.PathLike[str] | None, *, fsync: bool = True) -> AuditLog | None:
    """Sets (or with None clears) the log `record` writes to."""
    global _default
    with _default_lock:
        _default = AuditLog(path, fsync=fsync) if path is not None else None
        return _default


def default_log() -> AuditLog | None:
    """The configured log, else the one `ETRID_AUDIT_LOG` names (the config's `compliance.audit_log`, read from
    this process's environment), else None (auditing off)."""
    global _default
    if _default is None:
        path = env_setting("audit_log")  # the cheap look first: this runs on every record while auditing is off
        if path:
            try:
                fsync = section_from_env("compliance").audit_fsync
            except ConfigError as err:  # a bad ETRID_AUDIT_FSYNC must not stop the record: the safe choice
                log.error("%s: the audit log is fsynced after every write", err)
                fsync = True
            configure(path, fsync=fsync)
    return _default


def configure_for(config: Any) -> AuditLog | None:
    """The process-wide audit log a provider config asks for: `compliance.audit_log` (this process's
    `ETRID_AUDIT_LOG` on top), else `audit.jsonl` beside the journal when compliance is on; otherwise the log is
    left as it is (None returned). The entry points that run a provider head call this, so the head's constructor
    need not configure a process-wide log itself."""
    settings = section_from_env("compliance", base=config.compliance)
    path = settings.audit_log
    if path is None and settings.enabled:
        path = config.provider.journal_file.with_name("audit.jsonl")
    if path is None:
        return None
    return configure(path, fsync=settings.audit_fsync)


def record(kind: str, **fields: Any) -> Record | None:
    """Appends one event to the process's audit log (a no-op when none is configured).

    A write that fails is logged and counted in `write_failures` instead of raising, so an audit
    problem cannot leave a claimed job undispatched; unknown kinds and secret fields always raise.
    """
    global write_failures
    if kind not in KINDS:
        raise AuditError(f"unknown audit event kind {kind!r}: one of {', '.join(sorted(KINDS))}")
    _check_secret_free(fields)
    target = default_log()
    if target is None:
        return None
    try:
        return target.append(kind, **fields)
    except (OSError, AuditError) as err:
        write_failures += 1
        log.error("audit record %s not written to %s: %s", kind, target.path, err)
        return None


def record_many(events: Iterable[tuple[str, Mapping[str, Any]]]) -> list[Record]:
    """Like `record` for a batch (one write, one fsync): the head's batched claims and results."""
    global write_failures
    batch = list(events)
    for kind, fields in batch:
        if kind not in KINDS:
            raise AuditError(f"unknown audit event kind {kind!r}: one of {', '.join(sorted(KINDS))}")
        _check_secret_free(fields)
    target = default_log()
    if target is None or not batch:
        return []
    try:
        return target.append_many(batch)
    except (OSError, AuditError) as err:
        write_failures += len(batch)
        log.error("%d audit records not written to %s: %s", len(batch), target.path, err)
        return []
