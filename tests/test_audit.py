"""The audit trail: hash-chained, append-only; every kind of tampering found, anchors checked on a real devnet."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from etrid_ray.chain import ChainClient, dev_signer
from etrid_ray.chain.submit import Submitter
from etrid_ray.cli import main
from etrid_ray.security import audit
from etrid_ray.security.audit import GENESIS, Anchorer, AuditError, AuditLog, Record, record_hash, remark_for, verify

ANCHOR_ACCOUNT = "Ferdie"


def build(path: Path, n: int = 12) -> AuditLog:
    log = AuditLog(path, fsync=False)
    kinds = ["claim", "placement", "data_access", "result", "failure", "key_use"]
    for i in range(n):
        log.append(kinds[i % len(kinds)], job=i, pool="gcp-spot-a100", region="europe-west4", reason=f"r{i}")
    return log


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def write(path: Path, text_lines: list[str]) -> None:
    path.write_text("".join(text_lines))


def rechain(path: Path, edit: Any, *, from_seq: int = 0, fix_head: bool = True) -> list[dict[str, Any]]:
    """What an attacker with write access does: change records, then recompute every hash after them."""
    recs = [json.loads(x) for x in lines(path)]
    recs = edit(recs)
    prev = GENESIS
    for r in recs:
        if r["seq"] >= from_seq:
            r["prev"] = prev
            r["hash"] = record_hash(r["seq"], r["time"], r["kind"], r["fields"], prev)
        prev = r["hash"]
    write(path, [json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in recs])
    if fix_head:
        head = path.with_name(path.name + ".head")
        head.write_text(json.dumps({"seq": recs[-1]["seq"], "hash": recs[-1]["hash"]}))
    return recs


def test_a_fresh_log_verifies_and_starts_with_its_identity(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = build(path, 12)
    recs = list(log.records())
    assert [r.seq for r in recs] == list(range(13))
    assert recs[0].kind == "log_opened" and recs[0].prev == GENESIS
    assert all(r.prev == p.hash and r.hash == r.expected_hash() for p, r in zip(recs, recs[1:], strict=False))
    assert recs[3].fields == {"job": 2, "pool": "gcp-spot-a100", "region": "europe-west4", "reason": "r2"}
    res = verify(path)
    assert res.ok, res.problems
    assert (res.records, res.head_seq, res.head_hash) == (13, 12, recs[-1].hash)
    assert res.log_id == recs[0].hash[:32] == log.identity()
    assert json.loads(path.with_name("audit.jsonl.head").read_text())["hash"] == recs[-1].hash
    assert (path.stat().st_mode & 0o777) == 0o600


def test_an_edited_record_is_found(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    build(path)
    text = lines(path)
    assert '"region":"europe-west4"' in text[7]
    text[7] = text[7].replace('"region":"europe-west4"', '"region":"us-east-1"')
    write(path, text)
    problem = verify(path).first_problem
    assert problem is not None and (problem.kind, problem.seq, problem.line) == ("edited", 7, 8)


def test_an_edited_and_rehashed_record_is_found_by_its_successor(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    build(path)

    def edit(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        recs[5]["fields"]["pool"] = "aws-spot-a100"
        return recs

    recs = [json.loads(x) for x in lines(path)]
    edited = edit(recs)
    r = edited[5]
    r["hash"] = record_hash(r["seq"], r["time"], r["kind"], r["fields"], r["prev"])  # re-hash only record 5
    write(path, [json.dumps(x, sort_keys=True, separators=(",", ":")) + "\n" for x in edited])
    problem = verify(path).first_problem
    assert problem is not None and (problem.kind, problem.seq) == ("edited", 5)
    assert "prev hash" in problem.detail


def test_the_last_record_edited_and_rehashed_is_found_by_the_head_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    build(path)

    def edit(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        recs[-1]["fields"]["reason"] = "nothing to see"
        return recs

    rechain(path, edit, from_seq=12, fix_head=False)
    problem = verify(path).first_problem
    assert problem is not None and (problem.kind, problem.seq) == ("edited", 12)


@pytest.mark.parametrize("gone", [0, 1, 6, 11])
def test_a_deleted_record_is_found(tmp_path: Path, gone: int) -> None:
    path = tmp_path / "audit.jsonl"
    build(path)
    text = lines(path)
    del text[gone]
    write(path, text)
    problem = verify(path).first_problem
    assert problem is not None and (problem.kind, problem.seq) == ("deleted", gone)


def test_deleted_records_are_found_even_when_the_rest_is_rehashed(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    build(path)
    rechain(path, lambda recs: recs[:4] + recs[6:], from_seq=6)
    problem = verify(path).first_problem
    assert problem is not None and (problem.kind, problem.seq) == ("deleted", 4)
    assert "4..5" in problem.detail


def test_reordered_records_are_found(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    build(path)
    text = lines(path)
    text[4], text[5] = text[5], text[4]
    write(path, text)
    problem = verify(path).first_problem
    assert problem is not None and (problem.kind, problem.seq, problem.line) == ("reordered", 5, 5)


def test_a_record_moved_back_is_found(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    build(path)
    text = lines(path)
    moved = text.pop(2)
    text.insert(9, moved)
    write(path, text)
    problem = verify(path).first_problem
    assert problem is not None and problem.kind == "reordered" and problem.line == 3


def test_a_truncated_tail_is_found_by_the_head_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    build(path)
    write(path, lines(path)[:-3])
    problem = verify(path).first_problem
    assert problem is not None and (problem.kind, problem.seq) == ("truncated", 10)
    assert "10..12" in problem.detail


def test_a_tail_cut_mid_record_is_found_and_appending_after_it_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    build(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    problem = verify(path).first_problem
    assert problem is not None and (problem.kind, problem.seq, problem.line) == ("truncated", 12, 13)
    with pytest.raises(AuditError, match="partial record"):
        AuditLog(path).append("claim", job=99)
    assert path.read_bytes() == data[: len(data) - 40]  # nothing written after a damaged tail


def test_garbage_in_the_middle_is_found(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    build(path)
    text = lines(path)
    text[3] = "{not json\n"
    write(path, text)
    problem = verify(path).first_problem
    assert problem is not None and (problem.kind, problem.line) == ("malformed", 4)


def test_secrets_and_unknown_kinds_never_reach_the_log(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", fsync=False)
    with pytest.raises(AuditError, match="secrets never go there"):
        log.append("key_use", key_ref="job-1", data_key="00" * 32)
    with pytest.raises(AuditError, match="secrets never go there"):
        log.append("config_change", nested={"seed": "//Alice"})
    with pytest.raises(AuditError, match="unknown audit event kind"):
        log.append("claimed", job=1)
    assert not (tmp_path / "audit.jsonl").exists()


def test_two_writers_on_one_file_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    writers = [AuditLog(path, fsync=False), AuditLog(path, fsync=False)]  # two open file descriptions

    def work(w: AuditLog, tag: str) -> None:
        for i in range(150):
            if i % 10 == 0:
                w.append_many([("claim", {"job": i, "by": tag}), ("placement", {"job": i, "pool": "p"})])
            else:
                w.append("result", job=i, by=tag)

    threads = [threading.Thread(target=work, args=(w, t)) for w, t in zip(writers, "ab", strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    res = verify(path)
    assert res.ok, res.problems
    assert res.records == 1 + 2 * (150 + 15)


def test_record_writes_to_the_configured_log_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(audit.ENV_PATH, raising=False)
    audit.configure(None)
    assert audit.record("claim", job=1) is None
    path = tmp_path / "audit.jsonl"
    monkeypatch.setenv(audit.ENV_PATH, str(path))
    try:
        rec = audit.record("placement", job=1, pool="gcp-spot-a100", region="europe-west4", reason="GDPR: EU only")
        assert isinstance(rec, Record) and rec.seq == 1 and rec.fields["region"] == "europe-west4"
        batch = audit.record_many([("claim", {"job": 2, "gpu": 0}), ("claim", {"job": 3, "gpu": 1})])
        assert [r.seq for r in batch] == [2, 3] and batch[1].prev == batch[0].hash
        assert verify(path).ok
        path.write_bytes(path.read_bytes()[:-5])  # a damaged log: the caller is not broken, the failure counted
        before = audit.write_failures
        assert audit.record("claim", job=2) is None
        assert audit.write_failures == before + 1
    finally:
        audit.configure(None)


# --- anchors on a real chain -------------------------------------------------------------------------


@pytest.fixture()
def chain(devnet: Any) -> Any:
    client = ChainClient(devnet.url)
    yield client
    client.close()


def anchored_log(path: Path, client: ChainClient) -> tuple[AuditLog, Anchorer]:
    log = build(path, 6)
    anchorer = Anchorer(log, Submitter(client.conn, dev_signer(ANCHOR_ACCOUNT)), interval_s=3600)
    first = anchorer.maybe_anchor(now=10_000.0)
    assert first is not None and first.kind == "anchor" and first.fields["anchored_seq"] == 6
    assert anchorer.maybe_anchor(now=10_001.0) is None  # within the interval: nothing
    for i in range(4):
        log.append("result", job=100 + i, blob="0x" + "ab" * 32, encrypted=True)
    assert anchorer.maybe_anchor(now=20_000.0) is not None
    assert anchorer.maybe_anchor(now=30_000.0) is None  # nothing new since the last anchor
    return log, anchorer


def test_anchors_land_on_chain_and_verify(tmp_path: Path, chain: ChainClient) -> None:
    path = tmp_path / "audit.jsonl"
    log, _ = anchored_log(path, chain)
    anchors = [r for r in log.records() if r.kind == "anchor"]
    assert [a.fields["anchored_seq"] for a in anchors] == [6, 11]
    a = anchors[0]
    assert a.fields["remark"] == remark_for(log.identity() or "", 6, list(log.records())[6].hash)
    assert a.fields["account"] == dev_signer(ANCHOR_ACCOUNT).address
    res = verify(path, chain.conn)
    assert res.ok, res.problems
    assert res.chain_checked
    from_log = [x for x in res.anchors if x.source == "log"]
    assert [(x.seq, x.on_chain, x.matches_log) for x in from_log] == [(6, True, True), (11, True, True)]
    assert not [x for x in res.anchors if x.source == "chain"]  # every anchor on chain is one the log records


def test_a_rewritten_history_is_caught_by_the_chain(tmp_path: Path, chain: ChainClient) -> None:
    """Edit record 3 and recompute every later hash, the anchors' fields and the head file: the file is
    self-consistent again, but the chain still holds the original head hashes."""
    path = tmp_path / "audit.jsonl"
    anchored_log(path, chain)

    def edit(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        recs[3]["fields"]["region"] = "us-east-1"
        return recs

    recs = rechain(path, edit, from_seq=3)
    # also forge the anchor records so that they point at the new hashes
    log_id = recs[0]["hash"][:32]

    def forge(rs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for r in rs:
            if r["kind"] == "anchor":
                s = r["fields"]["anchored_seq"]
                r["fields"]["anchored_hash"] = rs[s]["hash"]
                r["fields"]["remark"] = remark_for(log_id, s, rs[s]["hash"])
        return rs

    for _ in range(2):  # an anchor's own hash feeds later anchors: settle in two passes
        rechain(path, forge, from_seq=3)
    assert verify(path).ok  # locally undetectable, by construction
    res = verify(path, chain.conn)
    assert not res.ok
    kinds = {p.kind for p in res.problems}
    assert "anchor" in kinds and "edited" in kinds
    assert any(x.source == "log" and x.on_chain is False for x in res.anchors)
    assert any(x.source == "chain" and not x.matches_log for x in res.anchors)


def test_a_tail_cut_with_its_anchors_and_head_is_caught_by_the_chain(tmp_path: Path, chain: ChainClient) -> None:
    path = tmp_path / "audit.jsonl"
    anchored_log(path, chain)
    recs = [json.loads(x) for x in lines(path)]
    keep = [r for r in recs if r["seq"] <= 8]  # drop results 9.. and the second anchor (seq 12)
    write(path, [json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in keep])
    path.with_name(path.name + ".head").write_text(json.dumps({"seq": 8, "hash": keep[-1]["hash"]}))
    assert verify(path).ok  # the file and its head file agree
    res = verify(path, chain.conn, account=dev_signer(ANCHOR_ACCOUNT).address)
    problem = next(p for p in res.problems if p.kind == "truncated")
    assert problem.seq == 9 and "seq 11" in problem.detail


# --- the chain's anchors are the evidence: a log that does not back them fails --------------------------


def verify_cli(path: Path, url: str, *extra: str) -> Any:
    """`etrid-ray audit verify` as an operator runs it (no environment leaking in)."""
    env = {"ETRID_SEED": "", "ETRID_SEED_FILE": "", "ETRID_WS_URL": "", "ETRID_AUDIT_LOG": ""}
    return CliRunner().invoke(main, ["audit", "verify", "--audit-log", str(path), "--url", url, *extra], env=env,
                              catch_exceptions=False)


def remove_log(path: Path) -> None:
    path.unlink()
    path.with_name(path.name + ".head").unlink()


def test_the_honest_log_backs_the_accounts_newest_anchor(tmp_path: Path, devnet: Any, chain: ChainClient) -> None:
    path = tmp_path / "audit.jsonl"
    log, _ = anchored_log(path, chain)
    second = [r for r in log.records() if r.kind == "anchor"][-1]
    log.append("result", job=200, encrypted=True)  # records after the newest anchor are normal
    res = verify(path, chain.conn, account=dev_signer(ANCHOR_ACCOUNT).address)
    assert res.ok, res.problems
    newest = res.newest_anchor
    assert newest is not None
    assert (newest.log_id, newest.seq, newest.hash, newest.block) == (
        log.identity(), 11, second.fields["anchored_hash"], second.fields["block"])
    out = verify_cli(path, devnet.url, "--account", dev_signer(ANCHOR_ACCOUNT).address)
    assert out.exit_code == 0, out.output
    assert f"backs {dev_signer(ANCHOR_ACCOUNT).address}'s newest anchor (block {second.fields['block']}, seq 11)" \
        in out.output


def test_a_log_swapped_wholesale_for_a_fresh_one_is_caught_by_the_accounts_anchors(
        tmp_path: Path, fresh_devnet: Any) -> None:
    """Issue 12 item 6: //Alice anchored a log twice; the file is replaced by a new, self-consistent log
    (its own log_opened, so its own id; placements moved to us-east-1; no anchors). Nothing in the
    file shows it, so only the account's anchors on chain can."""
    alice = dev_signer("Alice")
    path = tmp_path / "audit.jsonl"
    client = ChainClient(fresh_devnet.url)
    try:
        original = build(path, 6)
        anchorer = Anchorer(original, Submitter(client.conn, alice), interval_s=3600)
        assert anchorer.maybe_anchor(now=10_000.0) is not None
        original.append("placement", job=7, pool="gcp-spot-a100", region="europe-west4", reason="GDPR: EU only")
        assert anchorer.maybe_anchor(now=20_000.0) is not None
        anchors = [r.fields for r in original.records() if r.kind == "anchor"]
        original_id = original.identity()
        remove_log(path)
        forged = AuditLog(path, fsync=False)
        for i in range(8):
            forged.append("placement", job=i, pool="aws-spot-a100", region="us-east-1", reason="cheapest")
        assert forged.identity() != original_id
        assert verify(path).ok  # self-consistent: locally undetectable, by construction

        res = verify(path, client.conn, account=alice.address)
        assert not res.ok and res.chain_checked
        assert res.first_problem is not None and res.first_problem.kind == "replaced"
        assert [(a.log_id, a.seq, a.hash, a.block) for a in res.account_anchors] == [
            (original_id, a["anchored_seq"], a["anchored_hash"], a["block"]) for a in reversed(anchors)]
    finally:
        client.close()

    out = verify_cli(path, fresh_devnet.url, "--account", alice.address)
    assert out.exit_code == 1, out.output
    assert "OK:" not in out.output and "matches the chain's anchors" not in out.output
    assert "audit log does not verify: replaced: the log:" in out.output
    for a in anchors:  # the message names what the log should have matched: block, log id, head hash
        assert f"block {a['block']}: log {original_id} seq {a['anchored_seq']} head {a['anchored_hash']}" in out.output
    # without --account the forged log names no anchoring account: nothing vouches for it, so it fails too
    out = verify_cli(path, fresh_devnet.url)
    assert out.exit_code == 1 and "unanchored" in out.output and "--account" in out.output


