"""The provider end to end: chain jobs in, Ray tasks run, results and money back on chain.

Real devnet over sockets, real local Ray with simulated GPUs, the real head.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
import ray
from click.testing import CliRunner

from etrid_ray.blobs import open_blob_store
from etrid_ray.chain import Call, ChainClient, dev_signer
from etrid_ray.chain.events import ChainEvent
from etrid_ray.chain.models import JobStatus
from etrid_ray.cli import main as cli_main
from etrid_ray.manifest import encode_manifest
from etrid_ray.pools import pool_selector
from etrid_ray.profit import cost_share_usd
from etrid_ray.provider.profit import ProfitBook
from tests.provider_support import (
    CONSUMER,
    PROVIDER,
    all_final,
    chain_events,
    completions,
    failure_reasons,
    provider_config,
    read_jobs,
    start_head,
    wait_until,
)

PAY = 10**18  # 1 ËDSC per job


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Any:
    os.environ["ETRID_SEED"] = "//" + PROVIDER  # the head actor reads its key from its environment
    ray.init(address="local", num_cpus=2, num_gpus=4, labels=pool_selector("local"),
             include_dashboard=False,
             logging_level="ERROR", namespace="etrid-tests")
    yield
    ray.shutdown()


def _sum(events: list[ChainEvent], pallet: str, name: str, field: str, who: str, key: str = "who") -> int:
    return sum(int(e.get(field)) for e in events if e.is_(pallet, name) and e.get(key) == who)


def test_happy_path_pays_the_provider_payment_minus_five_percent_to_the_planck(fresh_devnet: Any,
                                                                               tmp_path: Path) -> None:
    client = ChainClient(fresh_devnet.url)
    provider, consumer_key = dev_signer(PROVIDER), dev_signer(CONSUMER)
    before = client.balance(provider.address)
    head = start_head(provider_config(fresh_devnet, tmp_path))
    try:
        consumer = client.consumer(consumer_key, blobs=open_blob_store(fresh_devnet.http_url))
        manifests = [{"handler": "echo", "args": {"payload": i}} for i in range(6)]
        manifests += [{"handler": "matmul", "args": {"n": 64, "seed": 3}}]
        payments = [PAY + i * 12345 for i in range(len(manifests))]
        ids = [consumer.submit_job(m, payment=p, max_compute_time=60).job_id
               for m, p in zip(manifests, payments, strict=True)]
        wait_until(lambda: all_final(client, ids), 60, "all jobs final")
        jobs = read_jobs(client, ids)
        assert {j.status for j in jobs.values()} == {JobStatus.COMPLETED}
        for job_id in ids:  # the result on chain is the hash of a stored result naming the job
            result = json.loads(consumer.fetch_result(jobs[job_id]))
            assert result["job_id"] == job_id
        assert json.loads(consumer.fetch_result(jobs[ids[0]]))["result"] == {"payload": 0}
        assert json.loads(consumer.fetch_result(jobs[ids[-1]]))["result"]["checksum"] > 0
        for job_id in ids:
            consumer.confirm_job(job_id)
        wait_until(lambda: head.status().payments == len(ids), 30, "earnings seen by the head")
        events = chain_events(client)
        paid = {int(e.get("job_id")): int(e.get("amount")) for e in events
                if e.is_("JobMarketplace", "PaymentReleased") and e.get("provider") == provider.address}
        assert paid == {j: p - p * 500 // 10_000 for j, p in zip(ids, payments, strict=True)}
        assert head.status().earnings_planck == sum(paid.values())
        _profit_records_reconcile(head, paid, dict(zip(ids, payments, strict=True)), tmp_path)
        after = client.balance(provider.address)
        fees = _sum(events, "TransactionPayment", "TransactionFeePaid", "actual_fee", provider.address)
        reserved = _sum(events, "Balances", "Reserved", "amount", provider.address)
        unreserved = _sum(events, "Balances", "Unreserved", "amount", provider.address)
        assert after.free - before.free == sum(paid.values()) - fees - reserved + unreserved
        assert after.reserved - before.reserved == 4 * 100 * 10**18  # the stake of the 4 GPUs it registered
        consumer_after = client.balance(consumer_key.address)
        assert consumer_after.reserved == 0  # every escrow released
    finally:
        head.stop()
        client.close()


def _profit_records_reconcile(head: Any, paid: dict[int, int], payments: dict[int, int], tmp_path: Path) -> None:
    """Every job's profit row: the chain's PaymentReleased to the planck, the fee as the chain took it, the cost as
    its pool's electricity for its GPU-seconds; the `earnings` command and the net-profit metric add up the same."""
    head.profit.flush()
    book = ProfitBook(ProfitBook.beside(head.journal.path))
    rows = {r.job_id: r for r in book.rows()}
    book.close()
    assert {j: r.paid_planck for j, r in rows.items()} == paid
    assert {j: r.fee_planck for j, r in rows.items()} == {j: payments[j] - paid[j] for j in paid}
    local = next(p for p in head.pools if not p.is_cloud)
    for r in rows.values():
        assert r.pool == (head.stats.pool_of.get(r.job_id) or local.name) and not r.cloud and r.node
        assert r.cost_usd == pytest.approx(cost_share_usd(local, r.gpus, r.ended_at - r.started_at, None))
        assert r.gpu_seconds == pytest.approx((r.ended_at - r.started_at) * r.gpus)
    rate = head.config.edsc_usd
    net = sum(paid.values()) / 10**18 * rate - sum(r.cost_usd for r in rows.values())
    assert sum(head.status().net_profit_usd.values()) == pytest.approx(net)
    out = CliRunner().invoke(cli_main, ["earnings", "--records", ProfitBook.beside(head.journal.path), "--json"])
    assert out.exit_code == 0, out.output
    groups = json.loads(out.output)["groups"]
    assert sum(int(g["paid_planck"]) for g in groups) == sum(paid.values())
    assert sum(g["net_usd"] for g in groups) == pytest.approx(net, abs=1e-5)
    csv_out = CliRunner().invoke(cli_main, ["earnings", "--records", ProfitBook.beside(head.journal.path), "--csv"])
    assert csv_out.exit_code == 0 and len(csv_out.output.splitlines()) == len(paid) + 1


