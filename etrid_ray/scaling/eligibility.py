"""Which pools a job may run on: the hard rules, no money — TEE type, residency, accelerator, VRAM and
GPUs on one node.

Why a table: placement asks this for every queued job and pool on every tick (the live head once a
second, the simulator hundreds of thousands of times over a trace), yet a queue of thousands carries
a handful of distinct rule sets. `Fits` answers once per rule set (`QueuedJob.rules`) and pool set.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from operator import attrgetter
from typing import TYPE_CHECKING

from etrid_ray.admission import accelerator_matches, region_allowed
from etrid_ray.manifest import ComplianceSpec, Manifest
from etrid_ray.pools import Pool

if TYPE_CHECKING:
    from etrid_ray.scaling.state import QueuedJob, RuleSet

_RULES = attrgetter("rules")


@lru_cache(maxsize=4096)
def _residency_ok(region: str, template: str | None, allowed: tuple[str, ...]) -> bool:
    """admission's `region_allowed`, memoized per rule set (one small Manifest per distinct rule)."""
    manifest = Manifest(handler="placement",
                        compliance=ComplianceSpec(template=template, allowed_regions=list(allowed)))
    return region_allowed(region, manifest)


def eligible(job: QueuedJob, pool: Pool) -> bool:
    """Hard rules only (no money): TEE type, residency, accelerator, VRAM and GPUs on one node."""
    if job.gpus > pool.gpus_per_node or job.min_vram_gb > pool.vram_gb:
        return False
    if job.tee is not None and pool.tee != job.tee:
        return False
    if job.accelerator and not accelerator_matches(job.accelerator, pool.accelerator):
        return False
    if job.compliance_template is None and not job.allowed_regions:
        return True
    return _residency_ok(pool.region, job.compliance_template, job.allowed_regions)


class Fits:
    """`eligible` for one list of pools, as bit masks (bit k: `pools[k]`), computed once per rule set."""

    def __init__(self, pools: Sequence[Pool]) -> None:
        self.pools = tuple(pools)
        self._masks: dict[RuleSet, int] = {}
        self._first_local: dict[RuleSet, str | None] = {}
        self.local = self.bits(p for p in self.pools if not p.is_cloud)  # the local pools' bits

    def bit(self, name: str) -> int:
        """The bit of the pool called `name`."""
        for k, pool in enumerate(self.pools):
            if pool.name == name:
                return 1 << k
        raise KeyError(name)

    def bits(self, pools: Iterable[Pool]) -> int:
        """The bits of `pools` (this table's pools)."""
        out = 0
        for pool in pools:
            out |= self.bit(pool.name)
        return out

    def mask(self, job: QueuedJob) -> int:
        """The pools `job` may run on."""
        try:
            return self._masks[job.rules]
        except KeyError:
            m = 0
            for k, pool in enumerate(self.pools):
                if eligible(job, pool):
                    m |= 1 << k
            self._masks[job.rules] = m
            return m

    def masks(self, jobs: Sequence[QueuedJob]) -> list[int]:
        """`mask` of each of `jobs`, in order (one pass without a call per job: this runs on every tick)."""
        known = self._masks
        try:
            return [known[r] for r in map(_RULES, jobs)]
        except KeyError:
            return [self.mask(j) for j in jobs]

    def first(self, job: QueuedJob, among: int) -> Pool | None:
        """The first pool (in table order) of the bits `among` that `job` may run on."""
        m = self.mask(job) & among
        if not m:
            return None
        return self.pools[(m & -m).bit_length() - 1]

    def first_local_name(self, job: QueuedJob) -> str | None:
        """The first local pool `job` may run on (where a job waiting for local GPUs is counted)."""
        try:
            return self._first_local[job.rules]
        except KeyError:
            pool = self.first(job, self.local)
            name = self._first_local[job.rules] = pool.name if pool is not None else None
            return name
