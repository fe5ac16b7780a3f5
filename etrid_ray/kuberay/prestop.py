"""The worker pods' `preStop` hook: drain this pod's own Ray node, then wait for it to empty.

`python -m etrid_ray.kuberay.prestop --deadline-s 150` asks the GCS to drain the local Ray node
(reason PREEMPTION, which the raylet cannot refuse) with a deadline, so no new task or actor
lands on it while the ones running finish; the raylet exits by itself once it is draining and
idle. The hook returns when the node is dead or the deadline passes, and only then does the
kubelet send SIGTERM. It touches nothing but its own node: no `ray stop`, no signals.

The node is found without connecting a driver, and only by what names this pod uniquely: its
`--node-id`; else the instance id Ray registered (`RAY_CLOUD_INSTANCE_ID`, which KubeRay sets
to the pod name, or the pod name itself, `ETRID_POD_NAME` from the downward API); else the pod
IP (`ETRID_POD_IP`); else, inside Kubernetes only, the hostname (a pod's own name). Outside a
pod there is no safe guess — several Ray nodes can share one machine — so without an identity
the hook refuses before it talks to any cluster. Exit status: 0 drained (or the deadline
passed while draining), 1 the drain failed or no GCS could be reached, 2 this pod's node could
not be identified.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

DEFAULT_DEADLINE_S = 150.0


@dataclass(frozen=True)
class NodeView:
    node_id: str  # hex
    alive: bool
    instance_id: str
    hostname: str
    address: str
    is_head: bool
    draining: bool


def _view(info: Any) -> NodeView:
    from ray.core.generated import gcs_pb2

    return NodeView(node_id=info.node_id.hex(), alive=info.state == gcs_pb2.GcsNodeInfo.ALIVE,
                    instance_id=info.instance_id, hostname=info.node_manager_hostname,
                    address=info.node_manager_address, is_head=info.is_head_node,
                    draining=info.state_snapshot.state == gcs_pb2.NodeSnapshot.DRAINING)


@dataclass(frozen=True)
class Identity:
    node_id: str | None = None
    instance_ids: tuple[str, ...] = ()
    address: str | None = None
    hostname: str | None = None

    def __bool__(self) -> bool:
        return bool(self.node_id or self.instance_ids or self.address or self.hostname)


def pod_identity(env: dict[str, str] | None = None, node_id: str | None = None) -> Identity:
    """What names this pod's Ray node, from the environment KubeRay and the manifest give the container (the
    downward API's ETRID_POD_NAME/IP: facts about this pod, not settings, read where the hook runs)."""
    env = dict(os.environ if env is None else env)
    instance_ids = tuple(dict.fromkeys(v for v in (env.get("RAY_CLOUD_INSTANCE_ID"), env.get("ETRID_POD_NAME"))
                                       if v))
    in_kubernetes = bool(env.get("KUBERNETES_SERVICE_HOST"))
    return Identity(node_id=node_id, instance_ids=instance_ids, address=env.get("ETRID_POD_IP") or None,
                    hostname=socket.gethostname() if in_kubernetes else None)


