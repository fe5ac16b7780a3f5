"""What the simulator's tests share: hand-written traces and the settings they run under."""

from __future__ import annotations

from etrid_ray.sim import SimJob, SimSettings

AWS_H = 2.4655  # USD per p4d node-hour in the shipped catalog


def jobs(*specs: tuple[float, float, float]) -> list[SimJob]:
    """A trace from (submit s, duration s, GPUs) triples, ids in order."""
    return [SimJob(i, t, d, g) for i, (t, d, g) in enumerate(specs)]


def settings(**kw) -> SimSettings:
    """Settings without the randomness and the clock of a market: no spot interruptions, jobs wait forever
    (each test sets what it is about)."""
    kw.setdefault("interruptions", False)
    kw.setdefault("patience_s", None)
    return SimSettings(**kw)
