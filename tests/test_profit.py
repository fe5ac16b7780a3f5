"""Every job's profit on the record: the pricing rule, the rows, their totals (the end-to-end reconciliation with the
chain's PaymentReleased runs in tests/test_provider_e2e.py's happy path)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from etrid_ray.chain.models import Job, JobStatus
from etrid_ray.config import ProviderConfig, pools_from_config
from etrid_ray.profit import JobProfit, cost_share_usd, group, unattributed_cloud_usd
from etrid_ray.provider.job import JobState, RunInfo, TrackedJob
from etrid_ray.provider.profit import ProfitBook
from etrid_ray.provider.stages.profit import ProfitRecorder
from etrid_ray.provider.task import Outcome
from etrid_ray.scaling.billing import NodeLedger

EDSC = 10**18
T0 = datetime(2026, 12, 7, 8, tzinfo=UTC).timestamp()
POOLS = {p.name: p for p in pools_from_config(ProviderConfig())}
AWS = next(p for p in POOLS.values() if p.kind == "aws")
LOCAL = next(p for p in POOLS.values() if not p.is_cloud)


def tracked(job_id: int, pool: str | None, gpus: float, payment: int = 2 * EDSC, handler: str = "sleep") -> TrackedJob:
    job = Job(job_id, "5Grw", 0, "Custom", "0x" + "00" * 32, "json", 600, payment, "Standard", JobStatus.PROCESSING,
              None, None, int(T0), None)
    t = TrackedJob(job, JobState.RUNNING, T0)
    t.run = RunInfo(None, T0 + 600, T0, gpus, pool, handler)
    return t


def outcome(job_id: int, node: str, start: float, seconds: float) -> Outcome:
    return Outcome(job_id, True, "0x" + "11" * 32, "", start, start + seconds, node, f"{node}:1")


def test_a_cloud_job_costs_its_share_of_the_node_and_a_local_one_its_electricity() -> None:
    assert cost_share_usd(AWS, 2, 1800, 10.0) == pytest.approx(10.0 * 2 / AWS.gpus_per_node * 0.5)
    assert cost_share_usd(AWS, 64, 3600, 10.0) == pytest.approx(10.0)  # never more than the whole node
    assert cost_share_usd(LOCAL, 1, 3600, None) == pytest.approx(LOCAL.power_watts_per_gpu / 1000
                                                                  * LOCAL.electricity_usd_per_kwh)


def test_cloud_shares_and_idle_time_add_up_to_the_billed_spend_to_the_cent(tmp_path: Path) -> None:
    ledger = NodeLedger()
    ledger.open("node-a", T0, 10.0, AWS.name)
    ledger.open("node-b", T0, 12.0, AWS.name)

    def rate(node: str) -> float | None:
        return ledger.bill(node).usd_per_node_hour if node in ledger else None

    book = ProfitBook(tmp_path / "journal.profit.sqlite")
    recorder = ProfitRecorder(book, POOLS, LOCAL, rate, edsc_usd=1.0)
    per_node = AWS.gpus_per_node
    for i in range(4):  # node A full for half an hour
        recorder.ran(tracked(i, AWS.name, per_node / 4), outcome(i, "node-a", T0 + 60, 1800))
    recorder.ran(tracked(9, AWS.name, 1), outcome(9, "node-b", T0 + 60, 3600))  # one GPU of node B for an hour
    recorder.ran(tracked(10, None, 1), outcome(10, "local-node", T0, 3600))  # the provider's own GPU
    recorder.flush()
    spend = ledger.close("node-a", T0 + 3600) + ledger.close("node-b", T0 + 3600)
    rows = book.rows()
    cloud = sum(r.cost_usd for r in rows if r.cloud)
    assert round(cloud, 2) == round(10.0 * 0.5 + 12.0 / per_node, 2)
    assert round(cloud + unattributed_cloud_usd(spend, rows), 2) == round(ledger.total(T0 + 3600), 2) == 22.0
    assert [r.pool for r in rows] == [AWS.name] * 5 + [LOCAL.name] and rows[-1].cost_usd > 0


def test_a_payment_lands_on_its_job_with_the_fee_the_chain_took(tmp_path: Path) -> None:
    book = ProfitBook(tmp_path / "p.sqlite")
    recorder = ProfitRecorder(book, POOLS, LOCAL, lambda _n: None, edsc_usd=2.0)
    recorder.ran(tracked(1, None, 1, payment=10 * EDSC), outcome(1, "n", T0, 3600))
    recorder.paid_many([(1, 9_500_000_000_000_000_000, 0, T0 + 4000, 42),  # the row's payment: the job's escrow
                        (2, EDSC, 0, T0 + 4100, 43)])  # a job run before a restart: paid, its cost unknown here
    one, two = book.rows()
    assert (one.paid_planck, one.fee_planck, one.block) == (9_500_000_000_000_000_000, 5 * 10**17, 42)
    assert one.net_usd(2.0) == pytest.approx(19.0 - one.cost_usd)
    assert (two.paid_planck, two.fee_planck, two.cost_usd) == (EDSC, 0, 0.0)
    assert recorder.net_usd[LOCAL.name] == pytest.approx(19.0 - one.cost_usd)


def test_totals_group_by_pool_day_and_handler() -> None:
    day2 = T0 + 86_400
    rows = [JobProfit(1, "local-gpu", handler="sleep", cost_usd=0.5, paid_planck=EDSC, paid_at=T0),
            JobProfit(2, AWS.name, handler="matmul", cloud=True, cost_usd=1.5, paid_planck=3 * EDSC, paid_at=day2),
            JobProfit(3, AWS.name, handler="sleep", cloud=True, cost_usd=0.25, ended_at=day2)]  # not paid yet
    by_pool = {g.key: g for g in group(rows, "pool", 1.0)}
    assert by_pool[AWS.name].net_usd == pytest.approx(3 - 1.5 - 0.25) and by_pool[AWS.name].paid_jobs == 1
    assert [g.key for g in group(rows, "day", 1.0)] == ["2026-12-07", "2026-12-08"]
    assert {g.key: g.jobs for g in group(rows, "handler", 1.0)} == {"matmul": 1, "sleep": 2}


def test_rows_since_a_date_are_those_paid_or_ended_then(tmp_path: Path) -> None:
    book = ProfitBook(tmp_path / "p.sqlite")
    book.ran([JobProfit(1, "local-gpu", ended_at=T0), JobProfit(2, "local-gpu", ended_at=T0 + 10)])
    book.paid_many([(1, EDSC, 2 * EDSC, T0 + 86_400, 7)])
    assert [r.job_id for r in book.rows(since=T0 + 5)] == [1, 2]
    assert [r.job_id for r in book.rows(since=T0 + 3600)] == [1]
