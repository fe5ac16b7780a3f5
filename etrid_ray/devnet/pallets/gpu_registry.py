"""pallet_gpu_registry (Etrid, index 12): GPU nodes, provider stake, status, heartbeats, reputation — plus, in
the `etrid-ray` runtime, the `report_telemetry` extension (call 7, storage `GpuTelemetry`, event `TelemetryReported`,
constant `MaxGpusPerProvider`), each after upstream's items."""

from __future__ import annotations

from typing import Any

from etrid_ray.devnet.pallet import Origin, Pallet
from etrid_ray.devnet.type_registry import Field, Variant

MINIMUM_STAKE = 100 * 10**18  # 100 ËDSC (upstream runtime: `MinimumStake = ConstU128<100_000_000_000_000_000_000>`)
MAX_GPUS_PER_PROVIDER = 100
SLASH_BPS = 1_000  # upstream `SlashPercentage = ConstU16<1000>`: basis points of the stake, 10 %
MAX_OFFLINE_BLOCKS = 1_000  # upstream `MaxOfflineBlocks = ConstU32<1000>` (declared there, not enforced)
DEFAULT_REPUTATION = {"jobs_completed": 0, "jobs_failed": 0, "uptime_bps": 10_000, "rating": 0, "rating_count": 0}


class GpuRegistry(Pallet):
    def declare(self) -> None:
        self.name, self.index, self.module = "GpuRegistry", 12, "pallet_gpu_registry"
        c, reg = self.runtime.types, self.reg
        p = ("pallet_gpu_registry",)
        self.specs_ty = reg.composite(p + ("GpuSpecs",), [
            Field("model", reg.bounded_vec(c.u8, 64), "BoundedVec<u8, ConstU32<64>>"),
            Field("vram_gb", c.u16, "u16"), Field("compute_units", c.u32, "u32"),
            Field("clock_speed_mhz", c.u16, "u16"), Field("tdp_watts", c.u16, "u16")])
        self.attestation_ty = reg.composite(p + ("HardwareAttestation",), [
            Field("tpm_quote", reg.bounded_vec(c.u8, 256), "BoundedVec<u8, ConstU32<256>>"),
            Field("benchmark_score", c.u32, "u32"), Field("timestamp", c.u64, "u64")])
        self.reputation_ty = reg.composite(p + ("Reputation",), [
            Field("jobs_completed", c.u64, "u64"), Field("jobs_failed", c.u64, "u64"),
            Field("uptime_bps", c.u16, "u16"), Field("rating", c.u32, "u32"), Field("rating_count", c.u32, "u32")])
        self.status_ty = reg.variant(p + ("GpuStatus",), [Variant(n, i) for i, n in
                                                          enumerate(["Active", "Paused", "Offline", "Slashed"])])
        self.schedule_ty = reg.variant(p + ("AvailabilitySchedule",), [
            Variant("AlwaysOn", 0), Variant("BusinessHours", 1),
            Variant("Custom", 2, (Field(None, reg.bounded_vec(c.u8, 21), "BoundedVec<u8, ConstU32<21>>"),))])
        self.node_ty = reg.composite(p + ("GpuNode",), [
            Field("provider", c.account_id, "AccountId"), Field("specs", self.specs_ty, "GpuSpecs"),
            Field("attestation", self.attestation_ty, "HardwareAttestation"), Field("stake", c.u128, "Balance"),
            Field("status", self.status_ty, "GpuStatus"), Field("reputation", self.reputation_ty, "Reputation"),
            Field("schedule", self.schedule_ty, "AvailabilitySchedule"), Field("registered_at", c.u64, "u64"),
            Field("last_heartbeat", c.u64, "u64")], params=(("AccountId", c.account_id), ("Balance", c.u128)))
        self.GpuNodes = self.storage("GpuNodes", self.node_ty, optional=True, key_ty=c.u64)
        self.NextGpuId = self.storage("NextGpuId", c.u64, 0)
        self.ProviderGpus = self.storage("ProviderGpus", reg.bounded_vec(c.u64, MAX_GPUS_PER_PROVIDER), [],
                                         key_ty=c.account_id)
        self.ActiveGpuCount = self.storage("ActiveGpuCount", c.u64, 0)
        if self.extended:
            self.telemetry_ty = reg.composite(p + ("Telemetry",), [
                Field("utilization_bps", c.u16, "u16"), Field("jobs_completed", c.u64, "u64"),
                Field("earnings", c.u128, "u128"), Field("reported_at", c.u64, "u64")],
                docs=("Devnet extension: utilization and earnings reported by the provider.",))
            self.GpuTelemetry = self.storage("GpuTelemetry", self.telemetry_ty, optional=True, key_ty=c.u64,
                                             docs="Devnet extension: last telemetry per GPU.")
        gpu_id = ("gpu_id", c.u64, "u64")
        self.call(0, "register_gpu", [("specs", self.specs_ty, "GpuSpecs"),
                                      ("attestation", self.attestation_ty, "HardwareAttestation"),
                                      ("stake", c.u128, "BalanceOf<T>"),
                                      ("schedule", self.schedule_ty, "AvailabilitySchedule")], self.register_gpu)
        self.call(1, "unregister_gpu", [gpu_id], self.unregister_gpu)
        self.call(2, "update_availability", [gpu_id, ("schedule", self.schedule_ty, "AvailabilitySchedule")],
                  self.update_availability)
        self.call(3, "update_status", [gpu_id, ("status", self.status_ty, "GpuStatus")], self.update_status)
        self.call(4, "report_heartbeat", [gpu_id], self.report_heartbeat)
        self.call(5, "slash_provider", [gpu_id], self.slash_provider)
        self.call(6, "update_reputation", [gpu_id, ("job_success", c.bool, "bool"),
                                           ("rating", reg.option(c.u32), "Option<u32>")], self.update_reputation)
        if self.extended:
            self.call(7, "report_telemetry", [gpu_id, ("utilization_bps", c.u16, "u16"),
                                              ("jobs_completed", c.u64, "u64"), ("earnings", c.u128, "u128")],
                      self.report_telemetry, "Devnet extension: report utilization and earnings of a GPU.")
        self.event("GpuRegistered", [gpu_id, ("provider", c.account_id, "T::AccountId"),
                                     ("stake", c.u128, "BalanceOf<T>")])
        self.event("GpuUnregistered", [gpu_id, ("provider", c.account_id, "T::AccountId")])
        self.event("GpuStatusUpdated", [gpu_id, ("status", self.status_ty, "GpuStatus")])
        self.event("AvailabilityUpdated", [gpu_id])
        self.event("ProviderSlashed", [gpu_id, ("slash_amount", c.u128, "BalanceOf<T>")])
        self.event("ReputationUpdated", [gpu_id, ("reputation", self.reputation_ty, "Reputation")])
        if self.extended:
            self.event("TelemetryReported", [gpu_id, ("utilization_bps", c.u16, "u16")], "Devnet extension.")
        for err in ("GpuNotFound", "InsufficientStake", "TooManyGpus", "NotGpuOwner", "GpuAlreadyExists",
                    "InvalidAttestation", "GpuNotActive", "Overflow"):
            self.error(err)
        self.constant("MinimumStake", c.u128, MINIMUM_STAKE)
        self.constant("SlashPercentage", c.u16, SLASH_BPS, "Basis points of the stake a slash takes.")
        self.constant("MaxOfflineBlocks", c.u32, MAX_OFFLINE_BLOCKS)
        if self.extended:
            self.constant("MaxGpusPerProvider", c.u32, MAX_GPUS_PER_PROVIDER)

    # helpers used by other pallets ----------------------------------------------------------------

    def node(self, gpu_id: int) -> dict[str, Any]:
        node = self.runtime.state.get(self.GpuNodes, gpu_id)
        if node is None:
            raise self.fail("GpuNotFound")
        return node

    def owned_node(self, origin: Origin, gpu_id: int) -> tuple[str, dict[str, Any]]:
        who = self.ensure_signed(origin)
        node = self.node(gpu_id)
        if node["provider"] != who:
            raise self.fail("NotGpuOwner")
        return who, node

    def ensure_active(self, node: dict[str, Any]) -> None:
        if node["status"] != "Active":
            raise self.fail("GpuNotActive")

    def record_job(self, gpu_id: int, success: bool) -> None:
        node = self.node(gpu_id)
        rep = dict(node["reputation"])
        key = "jobs_completed" if success else "jobs_failed"
        rep[key] = rep[key] + 1
        self.runtime.state.put(self.GpuNodes, gpu_id, {**node, "reputation": rep})

    def _set_status(self, gpu_id: int, node: dict[str, Any], status: str) -> None:
        state = self.runtime.state
        was_active = node["status"] == "Active"
        state.put(self.GpuNodes, gpu_id, {**node, "status": status})
        active = int(state.get(self.ActiveGpuCount))
        if was_active and status != "Active":
            state.put(self.ActiveGpuCount, None, active - 1)
        elif not was_active and status == "Active":
            state.put(self.ActiveGpuCount, None, active + 1)

    # calls ----------------------------------------------------------------------------------------

    def register_gpu(self, origin: Origin, specs: Any, attestation: Any, stake: Any, schedule: Any) -> None:
        who = self.ensure_signed(origin)
        state, stake = self.runtime.state, int(stake)
        if stake < MINIMUM_STAKE:
            raise self.fail("InsufficientStake")
        if int(attestation["benchmark_score"]) == 0:
            raise self.fail("InvalidAttestation")
        gpus = list(state.get(self.ProviderGpus, who))
        if len(gpus) >= MAX_GPUS_PER_PROVIDER:
            raise self.fail("TooManyGpus")
        gpu_id = int(state.get(self.NextGpuId))
        if state.contains(self.GpuNodes, gpu_id):
            raise self.fail("GpuAlreadyExists")
        self.runtime.balances.reserve(who, stake)
        now = self.runtime.record_time()
        state.put(self.GpuNodes, gpu_id, {
            "provider": who, "specs": specs, "attestation": attestation, "stake": stake, "status": "Active",
            "reputation": DEFAULT_REPUTATION, "schedule": schedule, "registered_at": now, "last_heartbeat": now})
        state.put(self.NextGpuId, None, gpu_id + 1)
        state.put(self.ProviderGpus, who, gpus + [gpu_id])
        state.put(self.ActiveGpuCount, None, int(state.get(self.ActiveGpuCount)) + 1)
        self.emit("GpuRegistered", gpu_id=gpu_id, provider=who, stake=stake)

    def unregister_gpu(self, origin: Origin, gpu_id: Any) -> None:
        gpu_id = int(gpu_id)
        who, node = self.owned_node(origin, gpu_id)
        state = self.runtime.state
        if node["status"] == "Active":
            state.put(self.ActiveGpuCount, None, int(state.get(self.ActiveGpuCount)) - 1)
        self.runtime.balances.unreserve(who, int(node["stake"]))
        state.remove(self.GpuNodes, gpu_id)
        if self.extended:
            state.remove(self.GpuTelemetry, gpu_id)
        state.put(self.ProviderGpus, who, [g for g in state.get(self.ProviderGpus, who) if g != gpu_id])
        self.emit("GpuUnregistered", gpu_id=gpu_id, provider=who)

    def update_availability(self, origin: Origin, gpu_id: Any, schedule: Any) -> None:
        gpu_id = int(gpu_id)
        _, node = self.owned_node(origin, gpu_id)
        self.runtime.state.put(self.GpuNodes, gpu_id, {**node, "schedule": schedule})
        self.emit("AvailabilityUpdated", gpu_id=gpu_id)

    def update_status(self, origin: Origin, gpu_id: Any, status: Any) -> None:
        gpu_id = int(gpu_id)
        _, node = self.owned_node(origin, gpu_id)
        if node["status"] == "Slashed" or status == "Slashed":
            raise self.fail("GpuNotActive")
        self._set_status(gpu_id, node, status)
        self.emit("GpuStatusUpdated", gpu_id=gpu_id, status=status)

    def report_heartbeat(self, origin: Origin, gpu_id: Any) -> None:
        gpu_id = int(gpu_id)
        _, node = self.owned_node(origin, gpu_id)
        self.runtime.state.put(self.GpuNodes, gpu_id, {**node, "last_heartbeat": self.runtime.record_time()})

    def slash_provider(self, origin: Origin, gpu_id: Any) -> None:
        self.ensure_root(origin)
        gpu_id = int(gpu_id)
        node = self.node(gpu_id)
        stake = int(node["stake"])
        amount = stake * SLASH_BPS // 10_000
        self.runtime.balances.repatriate_reserved(node["provider"], self.runtime.treasury, amount)
        node = {**node, "stake": stake - amount}
        self._set_status(gpu_id, node, "Slashed")
        self.emit("ProviderSlashed", gpu_id=gpu_id, slash_amount=amount)

    def update_reputation(self, origin: Origin, gpu_id: Any, job_success: Any, rating: Any) -> None:
        self.ensure_root(origin)
        gpu_id = int(gpu_id)
        node = self.node(gpu_id)
        rep = dict(node["reputation"])
        key = "jobs_completed" if job_success else "jobs_failed"
        rep[key] = rep[key] + 1
        if rating is not None:
            rep["rating"] = rep["rating"] + int(rating)
            rep["rating_count"] = rep["rating_count"] + 1
        self.runtime.state.put(self.GpuNodes, gpu_id, {**node, "reputation": rep})
        self.emit("ReputationUpdated", gpu_id=gpu_id, reputation=rep)

    def report_telemetry(self, origin: Origin, gpu_id: Any, utilization_bps: Any, jobs_completed: Any,
                         earnings: Any) -> None:
        gpu_id = int(gpu_id)
        _, node = self.owned_node(origin, gpu_id)
        if int(utilization_bps) > 10_000:
            raise self.fail("Overflow")
        now = self.runtime.record_time()
        self.runtime.state.put(self.GpuTelemetry, gpu_id, {
            "utilization_bps": int(utilization_bps), "jobs_completed": int(jobs_completed),
            "earnings": int(earnings), "reported_at": now})
        self.runtime.state.put(self.GpuNodes, gpu_id, {**node, "last_heartbeat": now})
        self.emit("TelemetryReported", gpu_id=gpu_id, utilization_bps=int(utilization_bps))
