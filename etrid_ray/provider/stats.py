"""What the head counts, and the typed status that dashboards, telemetry, the CLI and the demo read.

`Stats` is written only under the job book's lock, by the stages that move jobs; `HeadStatus` is a frozen
copy taken under that lock, so a reader never touches the head's live collections (before, telemetry
reached into the head's private fields and copied its dicts while two threads changed them).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from typing import Any

SAMPLES = 20_000  # latency samples kept for percentiles
TIMELINE = 50_000  # per-job start/end/on-chain times kept (the benchmark reads them back)


def failure_kind(reason: str) -> str:
    """A failure reason without its particulars, for counting (`timeout after 3s` → `timeout after 3s`,
    `matmul failed: ValueError (…)` → `matmul failed`)."""
    return reason.split(":")[0].split(" (")[0][:40]


class _Bounded(dict[int, float]):
    """A job id → time map that forgets its oldest entries beyond `TIMELINE`."""

    def __setitem__(self, key: int, value: float) -> None:
        super().__setitem__(key, value)
        while len(self) > TIMELINE:
            del self[next(iter(self))]


@dataclass
class Stats:
    claimed: int = 0
    lost_claims: int = 0
    completed: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    reported: int = 0
    report_errors: int = 0
    earnings_planck: int = 0
    payments: int = 0
    gpu_seconds: float = 0.0
    queue_to_start: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLES))
    result_to_chain: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLES))
    waits: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLES))
    started_at: dict[int, float] = field(default_factory=_Bounded)    # job id -> task start (wall clock)
    ended_at: dict[int, float] = field(default_factory=_Bounded)      # job id -> task end
    on_chain_at: dict[int, float] = field(default_factory=_Bounded)   # job id -> settlement included
    pool_of: dict[int, str | None] = field(default_factory=dict)       # job id -> pool its task was steered to
    loop_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=1000))
    errors: Counter[str] = field(default_factory=Counter)  # exceptions a loop pass survived, by type
    preempted: Counter[str] = field(default_factory=Counter)  # runs lost to a preempted node, by pool (run again)
    retried: int = 0  # runs lost to a crash and run again (each spends one of a job's retries)
    tasks: int = 0  # Ray tasks started for jobs
    shared: int = 0  # job runs that shared their Ray task with other jobs (provider/packing.py)

    def count_failure(self, reason: str) -> None:
        self.failed[failure_kind(reason)] += 1


@dataclass(frozen=True)
class RunningView:
    job_id: int
    gpus: float
    pool: str | None
    gpu_id: int | None
    dispatched_at: float
    preemptions: int = 0  # earlier runs of this job lost to a preempted node


@dataclass(frozen=True)
class HeadStatus:
    """The head at one moment. `as_dict()` is the JSON shape the actor, the demo and `etrid-ray status` show."""

    taken_at: float
    address: str
    draining: bool
    drained: bool
    alive: bool  # the loop thread runs (or the head is stepped by its caller)
    stopping: bool
    watching: bool  # the chain's queue is being watched
    gpus: tuple[int, ...]
    gpu_source: str
    gpus_declared: int
    best_block: int
    queue_depth: int
    candidates: int
    waiting_since: tuple[float, ...]  # when each job still pending on chain was submitted
    running: int
    running_jobs: tuple[RunningView, ...]
    to_settle: int
    states: dict[str, int]  # jobs in the book per state (provider/job.py)
    claimed: int
    lost_claims: int
    completed: int
    failed: dict[str, int]
    skipped: dict[str, int]
    reported: int
    report_errors: int
    earnings_planck: int
    earnings_edsc: float
    payments: int
    gpu_seconds: float
    errors: dict[str, int]
    reconnects: int
    uptime_s: float
    last_heartbeat: float
    queue_to_start_p50: float
    queue_to_start_p95: float
    result_to_chain_p50: float
    result_to_chain_p99: float
    loop_p50_ms: float
    loop_seconds: tuple[float, ...]
    durations: tuple[float, ...]  # run times of the most recent finished tasks
    estimates: dict[str, Any]
    net_profit_usd: dict[str, float] = field(default_factory=dict)  # by pool since start: paid − cost share
    waits: tuple[float, ...] = ()  # with detail: queue → start per job
    result_latencies: tuple[float, ...] = ()  # with detail: result → on chain per job
    # pools whose requested nodes never came, backing off (scaling.capacity): pool -> why, and when asked again
    pools_unavailable: dict[str, str] = field(default_factory=dict)
    preempted: dict[str, int] = field(default_factory=dict)  # runs lost to a preempted node, run again, by pool
    retried: int = 0  # runs lost to a crash and run again (each spent one of the job's retries)

    def as_dict(self, detail: bool = False) -> dict[str, Any]:
        out = asdict(self)
        out["gpus"] = list(self.gpus)
        out["running_jobs"] = [asdict(r) for r in self.running_jobs]
        for key in ("waiting_since", "loop_seconds", "durations"):
            del out[key]
        if detail:
            out["waits"] = list(self.waits)
            out["result_latencies"] = list(self.result_latencies)
        else:
            del out["waits"], out["result_latencies"]
        return out
