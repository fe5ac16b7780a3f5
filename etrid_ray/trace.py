"""The Philly GPU-cluster trace shipped with the package (82,247 jobs, sorted by submit time)."""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from importlib import resources


@dataclass(frozen=True)
class TraceJob:
    submit_s: float   # seconds since the first job of the trace
    duration_s: float
    num_gpus: int
    cluster: str


@lru_cache(maxsize=1)
def philly_jobs() -> tuple[TraceJob, ...]:
    path = resources.files("etrid_ray") / "data" / "philly_trace.csv.gz"
    out: list[TraceJob] = []
    first: datetime | None = None
    with path.open("rb") as raw, gzip.open(raw, "rt", newline="") as fh:
        for row in csv.DictReader(fh):
            ts = datetime.strptime(row["timestamp"], "%Y-%m-%d %H:%M:%S")
            if first is None:
                first = ts
            out.append(TraceJob((ts - first).total_seconds(), float(row["duration"]), int(row["num_gpus"]),
                                row["cluster"]))
    return tuple(out)


def trace_slice(count: int, offset: int) -> list[TraceJob]:
    """`count` consecutive jobs from `offset`, re-based so the first arrives at 0."""
    jobs = philly_jobs()
    offset = max(0, min(offset, len(jobs) - count))
    chunk = jobs[offset:offset + count]
    t0 = chunk[0].submit_s if chunk else 0.0
    return [TraceJob(j.submit_s - t0, j.duration_s, j.num_gpus, j.cluster) for j in chunk]
