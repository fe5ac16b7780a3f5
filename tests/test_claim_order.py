"""The claim order kept between passes is the order a full sort of the admitted jobs would give, whatever jobs
arrive, leave, come back, are judged again or ranked anew in between."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from etrid_ray.provider.claim_order import BULK, ClaimOrder, claim_key


@dataclass(eq=False)
class Job:
    job_id: int
    fixed: tuple[int, int]
    admitted: bool = True


def order() -> ClaimOrder[Job]:
    return ClaimOrder(lambda j: j.fixed, lambda j: j.admitted)


def full_sort(jobs: dict[int, Job], rank: dict[int, int] | None, n: int) -> list[int]:
    last = len(rank) if rank else 0
    live = [j for j in jobs.values() if j.admitted]
    live.sort(key=lambda j: (claim_key(j.fixed, rank.get(j.job_id, last) if rank else 0), j.job_id))
    return [j.job_id for j in live[:n]]


fixed_parts = st.tuples(st.integers(0, 7), st.integers(0, 2**100))
ops = st.lists(st.one_of(
    st.tuples(st.just("admit"), st.integers(0, 60), fixed_parts),
    st.tuples(st.just("leave"), st.integers(0, 60)),
    st.tuples(st.just("back"), st.integers(0, 60)),
    st.tuples(st.just("rejudge"), st.integers(0, 60), fixed_parts),
    st.tuples(st.just("rank"), st.dictionaries(st.integers(0, 60), st.integers(0, 20), max_size=30)),
    st.tuples(st.just("top"), st.integers(1, 70)),
), max_size=120)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_the_kept_order_is_always_what_a_full_sort_gives(steps: list[tuple]) -> None:
    jobs: dict[int, Job] = {}
    kept = order()
    rank: dict[int, int] | None = None
    arrivals: list[Job] = []
    for step in steps:
        kind = step[0]
        if kind == "admit" and step[1] not in jobs:
            jobs[step[1]] = Job(step[1], step[2])
            arrivals.append(jobs[step[1]])
        elif kind == "leave" and step[1] in jobs:
            jobs[step[1]].admitted = False
        elif kind == "back" and step[1] in jobs and not jobs[step[1]].admitted:
            jobs[step[1]].admitted = True
            arrivals.append(jobs[step[1]])
        elif kind == "rejudge" and step[1] in jobs:  # judged again: new fixed parts, admitted again
            job = jobs[step[1]]
            job.fixed, job.admitted = step[2], True
            arrivals.append(job)
        elif kind == "rank":
            rank = step[1] or None
            kept.rerank(rank, [j for j in jobs.values() if j.admitted])
            arrivals = []
        elif kind == "top":
            kept.arrive(arrivals)
            arrivals = []
            admitted = sum(j.admitted for j in jobs.values())
            assert [j.job_id for j in kept.top(step[1], admitted)] == full_sort(jobs, rank, step[1])


def test_jobs_that_left_are_forgotten_once_they_outnumber_the_admitted() -> None:
    jobs = [Job(i, (1, i)) for i in range(10 * BULK)]
    kept = order()
    kept.arrive(jobs)
    for job in jobs[BULK:]:  # most leave from the back, where no walk of the first few meets them
        job.admitted = False
    assert [j.job_id for j in kept.top(3, BULK)] == [0, 1, 2]
    assert len(kept) == BULK


def test_a_burst_of_arrivals_lands_in_order_among_the_waiting() -> None:
    kept = order()
    kept.arrive([Job(i, (1, 2 * i)) for i in range(5)])
    burst = [Job(100 + i, (1, 2 * i + 1)) for i in range(BULK + 1)]
    kept.arrive(burst)
    assert [j.fixed[1] for j in kept.top(8, 5 + len(burst))] == list(range(8))


def test_the_plan_rank_comes_after_priority_and_before_age() -> None:
    old_standard, new_standard, premium = Job(1, (1, 10)), Job(2, (1, 20)), Job(3, (0, 30))
    kept = order()
    kept.rerank({2: 0, 1: 1}, [old_standard, new_standard, premium])
    assert [j.job_id for j in kept.top(3, 3)] == [3, 2, 1]  # premium unranked still first; then the plan's order
