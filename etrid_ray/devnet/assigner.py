"""The devnet's built-in matcher (`etrid-ray devnet --assigner`): which pending job goes to which GPU.

Why: upstream's JobMarketplace has no `claim_job`; a job reaches a provider only when root calls `assign_job`,
and the off-chain matching worker upstream documents does not exist yet. The devnet stands in for it, so a
provider can be proven against upstream's shape. This module is the decision alone (state in, assignments out);
the pallet reads the state and dispatches each decision as root `assign_job`.

The rule, applied at the start of every block:

1. jobs in priority order — Premium, then Standard, then Economy — and within a tier in queue order (the order
   of `PendingJobs`, i.e. first submitted first);
2. each job to the Active GPU with the fewest jobs Processing on it, ties to the lowest `gpu_id`;
3. a GPU takes at most `slots` Processing jobs at once (`--assigner-slots`), and never more than its `GpuJobs`
   bound has room for; when no GPU has room the rest of the queue waits for the next block.

Nothing here knows the providers' prices or hardware beyond "Active": like upstream's `assign_job`, the
matcher does not check a job's fit, and a provider that cannot serve a job reports it failed (refunding it).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PRIORITY_RANK = {"Premium": 0, "Standard": 1, "Economy": 2}
DEFAULT_SLOTS = 4


@dataclass(frozen=True)
class GpuLoad:
    """One Active GPU as the matcher sees it."""

    gpu_id: int
    processing: int  # jobs Processing on it now
    room: int  # entries its `GpuJobs` can still take (upstream never removes finished jobs from it)


def match_jobs(queue: Sequence[tuple[int, str]], gpus: Iterable[GpuLoad], slots: int) -> list[tuple[int, int]]:
    """`(job_id, gpu_id)` assignments for `queue` (`(job_id, priority)` in `PendingJobs` order) by the rule above."""
    if slots <= 0:
        return []
    heap = [(g.processing, g.gpu_id, min(slots - g.processing, g.room)) for g in gpus]
    heap = [h for h in heap if h[2] > 0]
    heapq.heapify(heap)
    order = sorted(range(len(queue)), key=lambda i: (PRIORITY_RANK.get(queue[i][1], 1), i))
    out: list[tuple[int, int]] = []
    for i in order:
        if not heap:
            break
        busy, gpu_id, free = heapq.heappop(heap)
        out.append((queue[i][0], gpu_id))
        if free > 1:
            heapq.heappush(heap, (busy + 1, gpu_id, free - 1))
    return out
