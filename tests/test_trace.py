"""Specification of the packaged Philly trace (one loader: `sim.trace.philly_trace`) and the slices the demo
replays."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from etrid_ray.sim.trace import SimJob, philly_trace, trace_slice

SHARED_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "philly_trace.csv"
PACKAGED_GZ = Path(__file__).resolve().parents[1] / "etrid_ray" / "data" / "philly_trace.csv.gz"


@pytest.fixture(scope="module")
def jobs() -> tuple[SimJob, ...]:
    return philly_trace().jobs


def test_the_trace_has_82247_jobs(jobs):
    assert len(jobs) == 82_247


def test_jobs_are_sorted_by_submit_time_from_zero(jobs):
    assert jobs[0].submit_s == 0.0
    assert all(a.submit_s <= b.submit_s for a, b in zip(jobs, jobs[1:], strict=False))
    assert jobs[-1].submit_s > 100 * 86400   # months of trace, in seconds


def test_every_job_has_a_positive_duration_and_gpu_count(jobs):
    assert all(j.duration_s > 0 and j.gpus >= 1 for j in jobs)


def test_the_trace_is_loaded_once(jobs):
    assert philly_trace().jobs is jobs


def test_packaged_trace_is_the_shared_data_file():
    if not SHARED_CSV.exists():
        pytest.skip("no ../shared/data in this checkout")
    assert gzip.decompress(PACKAGED_GZ.read_bytes()) == SHARED_CSV.read_bytes()


def test_slice_returns_consecutive_jobs_rebased_to_start_at_zero(jobs):
    s = trace_slice(50, 1000)
    assert len(s) == 50 and s[0].submit_s == 0.0
    t0 = jobs[1000].submit_s
    for got, orig in zip(s, jobs[1000:1050], strict=True):
        assert got == SimJob(orig.job_id, orig.submit_s - t0, orig.duration_s, orig.gpus)


def test_slice_keeps_gaps_between_arrivals(jobs):
    s = trace_slice(20, 5000)
    gaps = [b.submit_s - a.submit_s for a, b in zip(s, s[1:], strict=False)]
    orig = [b.submit_s - a.submit_s for a, b in zip(jobs[5000:5020], jobs[5001:5020], strict=False)]
    assert gaps == orig


def test_slice_past_the_end_is_moved_back_to_fit(jobs):
    s = trace_slice(10, 10**9)
    assert len(s) == 10 and s[0].submit_s == 0.0
    assert [j.duration_s for j in s] == [j.duration_s for j in jobs[-10:]]


def test_negative_offset_starts_at_the_beginning(jobs):
    assert trace_slice(5, -3) == trace_slice(5, 0)
    assert trace_slice(5, 0)[0] == jobs[0]


def test_slice_larger_than_the_trace_returns_the_whole_trace(jobs):
    assert len(trace_slice(len(jobs) + 10, 0)) == len(jobs)


def test_empty_slice():
    assert trace_slice(0, 0) == [] and trace_slice(0, 500) == []


def test_slices_are_deterministic():
    assert trace_slice(30, 777) == trace_slice(30, 777)
