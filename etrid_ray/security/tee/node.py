"""TEE placement: what a node advertises, and which nodes the head lets take TEE work.

Two gates, one at each end:

1. **At node start** (:func:`node_status`, :func:`ray_env`): a worker of a TEE pool advertises
   ``tee:<type>`` only when its TEE is detected *and* produces a report bound to a fresh nonce (the
   provider account, a GPU id and the chain's best block). KubeRay runs the container's ``command``
   before its generated ``ray start`` in the same shell (``<command> && ulimit …; ray start …``), so
   the TEE worker group's container gets :func:`worker_start_command`::

       export RAY_OVERRIDE_RESOURCES='{"tee:sev-snp": 0}'; \\
       eval "$(python -m etrid_ray tee node-env --pool azure-tee-h100 --tee sev-snp)"

   Ray merges ``RAY_OVERRIDE_RESOURCES`` over ``rayStartParams.resources`` and drops zero quantities,
   so the node starts *without* ``tee:sev-snp`` unless ``node-env`` printed the attested override
   (fail closed: a crash, a missing device, an unreachable chain or a stale report all leave the 0).
   ``rayStartParams.resources`` keeps ``tee:<type>``: that is the autoscaler's model of the group.
   ``node-env`` reads the chain URL (``WEBSOCKET_URL`` from the ConfigMap), the provider's public
   address (``ETRID_PROVIDER_ADDRESS``, written into the Secret by ``etrid-ray keys k8s-secret``) and
   optionally ``ETRID_TEE_CONFIG``; the node never holds the provider's key. The node pool must
   expose the TEE to the pod (``/dev/sev-guest`` or ``/dev/tdx_guest`` and ``/sys/kernel/config``,
   e.g. through a device plugin); without them detection fails and the node simply takes no TEE work.

2. **At the head** (:class:`TeeGate`): a report a node made at its start says nothing about now. The
   gate challenges every alive node of a TEE pool every ``refresh_interval_s`` (a Ray task on that
   node, with a nonce from the head's account, one of its GPU ids and the best block), verifies the
   evidence offline against the policy (``verify.verify_evidence``: structure, nonce, block age,
   measurement allow-list, certificate chain, replay), files it on chain with
   ``ConfidentialCompute.submit_attestation(gpu_id, …)`` and keeps the verdict for ``max_age_s``.
   A TEE job is admitted only to a pool with an attested node (or a pool with no node yet, which
   may grow: its first node must attest before anything is claimed there), claimed only when an
   attested node has room, and its task is pinned to the attested nodes
   (``label_selector={"ray.io/node-id": "in(…)"}``) with the ``tee:<type>`` resource.

What the provider head calls (``etrid_ray/provider/head.py``; ``tests/helpers/tee_fixtures.TeeGatedHead``
shows each call in place):

- ``gate = TeeGate.for_head(head, TeePolicy.from_config(tee_config), tee_config)`` once the GPUs are
  registered (``start()``; ``tee_config = load_tee_config()``, i.e. ``ETRID_TEE_CONFIG``), when any pool
  has a ``tee``; then ``gate.start()`` (a background refresher) and ``gate.stop()`` in ``stop()``;
- ``_admit``: ``admit(terms, manifest, caps)`` over ``gate.admission_caps(self.pool_caps).values()``
  (and ``gate.local_caps(self.caps, self.config.pool)`` without pools);
- ``_pool_room``: ``return gate.pool_room(<the room it computes now>)``;
- ``_dispatch`` / ``_task_for``: for a job with ``manifest.resources.tee``, the task is
  ``run_job.options(**gate.task_options(tee, pool, options))`` (not cached per shape: the attested
  nodes change); None means the pool's attestation lapsed between claim and dispatch: settle the job
  as failed (the consumer is refunded) instead of running it unattested;
- ``_scale`` (or any step): ``if gate.take_changed():`` reset every candidate's verdict to
  ``Verdict("skip", "unevaluated")`` so admission runs again against the new attested set.
"""

from __future__ import annotations

