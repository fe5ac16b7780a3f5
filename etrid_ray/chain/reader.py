"""Reading pallet storage: single items, and many jobs fast.

Why a bulk path: the provider's watcher reads the whole ``PendingJobs`` queue
(up to 10,000 ids) and then every pending ``Jobs`` entry on each block. Going
through ``substrate.query`` would mean 10,000 round trips and scalecodec object
trees; here the keys are built from the metadata's hashers, fetched with
``state_queryStorageAt`` in large chunks at one pinned block (a consistent
snapshot), and decoded with the compiled registry.
"""

from __future__ import annotations

from typing import Any

from etrid_ray.chain.codec import account_bytes
from etrid_ray.chain.connection import Connection
from etrid_ray.chain.models import AccountBalance, ComplianceConfig, GpuNode, Job, TeeAttestation, Telemetry

JOBS = "JobMarketplace"
GPUS = "GpuRegistry"


class ChainReader:
    """Typed reads of the Etrid pallets over one :class:`Connection`."""

    #: keys per ``state_queryStorageAt`` request
    chunk: int = 5000

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def value(self, pallet: str, name: str, *keys: Any, at: str | None = None) -> Any:
        """Any storage item, decoded (``None`` for an absent Optional item)."""
        entry = self.conn.metadata.storage(pallet, name)
        return entry.decode(self.conn.storage(entry.key_hex(*keys), at))

    # accounts -------------------------------------------------------------------------------------
    def balance(self, address: str, at: str | None = None) -> AccountBalance:
        account_bytes(address)  # validates the address early
        return AccountBalance.from_chain(address, self.value("System", "Account", address, at=at) or {})

    def balances(self, addresses: list[str], at: str | None = None) -> dict[str, AccountBalance]:
        entry = self.conn.metadata.storage("System", "Account")
        keys = {a: entry.key_hex(a) for a in addresses}
        raw = self.conn.storage_many(list(keys.values()), at)
        return {a: AccountBalance.from_chain(a, entry.decode(raw[k]) or {}) for a, k in keys.items()}

    # jobs -----------------------------------------------------------------------------------------
    def pending_job_ids(self, at: str | None = None) -> list[int]:
        return [int(i) for i in self.value(JOBS, "PendingJobs", at=at) or []]

    def job(self, job_id: int, at: str | None = None) -> Job | None:
        v = self.value(JOBS, "Jobs", job_id, at=at)
        return None if v is None else Job.from_chain(job_id, v)

    def jobs(self, job_ids: list[int], at: str | None = None) -> dict[int, Job]:
        """Many jobs at one block; absent ids are left out."""
        if not job_ids:
            return {}
        entry = self.conn.metadata.storage(JOBS, "Jobs")
        keys = entry.u64_keys_hex(job_ids)
        if at is None:
            at = self.conn.block_hash()
        raw = self.conn.storage_many(keys, at, chunk=self.chunk)
        reg = entry.registry
        ty = entry.value_type
        out: dict[int, Job] = {}
        for job_id, key in zip(job_ids, keys, strict=True):
            data = raw.get(key)
            if data is not None:
                out[job_id] = Job.from_chain(job_id, reg.decode(ty, data))
        return out

    def pending_jobs(self) -> tuple[str, list[Job]]:
        """The whole queue at the best block: ``(block_hash, jobs in queue order)``."""
        at = self.conn.block_hash()
        ids = self.pending_job_ids(at)
        jobs = self.jobs(ids, at)
        return at, [jobs[i] for i in ids if i in jobs]

    def user_jobs(self, address: str, at: str | None = None) -> list[int]:
        return [int(i) for i in self.value(JOBS, "UserJobs", address, at=at) or []]

    def gpu_jobs(self, gpu_id: int, at: str | None = None) -> list[int]:
        return [int(i) for i in self.value(JOBS, "GpuJobs", gpu_id, at=at) or []]

    def gpu_jobs_many(self, gpu_ids: list[int], at: str | None = None) -> dict[int, list[int]]:
        entry = self.conn.metadata.storage(JOBS, "GpuJobs")
        keys = entry.u64_keys_hex(gpu_ids)
        raw = self.conn.storage_many(keys, at)
        return {g: [int(i) for i in entry.decode(raw[k]) or []] for g, k in zip(gpu_ids, keys, strict=True)}

    # GPUs -----------------------------------------------------------------------------------------
    def gpu(self, gpu_id: int, at: str | None = None) -> GpuNode | None:
        v = self.value(GPUS, "GpuNodes", gpu_id, at=at)
        return None if v is None else GpuNode.from_chain(gpu_id, v)

    def provider_gpus(self, address: str, at: str | None = None) -> list[int]:
        return [int(i) for i in self.value(GPUS, "ProviderGpus", address, at=at) or []]

    def telemetry(self, gpu_id: int, at: str | None = None) -> Telemetry | None:
        if not self.conn.metadata.has_storage(GPUS, "GpuTelemetry"):
            return None
        v = self.value(GPUS, "GpuTelemetry", gpu_id, at=at)
        return None if v is None else Telemetry.from_chain(v)

    # confidential compute and compliance ----------------------------------------------------------
    def tee_attestation(self, gpu_id: int, at: str | None = None) -> TeeAttestation | None:
        if not self.conn.metadata.has_storage("ConfidentialCompute", "TeeAttestations"):
            return None
        v = self.value("ConfidentialCompute", "TeeAttestations", gpu_id, at=at)
        return None if v is None else TeeAttestation.from_chain(v)

    def compliance(self, address: str, at: str | None = None) -> ComplianceConfig | None:
        if not self.conn.metadata.has_storage("Compliance", "ComplianceConfigs"):
            return None
        v = self.value("Compliance", "ComplianceConfigs", address, at=at)
        return None if v is None else ComplianceConfig.from_chain(v)