BAD_CASES = {
    "malformed": (b"{not json", "malformed manifest JSON"),
    "unknown_handler": ({"handler": "os-system", "args": {"cmd": "id"}}, "unknown handler 'os-system'"),
    "dotted_handler": ({"handler": "etrid_ray.workloads.basic.echo"}, "invalid manifest: handler"),
    "exception": ({"handler": "matmul", "args": {"n": 0}}, "matmul: ValueError: n must be"),
    # work the head cannot foresee (matmul declares no duration; a sleep longer than its limit is never claimed)
    "timeout": ({"handler": "matmul", "args": {"n": 2048, "iterations": 1000}, "timeout_s": 8}, "timeout after 8s"),
    "wrong_model_type": ({"handler": "embedding", "args": {"texts": ["x"]}}, "handler 'embedding' does not serve"),
}


def test_every_bad_manifest_fails_its_job_on_chain_with_a_clear_reason(fresh_devnet: Any, tmp_path: Path) -> None:
    store_dir = tmp_path / "blobs"
    store = open_blob_store(f"file://{store_dir}")
    client = ChainClient(fresh_devnet.url)
    head = start_head(provider_config(fresh_devnet, tmp_path, blob_store=f"file://{store_dir}",
                                      max_input_bytes=1024))
    try:
        consumer = client.consumer(dev_signer(CONSUMER), blobs=store)
        expected: dict[int, str] = {}
        for case, (manifest, reason) in BAD_CASES.items():
            model_type = "ImageGen" if case == "wrong_model_type" else "Custom"
            job = consumer.submit_job(manifest, payment=PAY, max_compute_time=60, model_type=model_type)
            expected[job.job_id] = reason
        # a manifest whose stored bytes were replaced after hashing
        good = encode_manifest({"handler": "echo", "args": {}})
        h = store.put(good)
        stored = next(p for p in store_dir.iterdir() if h.removeprefix("0x") in p.name)
        stored.write_bytes(b'{"handler":"sleep","args":{"seconds":3600}}')
        job = consumer.submit_job(good, payment=PAY, max_compute_time=60)  # the store keeps the tampered file
        expected[job.job_id] = "manifest hash mismatch"
        # inputs larger than the provider accepts: declared (refused at admission) and undeclared (in the task)
        big = store.put(b"x" * 4096)
        declared = consumer.submit_job({"handler": "echo", "inputs": [{"name": "a", "hash": big, "size": 4096}]},
                                       payment=PAY, max_compute_time=60)
        expected[declared.job_id] = "inputs too large"
        hidden = consumer.submit_job({"handler": "echo", "inputs": [{"name": "a", "hash": big}]},
                                     payment=PAY, max_compute_time=60)
        expected[hidden.job_id] = "inputs too large"
        ids = list(expected)
        wait_until(lambda: all_final(client, ids), 60, "bad jobs failed on chain")
        reasons = failure_reasons(chain_events(client))
        for job_id, reason in expected.items():
            assert reason in reasons.get(job_id, ""), (job_id, reasons.get(job_id))
            assert len(reasons[job_id].encode()) <= 128
        jobs = read_jobs(client, ids)
        assert all(j.status == JobStatus.FAILED for j in jobs.values())
        assert client.balance(dev_signer(CONSUMER).address).reserved == 0  # every failed job refunded
        assert head.status().errors == {}
    finally:
        head.stop()
        client.close()