import json
import logging
import shlex
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from etrid_ray.chain.codec import account_bytes
from etrid_ray.pools import RESOURCE_UNITS, STEER, TEE_LABEL, Pool, pool_of_labels
from etrid_ray.security.tee.attest import AttestationError, Evidence, produce_evidence
from etrid_ray.security.tee.config import TeeConfig
from etrid_ray.security.tee.detect import Detection, detect
from etrid_ray.security.tee.verify import ChainBlocks, ReplayGuard, TeePolicy, Verdict, make_nonce, verify_evidence

log = logging.getLogger(__name__)

LABEL_TEE = TEE_LABEL  # the pool names it (pools.py); a node repeats it beside its attestation label
LABEL_ATTESTED = "etrid.ai/tee-attested"
NODE_ID_LABEL = "ray.io/node-id"


def tee_resource(tee: str) -> str:
    return f"tee:{tee}"


# --- 1. at node start -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeTeeStatus:
    """Whether this node may advertise ``tee:<type>``, and why (not)."""

    tee: str | None
    attested: bool
    reason: str
    detection: Detection | None = None
    block_number: int | None = None
    measurement: str | None = None

    def resources(self, pool_tee: str) -> dict[str, float]:
        """The override for ``ray start``: ``tee:<pool_tee>`` at full units when attested, else 0 (dropped)."""
        ok = self.attested and self.tee == pool_tee
        return {tee_resource(pool_tee): float(RESOURCE_UNITS) if ok else 0.0}

    def labels(self, pool_tee: str) -> dict[str, str]:
        return {LABEL_TEE: pool_tee, LABEL_ATTESTED: "true" if self.attested and self.tee == pool_tee else "false"}

    def as_dict(self) -> dict[str, Any]:
        return {"tee": self.tee, "attested": self.attested, "reason": self.reason, "block": self.block_number,
                "measurement": self.measurement, "detection": self.detection.as_dict() if self.detection else None}


def node_status(config: TeeConfig, *, want: str | None, account_id: bytes | None, gpu_id: int,
                best: Callable[[], tuple[int, bytes]], policy: TeePolicy | None = None,
                blocks: Any = None) -> NodeTeeStatus:
    """Detection, then a report for a fresh nonce (and, with a policy, its full offline verification)."""
    detection = detect(config, want=want)
    if not detection.ok:
        return NodeTeeStatus(None, False, "; ".join(detection.problems) or "no TEE", detection)
    if account_id is None:
        return NodeTeeStatus(detection.tee, False, "no provider account to bind the nonce to "
                             "(set ETRID_PROVIDER_ADDRESS)", detection)
    try:
        number, block_hash = best()
    except Exception as exc:  # no chain, no fresh nonce: fail closed
        return NodeTeeStatus(detection.tee, False, f"no recent block ({type(exc).__name__})", detection)
    try:
        evidence = produce_evidence(make_nonce(account_id, gpu_id, block_hash), config, detection=detection)
    except AttestationError as exc:
        return NodeTeeStatus(detection.tee, False, str(exc), detection, number)
    if policy is not None and blocks is not None:
        verdict = verify_evidence(evidence.tee, evidence.quote, aux=evidence.aux, account_id=account_id,
                                  gpu_id=gpu_id, policy=policy, blocks=blocks)
        if not verdict.ok:
            return NodeTeeStatus(evidence.tee, False, verdict.reason, detection, number)
    return NodeTeeStatus(evidence.tee, True, "attested", detection, number, evidence.measurement.hex())


def ray_env(status: NodeTeeStatus, pool_tee: str) -> str:
    """Shell lines for ``eval``: the resource and label overrides ``ray start`` picks up."""
    res = json.dumps({k: int(v) for k, v in status.resources(pool_tee).items()})
    labels = json.dumps(status.labels(pool_tee))
    return f"export RAY_OVERRIDE_RESOURCES={shlex.quote(res)}\nexport RAY_OVERRIDE_LABELS={shlex.quote(labels)}\n"


def worker_start_command(pool: Pool) -> str:
    """The TEE worker container's ``command`` (KubeRay appends ``&& ulimit …; ray start …``). Fail closed:
    the zero override is set first, and only an attested ``node-env`` replaces it."""
    assert pool.tee is not None
    zero = shlex.quote(json.dumps({tee_resource(pool.tee): 0}))
    return (f"export RAY_OVERRIDE_RESOURCES={zero}; "
            f"eval \"$(python -m etrid_ray tee node-env --pool {shlex.quote(pool.name)} --tee {pool.tee})\"")


