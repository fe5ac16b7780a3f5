"""The head's local journal: what it claimed, what finished, what it reported — idempotently.

The chain is the source of truth for what is ours (`GpuJobs`, job status);
the journal adds what the chain cannot know: a result computed but not yet on
chain. After a crash, a job whose result is journalled is reported, not rerun;
a job reported and confirmed by the chain is never reported again.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id INTEGER PRIMARY KEY,
    gpu_id INTEGER,
    state TEXT NOT NULL,          -- claimed | finished | reported
    ok INTEGER,                   -- for finished/reported: 1 result, 0 failure
    result_hash TEXT,
    reason TEXT,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class JournalEntry:
    job_id: int
    gpu_id: int | None
    state: str
    ok: bool | None
    result_hash: str | None
    reason: str | None


class Journal:
    def __init__(self, path: Path | str) -> None:
        path = Path(path)
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.db = sqlite3.connect(str(path), check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def claimed(self, pairs: list[tuple[int, int]]) -> None:
        now = time.time()
        with self._lock, self.db:
            self.db.executemany(
                "INSERT INTO jobs (job_id, gpu_id, state, updated) VALUES (?, ?, 'claimed', ?) "
                "ON CONFLICT(job_id) DO NOTHING", [(j, g, now) for j, g in pairs])

    def finished(self, items: list[tuple[int, bool, str | None, str | None]]) -> None:
        """(job_id, ok, result_hash, reason): computed, not yet on chain. Never downgrades 'reported'."""
        now = time.time()
        with self._lock, self.db:
            self.db.executemany(
                "INSERT INTO jobs (job_id, state, ok, result_hash, reason, updated) VALUES (?, 'finished', ?, ?, ?, ?) "
                "ON CONFLICT(job_id) DO UPDATE SET state='finished', ok=excluded.ok, "
                "result_hash=excluded.result_hash, reason=excluded.reason, updated=excluded.updated "
                "WHERE jobs.state != 'reported'",
                [(j, int(ok), h, r, now) for j, ok, h, r in items])

    def reported(self, job_ids: list[int]) -> None:
        now = time.time()
        with self._lock, self.db:
            self.db.executemany("UPDATE jobs SET state='reported', updated=? WHERE job_id=?",
                                [(now, j) for j in job_ids])

    def get(self, job_id: int) -> JournalEntry | None:
        with self._lock:
            row = self.db.execute("SELECT job_id, gpu_id, state, ok, result_hash, reason FROM jobs WHERE job_id=?",
                                  (job_id,)).fetchone()
        return _entry(row) if row else None

    def in_state(self, state: str) -> list[JournalEntry]:
        with self._lock:
            rows = self.db.execute("SELECT job_id, gpu_id, state, ok, result_hash, reason FROM jobs WHERE state=?",
                                   (state,)).fetchall()
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
    job_id, gpu_id, state, ok, result_hash, reason = row
    return JournalEntry(job_id, gpu_id, state, None if ok is None else bool(ok), result_hash, reason)
