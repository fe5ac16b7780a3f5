"""Job traces for the simulator: a CSV with at least `timestamp,duration,num_gpus` (the Philly columns).

Why these rules: a trace is data from elsewhere, so a bad row must not stop a run of 80,000 good
ones — it is reported (line number and reason) and skipped. Extra columns are ignored; rows need
not be sorted (they are sorted by submit time, stably, and re-based so the first job arrives at 0).
`timestamp` is either a date-time (`2017-10-03 14:02:11`, the Philly form, or ISO 8601) or a
number of seconds; `duration` is seconds (> 0); `num_gpus` is a positive number of GPUs.
A `.gz` file is read through gzip.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path

REQUIRED = ("timestamp", "duration", "num_gpus")
PHILLY = "data/philly_trace.csv.gz"


@dataclass(frozen=True)
class SimJob:
    """One job of a trace: when it arrives (seconds from the first job), how long it runs, its GPUs."""

    job_id: int  # position in the sorted trace
    submit_s: float
    duration_s: float
    gpus: float


@dataclass(frozen=True)
class BadRow:
    line: int  # line number in the file (the header is line 1)
    reason: str


@dataclass(frozen=True)
class Trace:
    jobs: tuple[SimJob, ...]
    bad: tuple[BadRow, ...] = ()
    source: str = ""
    was_sorted: bool = True

    def __len__(self) -> int:
        return len(self.jobs)

    def head(self, count: int) -> Trace:
        """The first `count` jobs (by submit time)."""
        return Trace(self.jobs[:count], self.bad, self.source, self.was_sorted)


class TraceError(ValueError):
    """The file cannot be read as a trace at all (missing, no header, missing required columns)."""


@lru_cache(maxsize=4096)
def _day_start(date: str) -> float:
    return datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()


def _timestamp(text: str) -> float:
    """Seconds: a plain number, or a date-time read as UTC (naive times have no daylight saving here)."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    if len(text) == 19 and text[10] in " T" and text[13] == ":" and text[16] == ":":
        try:  # the Philly form, fast: a cached day plus h:m:s
            h, m, s = int(text[11:13]), int(text[14:16]), int(text[17:19])
            if h < 24 and m < 60 and s < 60:
                return _day_start(text[:10]) + h * 3600 + m * 60 + s
        except ValueError:
            pass
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"timestamp {text!r} is neither seconds nor a date-time") from None
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()


def _number(text: str, what: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} {text!r} is not finite")
    return value


def parse_trace(text: str, source: str = "<text>") -> Trace:
    """Parse CSV text into a sorted trace; rows that cannot be parsed are listed in `Trace.bad`."""
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None:
        raise TraceError(f"{source}: empty file (expected a header with {', '.join(REQUIRED)})")
    fields = {f.strip().lower(): f for f in reader.fieldnames if f is not None}
    missing = [c for c in REQUIRED if c not in fields]
    if missing:
        raise TraceError(f"{source}: missing column(s) {', '.join(missing)} (need {', '.join(REQUIRED)}; "
                         f"found {', '.join(reader.fieldnames)})")
    rows: list[tuple[float, float, float]] = []
    bad: list[BadRow] = []
    for rec in reader:
        line = reader.line_num
        try:
            values = [rec.get(fields[c]) for c in REQUIRED]
            if any(v is None or not str(v).strip() for v in values):
                raise ValueError("empty " + ", ".join(c for c, v in zip(REQUIRED, values, strict=True)
                                                      if v is None or not str(v).strip()))
            ts = _timestamp(values[0])
            duration = _number(values[1], "duration")
            gpus = _number(values[2], "num_gpus")
            if duration <= 0:
                raise ValueError(f"duration {duration:g} s is not positive")
            if gpus <= 0:
                raise ValueError(f"num_gpus {gpus:g} is not positive")
        except ValueError as err:
            bad.append(BadRow(line, str(err)))
            continue
        rows.append((ts, duration, gpus))
    was_sorted = all(a[0] <= b[0] for a, b in zip(rows, rows[1:], strict=False))
    if not was_sorted:
        rows.sort(key=lambda r: r[0])  # stable: equal timestamps keep file order
    t0 = rows[0][0] if rows else 0.0
    jobs = tuple(SimJob(i, ts - t0, d, g) for i, (ts, d, g) in enumerate(rows))
    return Trace(jobs, tuple(bad), source, was_sorted)


def load_trace(path: str | Path) -> Trace:
    p = Path(path)
    if not p.is_file():
        raise TraceError(f"trace file {p} does not exist")
    raw = p.read_bytes()
    if p.suffix == ".gz":
        raw = gzip.decompress(raw)
    return parse_trace(raw.decode("utf-8-sig"), str(p))


@lru_cache(maxsize=1)
def philly_trace() -> Trace:
    """The whole Philly trace the package ships (82,247 jobs), through the same parser; read once per process
    (the simulator, the suite and the demo's replay all take it from here)."""
    path = resources.files("etrid_ray") / PHILLY
    with path.open("rb") as fh:
        text = gzip.decompress(fh.read()).decode("utf-8")
    return parse_trace(text, "philly (shipped)")


def trace_slice(count: int, offset: int, trace: Trace | None = None) -> list[SimJob]:
    """`count` consecutive jobs of `trace` (default: Philly) from `offset` (moved back to fit), re-based so the
    first arrives at 0: what the demo replays."""
    jobs = (trace or philly_trace()).jobs
    count = max(0, min(count, len(jobs)))
    offset = max(0, min(offset, len(jobs) - count))
    chunk = jobs[offset:offset + count]
    t0 = chunk[0].submit_s if chunk else 0.0
    return [SimJob(j.job_id, j.submit_s - t0, j.duration_s, j.gpus) for j in chunk]
