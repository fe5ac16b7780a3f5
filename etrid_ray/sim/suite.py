"""The scenario suite (target E1–E3): every policy on many workloads, so a policy tuned on one cannot hide
that it loses on another.

A scenario is data: a name, a trace factory (a picklable function of no arguments, so worker
processes build their own trace) and the settings that vary — local GPUs as a multiple of the
trace's median concurrent demand, the offered price, the consumers' patience. Everything else is
`SimSettings`' defaults ("the same defaults everywhere", E1).

Why local GPUs as a multiple of the median demand: one rule then sizes a 30,000-job production trace
and a 2,000-job synthetic one alike, and the multiple says what the question is (0.25×: the
provider is tiny, bursting or losing most work is the whole business; 2×: it should hardly ever
burst). The median is of the jobs that fit a node (≤ 8 GPUs: the simulator skips the rest, as
admission would), over the arrival window (`etrid_ray.sim.demand`), rounded to whole 8-GPU nodes, at
least one.

The two suites, `report` and `tune`, have the same shape on disjoint data, so a policy can be tuned
on one and judged on the other:

- **Philly, one window, one axis at a time.** A 3-week window of the shipped trace keeps a scenario
  to a minute or two of CPU for all six policies (the whole trace: about ten; so does patience
  forever, whose queue grows to thousands). `report` uses days 77–98 (12,065 jobs, 11,973 of them
  ≤ 8 GPUs; median demand 236 GPUs, p90/median 1.70 — the whole trace's is 1.92, the closest of the
  second half's 3-week windows); `tune` uses days 14–28 of the first half (7,011 jobs, median 353,
  p90/median 1.86). A window starts on an empty cluster: jobs submitted before
  it are not there, which flatters its first day a little. Around the default (1× median, 1.00
  USD/GPU-h, 1 h patience) one axis moves at a time — capacity 0.25×, 0.5×, 2×; price 0.60, 2.00;
  patience forever, 15 min, 6 h — plus two corners (0.5× at 0.60 USD; 2× at 2.00 USD with 15 min).
  The full cross product (4 × 3 × 4 = 48) would take too long to run on every change.
- **Philly split in time** at its midpoint (`split_in_time`, day 54.4): `report` runs the later half
  (30,486 jobs, median demand 251), `tune` the earlier one (51,761, median 465), both at the
  defaults. Both windows above lie in their own half, so tuning on `tune` never sees a reported job.
- **Capacity shortages** (`etrid_ray.sim.shortage`, issue 15): the Philly window at the defaults while
  the cheapest spot pool (AWS) runs short about once a day for four hours on average; and while every
  spot pool does, with on-demand fallback pools of 4 nodes per cloud, at 4.00 USD/GPU-h (on-demand A100s
  cost 2.74–4.10 USD/GPU-h in the catalog: at the default price they never pay, and the scenario is
  about the fallback). Seeded like everything else; the other scenarios have no shortages.
- **Synthetic families** (`etrid_ray.sim.synth.FAMILIES`) at 0.5× and 1× their median demand, default
  price and patience: seed 1 in `report`, seed 101 in `tune`.

`run_suite` runs `etrid_ray.sim.run.compare` for each scenario — every policy in `POLICY_NAMES` — in
parallel across scenarios (one process each, `record=False`), and condenses each into a
`ScenarioOutcome`; `summarize` says in how many the profit policy was at least every baseline, its
median and worst share of the oracle bound, and where it lost and to whom.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from functools import lru_cache, partial
from typing import Any

from etrid_ray.clouds.registry import cloud, clouds
from etrid_ray.config import ProviderConfig
from etrid_ray.durations import format_duration
from etrid_ray.sim.demand import demand_stats, jobs_up_to, split_in_time, window
from etrid_ray.sim.run import POLICY_NAMES, compare
from etrid_ray.sim.scenario import (
    DEFAULT_PATIENCE_S,
    DEFAULT_PRICE_PER_GPU_HOUR,
    LOCAL_GPUS_PER_NODE,
    SimSettings,
    build_scenario,
)
from etrid_ray.sim.shortage import Shortage
from etrid_ray.sim.synth import FAMILIES, generate
from etrid_ray.sim.trace import Trace, philly_trace

PROFIT = "profit"
BASELINES = ("seed-hpa", "ray-default", "never-burst", "cheapest-burst")
SUITES = ("report", "tune")
DAY_S = 86400.0
PHILLY_WINDOW_DAYS = {"report": (77, 98), "tune": (14, 28)}
SYNTH_SEED = {"report": 1, "tune": 101}
CAPACITIES = (0.25, 0.5, 1.0, 2.0)
PRICES = (0.6, 1.0, 2.0)
PATIENCES: tuple[float | None, ...] = (None, 900.0, 3600.0, 6 * 3600.0)
TIE_USD = 1e-6  # float dust: equal profits are a tie, not a loss


# --- trace factories (module-level and cached: picklable, and built once per worker process) ----------

@lru_cache(maxsize=1)
def _philly() -> Trace:
    return philly_trace()


@lru_cache(maxsize=4)
def philly_window(start_day: float, end_day: float) -> Trace:
    """Jobs of the shipped Philly trace submitted in [start_day, end_day), re-based to start at 0."""
    return window(_philly(), start_day * DAY_S, end_day * DAY_S, f"philly days {start_day:g}–{end_day:g}")


@lru_cache(maxsize=2)
def philly_half(which: str) -> Trace:
    """The earlier ("tune") or later ("report", re-based) half of the shipped Philly trace, split at its midpoint."""
    first, second = split_in_time(_philly(), 0.5)
    return first if which == "tune" else second


@lru_cache(maxsize=32)
def synthetic(family: str, seed: int) -> Trace:
    return generate(family, seed)


# --- scenarios -------------------------------------------------------------------------------------

def median_demand(trace: Trace) -> float:
    """The median concurrent demand of the jobs that fit a node (what local capacity is sized by)."""
    return demand_stats(jobs_up_to(trace, LOCAL_GPUS_PER_NODE)).median


def local_gpus_for(trace: Trace, capacity_x: float) -> int:
    """`capacity_x` × the trace's median demand, rounded to whole 8-GPU nodes, at least one node."""
    nodes = round(capacity_x * median_demand(trace) / LOCAL_GPUS_PER_NODE)
    return LOCAL_GPUS_PER_NODE * max(1, nodes)


