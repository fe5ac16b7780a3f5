"""What a simulation run prints and writes: a table, JSON per policy, and PNG plots.

Plots use matplotlib's Agg backend (files only, no display): queue depth, nodes per pool and
cumulative profit over time, one line per policy (nodes: one panel per policy).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from etrid_ray.durations import format_duration
from etrid_ray.sim.engine import SimResult
from etrid_ray.sim.oracle import OracleBound
from etrid_ray.sim.scenario import Scenario

COLUMNS = ("policy", "completed", "lost", "revenue $", "cloud $", "power $", "net profit $", "vs oracle",
           "wait p50", "p95", "p99", "p95 served", "util local", "util cloud", "launches", "interrupts")


def _dur(s: float) -> str:
    return format_duration(s, days=False)


def rows(results: Sequence[SimResult], oracle: OracleBound | None) -> list[list[str]]:
    out = []
    for r in results:
        vs = f"{r.net_profit_usd / oracle.net_profit_usd:.1%}" if oracle and oracle.net_profit_usd > 0 else "—"
        out.append([r.policy, f"{r.jobs['completed']:,}", f"{r.jobs['lost']:,}", f"{r.revenue_usd:,.0f}",
                    f"{r.cloud_cost_usd:,.0f}", f"{r.local_power_usd:,.0f}", f"{r.net_profit_usd:,.0f}", vs,
                    _dur(r.wait_s["p50"]), _dur(r.wait_s["p95"]), _dur(r.wait_s["p99"]), _dur(r.served_wait_s["p95"]),
                    f"{r.utilization['local']:.0%}", f"{r.utilization['cloud']:.0%}",
                    f"{sum(r.node_launches.values()):,}", f"{r.interruptions:,}"])
    if oracle is not None:
        out.append(["oracle (bound)", "—", "—", f"{oracle.revenue_usd:,.0f}", f"{oracle.cloud_cost_usd:,.0f}",
                    f"{oracle.local_power_usd:,.0f}", f"{oracle.net_profit_usd:,.0f}", "100.0%",
                    "—", "—", "—", "—", "—", "—", "—", "—"])
    return out


def markdown_table(results: Sequence[SimResult], oracle: OracleBound | None) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(" --- " for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows(results, oracle)]
    return "\n".join(lines)


def print_table(results: Sequence[SimResult], oracle: OracleBound | None, title: str = "") -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title or None)
    for c in COLUMNS:
        table.add_column(c, justify="left" if c == "policy" else "right")
    for r in rows(results, oracle):
        table.add_row(*r)
    Console(width=200).print(table)


def scenario_json(sc: Scenario) -> dict[str, Any]:
    s = sc.settings
    return {"local_gpus": sc.local_gpus, "price_usd_per_gpu_hour": s.price_per_gpu_hour,
            "net_usd_per_gpu_hour": sc.net_usd_per_gpu_hour, "edsc_usd": s.edsc_usd,
            "price_edsc_per_gpu_hour": s.price_per_gpu_hour / s.edsc_usd, "patience_s": s.patience_s,
            "seed": s.seed, "interruptions": s.interruptions, "claim_order": sc.scaling.claim_order,
            "declared_slack": s.declared_slack,
            "pools": [{"name": p.name, "kind": p.kind, "gpus_per_node": p.gpus_per_node, "min_nodes": p.min_nodes,
                       "max_nodes": p.max_nodes, "startup_s": p.startup_s,
                       "usd_per_node_hour": sc.prices[p.name].usd_per_node_hour if p.name in sc.prices else None,
                       "usd_per_gpu_hour": (sc.prices[p.name].usd_per_gpu_hour if p.name in sc.prices
                                            else (None if p.is_cloud else p.local_cost_per_gpu_hour()))}
                      for p in sc.pools]}


def write_json(out: Path, sc: Scenario, results: Sequence[SimResult], oracle: OracleBound | None,
               extra: dict[str, Any] | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for r in results:
        path = out / f"{r.policy}.json"
        path.write_text(json.dumps({"scenario": scenario_json(sc), **r.to_json()}, indent=2) + "\n")
        written.append(path)
    summary: dict[str, Any] = {"scenario": scenario_json(sc), "policies": [r.to_json() for r in results]}
    if oracle is not None:
        summary["oracle"] = oracle.to_json()
        (out / "oracle.json").write_text(json.dumps(oracle.to_json(), indent=2) + "\n")
        written.append(out / "oracle.json")
    summary.update(extra or {})
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    written.append(out / "summary.json")
    return written


def _days(ts: Sequence[float]) -> list[float]:
    return [t / 86400 for t in ts]


def plot(out: Path, results: Sequence[SimResult], oracle: OracleBound | None = None) -> list[Path]:
    """queue_depth.png, cumulative_profit.png and nodes_per_pool.png (one panel per policy)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(out / name)

    recorded = [r for r in results if r.series.get("t")]
    if not recorded:
        return written
    fig, ax = plt.subplots(figsize=(10, 4))
    for r in recorded:
        ax.step(_days(r.series["t"]), r.series["queue"], where="post", label=r.policy, linewidth=0.8)
    ax.set(xlabel="day of trace", ylabel="queued jobs", title="Queue depth")
    ax.legend(fontsize=8)
    save(fig, "queue_depth.png")

    fig, ax = plt.subplots(figsize=(10, 4))
    for r in recorded:
        ax.plot(_days(r.series["t"]), [p / 1000 for p in r.series["profit"]], label=r.policy, linewidth=1.2)
    if oracle is not None:
        ax.axhline(oracle.net_profit_usd / 1000, color="black", linestyle=":", linewidth=1,
                   label="oracle bound (end)")
    ax.set(xlabel="day of trace", ylabel="thousand USD", title="Cumulative net profit")
    ax.legend(fontsize=8)
    save(fig, "cumulative_profit.png")

    fig, axes = plt.subplots(len(recorded), 1, figsize=(10, 1.6 * len(recorded) + 0.6), sharex=True, squeeze=False)
    for ax, r in zip(axes[:, 0], recorded, strict=True):
        days = _days(r.series["t"])
        for name, counts in r.series["nodes"].items():
            if any(counts) and not name.startswith("local"):
                ax.step(days, counts, where="post", label=name, linewidth=0.8)
        ax.set_ylabel(r.policy, fontsize=8)
        if ax.get_lines():
            ax.legend(fontsize=6, loc="upper right")
    axes[0, 0].set_title("Cloud nodes per pool (alive + starting)")
    axes[-1, 0].set_xlabel("day of trace")
    save(fig, "nodes_per_pool.png")
    return written
