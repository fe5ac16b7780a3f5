"""The head as a detached, named Ray actor (`etrid-provider` in namespace `etrid`).

The actor reads its signing key itself, from the env var or file the config
names, inside its own process: the secret never travels as an argument, never
shows in the dashboard's actor arguments or the job's runtime_env. With
`max_restarts=-1`, Ray restarts a crashed head, and its constructor recovers
every in-flight job from chain state plus the journal.

The actor also serves the head's `/metrics`, `/healthz` and `/readyz` (`etrid_ray.telemetry`;
`ETRID_METRICS_HOST`/`ETRID_METRICS_PORT`, 127.0.0.1:9091 by default) and pushes the same values to
Ray's metrics endpoint. It is placed on the head node, where the manifests expose that port.
"""

from __future__ import annotations

from typing import Any

import ray

from etrid_ray.chain import load_signer
from etrid_ray.config import ProviderConfig
from etrid_ray.provider.head import ProviderHead
from etrid_ray.telemetry.head_source import HeadTelemetry
from etrid_ray.telemetry.logs import configure_logging

ACTOR_NAME = "etrid-provider"
HEAD_NODE_RESOURCE = "node:__internal_head__"  # Ray's resource that only the head node has
NAMESPACE = "etrid"


class ProviderHeadActor:
    def __init__(self, config: dict[str, Any], chain_url: str | None = None) -> None:
        configure_logging(force=False)  # ETRID_LOG_FORMAT=json for JSON lines; secrets redacted either way
        cfg = ProviderConfig.model_validate(config)
        signer = load_signer(env_var=cfg.seed_env, file=cfg.seed_file)
        self.head = ProviderHead(cfg, signer, chain_url=chain_url).start()
        self.telemetry = HeadTelemetry(self.head).start()

    def status(self, detail: bool = False) -> dict[str, Any]:
        return self.head.status(detail)

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
    """Starts the head, or returns the running one (one head per cluster)."""
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


def stop_head(handle: Any) -> None:
    try:
        ray.get(handle.stop.remote(), timeout=30)
    finally:
        ray.kill(handle, no_restart=True)