@pytest.mark.parametrize("how", ["emptied", "deleted"])
def test_an_emptied_or_deleted_log_is_caught_by_the_accounts_anchors(tmp_path: Path, devnet: Any,
                                                                     chain: ChainClient, how: str) -> None:
    path = tmp_path / "audit.jsonl"
    log, _ = anchored_log(path, chain)
    newest = [r for r in log.records() if r.kind == "anchor"][-1].fields
    log_id = log.identity()
    if how == "emptied":  # 0 records and no head file: locally just a log nobody has written to yet
        path.write_bytes(b"")
        path.with_name(path.name + ".head").unlink()
        assert verify(path).ok
    else:
        remove_log(path)
    ferdie = dev_signer(ANCHOR_ACCOUNT).address
    res = verify(path, chain.conn, account=ferdie)
    assert not res.ok and res.chain_checked
    assert any(p.kind == "replaced" for p in res.problems)
    assert res.newest_anchor is not None and (res.newest_anchor.log_id, res.newest_anchor.seq) == (log_id, 11)
    out = verify_cli(path, devnet.url, "--account", ferdie)
    assert out.exit_code == 1, out.output
    assert "not checked on chain" not in out.output
    assert f"block {newest['block']}: log {log_id} seq 11 head {newest['anchored_hash']}" in out.output


