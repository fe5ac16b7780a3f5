"""One percentile rule for every figure the project prints (head stats, demo, simulator, benches).

Nearest rank (the smallest sample with at least q % of the samples at or below it): always a value
that was observed, so a p99 wait is a wait some job really had, and no numpy on the head's path.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values; 0 for none."""
    s = sorted(values)
    if not s:
        return 0.0
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return float(s[k])
