"""Specification of `Simulator(explain=job_id)` and `etrid-ray simulate --explain JOB_ID`: one job's
timeline — why it waited, where it ran, or why it was left to others — in numbers.

Pools and prices are the defaults' (AWS p4d spot, 8 GPUs, startup 180 s, the cheapest cloud pool).
"""

from __future__ import annotations

from click.testing import CliRunner

from etrid_ray.cli import main
from etrid_ray.scaling.placement import PlaceReason
from etrid_ray.sim import Simulator, build_scenario, simulate
from etrid_ray.sim.engine import Explained, format_explanation
from tests.scaling_support import AWS
from tests.sim_support import jobs, settings


def events(result) -> list[str]:
    return [e.event for e in result.explanation]


def only(result, event: str) -> Explained:
    found = [e for e in result.explanation if e.event == event]
    assert len(found) == 1, result.explanation
    return found[0]


def test_no_explain_no_timeline():
    r = simulate(jobs((0, 600, 8)), "profit", settings(local_gpus=8))
    assert r.explanation == []


def test_a_job_that_fits_locally_starts_locally_with_no_wait():
    r = simulate(jobs((0, 600, 8)), "profit", settings(local_gpus=8), explain=0)
    assert events(r) == ["arrived", "placed", "started", "finished"]
    assert only(r, "placed").reason == PlaceReason.LOCAL
    started = only(r, "started")
    assert started.pool == "local-gpu" and started.t == 0.0 and "waited 0 s" in started.text
    lines = format_explanation(r.explanation)
    assert lines[0].split()[0] == "+0" and "8 GPUs" in lines[0] and "USD" in lines[0]
    assert "+10 min" in lines[-1] and "earned" in lines[-1]


def test_with_no_local_gpus_a_profitable_job_waits_for_a_new_cloud_node():
    sc = build_scenario(settings(local_gpus=0, price_per_gpu_hour=2.0))
    startup = next(p.startup_s for p in sc.pools if p.name == AWS)
    r = simulate(jobs((0, 3 * 3600, 8)), "profit", sc, explain=0)
    placed = [e for e in r.explanation if e.event == "placed"]
    assert placed[0].reason == PlaceReason.CLOUD_NEW_NODE and placed[0].pool == AWS
    assert "pay" in placed[0].text and "outlook" in placed[0].text  # the profit policy's numbers
    started = only(r, "started")
    assert started.pool == AWS and abs(started.t - startup) <= 2 * sc.scaling.scale_interval_s
    assert f"waited {round(startup / 60)} min" in started.text
    assert events(r)[-1] == "finished"


def test_a_job_lost_to_patience_is_explained_with_its_reason():
    # 8 local GPUs busy for an hour; the second job pays too little for a cloud node and leaves after 10 min
    r = simulate(jobs((0, 3600, 8), (10, 3600, 8)), "profit",
                 settings(local_gpus=8, price_per_gpu_hour=0.01, patience_s=600), explain=1)
    assert events(r)[-1] == "lost" and "started" not in events(r)
    lost = only(r, "lost")
    assert lost.reason == PlaceReason.UNPROFITABLE
    assert lost.t - only(r, "arrived").t == 600
    assert "10 min" in lost.text and "would not have paid" in lost.text
    assert "+10 min" in format_explanation(r.explanation)[-1]


def test_baselines_explain_too_without_an_outlook():
    r = Simulator(jobs((0, 600, 8)), "seed-hpa", settings(local_gpus=8), explain=0).run()
    assert events(r) == ["arrived", "placed", "started", "finished"]
    assert "outlook" not in only(r, "placed").text


def test_cli_prints_the_timeline_and_rejects_an_unknown_job(tmp_path):
    csv = tmp_path / "jobs.csv"
    csv.write_text("timestamp,duration,num_gpus\n0,600,8\n60,600,1\n")
    runner = CliRunner()
    res = runner.invoke(main, ["simulate", "--trace", str(csv), "--explain", "0", "--local-gpus", "8",
                               "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "job 0 under profit" in res.output
    for word in ("arrived", "placed", "started", "finished", "waited 0 s"):
        assert word in res.output
    assert not (tmp_path / "out").exists()  # no JSON, no plots
    res = runner.invoke(main, ["simulate", "--trace", str(csv), "--explain", "2", "--local-gpus", "8"])
    assert res.exit_code == 2
    assert "0 to 1" in res.output
