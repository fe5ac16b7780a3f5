"""The provider head: one loop that turns chain jobs into Ray tasks, results and earnings.

Each `step()` does, in order: take queue updates (new pending jobs, events),
fetch and verify new candidates' manifests, decide (pure `admit`), claim the
chosen ones in one batched extrinsic, dispatch them as Ray tasks, harvest
finished and timed-out tasks, journal their outcomes, settle them on chain in
one batched extrinsic, and keep heartbeats and telemetry flowing. The live
Ray actor (`actor.py`) and the tests drive the same object.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from collections import Counter, OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import ray

from etrid_ray.blobs import BlobIntegrityError, BlobNotFound
from etrid_ray.chain import Connection, GpuSpecs, HardwareAttestation, QueueUpdate, QueueWatcher, Signer
from etrid_ray.chain.models import Job, JobStatus
from etrid_ray.config import PLANCK_PER_EDSC, ProviderConfig
from etrid_ray.manifest import Manifest, ManifestError, chain_reason, parse_manifest
from etrid_ray.percentiles import percentile
from etrid_ray.pools import STEER, Pool, pools_from_config
from etrid_ray.provider.admission import Capabilities, JobTerms, Verdict, admit
from etrid_ray.provider.chain_port import ChainPort
from etrid_ray.provider.gpu_info import GpuFacts, gpu_facts
from etrid_ray.provider.journal import Journal, JournalBinding, JournalEntry
from etrid_ray.provider.scaler import draining_gpus
from etrid_ray.provider.task import Outcome, dispatch_failure, dispatch_options, options_problem, probe, run_job
from etrid_ray.provider.timing import Estimates, GpuTimeline, finishes_in_time
from etrid_ray.security import audit, transport

log = logging.getLogger(__name__)

PRIORITY_ORDER = {"Premium": 0, "Standard": 1, "Economy": 2}
POOL_CHECK_S = 2.0  # how often a head without pools looks for pool resources in the cluster
MANIFEST_RETRY_S = 5.0
MANIFEST_CACHE = 4096
OFFLINE_REASON = "provider going offline"
RERUN_MIN_S = 2.0  # a recovered job with less time than this before the chain's deadline is failed, not rerun
RERUN_MARGIN_S = 1.0  # a rerun is timed out this long before the chain's deadline, so our report lands first
RERUN_LATE_REASON = "result lost in a provider restart; too close to the deadline to run again"


@dataclass
class Running:
    job_id: int
    gpu_id: int
    ref: Any
    deadline: float
    dispatched_at: float
    gpus: float
    submitted_at: float
    pool: str | None = None
    # what the claim planned on, so the head learns from how it turned out (provider/timing.py)
    handler: str = ""
    declared_s: float = 0.0  # the run time its args declare, else its limit
    declares: bool = False
    free_at: float = 0.0  # when its GPUs were expected free (dispatch time, or a running job's expected end)
    cold: bool = False  # planned on a new Ray worker (no warm one known free)


@dataclass
class Candidate:
    job: Job
    verdict: Verdict
    manifest: Manifest | None
    first_seen: float
    pool: str | None = None
    free_at: float | None = None  # when the claim planned its GPUs free
    cold: bool = False  # planned on a new Ray worker


@dataclass
class Stats:
    claimed: int = 0
    lost_claims: int = 0
    completed: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    reported: int = 0
    report_errors: int = 0
    earnings_planck: int = 0
    payments: int = 0
    gpu_seconds: float = 0.0
    queue_to_start: deque[float] = field(default_factory=lambda: deque(maxlen=20_000))
    result_to_chain: deque[float] = field(default_factory=lambda: deque(maxlen=20_000))
    waits: deque[float] = field(default_factory=lambda: deque(maxlen=20_000))
    started_at: dict[int, float] = field(default_factory=dict)    # job id -> task start (wall clock)
    ended_at: dict[int, float] = field(default_factory=dict)      # job id -> task end
    on_chain_at: dict[int, float] = field(default_factory=dict)   # job id -> settlement included
    pool_of: dict[int, str | None] = field(default_factory=dict)   # job id -> pool its task was steered to


def _failure_kind(reason: str) -> str:
    return reason.split(":")[0].split(" (")[0][:40]


class ProviderHead:
    #: builds the TEE gate (callable(head) -> TeeGate); None = from the TEE config when ENABLE_TEE has TEE pools
    make_gate: Any = None

    def __init__(self, config: ProviderConfig, signer: Signer, *, chain_url: str | None = None,
                 journal: Journal | None = None) -> None:
        self.config = config
        self.signer = signer
        self.chain_url = chain_url or config.websocket_url
        if config.ENABLE_COMPLIANCE:
            # plaintext to a remote endpoint is refused before any socket opens; every decision is audited
            transport.check_endpoint(self.chain_url, compliance=True, what="websocket_url")
            transport.check_config(config)
            audit.configure(os.environ.get(audit.ENV_PATH) or config.journal_file.with_name("audit.jsonl"))
            audit.record("config_change", setting="provider", action="start", account=signer.address,
                         region=config.region)
        self.anchorer: Any = None
        self.conn = Connection(self.chain_url)
        self.chain = ChainPort(self.conn, signer, batch_size=config.claim_batch)
        self.store_url = config.blob_store or self.chain_url
        self.store = transport.open_secure_blob_store(self.store_url, compliance=config.ENABLE_COMPLIANCE)
        self.journal = journal or Journal(config.journal_file)
        self.facts: GpuFacts = gpu_facts(config.gpus)
        self.caps = Capabilities(
            gpus_per_node=max(self.facts.count, 1), vram_gb=self.facts.vram_gb, accelerator=self.facts.model,
            tee=config.gpus.tee, region=config.region, handlers=frozenset(config.allowed_handlers),
            price_per_gpu_second=config.PRICE_PER_SECOND, max_input_bytes=config.max_input_bytes)
        self.pools: list[Pool] = pools_from_config(config)
        self.pool_caps = {p.name: replace(self.caps, gpus_per_node=p.gpus_per_node, vram_gb=p.vram_gb,
                                          accelerator=p.accelerator, tee=p.tee, region=p.region)
                          for p in self.pools}
        self.scaler: Any = None  # a Scaler once the cluster shows pool resources (KubeRay / fake autoscaler)
        self.tee_gate: Any = None
        self.plan: Any = None
        self._pools_checked_at = -math.inf
        self._pool_capacity: dict[str, float] = {}
        self._task_shapes: dict[tuple[float, str | None], Any] = {}
        self._manifest_texts: dict[str, str] = {}
        self._last_scale = 0.0
        self.gpu_ids: list[int] = []
        self.running: dict[int, Running] = {}
        self.gpu_load: Counter[int] = Counter()
        self.candidates: OrderedDict[int, Candidate] = OrderedDict()
        self.seen: dict[int, float] = {}          # job id -> when we first saw it pending
        self.retry_manifest: dict[int, float] = {}
        self.to_settle: list[tuple[int, bool, str | None, str]] = []
        self.finished_at: dict[int, float] = {}
        self.pending_ids: list[int] = []
        self.best_block = 0
        self.stats = Stats()
        self._manifests: OrderedDict[str, Manifest | ManifestError] = OrderedDict()
        self._updates: queue.Queue[QueueUpdate] = queue.Queue()
        self._watcher: QueueWatcher | None = None
        self._fetch_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="etrid-manifest")
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._done: queue.Queue[tuple[int, Any]] = queue.Queue()  # (job id, finished future)
        self._last_deadline_scan = 0.0
        self._capacity_read_at = -1e9
        self._capacity_cache = 0.0
        self._lock = threading.RLock()  # running, gpu_load, to_settle, stats: shared by the two loops
        self._thread: threading.Thread | None = None
        self._last_heartbeat = 0.0
        self._last_telemetry = 0.0
        self._settle_retry = False
        self._pool_resource: dict[str, float] = {}
        self.draining = False  # set by drain(): no new claims; in-flight jobs finish (or fail) and settle
        self.claiming = 0  # jobs in a claim extrinsic not yet answered: claimed on chain, not yet running
        self._too_big: set[int] = set()  # jobs counted once as needing more GPUs than the Ray cluster has
        self.started_at = time.time()
        self.loop_seconds: deque[float] = deque(maxlen=1000)
        self.errors: Counter[str] = Counter()
        self.estimates = Estimates()  # dispatch delay, node startup, run times: learnt from what this head sees
        self._node_waits: dict[str, list[float]] = {}  # pool -> when each of its pending nodes was requested
        self._alive_seen: dict[str, int] = {}
        self._pool_nodes: dict[str, tuple[int, int]] = {}  # pool -> (alive, pending) at the last scaling step
        self._late: set[int] = set()  # jobs counted once as impossible to finish in time here
        self._departed: list[Any] = []  # scaling.Departure: queued jobs gone, not ours, since the last scaling step
        self._probe: tuple[Any, float, str | None] | None = None  # a probe in flight: ref, when sent, its pool
        self._probe_sent_at = -math.inf
        self._workers: dict[str | None, set[str]] = {}  # pool -> Ray workers seen running our tasks (warm ones)

    # lifecycle ------------------------------------------------------------------------------------

    def start(self, *, background: bool = True) -> ProviderHead:
        """Registers missing GPUs, recovers in-flight work from chain + journal, starts watching."""
        self.gpu_ids = self._ensure_gpus()
        self.tee_gate = self._build_tee_gate()
        if audit.default_log() is not None:  # the audit log's head hash, anchored on chain periodically
            self.anchorer = audit.Anchorer(audit.default_log(), self.chain.client.submitter).start()
        pool_key = f"pool:{self.config.pool}"
        if ray.is_initialized() and pool_key in ray.cluster_resources():
            self._pool_resource = {pool_key: 0.001}
        self.recover()
        self._watcher = QueueWatcher(self.conn, self._on_update, poll_interval=self.config.poll_interval_s)
        self._watcher.start()
        if background:
            self._thread = threading.Thread(target=self.run_forever, name="etrid-provider-head", daemon=True)
            self._thread.start()
        return self

    def _build_tee_gate(self) -> Any:
        """Confidential jobs run only on nodes that attested freshly: the gate keeps that set, and admission,
        claims and dispatch consult it. Without TEE pools there is no gate and nothing changes."""
        factory = self.make_gate
        if factory is None and self.config.ENABLE_TEE and any(p.tee for p in self.pools):
            from etrid_ray.security.tee.config import load_tee_config
            from etrid_ray.security.tee.node import TeeGate
            from etrid_ray.security.tee.verify import TeePolicy

            def factory(head: ProviderHead) -> Any:
                tee_config = load_tee_config()
                return TeeGate.for_head(head, TeePolicy.from_config(tee_config), tee_config)

        if factory is None:
            return None
        return factory(self).start(poll_s=0.5)

    def stop(self) -> None:
        self._stop.set()
        if self.tee_gate is not None:
            self.tee_gate.stop()
        if self.scaler is not None:
            try:
                self.scaler.release()
            except Exception:  # the cluster may already be gone
                log.warning("could not release requested capacity")
        if self._watcher is not None:
            self._watcher.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        self._fetch_pool.shutdown(wait=False, cancel_futures=True)
        if self.anchorer is not None:
            self.anchorer.stop()  # a final anchor
        self.conn.close()

    def drain(self, *, now: bool = False, reason: str = OFFLINE_REASON) -> None:
        """Takes the provider offline without breaking a promise made on chain: from now on nothing is
        claimed, and each claimed job either runs to its end and is settled as usual (`now=False`) or, with
        `now`, is cancelled and settled at once as a failure carrying `reason` — so consumers learn it at
        once instead of at the job's timeout. `drained` turns true when nothing is left in flight."""
        self.draining = True
        with self._lock:
            self.candidates.clear()
            if not now:
                return
            failed = []
            for run in self.running.values():
                if run.ref is not None:
                    ray.cancel(run.ref, force=True)
                    run.ref = None  # the harvest must not take it again
                    failed.append((run.job_id, False, None, reason))
            if not failed:
                return
            self.journal.finished(failed)
            at = time.time()
            for job_id, *_ in failed:
                run = self.running.pop(job_id)
                self.gpu_load[run.gpu_id] -= 1
                self.finished_at[job_id] = at
                self.stats.failed[_failure_kind(reason)] += 1
            self.to_settle.extend(failed)
        audit.record_many([("failure", {"job": j, "reason": reason}) for j, *_ in failed])
        self._wake.set()

    @property
    def drained(self) -> bool:
        """Draining and nothing left to run or to settle: the head may stop without losing a job."""
        with self._lock:
            return self.draining and not self.claiming and not self.running and not self.to_settle

    def _on_update(self, update: QueueUpdate) -> None:
        self._updates.put(update)
        self._wake.set()

    def run_forever(self) -> None:
        """Two loops in two threads, so chain round trips overlap: this one takes the queue, claims and
        dispatches; the reporter harvests finished tasks and settles them on chain."""
        reporter = threading.Thread(target=self._report_forever, name="etrid-provider-reporter", daemon=True)
        reporter.start()
        while not self._stop.is_set():
            busy = self._guarded(self._intake_step)
            if not busy:
                self._wake.wait(self.config.poll_interval_s)
                self._wake.clear()
        reporter.join(timeout=30)

    def _report_forever(self) -> None:
        while not self._stop.is_set():
            self._guarded(lambda: bool(self._harvest(wait=0.05) + self._settle()))

    def _guarded(self, fn: Any) -> bool:
        try:
            return bool(fn())
        except Exception as err:  # one bad pass must not stop the head; it is counted and logged
            self.errors[type(err).__name__] += 1
            log.exception("provider head step failed")
            self._stop.wait(0.5)
            return False

    def _intake_step(self) -> bool:
        t0 = time.perf_counter()
        try:
            return self._intake_pass()
        finally:
            self.loop_seconds.append(time.perf_counter() - t0)

    def _intake_pass(self) -> bool:
        self._take_updates()
        if self.draining:  # offline: follow the chain (blocks, payments), keep heartbeats, claim nothing
            with self._lock:
                self.candidates.clear()
            self._keepalive()
            return False
        self._maybe_enable_scaling()
        self._evaluate()
        self._scale()
        claimed = self._claim_and_dispatch()
        self._keepalive()
        return claimed > 0

    # GPUs -----------------------------------------------------------------------------------------

    def _ensure_gpus(self) -> list[int]:
        mine = self.chain.my_gpus()
        missing = self.facts.count - len(mine)
        if missing > 0:
            specs = GpuSpecs(self.facts.model, self.facts.vram_gb, self.config.gpus.compute_units,
                             self.config.gpus.clock_speed_mhz, self.config.gpus.tdp_watts)
            stake = self.config.stake_edsc * PLANCK_PER_EDSC
            attestation = HardwareAttestation(tpm_quote=self.facts.source.encode(), benchmark_score=1000,
                                              timestamp=int(time.time()))
            new = self.chain.client.register_gpus([(specs, stake)] * missing, attestation=attestation)
            log.info("registered %d GPUs on chain: %s", len(new), new)
            mine = mine + new
        return mine[: max(self.facts.count, 0)] if self.facts.count else mine

    def _capacity(self) -> float:
        """GPUs the Ray cluster has now (it grows and shrinks with the autoscaler); read at most every
        second, since `ray.cluster_resources()` walks every node."""
        now = time.monotonic()
        if now - self._capacity_read_at > 1.0:
            self._capacity_read_at = now
            if ray.is_initialized():
                # What Ray can schedule, never what the config declares: a head that claimed on declared
                # GPUs a cluster without GPUs cannot run would see every claim time out on chain.
                total = float(ray.cluster_resources().get("GPU", 0.0))
                self._capacity_cache = max(0.0, total - draining_gpus())  # a draining node takes no new work
            else:  # driven without Ray (unit tests of the loop): the declared GPUs
                self._capacity_cache = float(self.facts.count)
        return self._capacity_cache

    def _free_gpus(self) -> float:
        return self._capacity() - sum(r.gpus for r in self.running.values())

    def _pick_gpu(self, gpus_needed: float) -> int | None:
        """The least loaded of our GPUs with room for another in-flight job."""
        cap = self.config.max_inflight_per_gpu
        best = min(self.gpu_ids, key=lambda g: self.gpu_load[g], default=None)
        if best is None or self.gpu_load[best] >= cap:
            return None
        return best

    # recovery -------------------------------------------------------------------------------------

    def recover(self) -> None:
        """Rebuilds in-flight state from the chain, trusting the journal only where the chain agrees.

        A Processing job on our GPUs is reported from the journal only when the journal belongs to this
        chain and account (`_bind_journal`), its row says this head finished the job on the GPU the chain
        assigned it to, and — for a result — the result blob is in the store and hashes to what would be
        reported. Anything else runs again when the chain's deadline leaves time, or is failed with a reason.
        A journal row never makes a job ours: only the chain's `GpuJobs` does. Nothing is reported for a
        job that did not run here, nothing is lost, nothing is reported twice."""
        self._bind_journal()
        on_chain = self.chain.gpu_jobs(self.gpu_ids)
        ours = {j: g for g, jobs in on_chain.items() for j in jobs}
        jobs = self.chain.jobs(list(ours))
        settle: list[tuple[int, bool, str | None, str]] = []
        results: list[tuple[Job, int, JournalEntry]] = []
        redo: list[tuple[Job, int, JournalEntry | None]] = []
        for job_id, gpu_id in ours.items():
            job = jobs.get(job_id)
            if job is None or job.status != JobStatus.PROCESSING or job.assigned_gpu != gpu_id:
                continue
            entry = self.journal.get(job_id)
            if (entry is None or entry.state not in ("finished", "reported") or entry.ok is None
                    or entry.gpu_id not in (None, gpu_id)):
                redo.append((job, gpu_id, entry))
            elif entry.ok:
                results.append((job, gpu_id, entry))
            else:
                settle.append((job_id, False, None, entry.reason or "failed"))
        hashes = list({entry.result_hash or "" for _, _, entry in results})
        problems = dict(zip(hashes, self._fetch_pool.map(self._result_blob_problem, hashes), strict=True))
        for job, gpu_id, entry in results:
            problem = problems[entry.result_hash or ""]
            if problem is None:
                settle.append((job.job_id, True, entry.result_hash, ""))
            else:
                log.warning("job %d: journalled result %s is not reported (%s); running the job again",
                            job.job_id, entry.result_hash, problem)
                redo.append((job, gpu_id, entry))
        for entry in self.journal.in_state("finished") + self.journal.in_state("claimed"):
            if entry.job_id not in ours:
                self.journal.reported([entry.job_id])  # settled before the crash (or timed out on chain)
        rerun, lost = self._rerun_or_fail(redo)
        settle.extend(lost)
        if rerun:  # a fresh run of a job the chain shows as ours: its old row (e.g. an unverified result) goes
            self.journal.claimed([(job.job_id, gpu_id) for job, gpu_id, _ in rerun])
        manifests = self._fetch_manifests([job for job, _, _ in rerun])
        now = time.time()
        with self._lock:
            for job, gpu_id, deadline in rerun:
                manifest = manifests.get(job.input_hash)
                if isinstance(manifest, Manifest):
                    self._dispatch_alone(job, manifest, gpu_id, None)
                    run = self.running.get(job.job_id)
                    if run is not None and deadline is not None:
                        run.deadline = min(run.deadline, deadline - RERUN_MARGIN_S)  # fail it before the chain does
                else:
                    reason = str(manifest) if manifest is not None else "manifest unavailable"
                    settle.append((job.job_id, False, None, reason))
            failures = [item for item in settle if not item[1]]
            if failures:
                self.journal.finished(failures)
            for item in settle:
                self.finished_at[item[0]] = now
            self.to_settle.extend(settle)
        if ours:
            log.info("recovered %d in-flight jobs (%d re-dispatched, %d to report: %d results verified in the "
                     "blob store, %d failures)", len(ours), len(rerun), len(settle),
                     sum(1 for item in settle if item[1]), len(failures))

    def _bind_journal(self) -> None:
        """Binds the journal to this chain and account before recovery reads it. A journal of another
        chain (an earlier devnet whose job ids this one reuses) or another account is never used: it is
        renamed aside and a fresh one takes its place (see `journal.Journal.bind` for why)."""
        genesis, block1 = self.chain.identity()
        outcome = self.journal.bind(JournalBinding(genesis, block1, self.chain.address))
        if not outcome.used:
            where = f"moved to {outcome.set_aside}" if outcome.set_aside else "cleared"
            log.warning("journal %s not used for recovery: %s; %s, starting a fresh journal",
                        self.journal.path or ":memory:", outcome.reason, where)

    def _result_blob_problem(self, result_hash: str) -> str | None:
        """None when the result blob is in the store and its bytes hash to `result_hash`; else why not."""
        if not result_hash:
            return "no result hash journalled"
        store = getattr(self.store, "inner", self.store)  # the sealed bytes are what the hash names
        try:
            store.get(result_hash)  # verifies the bytes against the hash
        except BlobNotFound:
            return "result blob not in the store"
        except BlobIntegrityError:
            return "result blob does not match its hash"
        except Exception as err:  # unreachable store, malformed hash: unverified is not reported
            return f"result blob not verifiable ({type(err).__name__})"
        return None

    def _rerun_or_fail(self, redo: list[tuple[Job, int, JournalEntry | None]]
                       ) -> tuple[list[tuple[Job, int, float | None]], list[tuple[int, bool, str | None, str]]]:
        """Splits jobs to run again into those the chain's deadline still leaves time for (with that deadline,
        None when unknown) and failures: a job whose deadline is (nearly) past cannot finish in time, and
        failing it now tells its consumer at once instead of at the chain's timeout."""
        deadlines: dict[int, float] = {j: float(d) for j, d in self.chain.job_deadlines(
            [job.job_id for job, _, _ in redo]).items()}
        now = time.time()
        rerun: list[tuple[Job, int, float | None]] = []
        lost: list[tuple[int, bool, str | None, str]] = []
        for job, gpu_id, entry in redo:
            deadline = deadlines.get(job.job_id)
            if deadline is None and entry is not None and entry.state == "claimed" and entry.updated:
                deadline = entry.updated + job.max_compute_time  # no JobDeadlines: from the journalled claim
            if deadline is not None and deadline - now < RERUN_MIN_S:
                lost.append((job.job_id, False, None, RERUN_LATE_REASON))
            else:
                rerun.append((job, gpu_id, deadline))
        return rerun, lost

    # manifests ------------------------------------------------------------------------------------

    def _fetch_one(self, input_hash: str) -> Manifest | ManifestError | None:
        cached = self._manifests.get(input_hash)
        if cached is not None:
            return cached
        try:
            data = self.store.get(input_hash)
        except BlobIntegrityError:
            result: Manifest | ManifestError = ManifestError("manifest hash mismatch")
        except BlobNotFound:
            return None
        except Exception as err:  # store unreachable: try again later, touch nothing
            log.warning("manifest %s: %s", input_hash, err)
            return None
        else:
            try:
                result = parse_manifest(data)
            except ManifestError as err:
                result = err
        self._manifests[input_hash] = result
        while len(self._manifests) > MANIFEST_CACHE:
            self._manifests.popitem(last=False)
        return result

    def _fetch_manifests(self, jobs: list[Job]) -> dict[str, Manifest | ManifestError | None]:
        hashes = list({j.input_hash for j in jobs})
        return dict(zip(hashes, self._fetch_pool.map(self._fetch_one, hashes), strict=True))

    # the loop -------------------------------------------------------------------------------------

    def step(self) -> bool:
        """One pass; returns True when it did work (so the loop goes again without waiting)."""
        t0 = time.perf_counter()
        self._take_updates()
        self._maybe_enable_scaling()
        self._evaluate()
        self._scale()
        claimed = self._claim_and_dispatch()
        harvested = self._harvest()
        settled = self._settle()
        self._keepalive()
        did = bool(claimed or harvested or settled)
        if did:
            self.loop_seconds.append(time.perf_counter() - t0)
        return did

    def _take_updates(self) -> None:
        latest: QueueUpdate | None = None
        while True:
            try:
                update = self._updates.get_nowait()
            except queue.Empty:
                break
            latest = update
            for job_id, job in update.new_jobs.items():
                if job.status == JobStatus.PENDING and job_id not in self.candidates and job_id not in self.running:
                    self.candidates[job_id] = Candidate(job, Verdict("skip", "unevaluated"), None, time.time())
            for event in update.events:
                if event.is_("JobMarketplace", "PaymentReleased") and event.get("provider") == self.chain.address:
                    self.stats.earnings_planck += int(event.get("amount"))
                    self.stats.payments += 1
        if latest is not None:
            self.best_block = latest.block_number
            self.pending_ids = latest.pending_ids
            pending = set(latest.pending_ids)
            gone = [j for j in self.candidates if j not in pending]
            for job_id in gone:  # taken by someone else, cancelled or expired
                self._note_departed(self.candidates.pop(job_id))
            # Pending jobs we hold no view of (e.g. a claim whose extrinsic was lost in a node restart)
            unknown = [j for j in latest.pending_ids if j not in self.candidates and j not in self.running]
            if unknown:
                for job_id, job in self.chain.jobs(unknown).items():
                    if job.status == JobStatus.PENDING:
                        self.candidates[job_id] = Candidate(job, Verdict("skip", "unevaluated"), None, time.time())

    def _evaluate(self) -> None:
        now = time.time()
        todo = [c.job for c in self.candidates.values()
                if c.verdict.reason == "unevaluated" and self.retry_manifest.get(c.job.job_id, 0) <= now]
        if not todo:
            return
        manifests = self._fetch_manifests(todo)
        for job in todo:
            manifest = manifests.get(job.input_hash)
            if manifest is None:
                self.retry_manifest[job.job_id] = now + MANIFEST_RETRY_S
                continue
            terms = JobTerms(job.job_id, job.model_type, job.max_compute_time, job.payment)
            verdict = self._admit(terms, manifest)
            cand = self.candidates[job.job_id]
            cand.verdict = verdict
            cand.manifest = manifest if isinstance(manifest, Manifest) else None
            if cand.manifest is not None and (cand.manifest.compliance.template or
                                              cand.manifest.compliance.allowed_regions):
                audit.record("placement", job=job.job_id, template=cand.manifest.compliance.template,
                             decision="skip" if verdict.action == "skip" else "admitted", reason=verdict.reason)
            if verdict.action == "skip":
                self.stats.skipped[_failure_kind(verdict.reason)] += 1

    def _admit(self, terms: JobTerms, manifest: Manifest | ManifestError) -> Verdict:
        """Without pools, against this provider's GPUs; with pools, claimable when any pool could run it."""
        gate = self.tee_gate
        if self.scaler is None:
            caps = gate.local_caps(self.caps, self.config.pool) if gate is not None else self.caps
            return admit(terms, manifest, caps)
        pool_caps = gate.admission_caps(self.pool_caps) if gate is not None else self.pool_caps
        verdicts = [admit(terms, manifest, caps) for caps in pool_caps.values()]
        for verdict in verdicts:
            if verdict.action != "skip":
                return verdict
        return verdicts[0]

    # pools and scaling ----------------------------------------------------------------------------

    def _maybe_enable_scaling(self) -> None:
        """Turns scaling on once the cluster advertises one of our pools. Looked at every few seconds, not
        every pass: `ray.cluster_resources()` walks every node, and pool nodes take seconds to appear."""
        if self.scaler is not None or not ray.is_initialized():
            return
        now = time.monotonic()
        if now - self._pools_checked_at < POOL_CHECK_S:
            return
        self._pools_checked_at = now
        ours = {p.resource for p in self.pools}
        if any(k in ours for k in ray.cluster_resources()):
            from etrid_ray.provider.scaler import Scaler

            self.scaler = Scaler(self.config, self.pools, refresh_in_background=True)
            for cand in self.candidates.values():
                cand.verdict = Verdict("skip", "unevaluated")  # re-admit against every pool
            log.info("cluster advertises pools: scaling across %s", [p.name for p in self.pools])

    def _scale(self) -> None:
        """Places the admitted queue on pools and applies the policy's targets, about once a second."""
        now = time.time()
        if self.scaler is None or now - self._last_scale < self.config.scale_interval_s:
            return
        self._last_scale = now
        if self.tee_gate is not None and self.tee_gate.take_changed():
            for cand in self.candidates.values():  # the attested set changed: admit everything again
                cand.verdict = Verdict("skip", "unevaluated")
            self._evaluate()
        from etrid_ray.scaling import QueuedJob

        queue = [QueuedJob.from_chain(JobTerms(c.job.job_id, c.job.model_type, c.job.max_compute_time,
                                               c.job.payment), c.manifest, waiting_since=c.first_seen)
                 for c in self.candidates.values() if c.verdict.action == "claim" and c.manifest is not None]
        departed, self._departed = tuple(self._departed), []
        step = self.scaler.step(queue, now, departed)
        self.plan = step.plan
        with self._lock:
            # Room per pool = GPUs of its alive nodes − GPUs of our tasks steered there (queued in Ray or
            # running): Ray's "available" lags tasks not yet scheduled, and only we use these GPUs.
            self._pool_capacity = {ps.name: ps.alive * ps.pool.gpus_per_node for ps in step.snapshot.pools}
            self._observe_nodes(step.snapshot.pools, now)

    def _note_departed(self, cand: Candidate) -> None:
        """A candidate left the chain's queue without this head claiming it: the next snapshot tells the
        policy (how long consumers wait before someone else serves them). Only jobs the policy saw in its
        queue count — admitted, manifest read — as in the simulator; none are kept while nothing scales."""
        if self.scaler is None or cand.verdict.action != "claim":
            return
        job = self._queued(cand)
        if job is not None:
            from etrid_ray.scaling import Departure

            self._departed.append(Departure.of(job, time.time()))

    def _observe_nodes(self, pools: Any, now: float) -> None:
        """Learns each pool's node startup: a node counts from when the scaler's request made it pending to when
        it is seen alive (oldest request first). The pending ones are what `_timelines` expects to arrive."""
        for ps in pools:
            waits = self._node_waits.setdefault(ps.name, [])
            arrived = ps.alive - self._alive_seen.get(ps.name, ps.alive)
            for _ in range(max(0, arrived)):
                if waits:
                    self.estimates.observe_node(ps.name, now - waits.pop(0), ps.pool.startup_s)
            del waits[ps.pending:]  # requests withdrawn (or nodes that came up unannounced)
            waits.extend([now] * (ps.pending - len(waits)))
            self._alive_seen[ps.name] = ps.alive
            self._pool_nodes[ps.name] = (ps.alive, ps.pending)

    def _pool_room(self) -> dict[str, float]:
        used: dict[str, float] = {}
        for run in self.running.values():
            if run.pool is not None:
                used[run.pool] = used.get(run.pool, 0.0) + run.gpus
        room = {name: cap - used.get(name, 0.0) for name, cap in self._pool_capacity.items()}
        return self.tee_gate.pool_room(room) if self.tee_gate is not None else room

    def _claim_and_dispatch(self) -> int:
        """Claims what this head can finish in time: a claim starts the chain's clock, so a job is claimed only
        when its estimated start (`_timelines`) plus its expected run fits its limit with a margin
        (provider/timing.py). What cannot start in time yet stays on chain — for us later, or for another
        provider; what could never finish here in time is counted in `stats.skipped`."""
        if self.draining:
            return 0
        chosen = [c for c in self.candidates.values() if c.verdict.action in ("claim", "reject")]
        if not chosen:
            return 0
        # bad manifests first (failing them costs nothing), then the chain's priority, then the placement's
        # order (best-paying first, the same order the simulator proves), then first come
        plan = self.plan
        rank: dict[int, int] = plan.order if plan is not None else {}
        chosen.sort(key=lambda c: (c.verdict.action != "reject", PRIORITY_ORDER.get(c.job.priority, 1),
                                   rank.get(c.job.job_id, len(rank)), c.job.submitted_at, c.job.job_id))
        pairs: list[tuple[Candidate, int]] = []
        now = time.time()
        held = False  # a job held back on timing: worth probing how fast Ray starts tasks now
        with self._lock:
            timelines = self._timelines(now)
            dispatch_s = self.estimates.dispatch_s()
            observed = self.estimates.cold.count > 0 or not ray.is_initialized()
            warm = self._warm_slots()
            for cand in chosen[: self.config.claim_batch]:
                if cand.verdict.action == "claim" and not observed:
                    held = True
                    continue  # nothing claimed on timings never seen: the probe measures them first
                if cand.verdict.action == "reject" or cand.manifest is None:
                    gpu = self._pick_gpu(0.0)
                    if gpu is None:
                        break
                    cand.pool, cand.free_at = None, None
                    self.gpu_load[gpu] += 1
                    pairs.append((cand, gpu))
                    continue
                gpus = cand.manifest.resources.gpus
                handler, declared, declares, limit = self._job_timing(cand.job, cand.manifest)
                run_s = self.estimates.run_s(handler, declared, limit, declares)
                if not finishes_in_time(now, now + dispatch_s, run_s, limit):  # even on a warm worker
                    if not finishes_in_time(now, now, run_s, limit):
                        self._skip_late(cand.job.job_id, limit, run_s)  # not even if Ray started it at once
                    held = True
                    continue  # not even on idle GPUs now: left on chain (to us later, or to other providers)
                placed = None
                for pool in self._pools_to_try(cand):
                    timeline = timelines.get(pool)
                    free_at = timeline.earliest(gpus) if timeline is not None else None
                    cold = warm.get(pool, 0) <= 0
                    delay = self.estimates.cold_s() if cold else dispatch_s
                    if free_at is not None and finishes_in_time(now, free_at + delay, run_s, limit):
                        placed = (pool, free_at, cold, delay)
                        break
                if placed is None:
                    if self.scaler is None and gpus > self._capacity() + 1e-9:
                        self._skip_too_big(cand.job.job_id, gpus)
                    continue  # no GPUs in time yet: the scaler asks for them; the job stays on chain meanwhile
                gpu = self._pick_gpu(gpus)
                if gpu is None:
                    break
                pool, free_at, cold, delay = placed
                timelines[pool].reserve(free_at, free_at + delay + run_s, gpus)
                warm[pool] = warm.get(pool, 0) - 1
                cand.pool, cand.free_at, cand.cold = pool, free_at, cold
                self.gpu_load[gpu] += 1
                pairs.append((cand, gpu))
            self.claiming += len(pairs)  # under the same lock as `drained` reads it
        self._maybe_probe(held, now)
        if not pairs:
            return 0
        try:
            return self._claim_pairs(pairs)
        finally:
            with self._lock:
                self.claiming -= len(pairs)

    def _maybe_probe(self, held: bool, now: float) -> None:
        """Learns Ray's dispatch delay without betting a job on it: takes the answer of the probe in flight, and
        sends another (at most one a second, on a pool with live nodes) while jobs are held back on timing."""
        if self._probe is not None:
            ref, sent, probed = self._probe
            ready, _ = ray.wait([ref], timeout=0)
            if not ready:
                return
            self._probe = None
            try:
                started, worker = ray.get(ref)
            except ray.exceptions.RayError:
                log.warning("dispatch probe failed", exc_info=True)
                return
            self._observe_start(probed, worker, started - sent)
            return
        if not held or not ray.is_initialized() or now - self._probe_sent_at < 1.0:
            return
        pool = None
        if self.scaler is not None:
            pool = next((name for name, cap in self._pool_capacity.items() if cap > 0), None)
            if pool is None:
                return  # no live node yet: a probe would measure node startup, which is learnt apart
        self._probe_sent_at = now
        options = dispatch_options(0.0, 0.0, pool, self._pool_resource, STEER)
        self._probe = (probe.options(**options).remote(), time.time(), pool)

    def _observe_start(self, pool: str | None, worker: str, delay: float) -> None:
        """A task started `delay` after it could have: on a worker already seen (warm) or a new one (cold)."""
        seen = self._workers.setdefault(pool, set())
        if worker in seen:
            self.estimates.observe_dispatch(delay)
        else:
            self.estimates.observe_cold(delay)
            if len(seen) < 10_000:
                seen.add(worker)

    def _warm_slots(self) -> dict[str | None, int]:
        """Per pool, warm Ray workers not busy with one of our tasks: a job beyond them waits for a new worker
        process (a cold start), which on a busy machine can take longer than the job's whole limit."""
        busy: dict[str | None, int] = {}
        for r in self.running.values():
            busy[r.pool] = busy.get(r.pool, 0) + 1
        return {pool: len(workers) - busy.get(pool, 0) for pool, workers in self._workers.items()}

    def _job_timing(self, job: Job, manifest: Manifest) -> tuple[str, float, bool, float]:
        """(handler, declared run time, whether the handler declared it, limit): the limit is what the head
        gives the task (the manifest's timeout_s, capped by the chain's max_compute_time)."""
        from etrid_ray.workloads.registry import REGISTRY, declared_seconds

        limit = float(min(manifest.timeout_s or job.max_compute_time, job.max_compute_time))
        workload = REGISTRY.get(manifest.handler)
        declared = declared_seconds(workload, manifest.args) if workload is not None else None
        if declared is None:
            return manifest.handler, limit, False, limit
        return manifest.handler, declared, True, limit

    def _expected_end(self, run: Running, now: float, dispatch_s: float) -> float:
        """When a running job should free its GPUs: its planned start plus its expected run, never before now
        and never after its deadline (the head cancels it there). Before the head has seen Ray start a single
        task it assumes the deadline: it does not bet on timings it has not observed."""
        if self.estimates.cold.count == 0 or not run.handler:
            return max(now, run.deadline)
        limit = run.deadline - run.dispatched_at
        delay = self.estimates.cold_s() if run.cold else dispatch_s
        expected = run.free_at + delay + self.estimates.run_s(run.handler, run.declared_s, limit, run.declares)
        return min(run.deadline, max(now, expected))

    def _timelines(self, now: float) -> dict[str | None, GpuTimeline]:
        """Each pool's GPUs over the coming seconds (without pools, the cluster's, under the key None): free now
        on alive nodes, freed as running jobs end, added as requested nodes arrive after the pool's observed
        startup time."""
        dispatch_s = self.estimates.dispatch_s()
        if self.scaler is None:
            later = [(self._expected_end(r, now, dispatch_s), r.gpus) for r in self.running.values()]
            return {None: GpuTimeline(now, self._free_gpus(), later)}
        by_pool: dict[str | None, list[tuple[float, float]]] = {}
        for r in self.running.values():
            by_pool.setdefault(r.pool, []).append((self._expected_end(r, now, dispatch_s), r.gpus))
        for pool in self.pools:
            waits = self._node_waits.get(pool.name, [])
            startup = self.estimates.node_startup_s(pool.name, pool.startup_s)
            by_pool.setdefault(pool.name, []).extend((t + startup, float(pool.gpus_per_node)) for t in waits)
        return {name: GpuTimeline(now, room, by_pool.get(name, ())) for name, room in self._pool_room().items()}

    def _pools_to_try(self, cand: Candidate) -> list[str | None]:
        """Where the job could run: without pools the cluster; with pools the placement's choice first, then any
        other pool it is eligible for (one that can run it in time beats one that cannot)."""
        if self.scaler is None:
            return [None]
        from etrid_ray.scaling.eligibility import eligible

        first = self._pool_for(cand)
        if first is None:
            return []  # placed at the next scaling step
        job = self._queued(cand)
        return [first] + [p.name for p in self.pools if p.name != first and job is not None and eligible(job, p)]

    def _skip_once(self, seen: set[int], job_id: int, reason: str) -> bool:
        """Counts `reason` in `stats.skipped` once per job (an unclaimed job is seen again every pass); `seen`
        is bounded like the manifest cache. True when this was the first time."""
        if job_id in seen:
            return False
        seen.add(job_id)
        self.stats.skipped[reason] += 1
        if len(seen) > MANIFEST_CACHE:
            seen.clear()
        return True

    def _skip_late(self, job_id: int, limit: float, needs: float) -> None:
        if self._skip_once(self._late, job_id, "cannot finish within its limit"):
            log.info("job %d left unclaimed: needs about %.1fs here, its limit is %.0fs", job_id, needs, limit)

    def _skip_too_big(self, job_id: int, gpus: float) -> None:
        # more than the whole cluster offers: never claimed here, left to other providers
        if job_id not in self._too_big:
            self._skip_once(self._too_big, job_id, f"needs {gpus:g} GPUs, Ray has {self._capacity():g}")

    def _claim_pairs(self, pairs: list[tuple[Candidate, int]]) -> int:
        """Claims on chain and dispatches what was won; `claiming` covers the whole span, so a drain never
        takes a job claimed on chain but not yet running for a head with nothing in flight."""
        try:
            results = self.chain.claim([(c.job.job_id, g) for c, g in pairs])
        except Exception:
            with self._lock:
                for _c, g in pairs:
                    self.gpu_load[g] -= 1
            raise
        won = [(c, g) for (c, g), r in zip(pairs, results, strict=True) if r.ok]
        with self._lock:
            for (c, g), r in zip(pairs, results, strict=True):
                self.candidates.pop(c.job.job_id, None)
                if not r.ok:
                    self.gpu_load[g] -= 1
                    self.stats.lost_claims += 1  # another provider won the race: quietly move on
                    self._note_departed(c)
        self.journal.claimed([(c.job.job_id, g) for c, g in won])
        audit.record_many([("claim", {"job": c.job.job_id, "gpu": g, "pool": c.pool}) for c, g in won])
        self.stats.claimed += len(won)
        now = time.time()
        with self._lock:
            self._dispatch_won(won, now)
        return len(won)

    def _dispatch_won(self, won: list[tuple[Candidate, int]], now: float) -> None:
        for cand, gpu in won:
            if cand.verdict.action == "reject" or cand.manifest is None:
                self.gpu_load[gpu] -= 1
                self.to_settle.append((cand.job.job_id, False, None, cand.verdict.reason))
                self.finished_at[cand.job.job_id] = now
                self.journal.finished([(cand.job.job_id, False, None, cand.verdict.reason)])
                audit.record("failure", job=cand.job.job_id, reason=cand.verdict.reason)
                self.stats.failed[_failure_kind(cand.verdict.reason)] += 1
            else:
                self.gpu_load[gpu] -= 1  # _dispatch counts it again
                self._dispatch_alone(cand.job, cand.manifest, gpu, cand.pool, cand.free_at, cand.cold)

    def _dispatch_alone(self, job: Job, manifest: Manifest, gpu_id: int, pool: str | None,
                        free_at: float | None = None, cold: bool = False) -> None:
        """`_dispatch`, but a job that cannot be dispatched fails alone, on chain, with the reason: never the
        rest of its claim batch (they would sit claimed, unrun, until they all timed out)."""
        try:
            self._dispatch(job, manifest, gpu_id, pool, free_at, cold)
        except Exception as err:  # Ray refused the task (or anything else went wrong before it existed)
            options = dispatch_options(manifest.resources.gpus, self.config.task_cpus, pool, self._pool_resource,
                                       STEER)
            self._fail_undispatched(job.job_id, dispatch_failure(options, err))
            log.warning("job %d could not be dispatched: %s", job.job_id, err)

    def _fail_undispatched(self, job_id: int, reason: str) -> None:
        self.to_settle.append((job_id, False, None, reason))
        self.finished_at[job_id] = time.time()
        self.journal.finished([(job_id, False, None, reason)])
        audit.record("failure", job=job_id, reason=reason)
        self.stats.failed[_failure_kind(reason)] += 1

    def _pool_for(self, cand: Candidate) -> str | None:
        """The pool the placement chose; a job it left waiting goes to the first local pool that can run it."""
        from etrid_ray.scaling.eligibility import eligible

        chosen = None
        if self.plan is not None:
            try:
                chosen = self.plan.pool_for(cand.job.job_id)
            except KeyError:
                return None  # placed at the next scaling step
        if chosen is not None:
            return chosen
        job = next((q for q in [self._queued(cand)] if q is not None), None)
        for pool in self.pools:
            if not pool.is_cloud and job is not None and eligible(job, pool):
                return pool.name
        return None

    def _queued(self, cand: Candidate) -> Any:
        from etrid_ray.scaling import QueuedJob

        if cand.manifest is None:
            return None
        return QueuedJob.from_chain(JobTerms(cand.job.job_id, cand.job.model_type, cand.job.max_compute_time,
                                             cand.job.payment), cand.manifest, waiting_since=cand.first_seen)

    def _task_for(self, gpus: float, pool: str | None) -> Any:
        """`run_job` with its resource options, built once per shape (options() is not free per call)."""
        key = (gpus, pool)
        task = self._task_shapes.get(key)
        if task is None:
            options = dispatch_options(gpus, self.config.task_cpus, pool, self._pool_resource, STEER)
            task = self._task_shapes[key] = run_job.options(**options)
        return task

    def _manifest_json(self, input_hash: str, manifest: Manifest) -> str:
        """The manifest as the task receives it, serialized once per distinct manifest."""
        text = self._manifest_texts.get(input_hash)
        if text is None:
            if len(self._manifest_texts) > MANIFEST_CACHE:
                self._manifest_texts.clear()
            text = self._manifest_texts[input_hash] = manifest.model_dump_json()
        return text

    def _dispatch(self, job: Job, manifest: Manifest, gpu_id: int, pool: str | None = None,
                  free_at: float | None = None, cold: bool = False) -> None:
        timeout = min(manifest.timeout_s or job.max_compute_time, job.max_compute_time)
        problem = options_problem(dispatch_options(manifest.resources.gpus, self.config.task_cpus, pool,
                                                   self._pool_resource, STEER))
        if problem is not None:  # what Ray would refuse: this job fails alone, naming the field
            self._fail_undispatched(job.job_id, chain_reason(f"cannot dispatch {problem}"))
            return
        if audit.default_log() is not None:
            audit.record_many([
                ("placement", {"job": job.job_id, "pool": pool, "decision": "dispatched",
                               "template": manifest.compliance.template}),
                ("data_access", {"job": job.job_id, "blobs": [job.input_hash, *(r.hash for r in manifest.inputs)]})])
        tee = manifest.resources.tee
        if self.tee_gate is not None and tee is not None:
            options: dict[str, Any] = {"num_gpus": manifest.resources.gpus, "num_cpus": self.config.task_cpus}
            if pool is not None:
                options["resources"] = {f"pool:{pool}": STEER}
            gated = self.tee_gate.task_options(tee, pool, options)  # never cached: attested nodes change
            if gated is None:
                reason = "TEE attestation lapsed before the job could start"
                self.to_settle.append((job.job_id, False, None, reason))
                self.finished_at[job.job_id] = time.time()
                self.journal.finished([(job.job_id, False, None, reason)])
                return
            task = run_job.options(**gated)
        else:
            task = self._task_for(manifest.resources.gpus, pool)
        ref = task.remote(
            job.job_id, self._manifest_json(job.input_hash, manifest), self.store_url, self.config.max_input_bytes)
        now = time.time()
        handler, declared, declares, _limit = self._job_timing(job, manifest)
        self.running[job.job_id] = Running(job.job_id, gpu_id, ref, now + timeout, now, manifest.resources.gpus,
                                           float(job.submitted_at), pool, handler, declared, declares,
                                           max(now, free_at or now), cold)
        ref.future().add_done_callback(lambda fut, job_id=job.job_id: self._done.put((job_id, fut)))
        self.gpu_load[gpu_id] += 1
        self.stats.waits.append(max(0.0, now - job.submitted_at))

    def _harvest(self, wait: float = 0.0) -> int:
        """Collects finished tasks (pushed by their futures' callbacks: no scans over every running
        task) and cancels tasks past their deadline."""
        finished: list[tuple[int, bool, str | None, str]] = []
        try:
            first = self._done.get(timeout=wait) if wait > 0 else self._done.get_nowait()
        except queue.Empty:
            first = None
        batch = [first] if first is not None else []
        while len(batch) < self.config.result_batch:
            try:
                batch.append(self._done.get_nowait())
            except queue.Empty:
                break
        now = time.time()
        with self._lock:
            for job_id, future in batch:
                run = self.running.get(job_id)
                if run is None or run.ref is None:
                    continue  # already settled as timed out
                finished.append(self._outcome_item(run, future))
                run.ref = None  # collected: the deadline scan below must not take it again
            if now - self._last_deadline_scan >= 0.25:
                self._last_deadline_scan = now
                for run in self.running.values():
                    if now > run.deadline and run.ref is not None:
                        ray.cancel(run.ref, force=True)
                        run.ref = None
                        finished.append((run.job_id, False, None,
                                         f"timeout after {run.deadline - run.dispatched_at:.0f}s"))
        if not finished:
            return 0
        self.journal.finished(finished)
        audit.record_many([("result", {"job": j, "blob": h}) if ok else ("failure", {"job": j, "reason": reason})
                           for j, ok, h, reason in finished])
        with self._lock:
            for job_id, ok, _h, reason in finished:
                run = self.running.pop(job_id)
                self.gpu_load[run.gpu_id] -= 1
                self.finished_at[job_id] = now
                if ok:
                    self.stats.completed += 1
                else:
                    self.stats.failed[_failure_kind(reason)] += 1
            self.to_settle.extend(finished)
        return len(finished)

    def _outcome_item(self, run: Running, future: Any) -> tuple[int, bool, str | None, str]:
        try:
            outcome: Outcome = future.result()
        except ray.exceptions.TaskCancelledError:
            return (run.job_id, False, None, f"timeout after {run.deadline - run.dispatched_at:.0f}s")
        except ray.exceptions.RayError as err:  # node lost beyond retries, worker crashed, …
            return (run.job_id, False, None, f"execution lost: {type(err).__name__}")
        self.stats.queue_to_start.append(max(0.0, outcome.started_at - run.submitted_at))
        self.stats.started_at[run.job_id] = outcome.started_at
        self.stats.ended_at[run.job_id] = outcome.finished_at
        self.stats.gpu_seconds += (outcome.finished_at - outcome.started_at) * run.gpus
        self.stats.pool_of[run.job_id] = run.pool
        self._learn(run, outcome)
        return (run.job_id, outcome.ok, outcome.result_hash, outcome.reason)

    def _learn(self, run: Running, outcome: Outcome) -> None:
        """What the claim planned against what happened: how late Ray started the task after its GPUs were
        expected free, and how long the handler ran against what the job declared (successes only: a handler
        that fails at once says nothing about how long the work takes)."""
        if not run.handler or outcome.started_at <= 0:
            return
        self._observe_start(run.pool, outcome.worker, outcome.started_at - run.free_at)
        if outcome.ok:
            self.estimates.observe_run(run.handler, outcome.finished_at - outcome.started_at, run.declared_s,
                                       run.declares)

    def _settle(self) -> int:
        with self._lock:
            if not self.to_settle:
                return 0
            batch = self.to_settle[: self.config.result_batch]
            self.to_settle = self.to_settle[self.config.result_batch:]
        if self._settle_retry:
            batch = self._still_ours(batch)
        try:
            results = self.chain.settle(batch)
        except Exception:
            # Unknown whether the extrinsic landed: keep the batch, and before sending it again,
            # drop the jobs the chain already settled, so nothing is reported twice.
            with self._lock:
                self.to_settle = batch + self.to_settle
            self._settle_retry = True
            raise
        self._settle_retry = False
        now = time.time()
        done = []
        for (job_id, _ok, _h, _reason), res in zip(batch, results, strict=True):
            done.append(job_id)
            self.stats.result_to_chain.append(now - self.stats.ended_at.get(job_id, self.finished_at.get(job_id, now)))
            self.finished_at.pop(job_id, None)
            self.stats.on_chain_at[job_id] = now
            for timeline in (self.stats.started_at, self.stats.ended_at, self.stats.on_chain_at):
                while len(timeline) > 50_000:
                    timeline.pop(next(iter(timeline)))
            if res.ok:
                self.stats.reported += 1
            else:
                # e.g. the chain timed the job out meanwhile: it is settled either way; never retry
                self.stats.report_errors += 1
                log.warning("settling job %d failed: %s", job_id, res.error)
        self.journal.reported(done)
        return len(batch)

    def _still_ours(self, batch: list[tuple[int, bool, str | None, str]]) -> list[tuple[int, bool, str | None, str]]:
        jobs = self.chain.jobs([j for j, *_ in batch])
        keep = []
        for item in batch:
            job = jobs.get(item[0])
            if job is not None and job.status == JobStatus.PROCESSING and job.assigned_gpu in self.gpu_ids:
                keep.append(item)
            else:
                self.journal.reported([item[0]])
                self.finished_at.pop(item[0], None)
        return keep

    def _keepalive(self) -> None:
        now = time.time()
        if self.gpu_ids and now - self._last_heartbeat >= self.config.heartbeat_interval_s:
            self._last_heartbeat = now
            self.chain.heartbeat(self.gpu_ids)
        if self.gpu_ids and now - self._last_telemetry >= self.config.telemetry_interval_s:
            self._last_telemetry = now
            per_gpu_busy = {g: min(1.0, self.gpu_load[g] / max(1, self.config.max_inflight_per_gpu) * 4)
                            for g in self.gpu_ids}
            if self.facts.source == "nvml":
                utils = self.facts.utilization_pct
                per_gpu_busy = {g: (utils[i] / 100 if i < len(utils) else 0.0) for i, g in enumerate(self.gpu_ids)}
            share = self.stats.earnings_planck // max(1, len(self.gpu_ids))
            done = self.stats.completed // max(1, len(self.gpu_ids))
            self.chain.telemetry([(g, int(per_gpu_busy[g] * 10_000), done, share) for g in self.gpu_ids])

    # observation ----------------------------------------------------------------------------------

    def status(self, detail: bool = False) -> dict[str, Any]:
        """A snapshot for dashboards and the demo; `detail` adds the raw latency samples."""
        s = self.stats
        out = {
            "draining": self.draining, "drained": self.drained,
            "address": self.chain.address, "gpus": list(self.gpu_ids), "gpu_source": self.facts.source,
            "best_block": self.best_block, "queue_depth": len(self.pending_ids),
            "candidates": len(self.candidates), "running": len(self.running), "to_settle": len(self.to_settle),
            "claimed": s.claimed, "lost_claims": s.lost_claims, "completed": s.completed,
            "failed": dict(s.failed), "skipped": dict(s.skipped), "reported": s.reported,
            "report_errors": s.report_errors, "earnings_planck": s.earnings_planck,
            "earnings_edsc": s.earnings_planck / PLANCK_PER_EDSC, "payments": s.payments,
            "gpu_seconds": s.gpu_seconds, "errors": dict(self.errors), "uptime_s": time.time() - self.started_at,
            "queue_to_start_p50": percentile(s.queue_to_start, 50),
            "queue_to_start_p95": percentile(s.queue_to_start, 95),
            "result_to_chain_p50": percentile(s.result_to_chain, 50),
            "result_to_chain_p99": percentile(s.result_to_chain, 99),
            "loop_p50_ms": percentile(self.loop_seconds, 50) * 1000,
            "estimates": self.estimates.summary(),
        }
        if detail:
            out["waits"] = list(s.queue_to_start)
            out["result_latencies"] = list(s.result_to_chain)
        return out