def patience_label(patience_s: float | None) -> str:
    """forever, 15m, 1h, 6h: short enough for a scenario's name."""
    if patience_s is None:
        return "forever"
    for unit, label in ((3600, "h"), (60, "m")):
        if patience_s % unit == 0:
            return f"{patience_s / unit:g}{label}"
    return f"{patience_s:g}s"


@dataclass(frozen=True)
class SuiteScenario:
    """One scenario: a trace factory and the settings that differ from the defaults."""

    name: str
    trace: Callable[[], Trace] = field(compare=False)
    capacity_x: float = 1.0  # local GPUs as a multiple of the trace's median demand
    price_per_gpu_hour: float = DEFAULT_PRICE_PER_GPU_HOUR
    patience_s: float | None = DEFAULT_PATIENCE_S
    shortage: Shortage | None = None  # capacity shortages (None: capacity is always there)
    ondemand_max_nodes: int = 0  # on-demand fallback pools per cloud (0: none, the config's default)

    def settings(self, trace: Trace) -> SimSettings:
        base = None
        if self.ondemand_max_nodes:
            base = ProviderConfig(**{cloud.flat_key("ondemand_max_nodes"): self.ondemand_max_nodes
                                     for cloud in clouds() if cloud.is_cloud})
        return SimSettings(local_gpus=local_gpus_for(trace, self.capacity_x),
                           price_per_gpu_hour=self.price_per_gpu_hour, patience_s=self.patience_s, record=False,
                           shortage=self.shortage, base_config=base)


def _scenario(label: str, factory: Callable[[], Trace], capacity_x: float = 1.0,
              price: float = DEFAULT_PRICE_PER_GPU_HOUR,
              patience_s: float | None = DEFAULT_PATIENCE_S) -> SuiteScenario:
    name = f"{label}/{capacity_x:g}x/{price:.2f}usd/{patience_label(patience_s)}"
    return SuiteScenario(name, factory, capacity_x, price, patience_s)


def philly_axes(label: str, factory: Callable[[], Trace]) -> list[SuiteScenario]:
    """The default, one axis at a time around it, and two corners."""
    default_x, default_price, default_patience = 1.0, DEFAULT_PRICE_PER_GPU_HOUR, DEFAULT_PATIENCE_S
    out = [_scenario(label, factory)]
    out += [_scenario(label, factory, capacity_x=x) for x in CAPACITIES if x != default_x]
    out += [_scenario(label, factory, price=p) for p in PRICES if p != default_price]
    out += [_scenario(label, factory, patience_s=w) for w in PATIENCES if w != default_patience]
    out += [_scenario(label, factory, 0.5, 0.6), _scenario(label, factory, 2.0, 2.0, 900.0)]
    return out


