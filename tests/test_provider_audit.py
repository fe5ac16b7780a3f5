"""With ENABLE_COMPLIANCE, the head audits its decisions into a hash-chained log anchored on chain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import ray

from etrid_ray.blobs import open_blob_store
from etrid_ray.chain import ChainClient, dev_signer
from etrid_ray.security import audit
from tests.provider_support import CONSUMER, all_final, provider_config, start_head, wait_until


@pytest.fixture()
def local_ray() -> Any:
    ray.init(address="local", num_cpus=2, num_gpus=4, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()
    audit.configure(None)


def test_a_compliant_head_audits_claims_data_access_results_and_anchors_them(
        fresh_devnet: Any, tmp_path: Path, local_ray: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    log_path = tmp_path / "audit.jsonl"
    monkeypatch.setenv(audit.ENV_PATH, str(log_path))
    client = ChainClient(fresh_devnet.url)
    head = start_head(provider_config(fresh_devnet, tmp_path, ENABLE_COMPLIANCE=True))
    try:
        consumer = client.consumer(dev_signer(CONSUMER), blobs=open_blob_store(fresh_devnet.http_url))
        ok = consumer.submit_job({"handler": "echo", "args": {"payload": 1}}, payment=10**18, max_compute_time=60)
        bad = consumer.submit_job({"handler": "nope"}, payment=10**18, max_compute_time=60)
        wait_until(lambda: all_final(client, [ok.job_id, bad.job_id]), 60, "both jobs final")
    finally:
        head.stop()  # a final anchor
    kinds = [(r.kind, r.fields.get("job")) for r in audit.AuditLog(log_path).records()]
    assert ("config_change", None) in kinds
    assert ("claim", ok.job_id) in kinds and ("claim", bad.job_id) in kinds
    assert ("data_access", ok.job_id) in kinds
    assert ("result", ok.job_id) in kinds and ("failure", bad.job_id) in kinds
    result = audit.verify(log_path, client.conn, account=dev_signer("Bob").address)
    assert result.ok, result.first_problem
    assert result.to_json().get("anchors")  # the head hash is on chain
    client.close()
    assert "//Bob" not in log_path.read_text()  # no key material in the evidence
