"""The head's local journal: what it claimed, what finished, what it reported — idempotently.

The chain is the source of truth for what is ours (`GpuJobs`, job status);
the journal adds what the chain cannot know: a result computed but not yet on
chain. After a crash, a job whose result is journalled (and whose result blob
still verifies) is reported, not rerun; a job reported and confirmed by the
chain is never reported again.

A journal is bound to one chain and one provider account (`JournalBinding`).
Job ids are only unique within one chain: an ephemeral devnet starts again at
job 0, so a row about "job 2" means nothing on another chain, and trusting it
once settled a `sleep` job with the previous chain's `echo` result without
running it. `bind()` therefore refuses to let a journal written for another
chain or account be used at all: the old file is renamed aside and a fresh one
is started at the configured path.

Why rename aside instead of one file per chain and account: the genesis hash
cannot tell two devnets apart (every `etrid-ray devnet`, like every
`substrate --dev --tmp`, builds the same genesis block), so a per-chain file
name would still collide and the check inside the file would be needed anyway;
the configured path stays the single place operators mount and back up (the
KubeRay state volume); and the old file is kept, never read again, for whoever
wants to look at it. What is lost is only recovery of another chain's
unsettled work, which that chain times out and refunds on its own.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from etrid_ray.provider.job import JobState, Settlement
from etrid_ray.provider.preemption import PREEMPTED_NOTE

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id INTEGER PRIMARY KEY,
    gpu_id INTEGER,
    state TEXT NOT NULL,          -- a JobState the journal keeps: claimed | finished | reported
    ok INTEGER,                   -- for finished/reported: 1 result, 0 failure
    result_hash TEXT,
    reason TEXT,
    updated REAL NOT NULL,
    checkpoint TEXT               -- for claimed: the progress a preempted run saved (a blob), resumed from
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS history (  -- every state a job was journalled in, in order
    job_id INTEGER NOT NULL,
    state TEXT NOT NULL,
    at REAL NOT NULL,
    note TEXT
);
CREATE INDEX IF NOT EXISTS history_job ON history (job_id);
"""

COLUMNS = "job_id, gpu_id, state, ok, result_hash, reason, updated, checkpoint"  # a `JournalEntry`'s, in order
#: meta keys holding the binding; written once, when a new or empty journal is first bound
BINDING_KEYS = ("chain_genesis", "chain_block1", "account")
NO_BLOCK = "-"  # a chain with no block 1 yet (stored, so a chain that later has one does not match)


@dataclass(frozen=True)
class JournalBinding:
    """Which chain and which account a journal's rows are about.

    `block1_hash` is part of the chain's identity because the genesis hash is not enough: every devnet
    (and every `--dev` node) has the same genesis. The hash of block 1 differs between two such chains
    (it carries the time it was sealed); on a real chain it is as fixed as the genesis."""

    genesis_hash: str
    block1_hash: str | None
    account: str

    def describe(self) -> str:
        block1 = self.block1_hash or "none yet"
        return f"chain {self.genesis_hash[:12]}… (block #1 {block1[:12]}…), account {self.account}"


@dataclass(frozen=True)
class BindOutcome:
    """What `Journal.bind` did: `used` — the journal's rows are this chain's and account's (or it was empty);
    otherwise `reason` says why it was not used and `set_aside` where the old file went (None in memory)."""

    used: bool
    reason: str = ""
    set_aside: Path | None = None
    previous: JournalBinding | None = None


@dataclass(frozen=True)
class JournalEntry:
    job_id: int
    gpu_id: int | None
    state: JobState
    ok: bool | None
    result_hash: str | None
    reason: str | None
    #: when the row last changed (for a claimed row: when the claim was journalled); not part of equality
    updated: float | None = field(default=None, compare=False)
    #: for a claimed row: the blob of a preempted run's progress, which a rerun (after a restart too) resumes from
    checkpoint: str | None = field(default=None, compare=False)


