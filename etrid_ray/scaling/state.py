"""The state snapshot every scaling and placement policy reads: a value, built at the edges.

Why a snapshot: the live head (from Ray's node table and the chain queue) and the simulator
(from its event model) build the same value and call the same pure functions on it, so
what the simulator proves about profit is what the head does (architecture, principle 1).
Times are seconds on one clock chosen by the caller (wall time live, simulated time in the
simulator); nothing here reads a clock.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property

from etrid_ray.admission import MIN_BILLABLE_GPUS, JobTerms, billable_gpus
from etrid_ray.manifest import Manifest
from etrid_ray.pools import Pool
from etrid_ray.prices.catalog import PriceQuote
from etrid_ray.scaling.eligibility import Fits
from etrid_ray.units import PLANCK_PER_EDSC

# The chain keeps 5 % of every payment (pallet_job_marketplace PLATFORM_FEE_BPS); the provider earns the rest.
PLATFORM_FEE_BPS = 500

SIZES = 5  # job size classes: 1, 2, 3–4, 5–8, more GPUs (size_class)


def size_class(gpus: float) -> int:
    """0 for a job of at most one GPU, then 1 for 2, 2 for 3–4, 3 for 5–8, 4 beyond: the sizes local GPUs
    reach at different speeds (a whole node frees more rarely than one GPU)."""
    return min(SIZES - 1, (max(1, math.ceil(gpus - 1e-9)) - 1).bit_length())


class RuleSet:
    """One distinct set of hard rules, shared by every queued job that carries it (see QueuedJob.rules).

    Compared and hashed by identity, so a lookup keyed by it costs no tuple hash. Held weakly by the
    table below: a rule set lives as long as a job carries it, so a stream of jobs with ever-new rules
    (residency lists are the consumer's to write) cannot grow a long-running head's memory."""

    __slots__ = ("__weakref__", "rules")

    def __init__(self, rules: tuple[object, ...]) -> None:
        self.rules = rules


_RULE_SETS: weakref.WeakValueDictionary[tuple[object, ...], RuleSet] = weakref.WeakValueDictionary()


@dataclass(frozen=True)
class QueuedJob:
    """One unit of demand: a chain job we could claim, or one claimed and not yet running.

    `price_per_gpu_s × billable GPUs × expected_duration_s` is what the job pays (planck), so a
    head that knows the job's payment and a duration estimate sets the price from them
    (`from_chain`); the simulator sets both from the trace.
    """

    job_id: int
    gpus: float  # GPUs the job occupies (fractions share a GPU; 0 = needs no GPU)
    price_per_gpu_s: float  # planck per billable GPU-second offered
    expected_duration_s: float
    waiting_since: float  # when it entered the queue (on the policy clock)
    tee: str | None = None  # required TEE type; None = any node
    compliance_template: str | None = None  # e.g. "GDPR": data stays in EU regions
    allowed_regions: tuple[str, ...] = ()  # region prefixes; empty = anywhere
    accelerator: str | None = None
    min_vram_gb: int = 0
    claimed: bool = False  # ours already (re-queued after its node went away): no other provider takes it

    # computed once per job: placement orders the whole queue on every tick
    @cached_property
    def fifo_key(self) -> tuple[float, int]:
        """First come, first served."""
        return (self.waiting_since, self.job_id)

    @cached_property
    def size_class(self) -> int:
        """Its size class for local reach (scaling.outlook.size_class)."""
        return size_class(self.gpus)

    @cached_property
    def work(self) -> float:
        """Billable GPU-seconds: what the job keeps busy, and what its price is paid on."""
        return self.billable_gpus * self.expected_duration_s

    @cached_property
    def rules(self) -> RuleSet:
        """The job's hard rules (size, VRAM, TEE, accelerator, residency), one object per distinct set. Jobs
        with the same rules fit the same pools, and a queue of thousands carries a handful of rule sets:
        placement asks which pools fit once per rule set on a tick (`Snapshot.fits`), not per job and pool."""
        rules = (self.gpus, self.min_vram_gb, self.tee, self.accelerator, self.compliance_template,
                 self.allowed_regions)
        found = _RULE_SETS.get(rules)
        if found is None:
            found = _RULE_SETS[rules] = RuleSet(rules)
        return found

    @property
    def billable_gpus(self) -> float:
        """At least admission's minimum, so a zero-GPU job is never free (same rule as the price check)."""
        return max(self.gpus, MIN_BILLABLE_GPUS)

    def revenue_usd(self, edsc_usd: float) -> float:
        """What the provider keeps if it runs the job: payment less the chain's fee, in USD."""
        planck = self.price_per_gpu_s * self.billable_gpus * self.expected_duration_s
        return planck * (1 - PLATFORM_FEE_BPS / 10_000) / PLANCK_PER_EDSC * edsc_usd

    def revenue_usd_per_gpu_hour(self, edsc_usd: float) -> float:
        """The job's offered price as the provider's USD per GPU-hour (fee deducted)."""
        return self.price_per_gpu_s * 3600 * (1 - PLATFORM_FEE_BPS / 10_000) / PLANCK_PER_EDSC * edsc_usd

    def claimed_again(self) -> QueuedJob:
        """This job, ours already (taken back from a node that went away or never came): placement never judges
        it too late for a new node, and no other provider can take it."""
        return self if self.claimed else replace(self, claimed=True)

    @classmethod
    def from_manifest(cls, job_id: int, manifest: Manifest, *, price_per_gpu_s: float, expected_duration_s: float,
                      waiting_since: float) -> QueuedJob:
        res, comp = manifest.resources, manifest.compliance
        return cls(job_id=job_id, gpus=float(res.gpus), price_per_gpu_s=price_per_gpu_s,
                   expected_duration_s=expected_duration_s, waiting_since=waiting_since, tee=res.tee,
                   compliance_template=comp.template, allowed_regions=tuple(comp.allowed_regions),
                   accelerator=res.accelerator, min_vram_gb=res.min_vram_gb)

    @classmethod
    def from_chain(cls, terms: JobTerms, manifest: Manifest, *, waiting_since: float,
                   expected_duration_s: float | None = None) -> QueuedJob:
        """A chain job: the payment is fixed, so the price per GPU-second follows the duration we expect
        (default: its whole `max_compute_time`, the worst case admission also assumes)."""
        seconds = float(expected_duration_s if expected_duration_s is not None else max(terms.max_compute_time, 1))
        seconds = max(seconds, 1e-9)
        price = terms.payment / (seconds * billable_gpus(manifest))
        return cls.from_manifest(terms.job_id, manifest, price_per_gpu_s=price, expected_duration_s=seconds,
                                 waiting_since=waiting_since)


@dataclass(frozen=True)
class PoolState:
    """One pool as observed now: its definition, its nodes and its GPUs.

    `alive` nodes run tasks; `pending` nodes were requested and are still starting (they count
    as capacity for steering, so a request is not repeated every tick while a node boots).
    `idle_since` has one entry per alive node: when it became idle, or None while it is busy.
    `pending_since` has one entry per pending node, oldest first: when it was requested (empty: unknown, and
    no request is ever judged overdue); `startup_s` is the startup the observer has learnt for the pool (None:
    the pool's declared `startup_s`). `unavailable` is set by the tick (`scaling.capacity`), never by an
    observer: why the pool may get no new nodes now (its requests did not come, or it is an on-demand fallback
    while its spot pool can launch).
    """

    pool: Pool
    alive: int = 0
    pending: int = 0
    idle_since: tuple[float | None, ...] = ()
    gpus_busy: float = 0.0
    gpus_free: float = 0.0
    # free GPUs on each alive node; () = unknown (room is then judged on the pool's total). A job runs on
    # one node, so 60 free GPUs spread over 40 nodes have no room for an 8-GPU job.
    node_free: tuple[float, ...] = ()
    pending_since: tuple[float, ...] = ()
    startup_s: float | None = None
    unavailable: str | None = None

    def __post_init__(self) -> None:
        if self.alive < 0 or self.pending < 0:
            raise ValueError(f"pool {self.pool.name}: node counts must be ≥ 0")
        if len(self.pending_since) > self.pending:
            raise ValueError(f"pool {self.pool.name}: pending_since has more entries than pending nodes")
        if len(self.idle_since) > self.alive:
            raise ValueError(f"pool {self.pool.name}: idle_since has more entries than alive nodes")
        if len(self.node_free) > self.alive:
            raise ValueError(f"pool {self.pool.name}: node_free has more entries than alive nodes")

    def node_slots(self) -> list[float] | None:
        """Free GPUs per node a job could land on soon (alive nodes, then every GPU of each starting
        node), or None when per-node room is unknown."""
        if not self.node_free:
            return None
        return [max(0.0, f) for f in self.node_free] + [float(self.pool.gpus_per_node)] * self.pending

    @property
    def name(self) -> str:
        return self.pool.name

    @property
    def expected_startup_s(self) -> float:
        """How long a requested node of this pool takes to join: learnt where the observer knows, else declared."""
        return self.pool.startup_s if self.startup_s is None else self.startup_s

    @property
    def nodes(self) -> int:
        """Alive + pending: what a scaling target is compared with."""
        return self.alive + self.pending

    @property
    def busy_nodes(self) -> int:
        """Alive nodes not known to be idle (no idle_since entry counts as busy): never scaled away."""
        return self.alive - sum(1 for t in self.idle_since if t is not None)

    @property
    def free_capacity(self) -> float:
        """GPUs a job steered here can use soon: free on alive nodes plus every GPU of pending nodes."""
        return max(0.0, self.gpus_free) + self.pending * self.pool.gpus_per_node


@dataclass(frozen=True)
class Departure:
    """A job that left the market queue without being ours: claimed by another provider, cancelled or
    expired. Why a policy may care: how long consumers wait before someone else serves their job (the
    patience) decides whether a job is worth a node that takes minutes to start; only the jobs we
    watched leave tell it. `waited_s` is from when it entered our queue to when we saw it gone."""

    job_id: int
    gpus: float
    waited_s: float
    price_per_gpu_s: float  # planck per billable GPU-second offered
    expected_duration_s: float

    @classmethod
    def of(cls, job: QueuedJob, now: float) -> Departure:
        """`job`, seen gone at `now`."""
        return cls(job_id=job.job_id, gpus=job.gpus, waited_s=max(0.0, now - job.waiting_since),
                   price_per_gpu_s=job.price_per_gpu_s, expected_duration_s=job.expected_duration_s)


@dataclass(frozen=True)
class Snapshot:
    """Everything a policy may look at, at one instant."""

    now: float
    pools: tuple[PoolState, ...]
    queue: tuple[QueuedJob, ...] = ()
    spend_today_usd: float = 0.0  # cloud spend this UTC day (scaling.billing: per second, a minute at least)
    prices: Mapping[str, PriceQuote] = field(default_factory=dict)  # by pool name; cloud pools only
    departed: tuple[Departure, ...] = ()  # jobs that left the queue, not ours, since the previous snapshot

    @cached_property
    def fits(self) -> Fits:
        """Which of this snapshot's pools each job may run on (hard rules), asked once per rule set."""
        return Fits(tuple(ps.pool for ps in self.pools))

    def pool(self, name: str) -> PoolState:
        for ps in self.pools:
            if ps.name == name:
                return ps
        raise KeyError(name)
