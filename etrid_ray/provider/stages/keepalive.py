"""Keepalive: heartbeats for our GPUs, and utilization/earnings telemetry, on chain at their intervals."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from etrid_ray.provider.gpu_info import GpuFacts, refresh
from etrid_ray.provider.job import JobBook
from etrid_ray.provider.stats import Stats


class Keepalive:
    def __init__(self, chain: object, book: JobBook, stats: Stats, facts: GpuFacts,
                 gpu_ids: Callable[[], Sequence[int]],
                 heartbeat_s: float, telemetry_s: float, max_inflight: int, clock: Callable[[], float]) -> None:
        self.chain = chain
        self.book = book
        self.stats = stats
        self.facts = facts
        self.gpu_ids = gpu_ids
        self.heartbeat_s = heartbeat_s
        self.telemetry_s = telemetry_s
        self.max_inflight = max_inflight
        self.clock = clock
        self.last_heartbeat = 0.0
        self.last_telemetry = 0.0

    def tick(self) -> None:
        gpus = list(self.gpu_ids())
        if not gpus:
            return
        now = self.clock()
        if now - self.last_heartbeat >= self.heartbeat_s:
            self.last_heartbeat = now
            self.chain.heartbeat(gpus)  # type: ignore[attr-defined]
        if now - self.last_telemetry >= self.telemetry_s:
            self.last_telemetry = now
            self.chain.telemetry(self._readings(gpus))  # type: ignore[attr-defined]

    def _readings(self, gpus: list[int]) -> list[tuple[int, int, int, int]]:
        """(gpu, utilization in basis points, jobs completed, earnings) per GPU: the GPU library's current
        utilization (NVML or AMD SMI, read now, not at the head's start) when the head reads real GPUs, else how
        full each GPU's share of our in-flight jobs is."""
        if self.facts.measured:
            utils = refresh(self.facts).utilization_pct
            busy = {g: (utils[i] / 100 if i < len(utils) else 0.0) for i, g in enumerate(gpus)}
        else:
            on_gpu = self.book.on_gpu
            busy = {g: min(1.0, on_gpu[g] / max(1, self.max_inflight) * 4) for g in gpus}
        share = self.stats.earnings_planck // len(gpus)
        done = self.stats.completed // len(gpus)
        return [(g, int(busy[g] * 10_000), done, share) for g in gpus]