SHORTAGE = Shortage(rate_per_day=1.0, mean_s=4 * 3600.0)  # per pool: about one a day, four hours on average
SHORTAGE_PRICE = 4.0  # USD/GPU-h at which on-demand A100s pay (the catalog's: 2.74–4.10)
ONDEMAND_NODES = 4


def shortage_scenarios(label: str, factory: Callable[[], Trace]) -> list[SuiteScenario]:
    """The cheapest spot pool short at the defaults; every spot pool short with on-demand fallbacks that pay."""
    base = _scenario(label, factory)
    aws = cloud("aws").pool_name
    spot = _scenario(label, factory, price=SHORTAGE_PRICE)
    return [replace(base, name=f"{base.name}/short-{aws}", shortage=replace(SHORTAGE, pools=(aws,))),
            replace(spot, name=f"{spot.name}/short-spot+ondemand", shortage=SHORTAGE,
                    ondemand_max_nodes=ONDEMAND_NODES)]


def suite(which: str = "report") -> tuple[SuiteScenario, ...]:
    """The `report` or `tune` suite, heaviest scenario first (so a process pool finishes sooner)."""
    if which not in SUITES:
        raise ValueError(f"unknown suite {which!r} (known: {', '.join(SUITES)})")
    half = "philly-late-half" if which == "report" else "philly-early-half"
    start, end = PHILLY_WINDOW_DAYS[which]
    out = [_scenario(half, partial(philly_half, which))]
    out += philly_axes(f"philly-d{start}-{end}", partial(philly_window, start, end))
    out += shortage_scenarios(f"philly-d{start}-{end}", partial(philly_window, start, end))
    seed = SYNTH_SEED[which]
    for name in FAMILIES:
        out += [_scenario(f"{name}.s{seed}", partial(synthetic, name, seed), capacity_x=x) for x in (0.5, 1.0)]
    return tuple(sorted(out, key=_longest_patience_first))


def _longest_patience_first(s: SuiteScenario) -> float:
    """The longer jobs may wait, the longer the queue every policy plans over: patience forever took 10 min of
    the report suite's 16 (the rest: 1–3 min each for Philly, seconds for synthetic traces). Starting those
    first keeps the pool from ending on one long scenario. Stable: equal patience keeps the listed order."""
    return -math.inf if s.patience_s is None else -s.patience_s


def select(scenarios: Iterable[SuiteScenario], substring: str | None) -> tuple[SuiteScenario, ...]:
    return tuple(s for s in scenarios if not substring or substring in s.name)


# --- outcomes --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PolicyFigures:
    net_profit_usd: float
    completed: int
    lost: int
    lost_while_profitable: int
    wait_p95_s: float  # every servable job (a lost one counts the patience it waited)
    served_wait_p95_s: float  # jobs that started
    cpu_s: float


@dataclass(frozen=True)
class ScenarioOutcome:
    """One scenario's figures, condensed from `compare` (small enough to send back from a worker)."""

    name: str
    source: str
    jobs: int
    median_demand_gpus: float
    local_gpus: int
    capacity_x: float
    price_per_gpu_hour: float
    patience_s: float | None
    policies: Mapping[str, PolicyFigures]
    oracle_usd: float | None
    wall_s: float

    @property
    def ours(self) -> PolicyFigures:
        return self.policies[PROFIT]

    @property
    def baselines(self) -> dict[str, PolicyFigures]:
        return {b: self.policies[b] for b in BASELINES if b in self.policies}

    @property
    def best_baseline(self) -> str | None:
        base = self.baselines
        return max(base, key=lambda b: base[b].net_profit_usd) if base else None

    @property
    def margin_usd(self) -> float | None:
        """The profit policy's net profit less the best baseline's (negative: we lose)."""
        best = self.best_baseline
        return None if best is None else self.ours.net_profit_usd - self.policies[best].net_profit_usd

    @property
    def margin_pct(self) -> float | None:
        best, margin = self.best_baseline, self.margin_usd
        if best is None or margin is None or self.policies[best].net_profit_usd == 0:
            return None
        return 100 * margin / abs(self.policies[best].net_profit_usd)

    @property
    def beaten_by(self) -> tuple[tuple[str, float], ...]:
        """Baselines that made more than the profit policy, and by how much (USD), most first."""
        ours = self.ours.net_profit_usd
        lost = [(b, f.net_profit_usd - ours) for b, f in self.baselines.items() if f.net_profit_usd > ours + TIE_USD]
        return tuple(sorted(lost, key=lambda x: -x[1]))

    @property
    def wins(self) -> bool:
        """E1 in this scenario: profit ≥ every baseline."""
        return not self.beaten_by

    @property
    def share_of_bound(self) -> float | None:
        """E2: the profit policy's net profit over the oracle bound (None when the bound is not positive)."""
        if self.oracle_usd is None or self.oracle_usd <= 0:
            return None
        return self.ours.net_profit_usd / self.oracle_usd

    @property
    def service_ok(self) -> bool | None:
        """E3: p95 wait ≤ seed-hpa's and no job lost while a node would have paid for it (None without seed-hpa)."""
        hpa = self.policies.get("seed-hpa")
        if hpa is None:
            return None
        return self.ours.wait_p95_s <= hpa.wait_p95_s and self.ours.lost_while_profitable == 0

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "jobs": self.jobs,
                "median_demand_gpus": self.median_demand_gpus, "local_gpus": self.local_gpus,
                "capacity_x": self.capacity_x, "price_usd_per_gpu_hour": self.price_per_gpu_hour,
                "patience_s": self.patience_s, "oracle_usd": _round(self.oracle_usd),
                "policies": {name: {"net_profit_usd": round(f.net_profit_usd, 2), "completed": f.completed,
                                    "lost": f.lost, "lost_while_profitable": f.lost_while_profitable,
                                    "wait_p95_s": round(f.wait_p95_s, 1),
                                    "served_wait_p95_s": round(f.served_wait_p95_s, 1), "cpu_s": round(f.cpu_s, 2)}
                             for name, f in self.policies.items()},
                "best_baseline": self.best_baseline, "margin_usd": _round(self.margin_usd),
                "margin_pct": _round(self.margin_pct), "wins": self.wins,
                "beaten_by": [{"baseline": b, "by_usd": round(v, 2)} for b, v in self.beaten_by],
                "share_of_bound": _round(self.share_of_bound, 4), "service_ok": self.service_ok,
                "wall_s": round(self.wall_s, 2)}


