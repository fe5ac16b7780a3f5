"""Helpers shared by the provider end-to-end tests: real devnet, real Ray, real chain reads."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from etrid_ray.chain import ChainClient, dev_signer
from etrid_ray.chain.events import ChainEvent, events_in_range
from etrid_ray.chain.models import Job, JobStatus
from etrid_ray.config import ProviderConfig, load_config
from etrid_ray.provider.head import ProviderHead
from etrid_ray.provider.journal import Journal

PROVIDER = "Bob"
CONSUMER = "Charlie"
PRICE = 10**12


def provider_config(devnet: Any, tmp_path: Path, **overrides: Any) -> ProviderConfig:
    base: dict[str, Any] = {
        "websocket_url": devnet.url, "rpc_url": devnet.http_url, "PRICE_PER_SECOND": PRICE,
        "gpus": {"count": 4}, "journal_path": str(tmp_path / "journal.sqlite"),
        "heartbeat_interval_s": 2, "telemetry_interval_s": 2, "poll_interval_s": 0.1,
    }
    base.update(overrides)
    return load_config(env={}, overrides=base)


def start_head(config: ProviderConfig, name: str = PROVIDER) -> ProviderHead:
    return ProviderHead(config, dev_signer(name), journal=Journal(config.journal_file)).start()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, poll: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def read_jobs(client: ChainClient, ids: list[int]) -> dict[int, Job]:
    return client.consumer(dev_signer(CONSUMER)).reader.jobs(ids)


def all_final(client: ChainClient, ids: list[int]) -> bool:
    reader = client.consumer(dev_signer(CONSUMER)).reader
    jobs = reader.jobs(ids)
    return len(jobs) == len(ids) and all(j.status in (JobStatus.COMPLETED, JobStatus.FAILED) for j in jobs.values())


def chain_events(client: ChainClient) -> list[ChainEvent]:
    return events_in_range(client.conn, 1, client.conn.best_number())


def failure_reasons(events: list[ChainEvent]) -> dict[int, str]:
    out = {}
    for e in events:
        if e.is_("JobMarketplace", "JobFailed"):
            raw = e.get("reason")
            out[int(e.get("job_id"))] = raw.decode() if isinstance(raw, bytes | bytearray) else str(raw)
    return out


def completions(events: list[ChainEvent]) -> Counter[int]:
    return Counter(int(e.get("job_id")) for e in events if e.is_("JobMarketplace", "JobCompleted"))