def find_local_node(nodes: Iterable[NodeView], identity: Identity) -> NodeView:
    """The one live node that is this pod's; raises LookupError naming the ambiguity otherwise."""
    alive = [n for n in nodes if n.alive]
    rules: list[tuple[str, Callable[[NodeView], bool]]] = []
    node_id = identity.node_id
    if node_id:
        rules.append((f"node id {node_id}", lambda n: n.node_id == node_id.lower()))
    else:
        ids = identity.instance_ids
        if ids:
            rules.append((f"instance id {' or '.join(ids)}", lambda n: n.instance_id in ids))
        if identity.address:
            rules.append((f"pod IP {identity.address}", lambda n: n.address == identity.address))
        if identity.hostname:
            rules.append((f"hostname {identity.hostname}", lambda n: n.hostname == identity.hostname))
    for what, rule in rules:
        matches = [n for n in alive if rule(n)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise LookupError(f"{len(matches)} live Ray nodes match {what}: pass --node-id")
        if node_id:
            break
    tried = ", ".join(what for what, _ in rules) or "nothing"
    raise LookupError(f"no live Ray node matches {tried} (of {len(alive)} live nodes)")


class Drainer:
    def __init__(self, address: str | None = None, connect_timeout_s: float = 10.0) -> None:
        from ray._private import services
        from ray._raylet import InnerGcsClient

        # RAY_ADDRESS, else the cluster this pod's `ray start` recorded under the Ray temp dir
        self.address = services.canonicalize_bootstrap_address_or_die(address)
        self.gcs = InnerGcsClient.standalone(self.address, None, int(connect_timeout_s * 1000))

    def nodes(self, timeout: float = 10.0) -> list[NodeView]:
        return [_view(info) for info in self.gcs.get_all_node_info(timeout=timeout).values()]

    def node(self, node_id: str) -> NodeView | None:
        return next((n for n in self.nodes() if n.node_id == node_id), None)

    def drain(self, node_id: str, reason: str, deadline_s: float | None = None, *,
              deadline_at: float | None = None) -> tuple[bool, str]:
        """Asks the GCS to drain `node_id` (PREEMPTION: the raylet cannot refuse). The deadline is either
        `deadline_s` from now or `deadline_at` (Unix seconds, e.g. a spot notice's time); neither means none.
        Ray 2.60 leaves the node up past a future deadline (whoever set it stops the node), but a deadline
        already past when the request arrives stops the raylet at once, running tasks and all."""
        from ray.core.generated import autoscaler_pb2

        now = time.time()
        if deadline_at is None and deadline_s is not None:
            deadline_at = now + deadline_s
        deadline_ms = int(deadline_at * 1000) if deadline_at is not None else 0  # 0: Ray's "no deadline"
        rpc_timeout = 30.0 if deadline_at is None else min(30.0, max(1.0, deadline_at - now))
        accepted, message = self.gcs.drain_node(node_id, autoscaler_pb2.DrainNodeReason.DRAIN_NODE_REASON_PREEMPTION,
                                                reason, deadline_ms, timeout=rpc_timeout)
        return bool(accepted), (message.decode() if isinstance(message, bytes) else str(message or ""))

    def wait_dead(self, node_id: str, until: float, poll_s: float = 1.0) -> bool:
        """True once the node is dead or gone from the GCS; False when `until` (monotonic) passes first."""
        while True:
            try:
                node = self.node(node_id)
            except Exception:  # noqa: BLE001 - GCS briefly unreachable: keep waiting until the deadline
                node = NodeView(node_id, True, "", "", "", False, True)
            if node is None or not node.alive:
                return True
            if time.monotonic() >= until:
                return False
            time.sleep(min(poll_s, max(0.0, until - time.monotonic())))


def run(argv: list[str] | None = None, *, echo: Callable[[str], Any] = print) -> int:
    parser = argparse.ArgumentParser(prog="python -m etrid_ray.kuberay.prestop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deadline-s", type=float, default=DEFAULT_DEADLINE_S,
                        help="seconds until the pod is killed: the drain deadline and the longest wait")
    parser.add_argument("--reason", default="pod is terminating", help="drain reason shown by Ray")
    parser.add_argument("--address", default=None, help="GCS address (default: RAY_ADDRESS or the local cluster)")
    parser.add_argument("--node-id", default=None, help="hex id of the node to drain (default: this pod's)")
    parser.add_argument("--poll-s", type=float, default=1.0)
    parser.add_argument("--connect-timeout-s", type=float, default=10.0, help="give up reaching the GCS after this")
    args = parser.parse_args(argv)
    if args.deadline_s <= 0:
        parser.error("--deadline-s must be positive")
    until = time.monotonic() + args.deadline_s
    identity = pod_identity(node_id=args.node_id)
    if not identity:
        echo("prestop: nothing identifies this pod's Ray node (no --node-id, RAY_CLOUD_INSTANCE_ID, ETRID_POD_NAME "
             "or ETRID_POD_IP, and not in Kubernetes); nothing drained")
        return 2
    try:
        drainer = Drainer(args.address, args.connect_timeout_s)
        node = find_local_node(drainer.nodes(), identity)
    except LookupError as err:
        echo(f"prestop: {err}")
        return 2
    except Exception as err:  # noqa: BLE001 - no cluster to talk to: nothing this hook can drain
        echo(f"prestop: cannot reach the Ray GCS ({type(err).__name__}: {err}); nothing drained")
        return 1
    return drain_and_wait(drainer, node, args.reason, deadline_at=time.time() + args.deadline_s,
                          wait_until=until, poll_s=args.poll_s, echo=echo, who="prestop",
                          horizon=f"for up to {args.deadline_s:g}s")


def drain_and_wait(drainer: Drainer, node: NodeView, reason: str, *, deadline_at: float | None,
                   wait_until: float | None, poll_s: float = 1.0, echo: Callable[[str], Any] = print,
                   who: str = "prestop", horizon: str = "", stops: str = "the pod") -> int:
    """Drains `node` with the deadline `deadline_at` (Unix seconds; None: no deadline), then waits until it
    is dead or `wait_until` (monotonic) passes; `wait_until=None` returns once the drain is accepted.
    Shared by this hook and the spot-interruption watcher. Returns the exit status: 0 drained (or
    draining when the wait ended), 1 the drain request failed or was rejected."""
    if not horizon:
        horizon = ("with no deadline" if deadline_at is None else
                   f"until {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(deadline_at))}")
    echo(f"{who}: draining Ray node {node.node_id} ({node.hostname or node.address}) {horizon}: {reason}")
    try:
        accepted, message = drainer.drain(node.node_id, reason, deadline_at=deadline_at)
    except Exception as err:  # noqa: BLE001
        echo(f"{who}: drain request failed ({type(err).__name__}: {err})")
        return 1
    if not accepted:
        echo(f"{who}: drain rejected: {message}")
        return 1
    if wait_until is None:
        return 0
    if drainer.wait_dead(node.node_id, wait_until, poll_s):
        echo(f"{who}: node {node.node_id} drained and stopped")
    else:
        echo(f"{who}: deadline reached with work still on node {node.node_id}; {stops} stops now")
    return 0


def main() -> None:  # pragma: no cover - exercised through `python -m` in the tests
    sys.exit(run())


if __name__ == "__main__":  # pragma: no cover
    main()
