"""The provider head: chain jobs in, Ray tasks, results and earnings out — a short composition of stages.

    chain queue ─▶ Intake ─▶ Admission ─▶ (PoolScaling) ─▶ Claimer ─▶ Dispatcher ─▶ Ray
                                                                                    │
    chain ◀── Settler ◀── Harvester ◀───────────────────────────────────────────────┘
              Keepalive (heartbeats, telemetry)           Recovery (before the loops start)

Every job lives in one `JobBook` (provider/job.py) and changes state only through it. Two loops in two
threads, so chain round trips overlap: the intake loop takes the queue, judges, scales, claims and
dispatches; the reporter loop harvests finished tasks and settles them. Each stage gets what it needs passed
in — the book, the chain port, the Ray task port, the cluster view, the clock — so each can be driven alone;
`ProviderHead` builds the real ones from the config unless given others.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from itertools import islice
from typing import Any

from etrid_ray.admission import Capabilities
from etrid_ray.chain import Connection, GpuSpecs, HardwareAttestation, QueueWatcher, Signer
from etrid_ray.config import ProviderConfig, pools_from_config
from etrid_ray.percentiles import percentile
from etrid_ray.pools import Pool
from etrid_ray.provider.chain_port import ChainPort
from etrid_ray.provider.cluster_port import RayCluster
from etrid_ray.provider.cluster_view import ClusterView, ClusterWatch
from etrid_ray.provider.gpu_info import GpuFacts, gpu_facts
from etrid_ray.provider.job import ON_CHAIN, WAITING, JobBook, JobState, Settlement, TrackedJob
from etrid_ray.provider.journal import Journal
from etrid_ray.provider.manifests import ManifestSource
from etrid_ray.provider.profit import ProfitBook
from etrid_ray.provider.ray_tasks import RayTasks
from etrid_ray.provider.scaler import Scaler
from etrid_ray.provider.stages.admission import Admission, offers_for
from etrid_ray.provider.stages.claim import Claimer
from etrid_ray.provider.stages.dispatch import Dispatcher
from etrid_ray.provider.stages.harvest import Harvester
from etrid_ray.provider.stages.intake import Intake
from etrid_ray.provider.stages.keepalive import Keepalive
from etrid_ray.provider.stages.profit import ProfitRecorder
from etrid_ray.provider.stages.recovery import Recovery
from etrid_ray.provider.stages.scaling import PoolScaling
from etrid_ray.provider.stages.settle import Settler
from etrid_ray.provider.stats import HeadStatus, RunningView, Stats
from etrid_ray.provider.timing import BlockPace, Estimates
from etrid_ray.security import audit, transport
from etrid_ray.security.tee.config import load_tee_config
from etrid_ray.security.tee.node import TeeGate
from etrid_ray.security.tee.verify import TeePolicy
from etrid_ray.units import PLANCK_PER_EDSC

log = logging.getLogger(__name__)

OFFLINE_REASON = "provider going offline"
# a job taken back from a pool whose nodes never came, that no other pool could run before its deadline on chain
NO_POOL_IN_TIME = "no capacity: its pool's nodes never came and no other pool could run it in time"
BENCHMARK_SCORE = 1000  # the attestation's score until the head measures one (issue 15)
DURATIONS_SHOWN = 100


class ProviderHead:
    #: builds the TEE gate (callable(head) -> TeeGate); None = from the TEE config when ENABLE_TEE has TEE pools
    make_gate: Any = None

    def __init__(self, config: ProviderConfig, signer: Signer, *, chain_url: str | None = None,
                 journal: Journal | None = None, chain: ChainPort | None = None, store: Any = None,
                 cluster: Any = None, clock: Any = time.time) -> None:
        self.config = config
        self.signer = signer
        self.clock = clock
        self.chain_url = chain_url or config.websocket_url
        if config.ENABLE_COMPLIANCE:
            # plaintext to a remote endpoint is refused before any socket opens; every decision is audited (to
            # the process's audit log, which the entry point configures: `audit.configure_for`)
            transport.check_endpoint(self.chain_url, compliance=True, what="websocket_url")
            transport.check_config(config)
            audit.record("config_change", setting="provider", action="start", account=signer.address,
                         region=config.region)
        self.chain = chain or ChainPort(Connection(self.chain_url), signer, batch_size=config.claim_batch)
        self.conn = self.chain.conn
        self.store_url = config.blob_store or self.chain_url
        self.store = store if store is not None else transport.open_secure_blob_store(
            self.store_url, compliance=config.ENABLE_COMPLIANCE)
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
        self.gpu_ids: list[int] = []
        self.tee_gate: Any = None
        self.anchorer: Any = None
        self.draining = False  # set by drain(): no new claims; in-flight jobs finish (or fail) and settle
        self.started_at = clock()

        self.book = JobBook(clock)
        self.stats = Stats()
        self.estimates = Estimates()  # dispatch delay, node startup, run times: learnt from what this head sees
        self.manifests = ManifestSource(self.store)
        self.cluster = ClusterWatch(self._read_cluster)
        self._cluster_port = cluster
        self._own_pool: str | None = None  # the head's own pool, once the cluster shows a node of it
        self.tasks = RayTasks(config.task_cpus, self.estimates, lambda: self._own_pool)
        gate = self._gate
        ids = self._gpu_ids
        self.scaling = PoolScaling(self.pools, self.book, self.cluster, self.estimates, self._make_scaler,
                                   config.scale_interval_s, gate, clock, time.monotonic, cancel=self.tasks.withdraw)
        self.pace = BlockPace()
        self.intake = Intake(self.book, self.chain, self.stats, self.scaling.note_departed, ids,
                             on_block=lambda number: self.pace.observe(number, clock()),
                             on_paid=self._paid)
        self.admission = Admission(self.book, self.manifests, self.stats, self._offers, clock)
        self.claimer = Claimer(self.book, self.chain, self.journal, self.stats, self.estimates, self.tasks,
                               self.scaling, ids, self.capacity, config.max_inflight_per_gpu, config.claim_batch,
                               clock, self.pace, assigned=self.intake.assigned)
        self.dispatcher = Dispatcher(self.book, self.tasks, self.manifests, self.journal, self.stats,
                                     self.store_url, config.max_input_bytes, clock, gate, self.estimates,
                                     config.max_jobs_per_task)
        self.harvester = Harvester(self.book, self.tasks, self.journal, self.stats, self.estimates,
                                   config.result_batch, clock, redispatch=self.dispatcher.dispatch,
                                   draining=self._draining_nodes, default_pool=config.pool)
        self.profit = ProfitRecorder(ProfitBook(ProfitBook.beside(self.journal.path)), {p.name: p for p in self.pools},
                                     next((p for p in self.pools if not p.is_cloud), None), self._node_rate,
                                     config.edsc_usd)
        self.harvester.on_outcome = self.profit.ran
        self.settler = Settler(self.book, self.chain, self.journal, self.stats, config.result_batch, ids, clock)
        self.keepalive = Keepalive(self.chain, self.book, self.stats, self.facts, ids,
                                   config.heartbeat_interval_s, config.telemetry_interval_s,
                                   config.max_inflight_per_gpu, clock)
        self.recovery = Recovery(self.book, self.chain, self.journal, self.store, self.manifests,
                                 self.dispatcher, ids, self.manifests.pool, clock)
        self._watcher: QueueWatcher | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # wiring ---------------------------------------------------------------------------------------------

    def _gpu_ids(self) -> list[int]:
        return self.gpu_ids

    def _gate(self) -> Any:
        return self.tee_gate

    def _draining_nodes(self) -> list[str]:
        return [n.node_id for n in self.cluster.view().nodes if n.draining]

    def _offers(self) -> list[Capabilities]:
        return offers_for(self.caps, self.pool_caps, self.scaling.active, self.tee_gate, self.config.pool)

    def _read_cluster(self) -> ClusterView:
        if self._cluster_port is None:
            if not self.tasks.connected():
                return ClusterView(self.clock(), connected=False)
            self._cluster_port = RayCluster()
        return ClusterView.read(self._cluster_port, self.clock())

    def _make_scaler(self) -> Any:
        kwargs = {} if self._cluster_port is None else {"cluster": self._cluster_port}
        return Scaler(self.config, self.pools, refresh_in_background=True,
                      startup_of=lambda pool: self.estimates.learnt_node_startup_s(pool.name), **kwargs)

    def _node_rate(self, node_id: str) -> float | None:
        """What the cloud node `node_id` is billed per hour (the scaler's bill for it), None if none is open."""
        scaler = self.scaling.scaler
        if scaler is None or node_id not in scaler.ledger:
            return None
        return float(scaler.ledger.bill(node_id).usd_per_node_hour)

    def _paid(self, payments: list[tuple[int, int, int | None]]) -> None:
        """The intake's payments to us, onto their jobs' profit rows (with each job's escrow, while the book has it)."""
        now = self.clock()
        with self.book.lock:
            escrow = {j: t.job.payment for j, _a, _b in payments if (t := self.book.get(j)) is not None}
        self.profit.paid_many([(j, amount, escrow.get(j, 0), now, block) for j, amount, block in payments])

    def capacity(self) -> float:
        """GPUs the Ray cluster offers new work now (it grows and shrinks with the autoscaler; draining nodes
        take none). Never what the config declares: a head that claimed on declared GPUs a cluster without GPUs
        cannot run would see every claim time out on chain. Driven without Ray (unit tests): the declared."""
        view = self.cluster.view()
        return view.schedulable_gpus() if view.connected else float(self.facts.count)

    @property
    def scaler(self) -> Any:
        return self.scaling.scaler

    @property
    def plan(self) -> Any:
        return self.scaling.plan

    @property
    def best_block(self) -> int:
        return self.intake.best_block

    # lifecycle ------------------------------------------------------------------------------------------

    def start(self, *, background: bool = True) -> ProviderHead:
        """Registers missing GPUs, recovers in-flight work from chain + journal, starts watching."""
        self.gpu_ids = self._ensure_gpus()
        self.tee_gate = self._build_tee_gate()
        if audit.default_log() is not None:  # the audit log's head hash, anchored on chain periodically
            self.anchorer = audit.Anchorer(audit.default_log(), self.chain.client.submitter).start()
        if self.cluster.view().has_pool(self.config.pool):
            self._own_pool = self.config.pool
        self.recovery.recover()
        self._watcher = QueueWatcher(self.conn, self._on_update, poll_interval=self.config.poll_interval_s)
        self._watcher.start()
        if background:
            self._thread = threading.Thread(target=self.run_forever, name="etrid-provider-head", daemon=True)
            self._thread.start()
        return self

    def _ensure_gpus(self) -> list[int]:
        mine = self.chain.my_gpus()
        missing = self.facts.count - len(mine)
        if missing > 0:
            specs = GpuSpecs(self.facts.model, self.facts.vram_gb, self.config.gpus.compute_units,
                             self.config.gpus.clock_speed_mhz, self.config.gpus.tdp_watts)
            stake = self.config.stake_edsc * PLANCK_PER_EDSC
            attestation = HardwareAttestation(tpm_quote=self.facts.source.encode(), benchmark_score=BENCHMARK_SCORE,
                                              timestamp=int(self.clock()))
            new = self.chain.client.register_gpus([(specs, stake)] * missing, attestation=attestation)
            log.info("registered %d GPUs on chain: %s", len(new), new)
            mine = mine + new
        return mine[: max(self.facts.count, 0)] if self.facts.count else mine

    def _build_tee_gate(self) -> Any:
        """Confidential jobs run only on nodes that attested freshly: the gate keeps that set, and admission,
        claims and dispatch consult it. Without TEE pools there is no gate and nothing changes."""
        factory = self.make_gate
        if factory is None and self.config.ENABLE_TEE and any(p.tee for p in self.pools):
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
        self.scaling.release()
        if self._watcher is not None:
            self._watcher.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        self.manifests.close()
        self.profit.flush()
        if self.anchorer is not None:
            self.anchorer.stop()  # a final anchor
        self.conn.close()

    def drain(self, *, now: bool = False, reason: str = OFFLINE_REASON) -> None:
        """Takes the provider offline without breaking a promise made on chain: from now on nothing is
        claimed, and each claimed job either runs to its end and is settled as usual (`now=False`) or, with
        `now`, is cancelled and settled at once as a failure carrying `reason` — so consumers learn it at
        once instead of at the job's timeout. `drained` turns true when nothing is left in flight."""
        self.draining = True
        if not now:
            return
        failed: list[Settlement] = []
        with self.book.lock:
            for tracked in self.book.in_state(JobState.RUNNING):
                run = tracked.run
                if run is None or run.ref is None:
                    continue
                self.tasks.cancel(run.ref)
                run.ref = None  # the harvest must not take it again
                failed.append(Settlement.failure(tracked.job_id, reason))
                self.book.finish(tracked, failed[-1])
                self.stats.count_failure(reason)
        if failed:
            self.journal.finished(failed)
            audit.record_many([("failure", {"job": s.job_id, "reason": reason}) for s in failed])
            self._wake.set()

    @property
    def drained(self) -> bool:
        """Draining and nothing left to run or to settle: the head may stop without losing a job."""
        with self.book.lock:
            return self.draining and self.book.count(*ON_CHAIN) == 0

    def _on_update(self, update: Any) -> None:
        self.intake.offer(update)
        self._wake.set()

    # the loops ------------------------------------------------------------------------------------------

    def run_forever(self) -> None:
        reporter = threading.Thread(target=self._report_forever, name="etrid-provider-reporter", daemon=True)
        reporter.start()
        while not self._stop.is_set():
            busy = self._guarded(self._intake_pass)
            if not busy:
                held_back = self.claimer.claim_again_at - self.clock()  # a claim coalescing: wake for it
                self._wake.wait(min(self.config.poll_interval_s, held_back) if held_back > 0
                                else self.config.poll_interval_s)
                self._wake.clear()
        reporter.join(timeout=30)

    def _report_forever(self) -> None:
        while not self._stop.is_set():
            self._guarded(self._report_pass)

    def _guarded(self, fn: Any) -> bool:
        try:
            return bool(fn())
        except Exception as err:  # one bad pass must not stop the head; it is counted and logged
            with self.book.lock:
                self.stats.errors[type(err).__name__] += 1
            log.exception("provider head step failed")
            self._stop.wait(0.5)
            return False

    def _intake_pass(self) -> bool:
        t0 = time.perf_counter()
        try:
            return self._intake()
        finally:
            self.stats.loop_seconds.append(time.perf_counter() - t0)

    def _intake(self) -> bool:
        """Queue in, judge, scale, claim, dispatch; True when it claimed (so the loop goes again at once)."""
        self.intake.take()
        if self.draining:  # offline: follow the chain (blocks, payments), keep heartbeats, claim nothing
            self.keepalive.tick()
            return False
        if self.scaling.maybe_enable(self.tasks.connected()):
            self.admission.again("pools appeared: judged against every pool")
        self.admission.evaluate()
        now = self.clock()
        if self.scaling.due(now):
            if self.tee_gate is not None and self.tee_gate.take_changed():
                self.admission.again("the attested set changed")
                self.admission.evaluate()
            self.scaling.step(now, self.book.in_state(JobState.RUNNING))
        won = self.claimer.claim(self.claimer.choose())
        if won:
            with self.book.lock:
                self.dispatcher.dispatch(won)
        if self.scaling.requeued:  # claimed jobs taken back from a pool whose nodes never came, where room is now
            with self.book.lock:
                for tracked in self.scaling.expired(now):
                    self.dispatcher.fail(tracked, NO_POOL_IN_TIME)
                self.dispatcher.dispatch(self.scaling.runnable(self.book.in_state(JobState.RUNNING)))
        self.keepalive.tick()
        return bool(won)

    def _report_pass(self, wait: float = 0.05) -> bool:
        harvested = self.harvester.harvest(wait)
        self.profit.flush()
        return bool(harvested + self.settler.settle())

    def step(self) -> bool:
        """One pass of both loops, for a caller that drives the head itself (`start(background=False)`)."""
        claimed = self._guarded(self._intake_pass)
        reported = self._guarded(lambda: self._report_pass(0.0))
        return claimed or reported

    # observation ----------------------------------------------------------------------------------------

    def status(self, detail: bool = False) -> HeadStatus:
        """The head now, copied under the book's lock."""
        s = self.stats
        now = self.clock()
        with self.book.lock:
            running = self.book.in_state(JobState.RUNNING)
            waiting = self.book.in_state(*WAITING)
            recent = list(islice(reversed(s.ended_at.items()), DURATIONS_SHOWN))
            durations = tuple(end - s.started_at[j] for j, end in recent if j in s.started_at)
            thread = self._thread
            return HeadStatus(
                taken_at=now, address=self.chain.address, draining=self.draining,
                drained=self.drained,
                alive=not self._stop.is_set() and (thread is None or thread.is_alive()),
                stopping=self._stop.is_set(), watching=self._watcher is not None,
                gpus=tuple(self.gpu_ids), gpu_source=self.facts.source, gpus_declared=self.facts.count,
                best_block=self.intake.best_block, queue_depth=len(self.intake.pending_ids),
                candidates=len(waiting), waiting_since=tuple(float(t.job.submitted_at) for t in waiting),
                running=len(running), running_jobs=tuple(_running_view(t) for t in running),
                to_settle=self.book.count(JobState.FINISHED), states=self.book.counts(),
                claimed=s.claimed, lost_claims=s.lost_claims, completed=s.completed, failed=dict(s.failed),
                skipped=dict(s.skipped), reported=s.reported, report_errors=s.report_errors,
                earnings_planck=s.earnings_planck, earnings_edsc=s.earnings_planck / PLANCK_PER_EDSC,
                payments=s.payments, gpu_seconds=s.gpu_seconds, errors=dict(s.errors),
                preempted=dict(s.preempted), retried=s.retried,
                reconnects=int(getattr(self.conn, "reconnects", 0)), uptime_s=now - self.started_at,
                last_heartbeat=self.keepalive.last_heartbeat,
                queue_to_start_p50=percentile(s.queue_to_start, 50),
                queue_to_start_p95=percentile(s.queue_to_start, 95),
                result_to_chain_p50=percentile(s.result_to_chain, 50),
                result_to_chain_p99=percentile(s.result_to_chain, 99),
                loop_p50_ms=percentile(s.loop_seconds, 50) * 1000, loop_seconds=tuple(s.loop_seconds),
                durations=durations, estimates=self.estimates.summary(), net_profit_usd=dict(self.profit.net_usd),
                pools_unavailable=self.scaling.scaler.unavailable(now) if self.scaling.scaler is not None else {},
                waits=tuple(s.queue_to_start) if detail else (),
                result_latencies=tuple(s.result_to_chain) if detail else ())

    def history(self, job_id: int) -> list[tuple[JobState, float, str]]:
        """Every state a job passed through here (from the book; the journal keeps the durable part)."""
        return self.book.history(job_id) or self.journal.history(job_id)


def _running_view(t: TrackedJob) -> RunningView:
    run = t.run
    assert run is not None
    return RunningView(t.job_id, run.gpus, run.pool, t.gpu_id, run.dispatched_at, t.preemptions)


__all__ = ["NO_POOL_IN_TIME", "OFFLINE_REASON", "ProviderHead"]