def test_jobs_this_provider_will_not_serve_are_left_pending_for_others(fresh_devnet: Any, tmp_path: Path) -> None:
    client = ChainClient(fresh_devnet.url)
    head = start_head(provider_config(fresh_devnet, tmp_path, allowed_handlers=["echo"]))
    try:
        consumer = client.consumer(dev_signer(CONSUMER), blobs=open_blob_store(fresh_devnet.http_url))
        left = [
            consumer.submit_job({"handler": "matmul"}, payment=PAY, max_compute_time=60),  # not on our allow-list
            consumer.submit_job({"handler": "echo", "resources": {"gpus": 8}}, payment=PAY, max_compute_time=60),
            consumer.submit_job({"handler": "echo", "resources": {"tee": "sev-snp"}}, payment=PAY,
                                max_compute_time=60),
            consumer.submit_job({"handler": "echo", "compliance": {"template": "GDPR"}}, payment=PAY,
                                max_compute_time=60),
            consumer.submit_job({"handler": "echo"}, payment=10, max_compute_time=60),  # underpaid
        ]
        served = consumer.submit_job({"handler": "echo"}, payment=PAY, max_compute_time=60)
        wait_until(lambda: all_final(client, [served.job_id]), 30, "the servable job")
        wait_until(lambda: sum(head.status().skipped.values()) >= len(left), 10, "skips counted")
        jobs = read_jobs(client, [j.job_id for j in left])
        assert all(j.status == JobStatus.PENDING and j.assigned_gpu is None for j in jobs.values())
        assert head.status().claimed == 1
    finally:
        head.stop()
        client.close()


def _fuzzed_manifest(rng: random.Random) -> bytes | dict[str, Any]:
    junk: list[Any] = [None, 0, -1, 2**70, 1e308, "", "x" * 300, [], {}, {"a": [1, {"b": None}]}, True, "💥"]
    roll = rng.random()
    if roll < 0.2:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 200)))
    base: dict[str, Any] = {"handler": rng.choice(["echo", "sleep", "matmul", "nope", "", "ECHO", "../x"]),
                            "args": {"payload": rng.choice(junk), "seconds": rng.choice([0, 0.01, -5, "1"]),
                                     "n": rng.choice([1, 8, 0, -3, "big", 10**9]), "dtype": rng.choice(
                                         ["float32", "int8", None])}}
    for _ in range(rng.randrange(0, 4)):
        key = rng.choice(["version", "inputs", "resources", "timeout_s", "output", "compliance", "extra", "args"])
        base[key] = rng.choice(junk + [{"gpus": rng.choice([0, 0.5, 1, 99, -1])}, [{"name": "a", "hash": "0x12"}]])
    return base


