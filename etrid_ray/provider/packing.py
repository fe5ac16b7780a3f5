"""Which claimed jobs share one Ray task: short jobs of the same shape, run one after another.

Why: every Ray task costs the head a fixed amount of work of its own — the Python `.remote()` path, the core
worker's lease and push, the reply's deserialization and callback — about 0.3–0.4 ms of head CPU here whatever
the job does (architecture.md: Ray facts). For a job that runs for a millisecond that fixed cost is most of the
head's work per job (target P1: ≤ 1 ms of head CPU per job). Several such jobs in one task pay it once.

When: only jobs whose run this head has observed to be short. A job waits in its pack for the jobs before it,
so a pack's expected run (the sum of its jobs' learnt run times) is kept within `budget_s`, which the head sets
to what Ray takes to start a task on a warm worker — a job in a pack waits no longer than it would have for a
task of its own. A handler never observed runs alone (its estimate is its whole limit); so does a rerun, a job
resuming from a checkpoint, and a confidential job (its task carries the TEE gate's own options). Packs are at
most `max_size` jobs: a worker lost mid-pack costs each of them a rerun.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

MAX_PACK = 16


@dataclass(frozen=True)
class Candidate:
    """A job about to be dispatched: its Ray task shape, its expected run, and whether it may share a task."""

    shape: Hashable  # jobs share a task only with jobs of the same shape (GPUs, pool)
    run_s: float
    may_share: bool = True


def packs(candidates: Sequence[Candidate], budget_s: float, max_size: int = MAX_PACK) -> list[list[int]]:
    """The candidates' indexes grouped into tasks, in their order: each group one Ray task (a single index: a task
    of its own). Jobs of a shape fill a pack in turn while its expected run stays within `budget_s`."""
    groups: list[list[int]] = []
    open_pack: dict[Hashable, tuple[list[int], float]] = {}
    for i, c in enumerate(candidates):
        if not c.may_share or c.run_s > budget_s or max_size <= 1:
            groups.append([i])
            continue
        current = open_pack.get(c.shape)
        if current is not None:
            members, total = current
            if len(members) < max_size and total + c.run_s <= budget_s:
                members.append(i)
                open_pack[c.shape] = (members, total + c.run_s)
                continue
        members = [i]
        groups.append(members)
        open_pack[c.shape] = (members, c.run_s)
    return groups
