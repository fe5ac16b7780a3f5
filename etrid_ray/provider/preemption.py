"""Preemption is not failure: what the head does when a job's task ends without a result.

A spot node gets a notice (or its pod a preStop hook) and is drained, then reclaimed; the jobs on it were
doing nothing wrong. Such a job runs again without spending its retry budget, is journalled and counted as
preempted, and is reported to the chain as a failure only when its deadline can no longer be met. A genuine
crash (a node or worker lost without a drain) still spends one retry of `TASK_MAX_RETRIES`; anything else
Ray raises fails the job at once, as before.

How a preemption is told from a crash, in the order the head learns it:
- the handler left its draining node itself (`Outcome.preempted`, with a checkpoint when it declares one);
- Ray says the node died: `NodeDiedError` names it, and the node was seen draining by the head (its cluster
  view, read every second while jobs run), or the GCS still lists it draining (a task's owner hears of a lost
  node seconds before the GCS's health check declares it dead), or the GCS records it dead after its
  PREEMPTION drain deadline (`AUTOSCALER_DRAIN_PREEMPTED`, Ray's own test for not counting a retry). A node
  killed with no drain at all is a crash: nothing tells it from one.

Everything here is pure: the harvest stage feeds it what it saw and acts on the answer.
"""

from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import dataclass
from typing import Literal

from etrid_ray.manifest import chain_reason

#: what Ray raises when a task was lost with its worker or node: worth running again (the job did nothing wrong)
SYSTEM_LOSSES = frozenset({"NodeDiedError", "WorkerCrashedError", "LocalRayletDiedError", "OutOfMemoryError",
                           "ObjectLostError", "OwnerDiedError"})
CANCELLED = "TaskCancelledError"  # the head cancelled it: its deadline passed
PREEMPTED_NOTE = "preempted"  # how a preemption starts its note in the job's history and the journal
_NODE_ID = re.compile(r"node ID: ([0-9a-f]{56})")

Cause = Literal["preempted", "crashed", "failed"]
Step = Literal["rerun", "retry", "fail"]


@dataclass(frozen=True)
class Lost:
    """A task that ended without an outcome: the type of Ray's error, and the node it ran on where Ray says."""

    error: str
    node_id: str = ""
    message: str = ""

    @classmethod
    def of(cls, err: BaseException) -> Lost:
        message = " ".join(str(err).split())
        match = _NODE_ID.search(message)
        return cls(type(err).__name__, match.group(1) if match else "", message[:300])

    def describe(self) -> str:
        return f"{self.error} on node {self.node_id[:12]}" if self.node_id else self.error


def cause_of(lost: Lost, preempted_nodes: Container[str]) -> Cause:
    """Why the task was lost: its node was preempted, it crashed (worth a charged retry), or neither."""
    if lost.error not in SYSTEM_LOSSES:
        return "failed"
    if lost.node_id and lost.node_id in preempted_nodes:
        return "preempted"
    return "crashed"


def next_step(cause: Cause, *, retries: int, budget: int, now: float, deadline: float,
              needed_s: float) -> tuple[Step, str]:
    """What becomes of a job whose run ended without a result: ("rerun", "") — a preemption, run again free;
    ("retry", "") — a crash with budget left, run again and charged; ("fail", reason) — reported to the chain.
    A preempted job is failed only when `needed_s` (a cold start plus the rest of its run) no longer fits before its
    deadline: telling its consumer now beats a timeout later."""
    if cause == "preempted":
        left = deadline - now
        if needed_s > left:
            return "fail", chain_reason(f"{PREEMPTED_NOTE} too late for its deadline "
                                        f"(needs {needed_s:.0f}s, {max(0.0, left):.0f}s left)")
        return "rerun", ""
    if cause == "crashed" and retries < budget:
        return "retry", ""
    return "fail", ""