def _round(x: float | None, digits: int = 2) -> float | None:
    return None if x is None else round(x, digits)


def run_scenario(scenario: SuiteScenario, policies: Sequence[str] = POLICY_NAMES) -> ScenarioOutcome:
    """Build the trace, run every policy (and the oracle) through `compare`, condense."""
    if PROFIT not in policies:
        raise ValueError(f"the suite compares the {PROFIT!r} policy: include it")
    t0 = time.perf_counter()
    trace = scenario.trace()
    settings = scenario.settings(trace)
    cmp_ = compare(trace, build_scenario(settings), policies)
    figures = {r.policy: PolicyFigures(net_profit_usd=r.net_profit_usd, completed=r.jobs["completed"],
                                       lost=r.jobs["lost"], lost_while_profitable=r.lost_while_profitable,
                                       wait_p95_s=r.wait_s["p95"], served_wait_p95_s=r.served_wait_s["p95"],
                                       cpu_s=cmp_.cpu_s[r.policy])
               for r in cmp_.results}
    return ScenarioOutcome(name=scenario.name, source=trace.source, jobs=len(trace),
                           median_demand_gpus=median_demand(trace), local_gpus=settings.local_gpus,
                           capacity_x=scenario.capacity_x, price_per_gpu_hour=scenario.price_per_gpu_hour,
                           patience_s=scenario.patience_s, policies=figures,
                           oracle_usd=cmp_.oracle.net_profit_usd if cmp_.oracle is not None else None,
                           wall_s=time.perf_counter() - t0)


# --- the summary -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SuiteSummary:
    scenarios: int
    wins: int  # scenarios where profit ≥ every baseline (E1)
    median_share: float | None  # of the oracle bound, over scenarios with a positive bound (E2)
    worst_share: float | None
    worst_share_scenario: str | None
    losses: tuple[tuple[str, tuple[tuple[str, float], ...]], ...]  # (scenario, ((baseline, by USD), …))
    service_ok: int  # scenarios meeting E3
    service_checked: int

    def to_json(self) -> dict[str, Any]:
        return {"scenarios": self.scenarios, "wins": self.wins, "median_share_of_bound": _round(self.median_share, 4),
                "worst_share_of_bound": _round(self.worst_share, 4), "worst_share_scenario": self.worst_share_scenario,
                "losses": [{"scenario": s, "beaten_by": [{"baseline": b, "by_usd": round(v, 2)} for b, v in by]}
                           for s, by in self.losses],
                "service_ok": self.service_ok, "service_checked": self.service_checked}


