"""The head as a detached, named Ray actor (`etrid-provider` in namespace `etrid`).

The actor reads its signing key itself, from the env var or file the config
names, inside its own process: the secret never travels as an argument, never
shows in the dashboard's actor arguments or the job's runtime_env. With
`max_restarts=-1`, Ray restarts a crashed head, and its constructor recovers
every in-flight job from chain state plus the journal.
"""

from __future__ import annotations

import logging
from typing import Any

import ray

from etrid_ray.chain import load_signer
from etrid_ray.config import ProviderConfig
from etrid_ray.provider.head import ProviderHead

ACTOR_NAME = "etrid-provider"
NAMESPACE = "etrid"


class ProviderHeadActor:
    def __init__(self, config: dict[str, Any], chain_url: str | None = None) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        cfg = ProviderConfig.model_validate(config)
        signer = load_signer(env_var=cfg.seed_env, file=cfg.seed_file)
        self.head = ProviderHead(cfg, signer, chain_url=chain_url).start()

    def status(self, detail: bool = False) -> dict[str, Any]:
        return self.head.status(detail)

    def ping(self) -> bool:
        return True

    def stop(self) -> None:
        self.head.stop()


RemoteHead = ray.remote(num_cpus=0, max_concurrency=4, max_restarts=-1, max_task_retries=-1)(ProviderHeadActor)


def launch_head(config: ProviderConfig, chain_url: str | None = None, *, detached: bool = True) -> Any:
    """Starts the head, or returns the running one (one head per cluster)."""
    options: dict[str, Any] = {"name": ACTOR_NAME, "namespace": config.namespace or NAMESPACE,
                               "get_if_exists": True}
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
