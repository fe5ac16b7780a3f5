"""Running several policies (and the oracle) on one trace and scenario: what `etrid-ray simulate` and
`bench/economics.py` share."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from etrid_ray.scaling import POLICIES
from etrid_ray.sim.engine import SimResult, Simulator
from etrid_ray.sim.oracle import OracleBound, oracle_bound
from etrid_ray.sim.scenario import Scenario
from etrid_ray.sim.trace import Trace

ORACLE = "oracle"
POLICY_NAMES = (*POLICIES, ORACLE)  # every registered policy (`etrid_ray.scaling.POLICIES`), then the bound


@dataclass
class Comparison:
    scenario: Scenario
    results: list[SimResult]
    oracle: OracleBound | None
    cpu_s: dict[str, float]  # process CPU seconds per policy (one core)

    def result(self, name: str) -> SimResult:
        return next(r for r in self.results if r.policy == name)


def compare(trace: Trace, scenario: Scenario, policies: Sequence[str] = POLICY_NAMES,
            progress: Callable[[str], None] | None = None) -> Comparison:
    unknown = [p for p in policies if p != ORACLE and p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown policy {', '.join(unknown)} (known: {', '.join(POLICY_NAMES)})")
    results: list[SimResult] = []
    cpu: dict[str, float] = {}
    bound = None
    for name in dict.fromkeys(policies):
        c0 = time.process_time()
        if name == ORACLE:
            bound = oracle_bound(trace, scenario)
        else:
            results.append(Simulator(trace, name, scenario).run())
        cpu[name] = time.process_time() - c0
        if progress is not None:
            progress(f"{name}: {cpu[name]:.1f} s CPU")
    return Comparison(scenario, results, bound, cpu)