# --- 2. at the head ---------------------------------------------------------------------------------


def _attest_here(config_json: str, tee: str, nonce: bytes) -> dict[str, Any]:
    """Runs on the challenged node (as a Ray task): evidence for ``nonce``, or the reason there is none."""
    try:
        config = TeeConfig.model_validate_json(config_json)
        return {"evidence": produce_evidence(nonce, config, want=tee).to_json()}
    except AttestationError as exc:
        return {"error": str(exc)}


def ray_node_attestor(config: TeeConfig, timeout_s: float = 30.0) -> Callable[[str, str, bytes], Evidence]:
    """``attest(node_id, tee, nonce)`` as a zero-CPU Ray task pinned to ``node_id``."""
    import ray

    remote = ray.remote(num_cpus=0, max_retries=0)(_attest_here)
    config_json = config.model_dump_json()

    def attest(node_id: str, tee: str, nonce: bytes) -> Evidence:
        ref = remote.options(label_selector={NODE_ID_LABEL: node_id}).remote(config_json, tee, nonce)
        out = ray.get(ref, timeout=timeout_s)
        if "error" in out:
            raise AttestationError(out["error"])
        return Evidence.from_json(out["evidence"])

    return attest


@dataclass
class NodeRecord:
    node_id: str
    pool: str
    tee: str
    ok: bool
    reason: str
    checked_at: float
    verified_at: float | None = None  # last successful verification
    gpu_id: int | None = None
    block_number: int | None = None
    submitted: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class TeeGate:
    """The head's set of attested TEE nodes, and the admission/claim/dispatch rules that consult it."""

    pools: Sequence[Pool]
    policy: TeePolicy
    account_id: bytes
    gpu_ids: Sequence[int]
    blocks: Any  # verify.ChainBlocks (or any BlockView with best())
    attest_node: Callable[[str, str, bytes], Evidence]
    submit: Callable[[int, Any], None] | None = None
    refresh_interval_s: float = 300.0
    max_age_s: float = 900.0
    default_pool: str | None = None  # nodes without a pool label belong to it (a local-only cluster)
    admit_cold_pools: bool = True
    clock: Callable[[], float] = time.time
    #: Ray's node table rows (`NodeID`, `Alive`, `Resources`, `Labels`); default Ray's own; a head passes its view
    read_nodes: Callable[[], Sequence[Mapping[str, Any]]] | None = None
    records: dict[str, NodeRecord] = field(default_factory=dict)
    guard: ReplayGuard = field(default_factory=ReplayGuard)
    _alive: dict[str, tuple[str, bool]] = field(default_factory=dict)  # node id -> (pool, advertises tee:)
    _changed: bool = False
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.by_name = {p.name: p for p in self.pools}

    @classmethod
    def for_head(cls, head: Any, policy: TeePolicy, config: TeeConfig, **kw: Any) -> TeeGate:
        """A gate wired to a running ``ProviderHead``: its pools, account, GPU ids, chain and signer."""
        provider = head.chain.client

        def submit(gpu_id: int, attestation: Any) -> None:
            provider.submit_tee_attestation(gpu_id, attestation).raise_for_error()

        def nodes() -> list[dict[str, Any]]:  # the head's one cluster view per tick, as Ray's rows
            return [{"NodeID": n.node_id, "Alive": n.alive, "Resources": dict(n.resources), "Labels": dict(n.labels)}
                    for n in head.cluster.view().nodes]

        kw.setdefault("read_nodes", nodes)
        return cls(pools=head.pools, policy=policy, account_id=account_bytes(head.chain.address),
                   gpu_ids=list(head.gpu_ids), blocks=ChainBlocks(head.conn), attest_node=ray_node_attestor(config),
                   submit=submit, refresh_interval_s=config.refresh_interval_s, max_age_s=config.max_age_s,
                   default_pool=head.config.provider.pool, **kw)

    # observing ------------------------------------------------------------------------------------

    def _tee_nodes(self, nodes: Sequence[Mapping[str, Any]]) -> dict[str, tuple[str, bool]]:
        out: dict[str, tuple[str, bool]] = {}
        for node in nodes:
            if not node.get("Alive"):
                continue
            resources = node.get("Resources", {}) or {}
            name = pool_of_labels(node.get("Labels")) or self.default_pool
            pool = self.by_name.get(name or "")
            if pool is None or pool.tee is None:
                continue
            out[node["NodeID"]] = (pool.name, tee_resource(pool.tee) in resources)
        return out

    def _gpu_for(self, node_id: str, nodes: Sequence[str]) -> int:
        """The GPU id a node's attestation is filed under: the head's GPU slots, round robin by node id."""
        ids = sorted(nodes)
        return self.gpu_ids[ids.index(node_id) % len(self.gpu_ids)] if self.gpu_ids else 0

    def refresh(self, nodes: Sequence[Mapping[str, Any]] | None = None) -> bool:
        """Challenges the TEE nodes that are due; returns True when the set of attested pools changed."""
        if nodes is None:
            if self.read_nodes is not None:
                nodes = self.read_nodes()
            else:
                import ray

                nodes = ray.nodes()
        now = self.clock()
        before = self.attested_pools()
        alive = self._tee_nodes(nodes)
        with self._lock:
            self._alive = alive
            for gone in [n for n in self.records if n not in alive]:
                del self.records[gone]
        best: tuple[int, bytes] | None = None
        for node_id, (pool_name, advertises) in sorted(alive.items()):
            tee = self.by_name[pool_name].tee
            assert tee is not None
            rec = self.records.get(node_id)
            if not advertises:
                self._set(NodeRecord(node_id, pool_name, tee, False, f"the node did not attest at start "
                                     f"(no {tee_resource(tee)} resource)", now))
                continue
            if rec is not None and now - rec.checked_at < self.refresh_interval_s:
                continue
            try:
                best = best or self.blocks.best()
            except Exception as exc:
                self._set(self._failed(rec, node_id, pool_name, tee, f"no recent block ({type(exc).__name__})", now))
                continue
            self._set(self._challenge(node_id, pool_name, tee, best, list(alive), rec, now))
        changed = self.attested_pools() != before
        if changed:
            with self._lock:
                self._changed = True
            log.info("TEE attested pools now %s", sorted(self.attested_pools()))
        return changed

    def _failed(self, rec: NodeRecord | None, node_id: str, pool: str, tee: str, reason: str, now: float
                ) -> NodeRecord:
        return NodeRecord(node_id, pool, tee, False, reason, now, rec.verified_at if rec else None)

    def _challenge(self, node_id: str, pool: str, tee: str, best: tuple[int, bytes], nodes: list[str],
                   rec: NodeRecord | None, now: float) -> NodeRecord:
        number, block_hash = best
        gpu_id = self._gpu_for(node_id, nodes)
        if rec is not None and rec.ok and rec.block_number == number:
            # no new block since the last good report: the nonce would repeat; wait for the chain
            return replace(rec, checked_at=now)
        nonce = make_nonce(self.account_id, gpu_id, block_hash)
        try:
            evidence = self.attest_node(node_id, tee, nonce)
        except Exception as exc:
            reason = str(exc) if isinstance(exc, AttestationError) else f"{type(exc).__name__}: {exc}"
            return self._failed(rec, node_id, pool, tee, reason, now)
        verdict: Verdict = verify_evidence(tee, evidence.quote, aux=evidence.aux, account_id=self.account_id,
                                           gpu_id=gpu_id, policy=self.policy, blocks=self.blocks, guard=self.guard,
                                           guard_key=(node_id, gpu_id), expected_nonce=nonce)
        if not verdict.ok:
            return self._failed(rec, node_id, pool, tee, verdict.reason, now)
        submitted = False
        if self.submit is not None:
            try:
                self.submit(gpu_id, evidence.to_chain(int(now)))
                submitted = True
            except Exception as exc:  # the verdict stands; the chain copy is retried next refresh
                log.warning("filing the TEE attestation of node %s on chain failed: %s", node_id[:12], exc)
        return NodeRecord(node_id, pool, tee, True, "attested", now, now, gpu_id, verdict.block_number, submitted)

    def _set(self, rec: NodeRecord) -> None:
        with self._lock:
            self.records[rec.node_id] = rec

    # reading --------------------------------------------------------------------------------------

    def _fresh(self, rec: NodeRecord, now: float) -> bool:
        return rec.ok and rec.verified_at is not None and now - rec.verified_at <= self.max_age_s

    def attested_nodes(self, pool: str) -> list[str]:
        now = self.clock()
        with self._lock:
            return sorted(n for n, rec in self.records.items()
                          if rec.pool == pool and n in self._alive and self._fresh(rec, now))

    def attested_pools(self) -> set[str]:
        return {p.name for p in self.pools if p.tee and self.attested_nodes(p.name)}

    def pool_state(self, pool: str) -> str:
        """``attested`` (a fresh node), ``unattested`` (nodes, none fresh), ``cold`` (no node), ``n/a``."""
        p = self.by_name.get(pool)
        if p is None or p.tee is None:
            return "n/a"
        if self.attested_nodes(pool):
            return "attested"
        with self._lock:
            return "unattested" if any(v[0] == pool for v in self._alive.values()) else "cold"

    def take_changed(self) -> bool:
        with self._lock:
            changed, self._changed = self._changed, False
        return changed

    # the head's calls -----------------------------------------------------------------------------

    def admission_caps(self, pool_caps: Mapping[str, Any]) -> dict[str, Any]:
        """``pool_caps`` with the TEE taken away from pools that cannot serve it now."""
        out = {}
        for name, caps in pool_caps.items():
            state = self.pool_state(name)
            keep = state in ("attested", "n/a") or (state == "cold" and self.admit_cold_pools)
            out[name] = caps if keep or getattr(caps, "tee", None) is None else replace(caps, tee=None)
        return out

    def local_caps(self, caps: Any, pool: str) -> Any:
        return self.admission_caps({pool: caps})[pool]

    def pool_room(self, room: Mapping[str, float]) -> dict[str, float]:
        """Room per pool counting only attested nodes of TEE pools (a quarantined node takes nothing)."""
        out = dict(room)
        with self._lock:
            alive = dict(self._alive)
        for name in out:
            p = self.by_name.get(name)
            if p is None or p.tee is None:
                continue
            attested = len(self.attested_nodes(name))
            unattested = sum(1 for pool, _ in alive.values() if pool == name) - attested
            out[name] = 0.0 if attested == 0 else max(0.0, out[name] - unattested * p.gpus_per_node)
        return out

    def task_options(self, tee: str | None, pool: str | None, options: dict[str, Any]) -> dict[str, Any] | None:
        """Ray options for a job's task: unchanged for non-TEE jobs; for TEE jobs the ``tee:<type>`` resource
        and the attested nodes of its pool; None when it has none (do not dispatch)."""
        if tee is None:
            return options
        p = self.by_name.get(pool or "")
        if p is None or p.tee != tee:
            return None
        nodes = self.attested_nodes(p.name)
        if not nodes:
            return None
        out = dict(options)
        out["resources"] = {**out.get("resources", {}), tee_resource(tee): STEER}
        out["label_selector"] = {**out.get("label_selector", {}), NODE_ID_LABEL: f"in({','.join(nodes)})"}
        out.pop("fallback_strategy", None)  # attested nodes of its pool or nowhere
        return out

    # running --------------------------------------------------------------------------------------

    def start(self, poll_s: float = 1.0) -> TeeGate:
        """Refreshes in a thread (every ``poll_s`` it looks for due nodes), so the head never waits on a TEE."""
        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.refresh()
                except Exception:
                    log.exception("TEE gate refresh failed")
                self._stop.wait(poll_s)

        self._thread = threading.Thread(target=loop, name="etrid-tee-gate", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def status(self) -> dict[str, Any]:
        with self._lock:
            records = {n: r.as_dict() for n, r in self.records.items()}
        return {"pools": {p.name: self.pool_state(p.name) for p in self.pools if p.tee}, "nodes": records}
