"""One job as the head sees it: one object, one state machine, one owner.

A chain job passes through the head as

    queued ─▶ admitted ─▶ claiming ─▶ claimed ─▶ running ─▶ finished ─▶ reported
       │  ╲      │  ▲          │                    │  ▲
       ▼   ▶ skipped ┘          ▼                    ▼  │ (preempted: runs again)
    departed                  lost               finished (a claim that cannot run)

`queued` — pending on chain and seen here, its manifest not judged yet; `admitted`/`skipped` — the pure
admission's verdict (claim or reject / not for us); `claiming` — in a claim extrinsic not yet answered;
`claimed` — won on chain, not yet a Ray task; `running` — a Ray task; `finished` — its outcome (a
`Settlement`) is known and journalled, not yet on chain; `reported` — settled on chain. `departed` (left
the queue without us: another provider, a cancel) and `lost` (another provider won the claim race) end a
job that was never ours. `claimed`, `finished` and `reported` are what the journal stores: with the chain's
`GpuJobs` they are what a restarted head recovers from.

Why a table and not flags: before, one job's state was spread over half a dozen dicts of the head and a
job could sit in two of them at once; now `JobBook.move` is the only way a job changes state, an
impossible move raises instead of corrupting the books, and every job carries its history for `status`.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from etrid_ray.admission import UNEVALUATED, Verdict
from etrid_ray.chain.models import Job
from etrid_ray.manifest import Manifest


class JobState(StrEnum):
    QUEUED = "queued"
    ADMITTED = "admitted"
    SKIPPED = "skipped"
    CLAIMING = "claiming"
    CLAIMED = "claimed"
    RUNNING = "running"
    FINISHED = "finished"
    REPORTED = "reported"
    DEPARTED = "departed"
    LOST = "lost"


S = JobState
#: every move a job may make; anything else is a bug and raises `IllegalTransition`
TRANSITIONS: dict[JobState | None, frozenset[JobState]] = {
    None: frozenset({S.QUEUED, S.CLAIMED, S.FINISHED}),  # seen pending; or recovered from chain + journal
    S.QUEUED: frozenset({S.ADMITTED, S.SKIPPED, S.DEPARTED}),
    S.ADMITTED: frozenset({S.QUEUED, S.SKIPPED, S.CLAIMING, S.DEPARTED}),  # queued again: judged anew
    S.SKIPPED: frozenset({S.QUEUED, S.DEPARTED}),
    S.CLAIMING: frozenset({S.CLAIMED, S.LOST, S.ADMITTED}),  # admitted again: the extrinsic failed as a whole
    S.CLAIMED: frozenset({S.RUNNING, S.FINISHED}),
    S.RUNNING: frozenset({S.FINISHED, S.CLAIMED}),  # claimed again: preempted or crashed, to run again
    S.FINISHED: frozenset({S.REPORTED}),
    S.REPORTED: frozenset(),
    S.DEPARTED: frozenset(),
    S.LOST: frozenset(),
}
#: states in which the job is in the chain's `GpuJobs` of one of our GPUs (bounded on chain)
ON_CHAIN = frozenset({S.CLAIMING, S.CLAIMED, S.RUNNING, S.FINISHED})
#: states that end a job's life in the book
TERMINAL = frozenset({S.REPORTED, S.DEPARTED, S.LOST})
#: states still waiting on chain for a provider
WAITING = (S.QUEUED, S.ADMITTED, S.SKIPPED)
HISTORY_KEPT = 2_000  # ended jobs whose history `JobBook.history` still answers


class IllegalTransition(RuntimeError):
    pass


@dataclass(frozen=True)
class Settlement:
    """What goes on chain for a finished job: its result (`ok`, `result_hash`) or a failure with a reason."""

    job_id: int
    ok: bool
    result_hash: str | None = None
    reason: str = ""

    @classmethod
    def failure(cls, job_id: int, reason: str) -> Settlement:
        return cls(job_id, False, None, reason)


@dataclass
class RunInfo:
    """A dispatched job: its Ray task and what the claim planned, so the head learns how it turned out."""

    ref: Any
    deadline: float
    dispatched_at: float
    gpus: float
    pool: str | None = None
    handler: str = ""
    declared_s: float = 0.0  # the run time its args declare, else its limit
    declares: bool = False
    free_at: float = 0.0  # when its GPUs were expected free
    cold: bool = False  # planned on a new Ray worker
    started_at: float = 0.0  # from the task's outcome
    ended_at: float = 0.0
    pack_size: int = 1  # jobs sharing its Ray task (provider/packing.py), run one after another
    pack_index: int = 0  # its place among them


@dataclass
class TrackedJob:
    job: Job
    state: JobState
    first_seen: float
    history: list[tuple[JobState, float, str]] = field(default_factory=list)
    verdict: Verdict = UNEVALUATED
    manifest: Manifest | None = None
    retry_manifest_at: float = 0.0
    gpu_id: int | None = None
    pool: str | None = None  # where the claim planned it
    free_at: float | None = None
    cold: bool = False
    run: RunInfo | None = None
    settlement: Settlement | None = None
    finished_at: float = 0.0
    chain_deadline: float | None = None  # a recovered job's deadline on chain
    order: tuple[int, int] | None = None  # the claim order's fixed parts, once judged (provider/claim_order.py)
    spread: int | None = None  # this head's hash of the job (`timing.spread_key`), set with `order`
    preemptions: int = 0  # runs lost to a preempted node (free: provider/preemption.py)
    retries: int = 0  # runs lost to a crash (each spends one of `TASK_MAX_RETRIES`)
    checkpoint: str | None = None  # the blob of a preempted run's progress, which the next run resumes from
    runs_alone: bool = False  # its shared task was cancelled for a pack-mate: it runs in a task of its own

    @property
    def job_id(self) -> int:
        return self.job.job_id


def tasks_by_pool(running: Iterable[TrackedJob]) -> dict[str | None, int]:
    """Per pool, the Ray tasks these running jobs hold — the warm workers they keep busy (the jobs of a pack share
    one task: provider/packing.py)."""
    busy: dict[str | None, int] = {}
    for t in running:
        if t.run is not None and t.run.pack_index == 0:
            busy[t.run.pool] = busy.get(t.run.pool, 0) + 1
    return busy


class JobBook:
    """The head's jobs, by state. Every stage reads and moves jobs through it; `lock` guards it (the intake
    and the reporter loops share it). Keeps per-state indexes in arrival order and, per GPU, how many of our
    jobs the chain holds against it (`GpuJobs` is bounded: a claim past the bound fails on chain)."""

    def __init__(self, clock: Any = time.time) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self._jobs: dict[int, TrackedJob] = {}
        self._by_state: dict[JobState, OrderedDict[int, TrackedJob]] = {s: OrderedDict() for s in JobState}
        self.on_gpu: Counter[int] = Counter()
        self._ended: OrderedDict[int, list[tuple[JobState, float, str]]] = OrderedDict()
        self.moves: Counter[tuple[str, str]] = Counter()
        self._arrivals: dict[JobState, list[TrackedJob]] = {}  # states followed: jobs that entered since last read

    # reading ---------------------------------------------------------------------------------------

    def get(self, job_id: int) -> TrackedJob | None:
        return self._jobs.get(job_id)

    def __contains__(self, job_id: int) -> bool:
        return job_id in self._jobs

    def __len__(self) -> int:
        return len(self._jobs)

    def ids(self) -> Any:
        """The ids of every job in the book (a live set-like view: caller holds `lock`)."""
        return self._jobs.keys()

    def in_state(self, *states: JobState) -> list[TrackedJob]:
        with self.lock:
            return [t for s in states for t in self._by_state[s].values()]

    def iter_state(self, state: JobState) -> Iterator[TrackedJob]:
        """The live index (caller holds `lock`)."""
        return iter(self._by_state[state].values())

    def count(self, *states: JobState) -> int:
        return sum(len(self._by_state[s]) for s in states)

    def counts(self) -> dict[str, int]:
        with self.lock:
            return {s.value: len(self._by_state[s]) for s in JobState if s not in TERMINAL}

    def follow(self, state: JobState) -> None:
        """From now on, remember which jobs enter `state` (read them with `arrivals`)."""
        with self.lock:
            self._arrivals.setdefault(state, [])

    def arrivals(self, state: JobState) -> list[TrackedJob]:
        """The jobs that entered `state` (a followed one) since the last call, oldest first; some may have left it
        again since (caller holds `lock`)."""
        out = self._arrivals[state]
        self._arrivals[state] = []
        return out

    def history(self, job_id: int) -> list[tuple[JobState, float, str]]:
        with self.lock:
            tracked = self._jobs.get(job_id)
            return list(tracked.history) if tracked is not None else list(self._ended.get(job_id, []))

    # moving ----------------------------------------------------------------------------------------

    def add(self, job: Job, state: JobState, *, note: str = "", at: float | None = None) -> TrackedJob:
        """A job enters the book (seen pending, or recovered); one already there is returned unchanged."""
        with self.lock:
            tracked = self._jobs.get(job.job_id)
            if tracked is not None:
                return tracked
            if state is not S.QUEUED:
                raise IllegalTransition(f"job {job.job_id}: enters the book queued, not {state} (see `recovered`)")
            now = self.clock() if at is None else at
            tracked = TrackedJob(job, state, now)
            tracked.history.append((state, now, note))
            self._jobs[job.job_id] = tracked
            self._by_state[state][job.job_id] = tracked
            self.moves[("", state.value)] += 1
            if state in self._arrivals:
                self._arrivals[state].append(tracked)
            return tracked

    def recovered(self, job: Job, gpu_id: int, state: JobState, note: str = "recovered") -> TrackedJob:
        """A job the chain shows on one of our GPUs after a restart: claimed (to run again) or finished."""
        with self.lock:
            if job.job_id in self._jobs:
                raise IllegalTransition(f"job {job.job_id} is already in the book")
            if state not in (S.CLAIMED, S.FINISHED):
                raise IllegalTransition(f"job {job.job_id}: cannot be recovered as {state}")
            now = self.clock()
            tracked = TrackedJob(job, state, now, gpu_id=gpu_id)
            tracked.history.append((state, now, note))
            self._jobs[job.job_id] = tracked
            self._by_state[state][job.job_id] = tracked
            self.on_gpu[gpu_id] += 1
            self.moves[("", state.value)] += 1
            if state in self._arrivals:
                self._arrivals[state].append(tracked)
            return tracked

    def move(self, tracked: TrackedJob, to: JobState, note: str = "", at: float | None = None) -> None:
        with self.lock:
            frm = tracked.state
            if to not in TRANSITIONS[frm]:
                raise IllegalTransition(f"job {tracked.job_id}: {frm} → {to} is not a move a job makes")
            now = self.clock() if at is None else at
            del self._by_state[frm][tracked.job_id]
            tracked.state = to
            tracked.history.append((to, now, note))
            self.moves[(frm.value, to.value)] += 1
            if tracked.gpu_id is not None:
                if frm not in ON_CHAIN and to in ON_CHAIN:
                    self.on_gpu[tracked.gpu_id] += 1
                elif frm in ON_CHAIN and to not in ON_CHAIN:
                    self.on_gpu[tracked.gpu_id] -= 1
            if to in TERMINAL:
                del self._jobs[tracked.job_id]
                self._ended[tracked.job_id] = tracked.history
                while len(self._ended) > HISTORY_KEPT:
                    self._ended.popitem(last=False)
            else:
                self._by_state[to][tracked.job_id] = tracked
                if to in self._arrivals:
                    self._arrivals[to].append(tracked)

    def move_all(self, jobs: Iterable[TrackedJob], to: JobState, note: str = "") -> None:
        with self.lock:
            now = self.clock()
            for tracked in jobs:
                self.move(tracked, to, note, now)

    def finish(self, tracked: TrackedJob, settlement: Settlement, at: float | None = None) -> None:
        """The job's outcome is known: it waits to be settled on chain."""
        with self.lock:
            tracked.settlement = settlement
            tracked.finished_at = self.clock() if at is None else at
            self.move(tracked, S.FINISHED, "" if settlement.ok else settlement.reason, tracked.finished_at)