def summarize(outcomes: Sequence[ScenarioOutcome]) -> SuiteSummary:
    shares = [(o.share_of_bound, o.name) for o in outcomes if o.share_of_bound is not None]
    worst = min(shares) if shares else None
    checked = [o.service_ok for o in outcomes if o.service_ok is not None]
    return SuiteSummary(scenarios=len(outcomes), wins=sum(o.wins for o in outcomes),
                        median_share=statistics.median(s for s, _ in shares) if shares else None,
                        worst_share=worst[0] if worst else None, worst_share_scenario=worst[1] if worst else None,
                        losses=tuple((o.name, o.beaten_by) for o in outcomes if not o.wins),
                        service_ok=sum(checked), service_checked=len(checked))


@dataclass(frozen=True)
class SuiteRun:
    outcomes: tuple[ScenarioOutcome, ...]
    summary: SuiteSummary
    wall_s: float
    workers: int

    def to_json(self) -> dict[str, Any]:
        return {"wall_s": round(self.wall_s, 1), "workers": self.workers, "summary": self.summary.to_json(),
                "scenarios": [o.to_json() for o in self.outcomes]}


def run_suite(scenarios: Sequence[SuiteScenario], policies: Sequence[str] = POLICY_NAMES,
              workers: int | None = None, progress: Callable[[ScenarioOutcome], None] | None = None) -> SuiteRun:
    """Every scenario, in parallel across `workers` processes (default: one per CPU; 1 runs them here, in
    order). Outcomes come back in the suite's order whatever order they finish in."""
    t0 = time.perf_counter()
    workers = max(1, min(workers or os.cpu_count() or 1, len(scenarios) or 1))
    outcomes: list[ScenarioOutcome | None] = [None] * len(scenarios)
    if workers == 1:
        for i, sc in enumerate(scenarios):
            outcomes[i] = run_scenario(sc, policies)
            if progress is not None:
                progress(outcomes[i])
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(run_scenario, sc, tuple(policies)): i for i, sc in enumerate(scenarios)}
            for fut in as_completed(futures):
                outcome = fut.result()
                outcomes[futures[fut]] = outcome
                if progress is not None:
                    progress(outcome)
    done = tuple(o for o in outcomes if o is not None)
    return SuiteRun(done, summarize(done), time.perf_counter() - t0, workers)


# --- printing --------------------------------------------------------------------------------------

def _usd(x: float | None) -> str:
    return "—" if x is None else f"{x:,.0f}"


def _pct(x: float | None, signed: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:+.1f}%" if signed else f"{x:.1%}"


def _wait(s: float) -> str:
    return format_duration(s, days=False)


def markdown_table(outcomes: Sequence[ScenarioOutcome]) -> str:
    """One row per scenario: every policy's net profit, our margin over the best baseline, our share of the
    bound, and our service (lost jobs, lost while a node would have paid, p95 wait against seed-hpa's)."""
    names = [p for p in (PROFIT, *BASELINES) if any(p in o.policies for o in outcomes)]
    cols = (["scenario", "jobs", "local GPUs"] + [f"{p} $" for p in names] + ["oracle $", "margin $", "margin",
            "best baseline", "of bound", "lost", "lost while profitable", "p95 wait (seed-hpa)"])
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(" --- " for _ in cols) + "|"]
    for o in outcomes:
        hpa = o.policies.get("seed-hpa")
        mark = "" if o.wins else " ✗"
        row = ([o.name + mark, f"{o.jobs:,}", f"{o.local_gpus} ({o.local_gpus / o.median_demand_gpus:.2f}×)"
                if o.median_demand_gpus else str(o.local_gpus)]
               + [_usd(o.policies[p].net_profit_usd) if p in o.policies else "—" for p in names]
               + [_usd(o.oracle_usd), _usd(o.margin_usd), _pct(o.margin_pct, signed=True), o.best_baseline or "—",
                  _pct(o.share_of_bound), f"{o.ours.lost:,}", f"{o.ours.lost_while_profitable:,}",
                  _wait(o.ours.wait_p95_s) + (f" ({_wait(hpa.wait_p95_s)})" if hpa else "")])
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def summary_lines(summary: SuiteSummary) -> list[str]:
    out = [f"E1 profit ≥ every baseline: {summary.wins} of {summary.scenarios} scenarios"]
    if summary.median_share is not None:
        out.append(f"E2 share of the oracle bound: median {summary.median_share:.1%}, worst {summary.worst_share:.1%} "
                   f"({summary.worst_share_scenario})")
    if summary.service_checked:
        out.append(f"E3 p95 wait ≤ seed-hpa's and none lost while a node would have paid: {summary.service_ok} of "
                   f"{summary.service_checked}")
    for name, by in summary.losses:
        out.append(f"  lost {name} to " + ", ".join(f"{b} (by {v:,.0f} USD)" for b, v in by))
    return out
