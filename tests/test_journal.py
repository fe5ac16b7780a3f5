"""Specification of the head's journal: claimed → finished → reported, idempotent, durable across reopen."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from etrid_ray.provider.journal import Journal, JournalEntry

R = "0x" + "ee" * 32


@pytest.fixture()
def journal() -> Iterator[Journal]:
    j = Journal(":memory:")
    yield j
    j.close()


def test_an_unknown_job_has_no_entry(journal):
    assert journal.get(1) is None
    assert journal.in_state("claimed") == []


def test_claimed_records_the_job_and_its_gpu(journal):
    journal.claimed([(1, 10), (2, 11)])
    assert journal.get(1) == JournalEntry(1, 10, "claimed", None, None, None)
    assert {e.job_id for e in journal.in_state("claimed")} == {1, 2}


def test_finished_records_the_outcome_not_yet_on_chain(journal):
    journal.claimed([(1, 10), (2, 10)])
    journal.finished([(1, True, R, None), (2, False, None, "matmul failed: ValueError")])
    assert journal.get(1) == JournalEntry(1, 10, "finished", True, R, None)
    assert journal.get(2) == JournalEntry(2, 10, "finished", False, None, "matmul failed: ValueError")
    assert journal.in_state("claimed") == []
    assert {e.job_id for e in journal.in_state("finished")} == {1, 2}


def test_reported_marks_the_job_done_and_keeps_its_outcome(journal):
    journal.claimed([(1, 10)])
    journal.finished([(1, True, R, None)])
    journal.reported([1])
    assert journal.get(1) == JournalEntry(1, 10, "reported", True, R, None)
    assert journal.in_state("finished") == []
    assert [e.job_id for e in journal.in_state("reported")] == [1]


def test_finished_never_downgrades_a_reported_job(journal):
    # a late or replayed result (e.g. a Ray retry after node loss) must not cause a second report
    journal.claimed([(1, 10)])
    journal.finished([(1, True, R, None)])
    journal.reported([1])
    journal.finished([(1, False, None, "late duplicate")])
    assert journal.get(1) == JournalEntry(1, 10, "reported", True, R, None)
    assert journal.in_state("finished") == []


def test_claiming_again_does_not_reset_a_finished_or_reported_job(journal):
    journal.claimed([(1, 10), (2, 10)])
    journal.finished([(1, True, R, None), (2, True, R, None)])
    journal.reported([2])
    journal.claimed([(1, 99), (2, 99)])
    assert journal.get(1) == JournalEntry(1, 10, "finished", True, R, None)
    assert journal.get(2).state == "reported" and journal.get(2).gpu_id == 10


def test_finishing_twice_keeps_the_latest_outcome(journal):
    journal.claimed([(1, 10)])
    journal.finished([(1, False, None, "first try lost")])
    journal.finished([(1, True, R, None)])
    assert journal.get(1) == JournalEntry(1, 10, "finished", True, R, None)


def test_a_job_can_finish_without_a_claim_record(journal):
    # e.g. a job recovered from the chain's GpuJobs after the journal lost its claim row
    journal.finished([(5, False, None, "timeout")])
    assert journal.get(5) == JournalEntry(5, None, "finished", False, None, "timeout")


def test_reporting_an_unknown_job_is_a_no_op(journal):
    journal.reported([42])
    assert journal.get(42) is None


def test_every_transition_is_idempotent(journal):
    for _ in range(3):
        journal.claimed([(1, 10)])
    for _ in range(3):
        journal.finished([(1, True, R, None)])
    for _ in range(3):
        journal.reported([1])
    assert journal.get(1) == JournalEntry(1, 10, "reported", True, R, None)
    assert len(journal.in_state("reported")) == 1


def test_in_state_lists_only_that_state(journal):
    journal.claimed([(1, 0), (2, 0), (3, 0)])
    journal.finished([(2, True, R, None), (3, False, None, "x")])
    journal.reported([3])
    assert [e.job_id for e in journal.in_state("claimed")] == [1]
    assert [e.job_id for e in journal.in_state("finished")] == [2]
    assert [e.job_id for e in journal.in_state("reported")] == [3]
    assert journal.in_state("nonsense") == []


def test_meta_values_are_stored_and_overwritten(journal):
    assert journal.get_meta("best_block") is None
    journal.set_meta("best_block", "10")
    journal.set_meta("best_block", "11")
    assert journal.get_meta("best_block") == "11"


def test_a_file_journal_survives_reopen(tmp_path):
    path = tmp_path / "deep" / "dir" / "journal.sqlite"   # parent directories are created
    j = Journal(path)
    j.claimed([(1, 10), (2, 10), (3, 11)])
    j.finished([(2, True, R, None), (3, False, None, "ü reason")])
    j.reported([3])
    j.set_meta("earned", "123")
    j.close()

    again = Journal(path)
    try:
        assert again.get(1) == JournalEntry(1, 10, "claimed", None, None, None)
        assert again.get(2) == JournalEntry(2, 10, "finished", True, R, None)
        assert again.get(3) == JournalEntry(3, 11, "reported", False, None, "ü reason")
        assert again.get_meta("earned") == "123"
        again.finished([(3, True, R, None)])   # reopened, still never downgrades
        assert again.get(3).state == "reported"
    finally:
        again.close()


def test_a_file_journal_is_durable_without_close(tmp_path):
    # a crashed head never calls close(): each transition is committed when it returns
    path = tmp_path / "journal.sqlite"
    j = Journal(path)
    j.claimed([(1, 10)])
    j.finished([(1, True, R, None)])
    other = Journal(path)
    try:
        assert other.get(1) == JournalEntry(1, 10, "finished", True, R, None)
    finally:
        other.close()
        j.close()


def test_memory_journals_are_independent():
    a, b = Journal(":memory:"), Journal(":memory:")
    a.claimed([(1, 1)])
    assert b.get(1) is None
    a.close()
    b.close()


def test_concurrent_writers_lose_nothing(journal):
    def work(base: int) -> None:
        for i in range(base, base + 200):
            journal.claimed([(i, 0)])
            journal.finished([(i, True, R, None)])

    threads = [threading.Thread(target=work, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(journal.in_state("finished")) == 800
