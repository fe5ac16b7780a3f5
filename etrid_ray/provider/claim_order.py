"""The admitted jobs in claim order, kept sorted between claim passes.

Why not sort every pass: the claim stage reads the order on every pass (up to twenty a second while chain slots
free one settlement at a time), and at a burst thousands of jobs wait admitted; sorting all of them each pass was
the head's largest single cost per job (P1). A job's place depends only on facts fixed once it is judged (reject
or claim, the chain's priority, how old it is, this head's hash of it) and on the placement's ranking, which
changes only with a new plan. So the order is kept: jobs that became admitted since the last pass are inserted,
jobs that left are dropped where a pass meets them, and only a new ranking sorts everything again.

Keys are single integers (fixed high part, rank, fixed low part) because comparing ints is what CPython's sort
does fastest; the job id breaks exact ties, so two jobs never compare their objects.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Callable, Iterable, Mapping
from typing import Generic, Protocol, TypeVar

RANK_BITS = 32  # a plan ranks at most 2**32 jobs
LOW_BITS = 192  # the fixed low part (age window and hash) fits under this
BULK = 64  # more arrivals than this in one pass: appended and sorted once instead of inserted one by one


class Ordered(Protocol):
    """What the order needs of a job: its id, whether it is still admitted, and its fixed key parts."""

    @property
    def job_id(self) -> int: ...


J = TypeVar("J", bound=Ordered)


def claim_key(fixed: tuple[int, int], rank: int) -> int:
    """One integer ordering (fixed high part, rank, fixed low part) lexicographically."""
    high, low = fixed
    return (((high << RANK_BITS) | rank) << LOW_BITS) | low


class ClaimOrder(Generic[J]):
    """Admitted jobs, sorted by `claim_key`. `fixed(job)` gives a job's unchanging (high, low) parts; `live(job)`
    whether it is still admitted (entries of jobs that left are dropped lazily)."""

    def __init__(self, fixed: Callable[[J], tuple[int, int]], live: Callable[[J], bool]) -> None:
        self.fixed = fixed
        self.live = live
        self._entries: list[tuple[int, int, J]] = []
        self._key_of: dict[int, int] = {}  # job id -> the key of its one entry in `_entries`
        self._rank: Mapping[int, int] | None = None
        self._fallback_rank = 0  # rank of jobs the ranking does not name: after every named one

    def __len__(self) -> int:
        return len(self._key_of)

    def _key(self, job: J) -> int:
        rank = self._rank.get(job.job_id, self._fallback_rank) if self._rank else 0
        return claim_key(self.fixed(job), rank)

    def arrive(self, jobs: Iterable[J]) -> None:
        """Jobs that became admitted (again) since the last call."""
        fresh: list[tuple[int, int, J]] = []
        for job in jobs:
            key = self._key(job)
            if self._key_of.get(job.job_id) == key:
                continue  # its entry is still there: it is simply live again
            self._key_of[job.job_id] = key  # an older entry under another key is dead from now on
            fresh.append((key, job.job_id, job))
        if len(fresh) > BULK:
            self._entries.extend(fresh)
            self._entries.sort()
        else:
            for entry in fresh:
                insort(self._entries, entry)

    def rerank(self, rank: Mapping[int, int] | None, admitted: Iterable[J]) -> None:
        """A new ranking (a new placement plan; None or empty: none): every admitted job sorted again."""
        self._rank = rank or None
        self._fallback_rank = len(rank) if rank else 0
        self._key_of.clear()
        self._entries = []
        self.arrive(admitted)

    @property
    def rank(self) -> Mapping[int, int] | None:
        return self._rank

    def top(self, n: int, admitted: int) -> list[J]:
        """The first `n` admitted jobs in claim order (`admitted`: how many there are now). Entries of jobs that
        left (or were re-keyed) that this walk meets are removed; so are all of them once they outnumber the live
        ones."""
        out: list[J] = []
        entries, key_of = self._entries, self._key_of
        dead = 0
        i = 0
        for i, (key, job_id, job) in enumerate(entries):  # noqa: B007 - `i` is where the walk stopped
            if key_of.get(job_id) == key and self.live(job):
                out.append(job)
                if len(out) >= n:
                    break
            else:
                dead += 1
        else:
            i = len(entries)
        if dead:
            self._entries[: i + 1] = [e for e in entries[: i + 1] if self._keep(e)]
        if len(self._entries) > 2 * admitted + BULK:
            self._entries = [e for e in self._entries if self._keep(e)]
        return out

    def _keep(self, entry: tuple[int, int, J]) -> bool:
        key, job_id, job = entry
        if self._key_of.get(job_id) != key:
            return False  # re-keyed: its newer entry stays
        if self.live(job):
            return True
        del self._key_of[job_id]
        return False
