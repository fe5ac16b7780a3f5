"""The same metrics on Ray's metrics endpoint, through `ray.util.metrics`.

Ray's metrics are pushed, not pulled: every `interval_s` this bridge takes a snapshot and sets
one `ray.util.metrics.Gauge` per gauge family and advances one `Counter` per counter family by
what it grew since the last push. Ray exports them on each node's metrics port with its `ray_`
prefix (`ray_etrid_job_queue_depth`, `ray_etrid_gpu_jobs_completed_total`, …), so they show in the
Ray dashboard's metrics views and in any Prometheus that scrapes Ray.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from etrid_ray.telemetry.metrics import Snapshot, families

log = logging.getLogger(__name__)


def _ascii(text: str) -> str:
    """Ray's metric descriptions must be ASCII (`ËDSC` → `EDSC`)."""
    return text.replace("Ë", "E").replace("→", "->").encode("ascii", "replace").decode()


class RayMetricsBridge:
    def __init__(self, snapshot: Callable[[], Snapshot | None], *, interval_s: float = 5.0) -> None:
        self._snapshot = snapshot
        self.interval_s = interval_s
        self._gauges: dict[str, Any] = {}
        self._counters: dict[str, Any] = {}
        self._last: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.pushes = 0

    def start(self) -> RayMetricsBridge:
        self._thread = threading.Thread(target=self._run, name="etrid-ray-metrics", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.push()
            except Exception as err:  # Ray's metrics are best effort: log, try again next interval
                log.warning("pushing Ray metrics failed: %s: %s", type(err).__name__, err)
            self._stop.wait(self.interval_s)

    def push(self) -> int:
        """Pushes one snapshot; returns the number of samples set."""
        from ray.util.metrics import Counter, Gauge

        snap = self._snapshot()
        if snap is None:
            return 0
        n = 0
        for family in families(snap):
            labels: tuple[str, ...] = ()
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                labels = tuple(sorted(sample.labels))
                tags = {k: str(v) for k, v in sample.labels.items()}
                if family.type == "counter":
                    metric = self._counters.get(family.name)
                    if metric is None:
                        metric = self._counters[family.name] = Counter(
                            family.name, description=_ascii(family.documentation), tag_keys=labels)
                    key = (family.name, tuple(sorted(tags.items())))
                    delta = sample.value - self._last.get(key, 0.0)
                    if delta < 0:  # the source restarted from zero (a restarted head): count from there
                        delta = sample.value
                    self._last[key] = sample.value
                    if delta > 0:
                        metric.inc(delta, tags=tags or None)
                else:
                    metric = self._gauges.get(sample.name)
                    if metric is None:
                        metric = self._gauges[sample.name] = Gauge(
                            sample.name, description=_ascii(family.documentation), tag_keys=labels)
                    metric.set(sample.value, tags=tags or None)
                n += 1
        self.pushes += 1
        return n

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
