"""The allow-list of workloads and the chain ModelTypes each one serves."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ALL_MODEL_TYPES = ("LLM", "ImageGen", "ImageRecognition", "AudioProcessing", "VideoProcessing", "Custom")


class UnknownHandler(KeyError):
    pass


def number_arg(args: dict[str, Any], name: str, default: float, *, integer: bool = False) -> float:
    """`args[name]` as a number, or a ValueError that names the argument: the message goes on chain as the job's
    failure reason, and `could not convert string to float: '…'` would not tell the consumer which one."""
    value = args.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, not {type(value).__name__}")
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be a finite number")
    if integer:
        if not float(value).is_integer():
            raise ValueError(f"{name} must be a whole number")
        return int(value)
    return float(value)


def _never(remaining_s: float | None = None) -> bool:
    return False


class Preempted(Exception):  # noqa: N818 - not an error: the handler's answer to a preemption notice
    """Raised by a handler that declares `checkpoints` when `ctx.preempting(…)` says so: `progress` (JSON-able)
    is saved to the blob store and handed back as `ctx.resumed` to the run that continues the job elsewhere;
    `remaining_s`, when the handler knows it, is what that run still needs (the head checks it against the
    job's deadline before running it again)."""

    def __init__(self, progress: dict[str, Any], remaining_s: float | None = None) -> None:
        super().__init__(f"preempted with {remaining_s if remaining_s is not None else 'unknown'}s to go")
        self.progress = progress
        self.remaining_s = remaining_s


@dataclass
class WorkloadContext:
    """What a handler sees besides its args: verified input blobs, the device it may use and, for a handler that
    checkpoints, whether to leave its node (`preempting(remaining_s)`: the node is being preempted and the rest
    of the work, when the handler can say how long it takes, would not finish before the node goes; cheap to
    call often) and the progress an earlier, preempted run saved (`resumed`, None on a first run)."""

    inputs: dict[str, bytes] = field(default_factory=dict)
    device: str = "cpu"
    gpu_ids: list[str] = field(default_factory=list)
    timeout_s: float | None = None
    preempting: Callable[..., bool] = _never
    resumed: dict[str, Any] | None = None


@dataclass(frozen=True)
class Workload:
    name: str
    fn: Callable[[dict[str, Any], WorkloadContext], Any]
    model_types: tuple[str, ...]
    description: str
    # the run time a job's args declare (`sleep`'s seconds), or None: the head learns how far to believe it
    declared_s: Callable[[dict[str, Any]], float | None] | None = None
    # the checkpoint hook: the handler polls `ctx.preempting(…)`, raises `Preempted(progress)` on a notice and
    # resumes from `ctx.resumed`. Only such handlers are told of a drain: one that cannot resume is better off
    # running on (it may finish before the node goes), so its task never asks Ray about its node.
    checkpoints: bool = False


def declared_seconds(workload: Workload, args: dict[str, Any]) -> float | None:
    """What the job's args say it will take, or None when its handler declares nothing or the args are bad."""
    if workload.declared_s is None:
        return None
    try:
        seconds = workload.declared_s(args)
    except (TypeError, ValueError):
        return None
    return seconds if seconds is not None and seconds >= 0 else None


def _load() -> dict[str, Workload]:
    # the workload modules import this one (WorkloadContext, number_arg): they load once its names exist
    from etrid_ray.workloads import basic, embedding, matmul

    items = [
        Workload("echo", basic.echo, ALL_MODEL_TYPES, "returns its payload or input (scheduling tests)"),
        Workload("sleep", basic.sleep, ALL_MODEL_TYPES, "sleeps for args.seconds (scheduling tests)",
                 declared_s=lambda args: number_arg(args, "seconds", 1.0), checkpoints=True),
        Workload("matmul", matmul.run, ALL_MODEL_TYPES, "GEMM benchmark: FLOP/s and a checksum", checkpoints=True),
        Workload("embedding", embedding.run, ("LLM", "Custom"), "sentence embeddings (all-MiniLM-L6-v2)"),
    ]
    return {w.name: w for w in items}


REGISTRY: dict[str, Workload] = _load()


def get_workload(name: str) -> Workload:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownHandler(name) from None