@pytest.mark.parametrize(("keep_upto", "backs_newest"), [
    (16, True),   # the records written after the newest anchor are gone: the chain never vouched for them
    (12, True),   # the anchor record itself is gone: seq 11, the hash on chain, is still there
    (11, True),
    (10, False),  # a record the newest anchor vouches for is gone
    (3, False),
])
def test_a_log_cut_short_fails_only_when_the_cut_reaches_the_newest_anchor(
        tmp_path: Path, chain: ChainClient, keep_upto: int, backs_newest: bool) -> None:
    path = tmp_path / "audit.jsonl"
    log, _ = anchored_log(path, chain)  # anchors of seq 6 (record 7) and seq 11 (record 12)
    for i in range(4):
        log.append("result", job=300 + i, encrypted=True)  # records 13..16, never anchored
    keep = [json.loads(x) for x in lines(path)][: keep_upto + 1]
    write(path, [json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in keep])
    path.with_name(path.name + ".head").write_text(json.dumps({"seq": keep_upto, "hash": keep[-1]["hash"]}))
    assert verify(path).ok  # the file and its head file agree
    res = verify(path, chain.conn, account=dev_signer(ANCHOR_ACCOUNT).address)
    assert res.ok is backs_newest, res.problems
    if not backs_newest:
        problem = next(p for p in res.problems if p.kind == "truncated")
        assert problem.seq == keep_upto + 1 and "seq 11" in problem.detail
