"""pallet_job_marketplace (Etrid, index 13): jobs, escrow, results and payment.

`upstream` runtime: upstream's calls, storage, events, errors and constants, and upstream's behaviour — jobs reach
a GPU only through root `assign_job` (the devnet's `--assigner` stands in for the off-chain matcher upstream
documents), any signed account may submit a job's result or failure (upstream's TODO), `confirm_job` releases the
escrow back to the submitter and emits `PaymentReleased` with the submitter as `provider` (upstream's placeholder),
`GpuJobs` only grows, timestamps are `block × 6` and nothing times out.

`etrid-ray` runtime: the same items first, then the devnet's extensions — `claim_job` (call 7), the assigned-provider
checks, payment on confirm with the 5 % fee, auto-confirm after `ConfirmWindowBlocks`, timeouts (`JobDeadlines`,
`AwaitingConfirmation`) and their errors and constants.
"""

from __future__ import annotations

import heapq
from typing import Any

from etrid_ray.devnet.assigner import GpuLoad, match_jobs
from etrid_ray.devnet.common_types import to_bytes
from etrid_ray.devnet.pallet import ROOT, DispatchError, Origin, Pallet
from etrid_ray.devnet.type_registry import Field, Variant

PLATFORM_FEE_BPS = 500  # upstream `PlatformFeeBps = ConstU16<500>`
MAX_JOB_DURATION_BLOCKS = 10_000  # upstream `MaxJobDuration = ConstU32<10000>` (declared there, not enforced)
MAX_PENDING_JOBS = 10_000
MAX_USER_JOBS = 1_000
MAX_GPU_JOBS = 100
MAX_REASON_LEN = 128
TIMEOUT_GRACE_SECS = 30
DEFAULT_CONFIRM_WINDOW_BLOCKS = 100
UPSTREAM_ERRORS = (("JobNotFound", "Job not found"), ("NotJobSubmitter", "Not the job submitter"),
                   ("InvalidJobStatus", "Job not in correct status"),
                   ("InsufficientBalance", "Insufficient balance for payment"), ("GpuNotFound", "GPU not found"),
                   ("Overflow", "Overflow in arithmetic"), ("JobQueueFull", "Job queue full"),
                   ("InvalidResult", "Invalid result"))  # upstream's names, order and doc comments
EXTENSION_ERRORS = (("InsufficientPayment", "Payment must be greater than zero."),
                    ("InvalidComputeTime", "max_compute_time must be greater than zero."),
                    ("TooManyUserJobs", "UserJobs is at its bound."),
                    ("TooManyGpuJobs", "GpuJobs is at its bound."),
                    ("NotAssignedProvider", "Only the provider of the assigned GPU may do this."))


