"""The head as a detached, named Ray actor (`etrid-provider` in namespace `etrid`).

The actor reads its signing key itself, from the env var or file the config
names, inside its own process: the secret never travels as an argument, never
shows in the dashboard's actor arguments or the job's runtime_env. With
`max_restarts=-1`, Ray restarts a crashed head, and its constructor recovers
every in-flight job from chain state plus the journal.

The actor also serves the head's `/metrics`, `/healthz` and `/readyz` (`etrid_ray.telemetry`;
`ETRID_METRICS_HOST`/`ETRID_METRICS_PORT`, 127.0.0.1:9091 by default) and pushes the same values to
Ray's metrics endpoint. It is placed on the head node, where the manifests expose that port.

Taking it offline (`etrid-ray provider stop`, SIGTERM to `provider run`) is a drain, not a kill: the
request is written to Ray's GCS key-value store before the head hears of it, so a head that Ray restarts
mid-drain (`max_restarts=-1`) reads it in its constructor and claims nothing; only when nothing is in
flight is the actor killed with `no_restart`. The flag stays until the next `provider run` clears it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

from etrid_ray.chain import load_signer
from etrid_ray.config import ProviderConfig
from etrid_ray.provider.head import OFFLINE_REASON, ProviderHead
from etrid_ray.security import audit
from etrid_ray.telemetry.head_source import HeadTelemetry
from etrid_ray.telemetry.logs import configure_logging
from etrid_ray.telemetry.metrics import Snapshot

ACTOR_NAME = "etrid-provider"
HEAD_NODE_RESOURCE = "node:__internal_head__"  # Ray's resource that only the head node has
NAMESPACE = "etrid"
KV_NAMESPACE = "etrid"


def _drain_key(namespace: str) -> bytes:
    return f"provider-drain:{namespace}".encode()


def request_drain(namespace: str, *, now: bool, reason: str = OFFLINE_REASON) -> None:
    """Records, in the GCS, that the head in `namespace` must go offline (read back by `drain_request`)."""
    from ray.experimental import internal_kv

    internal_kv._internal_kv_put(_drain_key(namespace), json.dumps({"now": now, "reason": reason,
                                                                    "at": time.time()}).encode(),
                                 overwrite=True, namespace=KV_NAMESPACE)


def drain_request(namespace: str) -> dict[str, Any] | None:
    """The standing drain request for `namespace`, or None."""
    from ray.experimental import internal_kv

    raw = internal_kv._internal_kv_get(_drain_key(namespace), namespace=KV_NAMESPACE)
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        data = {}
    return {"now": bool(data.get("now")), "reason": str(data.get("reason") or OFFLINE_REASON)}


def clear_drain(namespace: str) -> None:
    """An explicit start (`provider run`) lifts an earlier stop."""
    from ray.experimental import internal_kv

    internal_kv._internal_kv_del(_drain_key(namespace), namespace=KV_NAMESPACE)


class ProviderHeadActor:
    def __init__(self, config: dict[str, Any], chain_url: str | None = None) -> None:
        configure_logging(force=False)  # ETRID_LOG_FORMAT=json for JSON lines; secrets redacted either way
        cfg = ProviderConfig.model_validate(config)
        signer = load_signer(env_var=cfg.seed_env, file=cfg.seed_file)
        audit.configure_for(cfg)  # the process-wide audit log this config asks for (compliance on)
        head = ProviderHead(cfg, signer, chain_url=chain_url)
        # A restart (crash, node loss) while a stop was pending must not resume claiming.
        pending = drain_request(cfg.namespace or NAMESPACE)
        if pending is not None:
            head.draining = True
        self.head = head.start()
        if pending is not None and pending["now"]:
            self.head.drain(now=True, reason=pending["reason"])  # what recovery re-dispatched fails at once
        self.telemetry = HeadTelemetry(self.head).start()

    def status(self, detail: bool = False) -> dict[str, Any]:
        return self.head.status(detail).as_dict(detail)

    def drain(self, now: bool = False, reason: str = OFFLINE_REASON) -> dict[str, Any]:
        """Stops claiming; with `now`, fails what is in flight with `reason`. Returns the status."""
        request_drain(self.head.config.namespace or NAMESPACE, now=now, reason=reason)
        self.head.drain(now=now, reason=reason)
        return self.head.status().as_dict()

    def snapshot(self) -> dict[str, Any]:
        """What `/metrics` serves, as data (`etrid-ray status --address`)."""
        return self.telemetry.snapshot().to_dict()

    def metrics_url(self) -> str | None:
        return self.telemetry.url

    def ping(self) -> bool:
        return True

    def stop(self) -> None:
        self.telemetry.stop()
        self.head.stop()


RemoteHead = ray.remote(num_cpus=0, max_concurrency=4, max_restarts=-1, max_task_retries=-1)(ProviderHeadActor)


def launch_head(config: ProviderConfig, chain_url: str | None = None, *, detached: bool = True) -> Any:
    """Starts the head, or returns the running one (one head per cluster).

    `provider run` passes `detached=False`: the head then belongs to the driver that runs it (the CLI, or
    the Ray Job's driver with `--detach`), which keeps its task workers reusable, and dies with it (see
    `etrid_ray.service.runner`)."""
    options: dict[str, Any] = {"name": ACTOR_NAME, "namespace": config.namespace or NAMESPACE,
                               "get_if_exists": True,
                               # on the head node: only the head pod carries the signing key (the Secret)
                               "resources": {HEAD_NODE_RESOURCE: 0.001}}
    if detached:
        options["lifetime"] = "detached"
    handle = RemoteHead.options(**options).remote(config.model_dump(mode="json"), chain_url)
    ray.get(handle.ping.remote())
    return handle


def get_head(namespace: str = NAMESPACE) -> Any:
    return ray.get_actor(ACTOR_NAME, namespace=namespace)


def find_head(namespace: str = NAMESPACE) -> Any | None:
    try:
        return get_head(namespace)
    except ValueError:
        return None


def reachable(address: str, timeout: float = 5.0) -> None:
    """Fails fast on a `HOST:PORT` nothing listens on (Ray itself retries for minutes before giving up)."""
    if "://" in address or ":" not in address:
        return  # `auto`, `ray://…`: Ray resolves those itself
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as err:
        raise LookupError(f"cannot reach the Ray cluster at {address} ({err}); check --address "
                          "(the GCS address, e.g. 127.0.0.1:6379)") from None


def head_snapshot_source(address: str, namespace: str) -> Callable[[], Snapshot]:
    """`etrid-ray status --address`: connects to the Ray cluster once; each call asks the head actor for a
    snapshot (what its `/metrics` serves)."""
    reachable(address)
    if not ray.is_initialized():
        ray.init(address=address, namespace=namespace, logging_level="ERROR", log_to_driver=False)
    try:
        handle = get_head(namespace)
    except ValueError:
        raise LookupError(f"no provider head actor '{ACTOR_NAME}' in namespace {namespace!r} at {address}: "
                          "start it with `etrid-ray provider run`, or leave out --address for chain state only"
                          ) from None

    def read() -> Snapshot:
        return Snapshot.from_dict(ray.get(handle.snapshot.remote(), timeout=30))

    return read


def stop_head(handle: Any) -> None:
    try:
        _ask(handle, "stop", within=30)
    finally:
        ray.kill(handle, no_restart=True)


def _ask(handle: Any, method: str, *args: Any, within: float = 120.0) -> Any:
    """One call to the head, through a restart: Ray restarts a crashed head (max_restarts=-1) and a call in
    flight when it died fails, although the restarted head (its drain recorded in the GCS) answers the
    same call a moment later. A head that stays dead still fails after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            return ray.get(getattr(handle, method).remote(*args), timeout=60)
        except (ray.exceptions.ActorDiedError, ray.exceptions.ActorUnavailableError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def drain_and_stop(handle: Any, *, now: bool = False, reason: str = OFFLINE_REASON, timeout: float | None = None,
                   poll: float = 0.5, echo: Callable[[str], Any] = print,
                   escalate: Callable[[], bool] = lambda: False) -> dict[str, Any]:
    """Drains the head (see `ProviderHead.drain`), waits until nothing is in flight, then stops it for good.

    Without `timeout` it waits as long as the jobs in flight may run (each ends by its own deadline, when
    the head fails it as timed out). `escalate()` turning true mid-wait (a second Ctrl-C) switches to `now`.
    Returns the head's last status."""
    status = _ask(handle, "drain", now, reason)
    echo(json.dumps({"draining": True, "now": now, "running": status["running"], "to_settle": status["to_settle"]}))
    deadline = None if timeout is None else time.monotonic() + timeout
    while not status["drained"]:
        if not now and escalate():
            now = True
            status = _ask(handle, "drain", True, reason)
            echo(json.dumps({"draining": True, "now": True, "running": status["running"]}))
            continue
        if deadline is not None and time.monotonic() > deadline:
            if now:
                break
            now = True  # out of patience: fail what is left, so it is settled, not left to time out
            status = _ask(handle, "drain", True, reason)
            continue
        time.sleep(poll)
        status = _ask(handle, "status")
    stop_head(handle)
    return status


@ray.remote(num_cpus=0)
def _key_preflight(seed_env: str, seed_file: str | None) -> dict[str, bool]:
    """Runs on the head node, where the head actor will: booleans only, never the key itself."""
    env_set = bool(os.environ.get(seed_env, "").strip())
    file_ok = False
    if seed_file:
        try:
            file_ok = bool(Path(seed_file).expanduser().read_text(encoding="utf-8").strip())
        except (OSError, UnicodeDecodeError):
            file_ok = False
    return {"env_set": env_set, "file_readable": file_ok}


def key_preflight(config: ProviderConfig, timeout: float = 60.0) -> dict[str, bool]:
    """Whether the head node can read the signing key the way `ProviderHeadActor` will (file first, then
    the env var), checked by a tiny task pinned to the head node."""
    task = _key_preflight.options(resources={HEAD_NODE_RESOURCE: 0.001})
    seed_file = str(config.seed_file) if config.seed_file is not None else None
    return dict(ray.get(task.remote(config.seed_env, seed_file), timeout=timeout))
