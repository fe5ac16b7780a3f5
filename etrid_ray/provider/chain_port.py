"""The head's view of the chain: the few operations it needs, each batched, each item judged alone.

Claims and settlements go through `Utility.force_batch` when the runtime has
it: one extrinsic carries hundreds of calls, and a lost claim race (the job
was taken by another provider a moment earlier) fails only its own item. On a
runtime without it (upstream's has no Utility), calls go as separate
extrinsics in flight together, signed with consecutive local nonces. On a
runtime without `claim_job` (upstream's) the head claims nothing: jobs reach it
by root `assign_job` (see stages/intake.py). Every pallet, call and storage
name is looked up in the node's metadata, never an index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from etrid_ray.chain import Call, Connection, ProviderClient, Receipt, Signer, truncate_utf8
from etrid_ray.chain.models import Job
from etrid_ray.provider.job import Settlement

MARKET = "JobMarketplace"


@dataclass(frozen=True)
class ItemResult:
    ok: bool
    error: str = ""


class ChainPort:
    def __init__(self, conn: Connection, signer: Signer, batch_size: int = 256) -> None:
        self.conn = conn
        self.client = ProviderClient(conn, signer)
        self.batch_size = batch_size

    @property
    def address(self) -> str:
        return self.client.address

    # reads ----------------------------------------------------------------------------------------

    def pending_ids(self) -> list[int]:
        return self.client.reader.pending_job_ids()

    def jobs(self, ids: list[int]) -> dict[int, Job]:
        return self.client.reader.jobs(ids) if ids else {}

    def gpu_jobs(self, gpu_ids: list[int]) -> dict[int, list[int]]:
        return self.client.reader.gpu_jobs_many(gpu_ids) if gpu_ids else {}

    def my_gpus(self) -> list[int]:
        return self.client.my_gpus()

    def identity(self) -> tuple[str, str | None]:
        """(genesis hash, hash of block 1 or None before there is one): which chain this is. The genesis alone
        cannot tell two devnets apart — every one builds the same genesis block — while block 1 carries
        the moment it was sealed (see `journal.JournalBinding`)."""
        genesis = self.conn.block_hash(0)
        block1 = self.conn.block_hash(1) if self.conn.best_number() >= 1 else None
        return genesis, block1

    def job_deadlines(self, ids: list[int]) -> dict[int, int]:
        """Unix second after which the chain fails each Processing job as timed out (`JobDeadlines`, a
        devnet extension); empty where the runtime does not keep deadlines, and for absent ids."""
        meta = self.conn.metadata
        if not ids or not meta.has_storage(MARKET, "JobDeadlines"):
            return {}
        entry = meta.storage(MARKET, "JobDeadlines")
        keys = entry.u64_keys_hex(ids)
        raw = self.conn.storage_many(keys)
        return {j: int(entry.decode(raw[k])) for j, k in zip(ids, keys, strict=True) if raw.get(k) is not None}

    # writes ---------------------------------------------------------------------------------------

    def each(self, calls: Sequence[Call]) -> list[ItemResult]:
        """Applies every call; returns one result per call, in order."""
        if not calls:
            return []
        meta = self.conn.metadata
        if not meta.has_call("Utility", "force_batch"):
            receipts = self.client.submitter.submit_many(list(calls), check=False)
            return [ItemResult(r.error is None, str(r.error) if r.error else "") for r in receipts]
        out: list[ItemResult] = []
        flights = []
        for start in range(0, len(calls), self.batch_size):
            chunk = list(calls[start:start + self.batch_size])
            flights.append((chunk, self.client.submitter.wrap("force_batch", chunk)))
        receipts = self.client.submitter.submit_many([f for _, f in flights], check=False)
        for (chunk, _), receipt in zip(flights, receipts, strict=True):
            out.extend(_item_results(receipt, len(chunk), meta))
        return out

    def supports_claim(self) -> bool:
        """Whether the runtime lets a provider take jobs itself (`JobMarketplace.claim_job`)."""
        return self.client.supports_claim()

    def claim(self, pairs: Sequence[tuple[int, int]]) -> list[ItemResult]:
        return self.each([Call(MARKET, "claim_job", {"job_id": j, "gpu_id": g}) for j, g in pairs])

    def settle(self, settlements: Sequence[Settlement]) -> list[ItemResult]:
        """Each settlement as `submit_result` or `report_failure` (its reason cut to the chain's 128 bytes)."""
        calls = [Call(MARKET, "submit_result", {"job_id": s.job_id, "result_hash": s.result_hash}) if s.ok
                 else Call(MARKET, "report_failure", {"job_id": s.job_id,
                                                     "reason": truncate_utf8(s.reason or "failed")})
                 for s in settlements]
        return self.each(calls)

    def heartbeat(self, gpu_ids: list[int]) -> None:
        self.each([Call("GpuRegistry", "report_heartbeat", {"gpu_id": g}) for g in gpu_ids])

    def telemetry(self, items: list[tuple[int, int, int, int]]) -> None:
        if not self.client.supports_telemetry():
            return
        self.each([Call("GpuRegistry", "report_telemetry", {"gpu_id": g, "utilization_bps": u,
                                                             "jobs_completed": n, "earnings": e})
                   for g, u, n, e in items])


def _item_results(receipt: Receipt, n: int, meta: Any) -> list[ItemResult]:
    if receipt.error is not None:  # the whole extrinsic failed (e.g. fees): every item failed
        return [ItemResult(False, str(receipt.error))] * n
    results: list[ItemResult] = []
    for event in receipt.events:
        if event.is_("Utility", "ItemCompleted"):
            results.append(ItemResult(True))
        elif event.is_("Utility", "ItemFailed"):
            err = meta.dispatch_error(event.get("error"))
            results.append(ItemResult(False, f"{err.module}.{err.name}" if err.module else str(err.name)))
    if len(results) != n:
        raise RuntimeError(f"force_batch of {n} calls reported {len(results)} item results")
    return results
