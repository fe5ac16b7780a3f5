"""pallet_job_marketplace (Etrid): jobs, escrow, results and payment — plus the devnet extensions
(claim_job, assigned-provider checks, payment on confirm with a 5 % fee, auto-confirm, timeouts)."""

from __future__ import annotations

import heapq
from typing import Any

from etrid_ray.devnet.common_types import to_bytes
from etrid_ray.devnet.pallet import Origin, Pallet
from etrid_ray.devnet.type_registry import Field, Variant

PLATFORM_FEE_BPS = 500
MAX_PENDING_JOBS = 10_000
MAX_USER_JOBS = 1_000
MAX_GPU_JOBS = 100
MAX_REASON_LEN = 128
TIMEOUT_GRACE_SECS = 30
DEFAULT_CONFIRM_WINDOW_BLOCKS = 100


class JobMarketplace(Pallet):
    def declare(self) -> None:
        self.name, self.index, self.module = "JobMarketplace", 11, "pallet_job_marketplace"
        c, reg = self.runtime.types, self.reg
        p = ("pallet_job_marketplace",)
        self.model_type_ty = reg.variant(p + ("ModelType",), [Variant(n, i) for i, n in enumerate(
            ["LLM", "ImageGen", "ImageRecognition", "AudioProcessing", "VideoProcessing", "Custom"])])
        self.priority_ty = reg.variant(p + ("Priority",), [Variant(n, i) for i, n in
                                                           enumerate(["Economy", "Standard", "Premium"])])
        self.status_ty = reg.variant(p + ("JobStatus",), [Variant(n, i) for i, n in enumerate(
            ["Pending", "Processing", "Completed", "Failed", "Disputed", "Cancelled"])])
        opt_h256 = reg.option(c.h256)
        opt_u64 = reg.option(c.u64)
        self.output_format_ty = reg.bounded_vec(c.u8, 32)
        self.job_ty = reg.composite(p + ("Job",), [
            Field("submitter", c.account_id, "AccountId"), Field("model_id", c.u64, "u64"),
            Field("model_type", self.model_type_ty, "ModelType"), Field("input_hash", c.h256, "H256"),
            Field("output_format", self.output_format_ty, "BoundedVec<u8, ConstU32<32>>"),
            Field("max_compute_time", c.u32, "u32"), Field("payment", c.u128, "Balance"),
            Field("priority", self.priority_ty, "Priority"), Field("status", self.status_ty, "JobStatus"),
            Field("assigned_gpu", opt_u64, "Option<u64>"), Field("result_hash", opt_h256, "Option<H256>"),
            Field("submitted_at", c.u64, "u64"), Field("completed_at", opt_u64, "Option<u64>")],
            params=(("AccountId", c.account_id), ("Balance", c.u128)))
        self.Jobs = self.storage("Jobs", self.job_ty, optional=True, key_ty=c.u64)
        self.NextJobId = self.storage("NextJobId", c.u64, 0)
        self.UserJobs = self.storage("UserJobs", reg.bounded_vec(c.u64, MAX_USER_JOBS), [], key_ty=c.account_id)
        self.GpuJobs = self.storage("GpuJobs", reg.bounded_vec(c.u64, MAX_GPU_JOBS), [], key_ty=c.u64)
        self.PendingJobs = self.storage("PendingJobs", reg.bounded_vec(c.u64, MAX_PENDING_JOBS), [],
                                        docs="The global queue of jobs waiting for a GPU.")
        self.TotalJobs = self.storage("TotalJobs", c.u64, 0)
        self.TotalVolume = self.storage("TotalVolume", c.u128, 0)
        self.JobDeadlines = self.storage("JobDeadlines", c.u64, optional=True, key_ty=c.u64,
                                         docs="Devnet extension: unix time after which a Processing job times out.")
        self.AwaitingConfirmation = self.storage(
            "AwaitingConfirmation", c.u32, optional=True, key_ty=c.u64,
            docs="Devnet extension: block at which a Completed job is auto-confirmed and paid.")
        job_id = ("job_id", c.u64, "u64")
        gpu_id = ("gpu_id", c.u64, "u64")
        self.call(0, "submit_job", [
            ("model_id", c.u64, "u64"), ("model_type", self.model_type_ty, "ModelType"),
            ("input_hash", c.h256, "H256"), ("output_format", self.output_format_ty, "BoundedVec<u8, ConstU32<32>>"),
            ("max_compute_time", c.u32, "u32"), ("payment", c.u128, "BalanceOf<T>"),
            ("priority", self.priority_ty, "Priority")], self.submit_job)
        self.call(1, "assign_job", [job_id, gpu_id], self.assign_job)
        self.call(2, "submit_result", [job_id, ("result_hash", c.h256, "H256")], self.submit_result)
        self.call(3, "confirm_job", [job_id], self.confirm_job)
        self.call(4, "report_failure", [job_id, ("reason", reg.bounded_vec(c.u8, MAX_REASON_LEN),
                                                 "BoundedVec<u8, ConstU32<128>>")], self.report_failure)
        self.call(5, "dispute_job", [job_id], self.dispute_job)
        self.call(6, "cancel_job", [job_id], self.cancel_job)
        self.call(7, "claim_job", [job_id, gpu_id], self.claim_job,
                  "Devnet extension: the owner of an Active GPU takes a Pending job.")
        self.event("JobSubmitted", [job_id, ("submitter", c.account_id, "T::AccountId"),
                                    ("payment", c.u128, "BalanceOf<T>")])
        self.event("JobAssigned", [job_id, gpu_id])
        self.event("JobCompleted", [job_id, ("result_hash", c.h256, "H256")])
        self.event("JobFailed", [job_id, ("reason", c.bytes, "Vec<u8>")])
        self.event("PaymentReleased", [job_id, ("provider", c.account_id, "T::AccountId"),
                                       ("amount", c.u128, "BalanceOf<T>")])
        self.event("JobDisputed", [job_id])
        self.event("JobCancelled", [job_id])
        for err, doc in (("JobNotFound", "No job with this id."),
                         ("NotJobOwner", "Only the submitter may do this."),
                         ("InvalidJobStatus", "The job is not in a status that allows this call."),
                         ("InsufficientPayment", "Payment must be greater than zero."),
                         ("InvalidComputeTime", "max_compute_time must be greater than zero."),
                         ("QueueFull", "PendingJobs is at its bound."),
                         ("TooManyUserJobs", "UserJobs is at its bound."),
                         ("TooManyGpuJobs", "GpuJobs is at its bound."),
                         ("NotAssignedProvider", "Only the provider of the assigned GPU may do this."),
                         ("Overflow", "Arithmetic overflow.")):
            self.error(err, doc)
        self.constant("PlatformFeeBps", c.u32, PLATFORM_FEE_BPS)
        self.constant("TimeoutGraceSecs", c.u64, self.runtime.config.timeout_grace_secs)
        self.constant("ConfirmWindowBlocks", c.u32, self.runtime.config.confirm_window_blocks)
        self._deadlines: list[tuple[int, int]] = []
        self._confirmations: list[tuple[int, int]] = []

    def after_load(self) -> None:
        """Rebuilds the in-memory timers from storage (after genesis or a restart)."""
        state = self.runtime.state
        self._deadlines = [(int(v), int(k)) for k, v in state.iter_map(self.JobDeadlines)]
        self._confirmations = [(int(v), int(k)) for k, v in state.iter_map(self.AwaitingConfirmation)]
        heapq.heapify(self._deadlines)
        heapq.heapify(self._confirmations)

    # helpers --------------------------------------------------------------------------------------

    def job(self, job_id: int) -> dict[str, Any]:
        job = self.runtime.state.get(self.Jobs, job_id)
        if job is None:
            raise self.fail("JobNotFound")
        return job

    def _assigned_provider(self, origin: Origin, job: dict[str, Any]) -> str:
        who = self.ensure_signed(origin)
        gpu = job["assigned_gpu"]
        node = self.runtime.state.get(self.runtime.gpu_registry.GpuNodes, gpu) if gpu is not None else None
        if node is None or node["provider"] != who:
            raise self.fail("NotAssignedProvider")
        return who

    def _require_status(self, job: dict[str, Any], *statuses: str) -> None:
        if job["status"] not in statuses:
            raise self.fail("InvalidJobStatus")

    def _assign(self, job_id: int, gpu_id: int) -> None:
        state, registry = self.runtime.state, self.runtime.gpu_registry
        job = self.job(job_id)
        self._require_status(job, "Pending")
        node = registry.node(gpu_id)
        registry.ensure_active(node)
        gpu_jobs = list(state.get(self.GpuJobs, gpu_id))
        if len(gpu_jobs) >= MAX_GPU_JOBS:
            raise self.fail("TooManyGpuJobs")
        state.put(self.Jobs, job_id, {**job, "status": "Processing", "assigned_gpu": gpu_id})
        state.put(self.PendingJobs, None, [j for j in state.get(self.PendingJobs) if j != job_id])
        state.put(self.GpuJobs, gpu_id, gpu_jobs + [job_id])
        deadline = self.runtime.now_secs() + int(job["max_compute_time"]) + self.runtime.config.timeout_grace_secs
        state.put(self.JobDeadlines, job_id, deadline)
        heapq.heappush(self._deadlines, (deadline, job_id))
        self.emit("JobAssigned", job_id=job_id, gpu_id=gpu_id)

    def _finish(self, job_id: int, job: dict[str, Any], status: str, result_hash: str | None) -> None:
        state = self.runtime.state
        gpu = job["assigned_gpu"]
        state.put(self.Jobs, job_id, {**job, "status": status, "result_hash": result_hash,
                                      "completed_at": self.runtime.now_secs()})
        if gpu is not None:
            state.put(self.GpuJobs, gpu, [j for j in state.get(self.GpuJobs, gpu) if j != job_id])
        state.remove(self.JobDeadlines, job_id)

    def _fail_and_refund(self, job_id: int, job: dict[str, Any], reason: bytes) -> None:
        self._finish(job_id, job, "Failed", None)
        self.runtime.balances.unreserve(job["submitter"], int(job["payment"]))
        if job["assigned_gpu"] is not None and self.runtime.state.contains(
                self.runtime.gpu_registry.GpuNodes, job["assigned_gpu"]):
            self.runtime.gpu_registry.record_job(job["assigned_gpu"], success=False)
        self.emit("JobFailed", job_id=job_id, reason=reason)

    def _release_payment(self, job_id: int, job: dict[str, Any]) -> None:
        """Pays the provider payment − 5 % and the treasury the fee, out of the submitter's escrow."""
        state, balances = self.runtime.state, self.runtime.balances
        payment = int(job["payment"])
        fee = payment * PLATFORM_FEE_BPS // 10_000
        node = state.get(self.runtime.gpu_registry.GpuNodes, job["assigned_gpu"])
        state.remove(self.AwaitingConfirmation, job_id)
        if node is None:  # the GPU was unregistered since: refund rather than pay nobody
            balances.unreserve(job["submitter"], payment)
            return
        provider = node["provider"]
        balances.repatriate_reserved(job["submitter"], provider, payment - fee)
        if fee:
            balances.repatriate_reserved(job["submitter"], self.runtime.treasury, fee)
        self.emit("PaymentReleased", job_id=job_id, provider=provider, amount=payment - fee)

    # calls ----------------------------------------------------------------------------------------

    def submit_job(self, origin: Origin, model_id: Any, model_type: Any, input_hash: Any, output_format: Any,
                   max_compute_time: Any, payment: Any, priority: Any) -> None:
        who = self.ensure_signed(origin)
        state, payment = self.runtime.state, int(payment)
        if payment == 0:
            raise self.fail("InsufficientPayment")
        if int(max_compute_time) == 0:
            raise self.fail("InvalidComputeTime")
        pending = list(state.get(self.PendingJobs))
        if len(pending) >= MAX_PENDING_JOBS:
            raise self.fail("QueueFull")
        user_jobs = list(state.get(self.UserJobs, who))
        if len(user_jobs) >= MAX_USER_JOBS:
            raise self.fail("TooManyUserJobs")
        self.runtime.balances.reserve(who, payment)
        job_id = int(state.get(self.NextJobId))
        state.put(self.Jobs, job_id, {
            "submitter": who, "model_id": int(model_id), "model_type": model_type, "input_hash": input_hash,
            "output_format": to_bytes(output_format), "max_compute_time": int(max_compute_time),
            "payment": payment, "priority": priority, "status": "Pending", "assigned_gpu": None,
            "result_hash": None, "submitted_at": self.runtime.now_secs(), "completed_at": None})
        state.put(self.NextJobId, None, job_id + 1)
        state.put(self.PendingJobs, None, pending + [job_id])
        state.put(self.UserJobs, who, user_jobs + [job_id])
        state.put(self.TotalJobs, None, int(state.get(self.TotalJobs)) + 1)
        state.put(self.TotalVolume, None, int(state.get(self.TotalVolume)) + payment)
        self.emit("JobSubmitted", job_id=job_id, submitter=who, payment=payment)

    def assign_job(self, origin: Origin, job_id: Any, gpu_id: Any) -> None:
        self.ensure_root(origin)
        self._assign(int(job_id), int(gpu_id))

    def claim_job(self, origin: Origin, job_id: Any, gpu_id: Any) -> None:
        self.runtime.gpu_registry.owned_node(origin, int(gpu_id))
        self._assign(int(job_id), int(gpu_id))

    def submit_result(self, origin: Origin, job_id: Any, result_hash: Any) -> None:
        job_id = int(job_id)
        job = self.job(job_id)
        self._require_status(job, "Processing")
        self._assigned_provider(origin, job)
        self._finish(job_id, job, "Completed", result_hash)
        self.runtime.gpu_registry.record_job(job["assigned_gpu"], success=True)
        due = self.runtime.block_number + self.runtime.config.confirm_window_blocks
        self.runtime.state.put(self.AwaitingConfirmation, job_id, due)
        heapq.heappush(self._confirmations, (due, job_id))
        self.emit("JobCompleted", job_id=job_id, result_hash=result_hash)

    def _awaiting_submitter(self, origin: Origin, job_id: int) -> dict[str, Any]:
        """The job, when `origin` submitted it and it is Completed and not yet settled."""
        who = self.ensure_signed(origin)
        job = self.job(job_id)
        if job["submitter"] != who:
            raise self.fail("NotJobOwner")
        if job["status"] != "Completed" or not self.runtime.state.contains(self.AwaitingConfirmation, job_id):
            raise self.fail("InvalidJobStatus")
        return job

    def confirm_job(self, origin: Origin, job_id: Any) -> None:
        job_id = int(job_id)
        self._release_payment(job_id, self._awaiting_submitter(origin, job_id))

    def report_failure(self, origin: Origin, job_id: Any, reason: Any) -> None:
        job_id = int(job_id)
        job = self.job(job_id)
        self._require_status(job, "Processing")
        self._assigned_provider(origin, job)
        self._fail_and_refund(job_id, job, to_bytes(reason)[:MAX_REASON_LEN])

    def dispute_job(self, origin: Origin, job_id: Any) -> None:
        job_id = int(job_id)
        job = self._awaiting_submitter(origin, job_id)
        self.runtime.state.remove(self.AwaitingConfirmation, job_id)
        self.runtime.state.put(self.Jobs, job_id, {**job, "status": "Disputed"})
        self.emit("JobDisputed", job_id=job_id)

    def cancel_job(self, origin: Origin, job_id: Any) -> None:
        who = self.ensure_signed(origin)
        job_id = int(job_id)
        job = self.job(job_id)
        if job["submitter"] != who:
            raise self.fail("NotJobOwner")
        self._require_status(job, "Pending")
        state = self.runtime.state
        state.put(self.Jobs, job_id, {**job, "status": "Cancelled"})
        state.put(self.PendingJobs, None, [j for j in state.get(self.PendingJobs) if j != job_id])
        self.runtime.balances.unreserve(who, int(job["payment"]))
        self.emit("JobCancelled", job_id=job_id)

    # hooks ----------------------------------------------------------------------------------------

    def on_initialize(self, block_number: int) -> None:
        """Auto-confirms Completed jobs whose window passed and fails Processing jobs past their deadline."""
        state = self.runtime.state
        while self._confirmations and self._confirmations[0][0] <= block_number:
            _, job_id = heapq.heappop(self._confirmations)
            job = state.get(self.Jobs, job_id)
            if job is not None and job["status"] == "Completed" and state.contains(self.AwaitingConfirmation,
                                                                                 job_id):
                self._release_payment(job_id, job)
        now = self.runtime.now_secs()
        while self._deadlines and self._deadlines[0][0] < now:
            deadline, job_id = heapq.heappop(self._deadlines)
            job = state.get(self.Jobs, job_id)
            if job is not None and job["status"] == "Processing" and state.get(self.JobDeadlines, job_id) == deadline:
                self._fail_and_refund(job_id, job, b"timeout")