class Journal:
    def __init__(self, path: Path | str) -> None:
        self.path: Path | None = None if str(path) == ":memory:" else Path(path)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.db = self._open()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(":memory:" if self.path is None else str(self.path), check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
        if "checkpoint" not in columns:  # a journal written before checkpoints were kept
            db.execute("ALTER TABLE jobs ADD COLUMN checkpoint TEXT")
        return db

    # binding --------------------------------------------------------------------------------------

    def binding(self) -> JournalBinding | None:
        """The chain and account this journal is bound to; None for a journal never bound."""
        genesis, block1, account = (self.get_meta(k) for k in BINDING_KEYS)
        if genesis is None or account is None:
            return None
        return JournalBinding(genesis, None if block1 in (None, NO_BLOCK) else block1, account)

    def bind(self, binding: JournalBinding) -> BindOutcome:
        """Makes this journal the one for `binding`, before anything reads or writes its rows.

        Same binding: used as is. Never bound and empty: bound now. Bound to another chain or account, or
        holding rows of unknown origin (written before journals were bound, or by a head that was never
        started): not used — the file is renamed aside (`<name>.stale-<UTC time>`, with its WAL) and a new,
        empty journal bound to `binding` takes its place."""
        previous = self.binding()
        if previous == binding:
            return BindOutcome(True, previous=previous)
        if previous is None:
            with self._lock:
                rows = self.db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
            if rows == 0:
                self._write_binding(binding)
                return BindOutcome(True)
            reason = f"it holds {rows} job rows of unknown chain and account (no binding recorded)"
        else:
            reason = f"it belongs to {previous.describe()}, not {binding.describe()}"
        aside = self._start_over()
        self._write_binding(binding)
        return BindOutcome(False, reason, aside, previous)

    def _write_binding(self, binding: JournalBinding) -> None:
        values = (binding.genesis_hash, binding.block1_hash or NO_BLOCK, binding.account)
        with self._lock, self.db:
            self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                list(zip(BINDING_KEYS, values, strict=True)))

    def _start_over(self) -> Path | None:
        """Moves the current file (and its WAL/SHM) aside and opens an empty journal at the same path."""
        with self._lock:
            if self.path is None:
                with self.db:
                    self.db.execute("DELETE FROM jobs")
                    self.db.execute("DELETE FROM meta")
                    self.db.execute("DELETE FROM history")
                return None
            try:  # fold the WAL into the main file, so the set-aside copy is complete on its own
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.OperationalError:
                log.warning("journal %s: checkpoint before setting it aside failed", self.path)
            self.db.close()
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            aside = self.path.with_name(f"{self.path.name}.stale-{stamp}")
            n = 1
            while aside.exists():
                aside = self.path.with_name(f"{self.path.name}.stale-{stamp}-{n}")
                n += 1
            self.path.rename(aside)
            for suffix in ("-wal", "-shm"):
                side = self.path.with_name(self.path.name + suffix)
                if side.exists():
                    side.rename(aside.with_name(aside.name + suffix))
            self.db = self._open()
            return aside

    # transitions ----------------------------------------------------------------------------------

    def claimed(self, pairs: Sequence[tuple[int, int | None]]) -> None:
        """(job_id, gpu_id) just won on chain. A chain never hands a job out twice (a claimed job never
        returns to Pending), so an older row under the same id is not about this job — it is stale (a
        reset chain reusing ids) and is replaced; repeating the same claim changes nothing."""
        now = time.time()
        with self._lock, self.db:
            self.db.executemany(
                "INSERT INTO jobs (job_id, gpu_id, state, updated) VALUES (?, ?, 'claimed', ?) "
                "ON CONFLICT(job_id) DO UPDATE SET gpu_id=excluded.gpu_id, state='claimed', ok=NULL, "
                "result_hash=NULL, reason=NULL, updated=excluded.updated, checkpoint=NULL "
                "WHERE NOT (jobs.state = 'claimed' AND jobs.gpu_id IS excluded.gpu_id)",
                [(j, g, now) for j, g in pairs])
            self._history([(j, JobState.CLAIMED, now, f"gpu {g}") for j, g in pairs])

    def finished(self, items: Sequence[Settlement]) -> None:
        """Computed, not yet on chain: the settlement to report. Never downgrades 'reported'."""
        now = time.time()
        with self._lock, self.db:
            self.db.executemany(
                "INSERT INTO jobs (job_id, state, ok, result_hash, reason, updated) VALUES (?, 'finished', ?, ?, ?, ?) "
                "ON CONFLICT(job_id) DO UPDATE SET state='finished', ok=excluded.ok, "
                "result_hash=excluded.result_hash, reason=excluded.reason, updated=excluded.updated "
                "WHERE jobs.state != 'reported'",
                [(s.job_id, int(s.ok), s.result_hash, s.reason or None, now) for s in items])
            self._history([(s.job_id, JobState.FINISHED, now, "result" if s.ok else s.reason) for s in items])

    def rerun(self, items: Sequence[tuple[int, str, str | None]]) -> None:
        """(job_id, why, checkpoint) runs again after its run was lost: preempted (the note starts with
        `preempted`) or crashed. The row stays `claimed` — to a restarted head the job is simply ours and
        unfinished — with the checkpoint its next run resumes from (a restarted head's too); the history keeps
        why, so `preemptions` and an operator reading it can tell a preemption from a failure."""
        now = time.time()
        with self._lock, self.db:
            self.db.executemany("UPDATE jobs SET state='claimed', ok=NULL, result_hash=NULL, reason=NULL, updated=?, "
                                "checkpoint=? WHERE job_id=? AND state != 'reported'",
                                [(now, checkpoint, j) for j, _, checkpoint in items])
            self._history([(j, JobState.CLAIMED, now, note) for j, note, _ in items])

    def preemptions(self, job_id: int) -> int:
        """How many of `job_id`'s runs were lost to a preemption."""
        with self._lock:
            return int(self.db.execute("SELECT COUNT(*) FROM history WHERE job_id=? AND note LIKE ?",
                                       (job_id, f"{PREEMPTED_NOTE}%")).fetchone()[0])

    def reported(self, job_ids: Sequence[int]) -> None:
        now = time.time()
        with self._lock, self.db:
            self.db.executemany("UPDATE jobs SET state='reported', updated=? WHERE job_id=?",
                                [(now, j) for j in job_ids])
            self._history([(j, JobState.REPORTED, now, "") for j in job_ids])

    def _history(self, rows: list[tuple[int, JobState, float, str]]) -> None:
        self.db.executemany("INSERT INTO history VALUES (?, ?, ?, ?)", [(j, s.value, t, n) for j, s, t, n in rows])

    def history(self, job_id: int) -> list[tuple[JobState, float, str]]:
        """Every state `job_id` was journalled in, oldest first."""
        with self._lock:
            rows = self.db.execute("SELECT state, at, note FROM history WHERE job_id=? ORDER BY rowid",
                                   (job_id,)).fetchall()
        return [(JobState(s), t, n or "") for s, t, n in rows]

    def get(self, job_id: int) -> JournalEntry | None:
        with self._lock:
            row = self.db.execute(f"SELECT {COLUMNS} FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        return _entry(row) if row else None

    def in_state(self, state: JobState | str) -> list[JournalEntry]:
        with self._lock:
            rows = self.db.execute(f"SELECT {COLUMNS} FROM jobs WHERE state=?", (state,)).fetchall()
        return [_entry(r) for r in rows]

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._lock, self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def close(self) -> None:
        with self._lock:
            self.db.close()


def _entry(row: tuple) -> JournalEntry:  # type: ignore[type-arg]
    job_id, gpu_id, state, ok, result_hash, reason, updated, checkpoint = row
    return JournalEntry(job_id, gpu_id, JobState(state), None if ok is None else bool(ok), result_hash, reason, updated,
                        checkpoint)
