"""`etrid-ray prices`: one row per pool — what a node and a GPU-hour cost now, and how sure we are.

Rows are plain dicts (the `--json` output); `price_table` renders them with rich. Local pools
are shown at their electricity cost per busy GPU (source "local power"), so the table compares
every pool placement can choose between.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from etrid_ray.clouds.feed import MarketFeed
from etrid_ray.durations import format_duration
from etrid_ray.pools import Pool


def price_rows(feed: MarketFeed, pools: Iterable[Pool], now: datetime | None = None) -> list[dict[str, Any]]:
    now = feed.clock() if now is None else now
    rows: list[dict[str, Any]] = []
    for pool in pools:
        if not pool.is_cloud:
            gpu_h = pool.local_cost_per_gpu_hour()
            rows.append({"pool": pool.name, "cloud": pool.kind, "region": pool.region, "zone": None,
                         "instance_type": None, "spot": False, "usd_per_node_hour": gpu_h * pool.gpus_per_node,
                         "usd_per_gpu_hour": gpu_h, "ondemand_usd_per_hour": None, "spot_discount": None,
                         "interruption_bucket": None, "interruption_rate": None, "quota_headroom_nodes": None,
                         "max_spot_price": None, "source": "local power", "as_of": None, "age_s": None,
                         "notes": [f"{pool.power_watts_per_gpu:g} W per GPU at "
                                   f"{pool.electricity_usd_per_kwh:g} USD/kWh"]})
            continue
        mq = feed.market_quote(pool)
        q = mq.quote
        notes = list(mq.notes)
        if q is None:
            notes.insert(0, f"no {'spot ' if pool.spot else ''}offer for {pool.instance_type} in {pool.region}")
        elif pool.max_spot_price is not None and q.usd_per_node_hour > pool.max_spot_price:
            notes.insert(0, f"over max spot price {pool.max_spot_price:g}: never grows")
        if mq.view is not None and mq.view.placement_score is not None:
            notes.append(f"spot placement score {mq.view.placement_score}/10")
        rows.append({
            "pool": pool.name, "cloud": pool.kind, "region": pool.region, "zone": q.zone if q else None,
            "instance_type": pool.instance_type, "spot": pool.spot,
            "usd_per_node_hour": q.usd_per_node_hour if q else None,
            "usd_per_gpu_hour": q.usd_per_gpu_hour if q else None,
            "ondemand_usd_per_hour": q.ondemand_usd_per_hour if q else None,
            "spot_discount": q.spot_discount if q and pool.spot else None,
            "interruption_bucket": q.interruption_bucket if q else None,
            "interruption_rate": q.interruption_rate if q else None,
            "quota_headroom_nodes": q.quota_headroom_nodes if q else None,
            "max_spot_price": pool.max_spot_price,
            "source": q.source if q else "none",
            "as_of": q.as_of.isoformat() if q else None,
            "age_s": q.age_s(now) if q else None,
            "notes": notes,
        })
    return rows


def _money(v: float | None, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}g}"


def price_table(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="Pool prices (USD)", title_justify="left")
    for col, justify in [("pool", "left"), ("cloud", "left"), ("region/zone", "left"), ("$/node-h", "right"),
                         ("$/GPU-h", "right"), ("spot discount", "right"), ("interruption", "left"),
                         ("headroom", "right"), ("source", "left"), ("age", "right"), ("notes", "left")]:
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        where = r["region"] + (f" / {r['zone']}" if r["zone"] else "")
        discount = "-" if r["spot_discount"] is None else f"{r['spot_discount']:.0%}"
        headroom = "?" if r["quota_headroom_nodes"] is None else str(r["quota_headroom_nodes"])
        if r["source"] == "local power":
            headroom = "-"
        table.add_row(r["pool"], r["cloud"], where, _money(r["usd_per_node_hour"]), _money(r["usd_per_gpu_hour"]),
                      discount, r["interruption_bucket"] or "-", headroom, r["source"], format_duration(r["age_s"]),
                      "; ".join(r["notes"]))
    return table
