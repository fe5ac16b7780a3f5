"""Specification of the head's journal: claimed → finished → reported, idempotent, durable across reopen."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from etrid_ray.provider.job import Settlement as S
from etrid_ray.provider.journal import Journal, JournalBinding, JournalEntry

R = "0x" + "ee" * 32
DEVNET = "0x" + "60" * 32                 # every devnet has this same genesis…
CHAIN_A = JournalBinding(DEVNET, "0x" + "a1" * 32, "5Bob")   # …and its own block 1
CHAIN_B = JournalBinding(DEVNET, "0x" + "b1" * 32, "5Bob")


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
    journal.finished([S(1, True, R), S(2, False, None, "matmul failed: ValueError")])
    assert journal.get(1) == JournalEntry(1, 10, "finished", True, R, None)
    assert journal.get(2) == JournalEntry(2, 10, "finished", False, None, "matmul failed: ValueError")
    assert journal.in_state("claimed") == []
    assert {e.job_id for e in journal.in_state("finished")} == {1, 2}


def test_reported_marks_the_job_done_and_keeps_its_outcome(journal):
    journal.claimed([(1, 10)])
    journal.finished([S(1, True, R)])
    journal.reported([1])
    assert journal.get(1) == JournalEntry(1, 10, "reported", True, R, None)
    assert journal.in_state("finished") == []
    assert [e.job_id for e in journal.in_state("reported")] == [1]


def test_finished_never_downgrades_a_reported_job(journal):
    # a late or replayed result (e.g. a Ray retry after node loss) must not cause a second report
    journal.claimed([(1, 10)])
    journal.finished([S(1, True, R)])
    journal.reported([1])
    journal.finished([S(1, False, None, "late duplicate")])
    assert journal.get(1) == JournalEntry(1, 10, "reported", True, R, None)
    assert journal.in_state("finished") == []


def test_claiming_the_same_job_again_changes_nothing(journal):
    journal.claimed([(1, 10)])
    first = journal.get(1)
    journal.claimed([(1, 10)])
    assert journal.get(1) == first and journal.get(1).updated == first.updated  # the claim time stays


def test_a_new_claim_replaces_an_older_row_under_the_same_id(journal):
    # A chain never hands a job out twice (a claimed job never returns to Pending): a row already there
    # for a freshly won job id is about some other job — a reset devnet reuses ids from 0 — and must
    # neither hide the new claim nor lend the new job its old result.
    journal.claimed([(1, 10), (2, 10)])
    journal.finished([S(1, True, R), S(2, True, R)])
    journal.reported([2])
    journal.claimed([(1, 99), (2, 99)])
    assert journal.get(1) == JournalEntry(1, 99, "claimed", None, None, None)
    assert journal.get(2) == JournalEntry(2, 99, "claimed", None, None, None)
    journal.finished([S(2, False, None, "sleep failed")])
    assert journal.get(2) == JournalEntry(2, 99, "finished", False, None, "sleep failed")


def test_finishing_twice_keeps_the_latest_outcome(journal):
    journal.claimed([(1, 10)])
    journal.finished([S(1, False, None, "first try lost")])
    journal.finished([S(1, True, R)])
    assert journal.get(1) == JournalEntry(1, 10, "finished", True, R, None)


def test_a_job_can_finish_without_a_claim_record(journal):
    # e.g. a job recovered from the chain's GpuJobs after the journal lost its claim row
    journal.finished([S(5, False, None, "timeout")])
    assert journal.get(5) == JournalEntry(5, None, "finished", False, None, "timeout")


def test_reporting_an_unknown_job_is_a_no_op(journal):
    journal.reported([42])
    assert journal.get(42) is None


def test_every_transition_is_idempotent(journal):
    for _ in range(3):
        journal.claimed([(1, 10)])
    for _ in range(3):
        journal.finished([S(1, True, R)])
    for _ in range(3):
        journal.reported([1])
    assert journal.get(1) == JournalEntry(1, 10, "reported", True, R, None)
    assert len(journal.in_state("reported")) == 1


def test_in_state_lists_only_that_state(journal):
    journal.claimed([(1, 0), (2, 0), (3, 0)])
    journal.finished([S(2, True, R), S(3, False, None, "x")])
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
    j.finished([S(2, True, R), S(3, False, None, "ü reason")])
    j.reported([3])
    j.set_meta("earned", "123")
    j.close()

    again = Journal(path)
    try:
        assert again.get(1) == JournalEntry(1, 10, "claimed", None, None, None)
        assert again.get(2) == JournalEntry(2, 10, "finished", True, R, None)
        assert again.get(3) == JournalEntry(3, 11, "reported", False, None, "ü reason")
        assert again.get_meta("earned") == "123"
        again.finished([S(3, True, R)])   # reopened, still never downgrades
        assert again.get(3).state == "reported"
    finally:
        again.close()


def test_a_file_journal_is_durable_without_close(tmp_path):
    # a crashed head never calls close(): each transition is committed when it returns
    path = tmp_path / "journal.sqlite"
    j = Journal(path)
    j.claimed([(1, 10)])
    j.finished([S(1, True, R)])
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
            journal.finished([S(i, True, R)])

    threads = [threading.Thread(target=work, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(journal.in_state("finished")) == 800


# binding: a journal is about one chain and one account -------------------------------------------------


def _journal_of(path, binding: JournalBinding) -> None:
    """A journal left behind by a head that served `binding`: job 0 reported, job 1 finished, job 2 claimed."""
    j = Journal(path)
    assert j.bind(binding).used
    j.claimed([(0, 1), (1, 1), (2, 1)])
    j.finished([S(0, True, R), S(1, True, R)])
    j.reported([0])
    j.close()


def test_a_new_journal_is_bound_to_the_first_chain_and_account(tmp_path):
    j = Journal(tmp_path / "journal.sqlite")
    try:
        assert j.binding() is None
        outcome = j.bind(CHAIN_A)
        assert outcome.used and outcome.set_aside is None
        assert j.binding() == CHAIN_A
    finally:
        j.close()


def test_the_same_chain_and_account_use_the_journal_as_it_is(tmp_path):
    path = tmp_path / "journal.sqlite"
    _journal_of(path, CHAIN_A)
    j = Journal(path)
    try:
        outcome = j.bind(CHAIN_A)
        assert outcome.used and outcome.set_aside is None
        assert j.get(0).state == "reported" and j.get(1).state == "finished" and j.get(2).state == "claimed"
        assert list(tmp_path.glob("*.stale-*")) == []
    finally:
        j.close()


def test_a_journal_of_another_chain_with_the_same_genesis_is_never_used(tmp_path):
    # the reported defect: devnet A's rows for jobs 0..3 were taken for devnet B's jobs 0..3
    path = tmp_path / "journal.sqlite"
    _journal_of(path, CHAIN_A)
    j = Journal(path)
    try:
        outcome = j.bind(CHAIN_B)
        assert not outcome.used and outcome.previous == CHAIN_A
        assert "block #1" in outcome.reason
        assert [j.get(i) for i in (0, 1, 2)] == [None, None, None]
        assert j.binding() == CHAIN_B and j.path == path   # a fresh journal at the configured path
        j.claimed([(0, 7)])
        j.finished([S(0, True, R)])
        assert j.get(0) == JournalEntry(0, 7, "finished", True, R, None)
    finally:
        j.close()
    # the old file is kept beside it, complete (its WAL folded in), and still says what it was
    aside = outcome.set_aside
    assert aside is not None and aside.parent == tmp_path and aside.name.startswith("journal.sqlite.stale-")
    old = Journal(aside)
    try:
        assert old.binding() == CHAIN_A and old.get(0).state == "reported" and old.get(2).state == "claimed"
    finally:
        old.close()


def test_a_journal_of_another_genesis_is_never_used(tmp_path):
    path = tmp_path / "journal.sqlite"
    _journal_of(path, CHAIN_A)
    j = Journal(path)
    try:
        outcome = j.bind(JournalBinding("0x" + "77" * 32, CHAIN_A.block1_hash, CHAIN_A.account))
        assert not outcome.used and outcome.set_aside is not None
        assert j.in_state("reported") + j.in_state("finished") + j.in_state("claimed") == []
    finally:
        j.close()


def test_a_journal_of_another_account_is_never_used(tmp_path):
    path = tmp_path / "journal.sqlite"
    _journal_of(path, CHAIN_A)
    j = Journal(path)
    try:
        outcome = j.bind(JournalBinding(CHAIN_A.genesis_hash, CHAIN_A.block1_hash, "5Dave"))
        assert not outcome.used and "5Bob" in outcome.reason
        assert j.get(1) is None
    finally:
        j.close()


def test_a_chain_that_had_no_block_1_is_not_the_chain_that_has_one(tmp_path):
    path = tmp_path / "journal.sqlite"
    _journal_of(path, JournalBinding(DEVNET, None, "5Bob"))
    j = Journal(path)
    try:
        assert not j.bind(CHAIN_A).used
    finally:
        j.close()


def test_rows_of_unknown_origin_are_never_used(tmp_path):
    # a journal written before journals were bound (or by a head that was never started) names no chain
    path = tmp_path / "journal.sqlite"
    old = Journal(path)
    old.claimed([(0, 1)])
    old.finished([S(0, True, R)])
    old.close()
    j = Journal(path)
    try:
        outcome = j.bind(CHAIN_A)
        assert not outcome.used and "unknown" in outcome.reason and outcome.set_aside is not None
        assert j.get(0) is None and j.binding() == CHAIN_A
    finally:
        j.close()


def test_setting_aside_twice_in_one_second_keeps_both_files(tmp_path):
    path = tmp_path / "journal.sqlite"
    asides = []
    for binding in (CHAIN_A, CHAIN_B, CHAIN_A):
        j = Journal(path)
        j.bind(binding)
        j.claimed([(0, 1)])
        asides.append(j.bind(JournalBinding(DEVNET, "0x" + "cc" * 32, "5Eve")).set_aside)
        j.close()
    assert len(set(asides)) == 3 and all(a is not None and a.exists() for a in asides)


def test_an_in_memory_journal_of_another_chain_is_emptied(journal):
    journal.bind(CHAIN_A)
    journal.claimed([(0, 1)])
    outcome = journal.bind(CHAIN_B)
    assert not outcome.used and outcome.set_aside is None
    assert journal.get(0) is None and journal.binding() == CHAIN_B