def test_a_thousand_fuzzed_manifests_never_crash_the_head(fresh_devnet: Any, tmp_path: Path) -> None:
    rng = random.Random(20261129)
    client = ChainClient(fresh_devnet.url)
    head = start_head(provider_config(fresh_devnet, tmp_path, claim_batch=500, result_batch=500))
    try:
        consumer = client.consumer(dev_signer(CONSUMER), blobs=open_blob_store(fresh_devnet.http_url))
        manifests = [_fuzzed_manifest(rng) for _ in range(1000)]
        jobs = consumer.submit_jobs(manifests, payment=PAY, max_compute_time=5)
        ids = [j.job_id for j in jobs]

        def settled() -> bool:
            status = head.status()
            final = read_jobs(client, ids)
            done = sum(1 for j in final.values() if j.status in (JobStatus.COMPLETED, JobStatus.FAILED))
            return done + sum(status.skipped.values()) >= len(ids) and status.running == 0

        wait_until(settled, 240, "every fuzzed job settled or skipped", poll=1.0)
        status = head.status()
        assert status.errors == {}, status.errors
        reasons = failure_reasons(chain_events(client))
        assert all(len(r.encode()) <= 128 for r in reasons.values())
        assert len(reasons) > 500  # most junk is refused on chain, with a reason
    finally:
        head.stop()
        client.close()


def test_only_registry_handlers_ever_run(fresh_devnet: Any, tmp_path: Path) -> None:
    """R7: a stranger's manifest names a handler; nothing outside the registry executes."""
    marker = tmp_path / "pwned"
    client = ChainClient(fresh_devnet.url)
    head = start_head(provider_config(fresh_devnet, tmp_path))
    try:
        consumer = client.consumer(dev_signer(CONSUMER), blobs=open_blob_store(fresh_devnet.http_url))
        attempts = [{"handler": h, "args": {"path": str(marker), "cmd": f"touch {marker}"}}
                    for h in ("os.system", "subprocess", "builtins.exec", "eval", "shell", "python")]
        ids = [consumer.submit_job(m, payment=PAY, max_compute_time=30).job_id for m in attempts]
        wait_until(lambda: all_final(client, ids), 30, "refusals")
        assert all(j.status == JobStatus.FAILED for j in read_jobs(client, ids).values())
        assert not marker.exists()
        assert sum(completions(chain_events(client)).values()) == 0
    finally:
        head.stop()
        client.close()


def test_a_burst_of_short_jobs_shares_ray_tasks_and_each_job_gets_its_own_result(fresh_devnet: Any,
                                                                                 tmp_path: Path) -> None:
    """Once the head has seen echo run in a millisecond and Ray take longer than that to start a task, a burst of
    echo jobs beyond its free warm workers goes several to a Ray task (provider/packing.py): fewer tasks than jobs,
    and still every job completes with its own result on chain."""
    client = ChainClient(fresh_devnet.url)
    head = start_head(provider_config(fresh_devnet, tmp_path))
    try:
        consumer = client.consumer(dev_signer(CONSUMER), blobs=open_blob_store(fresh_devnet.http_url))
        tiny = {"gpus": 0.01}  # the whole burst fits the GPUs at once: claimed and dispatched in one pass
        for warmup in range(3):  # echo seen to run in a millisecond or so
            first = consumer.submit_job({"handler": "echo", "args": {"payload": -1 - warmup}, "resources": tiny},
                                        payment=PAY, max_compute_time=60)
            wait_until(lambda first=first: all_final(client, [first.job_id]), 60, "an echo job final")
        for _ in range(20):  # and, as on a busy cluster, Ray taking a quarter second to start a task
            head.estimates.observe_dispatch(0.25)
        tasks_before = head.stats.tasks
        hashes = [consumer.store_manifest({"handler": "echo", "args": {"payload": i}, "resources": tiny})
                  for i in range(40)]
        receipts = consumer.submitter.batch([Call("JobMarketplace", "submit_job", {
            "model_id": 0, "model_type": "Custom", "input_hash": h, "output_format": b"json",
            "max_compute_time": 60, "payment": PAY, "priority": "Standard"}) for h in hashes])  # one block
        ids = [int(e.get("job_id")) for r in receipts for e in r.find("JobMarketplace", "JobSubmitted")]
        assert len(ids) == 40
        wait_until(lambda: all_final(client, ids), 60, "the burst final")
        jobs = read_jobs(client, ids)
        for i, job_id in enumerate(ids):
            assert jobs[job_id].status == JobStatus.COMPLETED
            assert json.loads(consumer.fetch_result(jobs[job_id]))["result"] == {"payload": i}
        assert head.stats.tasks - tasks_before < 40 and head.stats.shared > 0
    finally:
        head.stop()
        client.close()