class JobMarketplace(Pallet):
    def declare(self) -> None:
        self.name, self.index, self.module = "JobMarketplace", 13, "pallet_job_marketplace"
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
        self.reason_ty = reg.bounded_vec(c.u8, MAX_REASON_LEN)
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
        if self.extended:
            self.JobDeadlines = self.storage(
                "JobDeadlines", c.u64, optional=True, key_ty=c.u64,
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
        self.call(4, "report_failure", [job_id, ("reason", self.reason_ty, "BoundedVec<u8, ConstU32<128>>")],
                  self.report_failure)
        self.call(5, "dispute_job", [job_id], self.dispute_job)
        self.call(6, "cancel_job", [job_id], self.cancel_job)
        if self.extended:
            self.call(7, "claim_job", [job_id, gpu_id], self.claim_job,
                      "Devnet extension: the owner of an Active GPU takes a Pending job.")
        self.event("JobSubmitted", [job_id, ("submitter", c.account_id, "T::AccountId"),
                                    ("payment", c.u128, "BalanceOf<T>")])
        self.event("JobAssigned", [job_id, gpu_id])
        self.event("JobCompleted", [job_id, ("result_hash", c.h256, "H256")])
        self.event("JobFailed", [job_id, ("reason", self.reason_ty, "BoundedVec<u8, ConstU32<128>>")])
        self.event("PaymentReleased", [job_id, ("provider", c.account_id, "T::AccountId"),
                                       ("amount", c.u128, "BalanceOf<T>")])
        self.event("JobDisputed", [job_id])
        self.event("JobCancelled", [job_id])
        for err, doc in UPSTREAM_ERRORS:
            self.error(err, doc)
        if self.extended:
            for err, doc in EXTENSION_ERRORS:
                self.error(err, doc)
        self.constant("PlatformFeeBps", c.u16, PLATFORM_FEE_BPS)
        self.constant("MaxJobDuration", c.u32, MAX_JOB_DURATION_BLOCKS, "Maximum job duration (in blocks).")
        if self.extended:
            self.constant("TimeoutGraceSecs", c.u64, self.runtime.config.timeout_grace_secs)
            self.constant("ConfirmWindowBlocks", c.u32, self.runtime.config.confirm_window_blocks)
        self._deadlines: list[tuple[int, int]] = []
        self._confirmations: list[tuple[int, int]] = []

    def after_load(self) -> None:
        """Rebuilds the in-memory timers from storage (after genesis or a restart)."""
        if not self.extended:
            return
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
        if not self.extended:
            return who  # upstream: "TODO: Verify provider owns the assigned GPU"
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
        if self.extended:
            registry.ensure_active(registry.node(gpu_id))
        elif not state.contains(registry.GpuNodes, gpu_id):
            raise self.fail("GpuNotFound")
        gpu_jobs = list(state.get(self.GpuJobs, gpu_id))
        if len(gpu_jobs) >= MAX_GPU_JOBS:
            raise self.fail("TooManyGpuJobs" if self.extended else "JobQueueFull")
        state.put(self.Jobs, job_id, {**job, "status": "Processing", "assigned_gpu": gpu_id})
        state.put(self.PendingJobs, None, [j for j in state.get(self.PendingJobs) if j != job_id])
        state.put(self.GpuJobs, gpu_id, gpu_jobs + [job_id])
        if self.extended:
            deadline = (self.runtime.now_secs() + int(job["max_compute_time"])
                        + self.runtime.config.timeout_grace_secs)
            state.put(self.JobDeadlines, job_id, deadline)
            heapq.heappush(self._deadlines, (deadline, job_id))
        self.emit("JobAssigned", job_id=job_id, gpu_id=gpu_id)

    def _finish(self, job_id: int, job: dict[str, Any], status: str, result_hash: str | None) -> None:
        state = self.runtime.state
        gpu = job["assigned_gpu"]
        state.put(self.Jobs, job_id, {**job, "status": status, "result_hash": result_hash or job["result_hash"],
                                      "completed_at": self.runtime.record_time()})
        if not self.extended:
            return  # upstream leaves the job in `GpuJobs`
        if gpu is not None:
            state.put(self.GpuJobs, gpu, [j for j in state.get(self.GpuJobs, gpu) if j != job_id])
        state.remove(self.JobDeadlines, job_id)

    def _fail_and_refund(self, job_id: int, job: dict[str, Any], reason: bytes) -> None:
        self._finish(job_id, job, "Failed", None)
        self.runtime.balances.unreserve(job["submitter"], int(job["payment"]))
        if self.extended and job["assigned_gpu"] is not None and self.runtime.state.contains(
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
        if self.extended and payment == 0:
            raise self.fail("InsufficientPayment")
        if self.extended and int(max_compute_time) == 0:
            raise self.fail("InvalidComputeTime")
        pending = list(state.get(self.PendingJobs))
        if len(pending) >= MAX_PENDING_JOBS:
            raise self.fail("JobQueueFull")
        user_jobs = list(state.get(self.UserJobs, who))
        if len(user_jobs) >= MAX_USER_JOBS:
            raise self.fail("TooManyUserJobs" if self.extended else "JobQueueFull")
        self.runtime.balances.reserve(who, payment)
        job_id = int(state.get(self.NextJobId))
        state.put(self.Jobs, job_id, {
            "submitter": who, "model_id": int(model_id), "model_type": model_type, "input_hash": input_hash,
            "output_format": to_bytes(output_format), "max_compute_time": int(max_compute_time),
            "payment": payment, "priority": priority, "status": "Pending", "assigned_gpu": None,
            "result_hash": None, "submitted_at": self.runtime.record_time(), "completed_at": None})
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
        if self.extended:
            self.runtime.gpu_registry.record_job(job["assigned_gpu"], success=True)
            due = self.runtime.block_number + self.runtime.config.confirm_window_blocks
            self.runtime.state.put(self.AwaitingConfirmation, job_id, due)
            heapq.heappush(self._confirmations, (due, job_id))
        self.emit("JobCompleted", job_id=job_id, result_hash=result_hash)

    def _awaiting_submitter(self, origin: Origin, job_id: int) -> dict[str, Any]:
        """The job, when `origin` submitted it and it is Completed (and, here, not yet settled)."""
        who = self.ensure_signed(origin)
        job = self.job(job_id)
        if job["submitter"] != who:
            raise self.fail("NotJobSubmitter")
        if job["status"] != "Completed" or (self.extended
                                            and not self.runtime.state.contains(self.AwaitingConfirmation, job_id)):
            raise self.fail("InvalidJobStatus")
        return job

    def confirm_job(self, origin: Origin, job_id: Any) -> None:
        job_id = int(job_id)
        job = self._awaiting_submitter(origin, job_id)
        if self.extended:
            self._release_payment(job_id, job)
            return
        # upstream: the escrow goes back to the submitter, who is named as the `provider` (a placeholder there)
        payment = int(job["payment"])
        self.runtime.balances.unreserve(job["submitter"], payment)
        self.emit("PaymentReleased", job_id=job_id, provider=job["submitter"],
                  amount=payment - payment * PLATFORM_FEE_BPS // 10_000)

    def report_failure(self, origin: Origin, job_id: Any, reason: Any) -> None:
        job_id = int(job_id)
        job = self.job(job_id)
        self._require_status(job, "Processing")
        self._assigned_provider(origin, job)
        self._fail_and_refund(job_id, job, to_bytes(reason)[:MAX_REASON_LEN])

    def dispute_job(self, origin: Origin, job_id: Any) -> None:
        job_id = int(job_id)
        job = self._awaiting_submitter(origin, job_id)
        if self.extended:
            self.runtime.state.remove(self.AwaitingConfirmation, job_id)
        self.runtime.state.put(self.Jobs, job_id, {**job, "status": "Disputed"})
        self.emit("JobDisputed", job_id=job_id)

    def cancel_job(self, origin: Origin, job_id: Any) -> None:
        who = self.ensure_signed(origin)
        job_id = int(job_id)
        job = self.job(job_id)
        if job["submitter"] != who:
            raise self.fail("NotJobSubmitter")
        self._require_status(job, "Pending")
        state = self.runtime.state
        state.put(self.Jobs, job_id, {**job, "status": "Cancelled"})
        state.put(self.PendingJobs, None, [j for j in state.get(self.PendingJobs) if j != job_id])
        self.runtime.balances.unreserve(who, int(job["payment"]))
        self.emit("JobCancelled", job_id=job_id)

    # hooks ----------------------------------------------------------------------------------------

    def on_initialize(self, block_number: int) -> None:
        """Auto-confirms Completed jobs whose window passed and fails Processing jobs past their deadline (the
        `etrid-ray` runtime), then, with `--assigner`, matches pending jobs to GPUs."""
        if self.extended:
            self._timers(block_number)
        slots = self.runtime.config.assigner_slots
        if slots > 0:
            self.assign_pending(slots)

    def _timers(self, block_number: int) -> None:
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

    def assign_pending(self, slots: int) -> list[tuple[int, int]]:
        """The built-in matcher (`--assigner`): reads the queue and the GPUs, lets `assigner.match_jobs` decide,
        and dispatches each decision as root `assign_job` — the call an off-chain worker would send. A decision
        the call refuses is rolled back alone. Returns the assignments made."""
        state, registry = self.runtime.state, self.runtime.gpu_registry
        pending = list(state.get(self.PendingJobs))
        if not pending:
            return []
        jobs = {j: state.get(self.Jobs, j) for j in pending}
        gpus = []
        for gpu_id, node in state.iter_map(registry.GpuNodes):
            if node["status"] != "Active":
                continue
            on_gpu = list(state.get(self.GpuJobs, int(gpu_id)))
            busy = sum(1 for j in on_gpu if (state.get(self.Jobs, j) or {}).get("status") == "Processing")
            gpus.append(GpuLoad(int(gpu_id), busy, MAX_GPU_JOBS - len(on_gpu)))
        queue = [(j, job["priority"]) for j, job in jobs.items() if job is not None and job["status"] == "Pending"]
        made = []
        for job_id, gpu_id in match_jobs(queue, gpus, slots):
            sp = self.runtime.savepoint()
            try:
                self.assign_job(ROOT, job_id, gpu_id)
                made.append((job_id, gpu_id))
            except DispatchError:
                self.runtime.rollback(sp)
        return made
