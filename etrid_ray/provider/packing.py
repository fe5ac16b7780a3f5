"""Which claimed jobs share one Ray task: short jobs of the same shape, run one after another.

Why: every Ray task costs the head a fixed amount of work of its own — the Python `.remote()` path, the core
worker's lease and push, the reply's deserialization and callback — about 0.3–0.4 ms of head CPU here whatever
the job does (architecture.md: Ray facts). For a job that runs for a millisecond that fixed cost is most of the
head's work per job (target P1: ≤ 1 ms of head CPU per job). Several such jobs in one task pay it once.

When, so that sharing only ever replaces waiting, never parallel work:
* only jobs beyond the warm Ray workers their pool has free: a job that has an idle worker to run on runs alone
  (in parallel with the others); the rest would wait for a worker anyway — queued in Ray, or for a new worker
  process (a cold start: seconds) — and wait in a pack instead;
* only jobs whose run this head has observed to be short: a pack's expected run (the sum of its jobs' learnt run
  times) stays within `budget_s`, the delay this head has *observed* Ray to take to start a task on a warm worker
  (nothing observed: nothing shares); a handler never observed runs alone (its estimate is half its limit);
* at most `max_size` jobs (`provider.max_jobs_per_task`): a worker lost mid-pack costs each of them a rerun.
Reruns, jobs resuming from a checkpoint and confidential jobs (the TEE gate's own task options) run alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

MAX_PACK = 16


@dataclass(frozen=True)
class Candidate:
    """A job about to be dispatched: its task's shape (GPUs, pool), its expected run, whether it may share."""

    gpus: float
    pool: str | None
    run_s: float
    may_share: bool = True


def packs(candidates: Sequence[Candidate], budget_s: float, spare: Mapping[str | None, int],
          max_size: int = MAX_PACK) -> list[list[int]]:
    """The candidates' indexes grouped into tasks, in their order: each group one Ray task (a single index: a task
    of its own). `spare`: per pool, the warm workers free now — that many of its jobs run alone first; beyond them,
    jobs of one shape fill a pack in turn while its expected run stays within `budget_s`."""
    groups: list[list[int]] = []
    free = dict(spare)
    open_pack: dict[tuple[float, str | None], tuple[list[int], float]] = {}
    for i, c in enumerate(candidates):
        if not c.may_share or c.run_s > budget_s or max_size <= 1 or free.get(c.pool, 0) > 0:
            free[c.pool] = free.get(c.pool, 0) - 1  # it takes one of the free workers
            groups.append([i])
            continue
        shape = (c.gpus, c.pool)
        current = open_pack.get(shape)
        if current is not None:
            members, total = current
            if len(members) < max_size and total + c.run_s <= budget_s:
                members.append(i)
                open_pack[shape] = (members, total + c.run_s)
                continue
        members = [i]
        groups.append(members)
        open_pack[shape] = (members, c.run_s)
    return groups
