"""Break-even prices per GPU-hour for each pool: the seed's revenue projection, fixed.

The seed compared the revenue of *one GPU* (price per GPU-second × 3600) with the hourly cost of a
whole *instance* (8 GPUs on p4d), so it called a burst unprofitable at 8× the price that pays,
and it left out what a node costs besides the work: its startup and the idle tail before the
autoscaler removes it (and, for spot, the work re-run after an interruption). Here every figure
is per GPU-hour, gross (what a consumer must offer, before the chain's 5 % fee), for a node kept
busy for a given span with all its GPUs — and for one running a single 1-GPU job.
"""

from __future__ import annotations

from dataclasses import dataclass

from etrid_ray.scaling.placement import break_even_usd_per_gpu_hour, effective_usd_per_gpu_hour
from etrid_ray.scaling.state import PLATFORM_FEE_BPS
from etrid_ray.sim.scenario import Scenario
from etrid_ray.units import PLANCK_PER_EDSC

SPANS_H = (1.0, 8.0, 24.0)
FEE = PLATFORM_FEE_BPS / 10_000


@dataclass(frozen=True)
class BreakEven:
    pool: str
    kind: str
    usd_per_node_hour: float | None
    gpus_per_node: int
    usd_per_gpu_hour: float | None  # spot (cloud) or electricity (local), per busy GPU-hour
    effective_usd_per_gpu_hour: float | None  # with the spot interruption premium
    packed: dict[float, float]  # busy span (h) → gross USD per GPU-hour at break-even, node fully packed
    single_gpu: dict[float, float]  # the same for a node running one 1-GPU job
    seed_verdict_usd: float | None  # the seed's break-even: the instance's hourly cost per GPU-hour

    def edsc(self, usd: float, edsc_usd: float) -> float:
        return usd / edsc_usd


def gross(net_usd: float) -> float:
    """What a consumer must offer for the provider to keep `net_usd` after the chain's fee."""
    return net_usd / (1 - FEE)


def break_evens(sc: Scenario) -> list[BreakEven]:
    out = []
    for p in sc.pools:
        if not p.is_cloud:
            c = p.local_cost_per_gpu_hour()
            out.append(BreakEven(p.name, p.kind, None, p.gpus_per_node, c, c, {h: gross(c) for h in SPANS_H},
                                 {h: gross(c) for h in SPANS_H}, None))
            continue
        q = sc.prices.get(p.name)
        if q is None:
            out.append(BreakEven(p.name, p.kind, None, p.gpus_per_node, None, None, {}, {}, None))
            continue
        packed = {h: gross(break_even_usd_per_gpu_hour(p, q, h * 3600, sc.scaling)) for h in SPANS_H}
        single = {h: v * p.gpus_per_node for h, v in packed.items()}
        out.append(BreakEven(p.name, p.kind, q.usd_per_node_hour, p.gpus_per_node, q.usd_per_gpu_hour,
                             effective_usd_per_gpu_hour(q, sc.scaling.spot_rerun_share), packed, single,
                             q.usd_per_node_hour))
    return out


def explain(sc: Scenario) -> str:
    """The break-even table and what it means for the scenario's price and the seed's."""
    rate = sc.settings.edsc_usd
    price = sc.settings.price_per_gpu_hour
    seed_usd = sc.price_per_second * 3600 / PLANCK_PER_EDSC * rate
    lines = [f"Break-even prices per GPU-hour (gross, what a consumer offers; the provider keeps {1 - FEE:.0%}; "
             f"1 ËDSC = {rate:g} USD).",
             f"A new cloud node is paid from request to removal: startup + busy span + idle timeout "
             f"({sc.scaling.idle_timeout_s:g} s), with the spot re-run premium "
             f"(interruption rate × {sc.scaling.spot_rerun_share:g}).", ""]
    head = (f"{'pool':<17}{'$/node-h':>10}{'GPUs':>6}{'$/GPU-h':>9}{'eff.':>8}"
            + "".join(f"{f'packed {h:g}h':>12}" for h in SPANS_H)
            + "".join(f"{f'1 GPU {h:g}h':>12}" for h in SPANS_H) + f"{'seed said':>11}")
    lines.append(head)
    for b in break_evens(sc):
        if b.usd_per_gpu_hour is None:
            lines.append(f"{b.pool:<17}{'no spot offer: never grows':>40}")
            continue
        node = f"{b.usd_per_node_hour:.3f}" if b.usd_per_node_hour is not None else "local"
        seed = f"{b.seed_verdict_usd:.3f}" if b.seed_verdict_usd is not None else "—"
        lines.append(f"{b.pool:<17}{node:>10}{b.gpus_per_node:>6}{b.usd_per_gpu_hour:>9.3f}"
                     f"{b.effective_usd_per_gpu_hour or 0:>8.3f}"
                     + "".join(f"{b.packed[h]:>12.3f}" for h in SPANS_H)
                     + "".join(f"{b.single_gpu[h]:>12.3f}" for h in SPANS_H) + f"{seed:>11}")
    lines += ["", f"The scenario's price: {price:g} USD/GPU-h = {price / rate:g} ËDSC/GPU-h "
                  f"(the provider keeps {sc.net_usd_per_gpu_hour:.3f} USD).",
              f"The seed's PRICE_PER_SECOND = {sc.price_per_second:.3g} planck/GPU-s = "
              f"{seed_usd:.4f} USD/GPU-h at {rate:g} USD/ËDSC: "
              + ("below every pool's break-even — at that price no burst pays." if all(
                  b.packed.get(SPANS_H[-1], float("inf")) > seed_usd for b in break_evens(sc)
                  if b.usd_per_node_hour is not None and b.packed) else "some pools pay at it."),
              "'seed said' is the seed's test (per-GPU revenue vs the whole instance's hourly cost): it asks "
              "a GPU-hour to pay for all GPUs of the node, and ignores startup, idle tail and interruptions."]
    return "\n".join(lines)
