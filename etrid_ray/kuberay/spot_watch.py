"""`etrid-ray spot-watch`: the spot pods' sidecar that drains this pod's Ray node when its cloud warns.

The loop (`clouds.interruptions.watcher.SpotWatcher`) and the notice sources are the clouds'; what is done
on a notice is this pod's: find its own Ray node and drain it through the GCS with the notice's time as the
deadline — the same `Drainer`, identity rules and `drain_and_wait` as the preStop hook (`prestop`). Both
live here, in the KubeRay layer above the clouds, because they are about a pod and its Ray node, not a cloud.
The endpoint override (`clouds.metadata_endpoint`, ETRID_METADATA_ENDPOINT) is read here too: the config sits
above the clouds, which take the endpoint as an argument.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from etrid_ray.clouds.interruptions.notice import DRAIN_KINDS, Notice
from etrid_ray.clouds.interruptions.sources import default_endpoint, source_for
from etrid_ray.clouds.interruptions.watcher import DEFAULT_INTERVAL_S, Echo, Outcome, SpotWatcher
from etrid_ray.config import env_setting
from etrid_ray.kuberay.prestop import Drainer, Identity, drain_and_wait, find_local_node, pod_identity


def notice_endpoint(cloud: str, env: dict[str, str] | None = None) -> str:
    """Where this node's notices are read: the config's `clouds.metadata_endpoint` (ETRID_METADATA_ENDPOINT),
    else the cloud's own (`sources.default_endpoint`: the SDK's override variable, else the real address). The
    sidecar holds no provider config: it reads its own environment."""
    return default_endpoint(cloud, env, override=env_setting("metadata_endpoint", env))


class RayNodeDrain:
    """Drains this instance's Ray node on a notice: Ray's drain API with the notice's time as deadline;
    with a deadline, waits until the node is dead or the deadline passes ("done"); without one, returns
    once the drain is accepted ("draining")."""

    def __init__(self, identity: Identity, *, address: str | None = None, connect_timeout_s: float = 10.0,
                 poll_s: float = 1.0, echo: Echo = print) -> None:
        self.identity = identity
        self.address = address
        self.connect_timeout_s = connect_timeout_s
        self.poll_s = poll_s
        self.echo = echo
        self.drainer: Any = None
        self.node: Any = None

    def locate(self) -> Any:
        """This instance's node (cached): LookupError when nothing or several match, other errors when
        the GCS cannot be reached."""
        if self.drainer is None:
            self.drainer = Drainer(self.address, self.connect_timeout_s)
        if self.node is None:
            self.node = find_local_node(self.drainer.nodes(), self.identity)
        return self.node

    def __call__(self, notice: Notice) -> Outcome:
        try:
            node = self.locate()
        except Exception as err:  # noqa: BLE001 - reported; the watcher asks again at the next poll
            self.echo(f"spot-watch: cannot find this instance's Ray node ({type(err).__name__}: {err})")
            return "failed"
        reason = f"{notice.cloud} spot interruption: {notice.describe()}"
        wait_until = None
        if notice.deadline is not None:
            wait_until = time.monotonic() + max(0.0, notice.deadline - time.time())
        code = drain_and_wait(self.drainer, node, reason, deadline_at=notice.deadline, wait_until=wait_until,
                              poll_s=self.poll_s, echo=self.echo, who="spot-watch", stops="the instance")
        if code != 0:
            return "failed"
        return "draining" if wait_until is None else "done"


def run_spot_watch(cloud: str, *, endpoint: str | None = None, interval_s: float = DEFAULT_INTERVAL_S,
                   request_timeout_s: float | None = None, drain_kinds: Iterable[str] = DRAIN_KINDS,
                   notice_s: float | None = None, address: str | None = None, node_id: str | None = None,
                   connect_timeout_s: float = 10.0, locate_timeout_s: float = 300.0, poll_s: float = 1.0,
                   linger: bool = False, stop: threading.Event | None = None, echo: Echo = print) -> int:
    """`etrid-ray spot-watch`: find this instance's Ray node (as the preStop hook does), then watch.
    Exit status: 0 a notice was handled (or stopped before any), 1 the GCS or the node could not be
    reached in `locate_timeout_s`, 2 nothing identifies this instance's node."""
    stop = stop or threading.Event()
    source = source_for(cloud, endpoint or notice_endpoint(cloud), timeout_s=request_timeout_s)
    identity = pod_identity(node_id=node_id)
    if not identity:
        echo("spot-watch: nothing identifies this instance's Ray node (no --node-id, RAY_CLOUD_INSTANCE_ID, "
             "ETRID_POD_NAME or ETRID_POD_IP, and not in Kubernetes); not watching")
        return 2
    drain = RayNodeDrain(identity, address=address, connect_timeout_s=connect_timeout_s, poll_s=poll_s, echo=echo)
    give_up = time.monotonic() + locate_timeout_s
    problem = ""
    while True:  # the sidecar may start before this node's raylet registers
        try:
            node = drain.locate()
            break
        except Exception as err:  # noqa: BLE001
            message = f"{type(err).__name__}: {err}"
            if message != problem:
                echo(f"spot-watch: waiting for this instance's Ray node ({message})")
                problem = message
        if time.monotonic() >= give_up or stop.wait(min(5.0, max(0.0, give_up - time.monotonic()))):
            if not stop.is_set():
                echo(f"spot-watch: no Ray node found in {locate_timeout_s:g}s; not watching")
            return 1 if not stop.is_set() else 0
    echo(f"spot-watch: watching {cloud} notices at {source.endpoint} every {interval_s:g}s for Ray node "
         f"{node.node_id} ({node.hostname or node.address}); draining on {', '.join(sorted(set(drain_kinds)))}")
    watcher = SpotWatcher(source, drain, interval_s=interval_s, drain_kinds=drain_kinds, notice_s=notice_s, echo=echo)
    notice = watcher.run(stop)
    if notice is not None:
        echo(f"spot-watch: done ({notice.describe()})")
        if linger:  # a sidecar that exits would be restarted: stay until the pod goes
            stop.wait()
    return 0
