"""The KubeRay manifests, rendered from the one config: what `etrid-ray render` writes under `cluster/`.

Pools are worker groups (principle 4): every pool of `pools_from_config(config)` becomes one
worker group of the `etrid-provider` RayCluster, advertising the same Ray resources the
policy, the head and the simulator use (`Pool.resources()`), ordered and `priority`-ranked by
cost per GPU-hour (cheapest first: Ray's autoscaler v2 prefers the higher `priority` when
node types otherwise tie). Ray's own KubeRay translation
(`ray.autoscaler._private.kuberay.autoscaling_config`) turns this manifest into the
autoscaler's node types; the tests check that it does so pool for pool.

No secret value is ever rendered, and no secret is ever an environment variable: the seed phrase
is a file from the `etrid-provider-credentials` Secret mounted read-only (0400) into the head's Ray
container alone, where the config's `seed_file` names it and only the provider head actor (pinned
to the head node) reads it. An env var would be inherited by every Ray process of the pod — the
dashboard, job drivers, runtime-env agents — and shown by `/proc/*/environ`; worker pods never see
the seed at all. The cloud keys are files too (an AWS shared-credentials file, an Azure client
certificate), found through the path variables the SDKs read.

Ray's own control plane is closed to strangers: `authOptions` turns on Ray token authentication
(KubeRay >= 1.5 injects `RAY_AUTH_MODE=token` and `RAY_AUTH_TOKEN` from the Secret's `auth_token` key
into the head, the workers, the autoscaler and the RayJob's submitter), so the dashboard, the Jobs
API and the GCS refuse a request without the token; a NetworkPolicy admits the Ray ports only from
the cluster's own pods, the namespace and the monitoring stack. The head's env points the dashboard's
Metrics tab at Prometheus and Grafana, and Ray's own Grafana dashboards are rendered from the
installed Ray into ConfigMaps for Grafana's dashboard sidecar.
"""

from __future__ import annotations

import json
import math
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import yaml

from etrid_ray.accelerators import vendor_of
from etrid_ray.clouds.registry import cloud as cloud_of
from etrid_ray.config import ProviderConfig, ProviderSettings, pools_from_config, seed_env_keys
from etrid_ray.pools import Pool
from etrid_ray.prices import default_catalog
from etrid_ray.security.tee.node import worker_start_command

NAMESPACE = "etrid-ai-compute"
CLUSTER_NAME = "etrid-provider"
CONFIGMAP_NAME = "etrid-provider-config"  # the seed's keys, as env vars (envFrom)
CONFIG_FILE_CONFIGMAP_NAME = "etrid-provider-file"  # provider.yaml, mounted at CONFIG_DIR
SECRET_NAME = "etrid-provider-credentials"
# The Ray token's Secret. KubeRay's own name for it (the cluster's name; the operator's generated Secret and
# `kubectl ray get token` use it) and its key, `auth_token` (KubeRay's RAY_AUTH_TOKEN_SECRET_KEY): every KubeRay
# version that has authOptions then finds the same Secret for the pods and for the RayJob's submitter.
RAY_TOKEN_SECRET_NAME = "etrid-provider"
RAY_TOKEN_KEY = "auth_token"
SECRETS_DIR = "/var/run/secrets/etrid"  # the head's seed file (never under CONFIG_DIR: a ConfigMap volume)
SEED_KEY = "ETRID_SEED"
SEED_PATH = f"{SECRETS_DIR}/seed"
SEED_FILE_MODE = 0o400
CLOUD_SECRETS_DIR = "/var/run/secrets/etrid-cloud"
AWS_CREDENTIALS_KEY = "aws-credentials"  # an AWS shared-credentials (INI) file: boto3 reads it by path
AZURE_CERTIFICATE_KEY = "azure-client-certificate"  # a PEM with the service principal's key and certificate
RAY_TOKEN_DIR = "/var/run/secrets/ray-auth"  # the spot-watch sidecar's token file (KubeRay injects no env there)
CONFIG_DIR = "/etc/etrid"
CONFIG_PATH = f"{CONFIG_DIR}/provider.yaml"
# the head's journal (claimed and finished jobs not yet settled) must outlive the head pod: a volume of its own
STATE_PVC_NAME = "etrid-provider-state"
STATE_DIR = "/var/lib/etrid"
STATE_SIZE = "1Gi"
APP_DIR = "/home/ray/etrid-ray"  # where docker/Dockerfile puts the project (jobs/ included)
IMAGE_REPOSITORY = "ghcr.io/etrid/etrid-ray"
LABEL_PREFIX = "etrid.ai"

PORTS = {"gcs": 6379, "dashboard": 8265, "client": 10001, "metrics": 8080}
# The provider head actor's /metrics, /healthz and /readyz (etrid_ray.telemetry), on the head pod. No probe on
# the Ray head container uses it: the actor starts after the cluster (RayJob), a liveness failure would restart
# the Ray head and every worker with it, and readiness gates the RayCluster the RayJob waits for. Prometheus
# watches it instead (PodMonitor + the EtridProviderHeadDown alert); the exporter's pods are probed.
PROVIDER_METRICS_PORT_NAME, PROVIDER_METRICS_PORT = "etrid-metrics", 9091
WORKER_GRACE_S = 180  # pod termination grace: AWS gives 2 minutes of spot notice, GCP/Azure 30 s
PRESTOP_DEADLINE_S = 150  # the drain deadline the preStop hook announces; the rest is Ray's own shutdown
RAY_UID, RAY_GID = 1000, 100  # the `ray` user of the rayproject/ray images

# The seed's own env var names → their flat keys (etrid_ray.config.SEED_ENV_NAMES): ConfigMap keys, read by
# load_config through the config's alias layer.
SEED_ENV_KEYS = seed_env_keys()
# Secret keys: the seed phrase (required) and optional cloud credentials for the price/quota APIs and S3 blobs.
# The secret ones are only ever mounted as files; the Azure identifiers (not secret) are env references.
SECRET_FILE_KEYS = [SEED_KEY, AWS_CREDENTIALS_KEY, AZURE_CERTIFICATE_KEY]
AZURE_ID_KEYS = ["AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_SUBSCRIPTION_ID"]
SECRET_KEYS = [*SECRET_FILE_KEYS, *AZURE_ID_KEYS]
# where the SDKs find the credential files: AWS_SHARED_CREDENTIALS_FILE (boto3), AZURE_CLIENT_CERTIFICATE_PATH
# (azure-identity's EnvironmentCredential, with AZURE_TENANT_ID and AZURE_CLIENT_ID)
CLOUD_FILE_ENV = {AWS_CREDENTIALS_KEY: "AWS_SHARED_CREDENTIALS_FILE",
                  AZURE_CERTIFICATE_KEY: "AZURE_CLIENT_CERTIFICATE_PATH"}
WORKER_CLOUD_KEYS = [AWS_CREDENTIALS_KEY]  # workers only read s3:// blobs
# Ray's own Grafana dashboards (ray.dashboard.modules.metrics.grafana_dashboard_factory), as Ray writes them to
# session_latest/metrics/grafana/dashboards/ when it starts; the ones the Ray dashboard links to.
RAY_DASHBOARDS = ["default", "serve", "serve_deployment", "data", "train"]
GRAFANA_DASHBOARD_LABEL = "grafana_dashboard"  # kube-prometheus-stack's Grafana sidecar picks up ConfigMaps with it
PLACEHOLDER = "REPLACE_ME"

HEADER = ("# Rendered by `etrid-ray render --config FILE --out cluster/` from {what}.\n"
          "# Do not edit by hand: change the config and render again (a test fails when these drift).\n")


def ray_version() -> str:
    return version("ray")


def project_version() -> str:
    try:
        return version("etrid-ray")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0.1.0"


def project_image() -> str:
    """The image docker/Dockerfile builds: rayproject/ray:<ray>-py311-gpu plus this package."""
    return f"{IMAGE_REPOSITORY}:{project_version()}"


# ---------------------------------------------------------------------------------------------- cost order


def cost_per_gpu_hour(pool: Pool) -> float:
    """What one GPU-hour of this pool costs: electricity for local pools, the shipped catalog's price for
    cloud pools (the same quote placement uses), the pool's max spot price when the catalog lacks it, and
    +inf when neither is known."""
    if not pool.is_cloud:
        return pool.local_cost_per_gpu_hour()
    quote = default_catalog().quote(pool)
    if quote is not None:
        return quote.usd_per_gpu_hour
    return math.inf if pool.max_spot_price is None else pool.max_spot_price / pool.gpus_per_node


def pools_by_cost(config: ProviderConfig) -> list[tuple[Pool, int, float]]:
    """(pool, priority, USD per GPU-hour), cheapest first; local pools always before cloud ones.
    Priorities are 10, 20, … with the highest for the cheapest (Ray's autoscaler v2 prefers higher)."""
    pools = pools_from_config(config)
    ranked = sorted(pools, key=lambda p: (p.is_cloud, cost_per_gpu_hour(p), p.name))
    n = len(ranked)
    return [(p, 10 * (n - i), cost_per_gpu_hour(p)) for i, p in enumerate(ranked)]


# ---------------------------------------------------------------------------------------------- pieces


def _labels(component: str, **extra: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "etrid-ray", "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": "etrid-ai-compute", "app.kubernetes.io/version": project_version(),
            **extra}


def ray_resources_param(pool: Pool) -> str:
    """rayStartParams.resources: the pool's custom resources (everything but GPU, which is num-gpus) as the
    quoted JSON KubeRay passes to `ray start --resources` and Ray's KubeRay translation parses."""
    custom = {k: int(v) for k, v in pool.resources().items() if k != "GPU"}
    return '"' + json.dumps(custom, separators=(", ", ": ")).replace('"', '\\"') + '"'


def _quantity_cpu(pool: Pool) -> str:
    # leave the kubelet, the GPU/device plugins and daemonsets a slice of the node (8 %, at least 2 cores)
    reserve = max(2, math.ceil(pool.cpus_per_node * 0.08))
    return str(max(1, pool.cpus_per_node - reserve))


def _quantity_memory(pool: Pool) -> str:
    return f"{max(1, int(pool.memory_gib * 0.9))}Gi"


def _scheduling(pool: Pool) -> tuple[dict[str, str], list[dict[str, str]]]:
    """nodeSelector and tolerations that put the pool's pods on its node pool (local, EKS/Karpenter, GKE, AKS): the
    pool's cloud says (etrid_ray/clouds/registry.py, `Cloud.scheduling`)."""
    return cloud_of(pool.kind).scheduling(pool)


def _secret_env(keys: list[str]) -> list[dict[str, Any]]:
    """Optional env references into the credentials Secret: only for keys that are not secret themselves."""
    assert not set(keys) & set(SECRET_FILE_KEYS), "secret values are mounted as files, never env vars"
    return [{"name": key, "valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": key, "optional": True}}}
            for key in keys]


def _cloud_credentials(keys: list[str]) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """The optional cloud credential files (volume, mount, and the path variables the SDKs read): a key
    missing from the Secret is skipped (`optional`), and the SDK then falls back to its other sources
    (IRSA, workload identity, instance profiles)."""
    volume = {"name": "cloud-credentials", "secret": {
        "secretName": SECRET_NAME, "optional": True, "defaultMode": SEED_FILE_MODE,
        "items": [{"key": key, "path": key} for key in keys]}}
    mount = {"name": "cloud-credentials", "mountPath": CLOUD_SECRETS_DIR, "readOnly": True}
    env = [{"name": CLOUD_FILE_ENV[key], "value": f"{CLOUD_SECRETS_DIR}/{key}"} for key in keys]
    return volume, mount, env


def _seed_volume() -> tuple[dict[str, Any], dict[str, Any]]:
    """The seed phrase as one read-only file, owner-read only (with the pod's fsGroup Kubernetes adds group
    read for the `ray` user's group): required, so a head without it does not start."""
    volume = {"name": "provider-seed", "secret": {"secretName": SECRET_NAME, "defaultMode": SEED_FILE_MODE,
                                                  "items": [{"key": SEED_KEY, "path": Path(SEED_PATH).name}]}}
    return volume, {"name": "provider-seed", "mountPath": SECRETS_DIR, "readOnly": True}


def ray_token_volume() -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """The Ray token as a file, for a container KubeRay does not inject RAY_AUTH_TOKEN into (the spot-watch
    sidecar): Ray reads the file `RAY_AUTH_TOKEN_PATH` names."""
    volume = {"name": "ray-token", "secret": {"secretName": RAY_TOKEN_SECRET_NAME, "defaultMode": SEED_FILE_MODE,
                                              "items": [{"key": RAY_TOKEN_KEY, "path": RAY_TOKEN_KEY}]}}
    mount = {"name": "ray-token", "mountPath": RAY_TOKEN_DIR, "readOnly": True}
    env = [{"name": "RAY_AUTH_MODE", "value": "token"},
           {"name": "RAY_AUTH_TOKEN_PATH", "value": f"{RAY_TOKEN_DIR}/{RAY_TOKEN_KEY}"}]
    return volume, mount, env


def ray_dashboard_env(config: ProviderConfig) -> list[dict[str, str]]:
    """The head's settings for the Ray dashboard's Metrics tab: where the dashboard queries Prometheus and
    checks Grafana, the Grafana datasource Ray's dashboards use, and the Grafana address the browser embeds."""
    t = config.telemetry
    env = {"RAY_PROMETHEUS_HOST": t.ray_prometheus_host, "RAY_PROMETHEUS_NAME": t.ray_prometheus_name,
           "RAY_GRAFANA_HOST": t.ray_grafana_host,
           "RAY_GRAFANA_IFRAME_HOST": t.ray_grafana_iframe_host or t.ray_grafana_host}
    return [{"name": k, "value": v} for k, v in env.items()]


def _pod_security() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": RAY_UID, "runAsGroup": RAY_GID, "fsGroup": RAY_GID}


def _container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def _shm_volume() -> tuple[dict[str, Any], dict[str, Any]]:
    # Ray's object store lives in /dev/shm: the container default (64 MiB) is far too small
    return {"name": "dshm", "emptyDir": {"medium": "Memory"}}, {"name": "dshm", "mountPath": "/dev/shm"}


def head_group(config: ProviderConfig) -> dict[str, Any]:
    shm, shm_mount = _shm_volume()
    seed, seed_mount = _seed_volume()
    cloud, cloud_mount, cloud_env = _cloud_credentials(list(CLOUD_FILE_ENV))
    container = {
        "name": "ray-head",
        "image": project_image(),
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": name, "containerPort": port} for name, port in PORTS.items()]
        + [{"name": PROVIDER_METRICS_PORT_NAME, "containerPort": PROVIDER_METRICS_PORT}],
        "resources": {"limits": {"cpu": "4", "memory": "16Gi"}, "requests": {"cpu": "4", "memory": "16Gi"}},
        "envFrom": [{"configMapRef": {"name": CONFIGMAP_NAME}}],
        "env": [{"name": "ETRID_METRICS_HOST", "value": "0.0.0.0"},
                {"name": "ETRID_METRICS_PORT", "value": str(PROVIDER_METRICS_PORT)},
                *ray_dashboard_env(config), *cloud_env, *_secret_env(AZURE_ID_KEYS)],
        "volumeMounts": [{"name": "provider-config", "mountPath": CONFIG_DIR, "readOnly": True},
                         {"name": "provider-state", "mountPath": STATE_DIR}, shm_mount, seed_mount, cloud_mount],
        "securityContext": _container_security(),
    }
    return {
        "serviceType": "ClusterIP",
        # num-cpus 0: no job task lands on the head; the provider head actor (num_cpus=0) and the driver do.
        # dashboard-host 0.0.0.0: the RayJob's submitter and `kubectl port-forward` reach it through the head
        # service; the token (authOptions) and the NetworkPolicy are what keep strangers out.
        "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0",
                           "metrics-export-port": str(PORTS["metrics"])},
        "template": {
            "metadata": {"labels": _labels("head")},
            "spec": {
                "securityContext": _pod_security(),
                "containers": [container],
                "volumes": [{"name": "provider-config",
                             "configMap": {"name": CONFIG_FILE_CONFIGMAP_NAME,
                                           "items": [{"key": "provider.yaml", "path": "provider.yaml"}]}},
                            {"name": "provider-state", "persistentVolumeClaim": {"claimName": STATE_PVC_NAME}},
                            shm, seed, cloud],
            },
        },
    }


# KubeRay's head service (`<cluster>-head-svc`): how a container other than the Ray one reaches the GCS
HEAD_GCS_ADDRESS = f"{CLUSTER_NAME}-head-svc.{NAMESPACE}.svc.cluster.local:{PORTS['gcs']}"


def spot_watch_sidecar(pool: Pool) -> dict[str, Any]:
    """A native sidecar (an init container with `restartPolicy: Always`, Kubernetes >= 1.29) beside a spot
    pool's Ray container: `etrid-ray spot-watch` polls the cloud's interruption notice and drains this
    pod's Ray node with the notice's deadline (etrid_ray/clouds/interruptions). It finds the node as the
    preStop hook does (pod name and IP from the downward API) and reaches the GCS through the head service,
    with the Ray token from a file (KubeRay injects the token only into the Ray container)."""
    _, token_mount, token_env = ray_token_volume()
    return {
        "name": "spot-watch",
        "image": project_image(),
        "imagePullPolicy": "IfNotPresent",
        "restartPolicy": "Always",
        "command": ["python", "-m", "etrid_ray", "spot-watch", "--cloud", pool.kind, "--linger"],
        "env": [{"name": "RAY_ADDRESS", "value": HEAD_GCS_ADDRESS},
                {"name": "ETRID_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "ETRID_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}, *token_env],
        "volumeMounts": [token_mount],
        "resources": {"requests": {"cpu": "50m", "memory": "192Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
        "securityContext": _container_security(),
    }


def worker_group(pool: Pool, priority: int, cost: float) -> dict[str, Any]:
    # local pool: all of the provider's own nodes stay up (the seed's advice: minReplicas = local GPU nodes)
    min_replicas = pool.max_nodes if not pool.is_cloud else pool.min_nodes
    max_replicas = max(pool.max_nodes, min_replicas)
    selector, tolerations = _scheduling(pool)
    # the GPUs through their vendor's device plugin (nvidia.com/gpu, amd.com/gpu), whose nodes may be tainted with
    # that same resource name: tolerate it as the clouds tolerate NVIDIA's
    gpu_resource = vendor_of(pool.accelerator).k8s_resource
    if all(t.get("key") != gpu_resource for t in tolerations):
        tolerations = [*tolerations, {"key": gpu_resource, "operator": "Exists", "effect": "NoSchedule"}]
    shm, shm_mount = _shm_volume()
    cloud, cloud_mount, cloud_env = _cloud_credentials(WORKER_CLOUD_KEYS)
    limits = {"cpu": _quantity_cpu(pool), "memory": _quantity_memory(pool), gpu_resource: str(pool.gpus_per_node)}
    container = {
        "name": "ray-worker",
        "image": project_image(),
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "metrics", "containerPort": PORTS["metrics"]}],
        "resources": {"limits": dict(limits), "requests": dict(limits)},
        "envFrom": [{"configMapRef": {"name": CONFIGMAP_NAME}}],
        "env": [{"name": "ETRID_POOL", "value": pool.name},
                # how the preStop hook tells this pod's Ray node from every other one
                {"name": "ETRID_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "ETRID_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                *cloud_env],
        "lifecycle": {"preStop": {"exec": {"command": [
            "python", "-m", "etrid_ray.kuberay.prestop", "--deadline-s", str(PRESTOP_DEADLINE_S),
            "--reason", f"pod of pool {pool.name} is terminating"]}}},
        "volumeMounts": [shm_mount, cloud_mount],
        "securityContext": _container_security(),
    }
    volumes = [shm, cloud]
    # a spot pool of a cloud with an interruption notice endpoint: the spot-watch sidecar polls it
    spot_watch = pool.spot and cloud_of(pool.kind).notice_source_class() is not None
    if spot_watch:
        volumes.append(ray_token_volume()[0])
    annotations = {f"{LABEL_PREFIX}/cost-usd-per-gpu-hour": "unknown" if math.isinf(cost) else f"{cost:.4f}",
                   f"{LABEL_PREFIX}/priority": str(priority)}
    if pool.max_spot_price is not None:
        annotations[f"{LABEL_PREFIX}/max-spot-usd-per-node-hour"] = f"{pool.max_spot_price:g}"
    pod_labels = _labels("worker", **{f"{LABEL_PREFIX}/pool": pool.name, f"{LABEL_PREFIX}/pool-kind": pool.kind})
    if pool.tee:
        pod_labels[f"{LABEL_PREFIX}/tee"] = pool.tee
        # KubeRay runs `<command> && ulimit …; ray start …` in one shell: the node advertises tee:<type> only
        # when it detected its TEE and attested against a fresh nonce (etrid_ray/security/tee/node.py)
        container["command"] = [worker_start_command(pool)]
        container["env"].append({"name": "ETRID_PROVIDER_ADDRESS", "valueFrom": {"secretKeyRef": {
            "name": SECRET_NAME, "key": "ETRID_PROVIDER_ADDRESS", "optional": True}}})  # public: binds the nonce
    return {
        "groupName": pool.name,
        "replicas": min_replicas,
        "minReplicas": min_replicas,
        "maxReplicas": max_replicas,
        # read by Ray's KubeRay translation into the node type's priority (autoscaler v2: higher scales first)
        "priority": priority,
        "rayStartParams": {"num-gpus": str(pool.gpus_per_node), "resources": ray_resources_param(pool),
                           "metrics-export-port": str(PORTS["metrics"])},
        "template": {
            "metadata": {"labels": pod_labels, "annotations": annotations},
            "spec": {
                # autoscaler v2 replaces failed worker pods itself: a restarted pod would reuse a dead node's identity
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": WORKER_GRACE_S,
                "securityContext": _pod_security(),
                "nodeSelector": selector,
                "tolerations": tolerations,
                **({"initContainers": [spot_watch_sidecar(pool)]} if spot_watch else {}),
                "containers": [container],
                "volumes": volumes,
            },
        },
    }


# ---------------------------------------------------------------------------------------------- objects


def raycluster(config: ProviderConfig) -> dict[str, Any]:
    """The `ray.io/v1` RayCluster: one head (no job CPUs) and one worker group per pool, cheapest first."""
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": CLUSTER_NAME, "namespace": NAMESPACE, "labels": _labels("cluster")},
        "spec": {
            "rayVersion": ray_version(),
            # Ray token auth (Ray >= 2.52, KubeRay >= 1.5): without the token the dashboard, the Jobs API and
            # the GCS refuse every request
            "authOptions": {"mode": "token", "secretName": RAY_TOKEN_SECRET_NAME},
            "enableInTreeAutoscaling": True,
            "autoscalerOptions": {
                "version": "v2",
                "idleTimeoutSeconds": int(round(config.scaling.idle_timeout_s)),
                "upscalingMode": "Default",
                "imagePullPolicy": "IfNotPresent",
                "resources": {"limits": {"cpu": "500m", "memory": "512Mi"},
                              "requests": {"cpu": "500m", "memory": "512Mi"}},
            },
            "headGroupSpec": head_group(config),
            "workerGroupSpecs": [worker_group(p, prio, cost) for p, prio, cost in pools_by_cost(config)],
        },
    }


def rayjob(config: ProviderConfig) -> dict[str, Any]:
    """The RayJob that runs the provider (`jobs/provider.py`) on the RayCluster above, selected by name,
    so the RayCluster manifest stays the one source of the pools. A RayJob has no authOptions of its own
    with a clusterSelector: KubeRay gives its submitter the selected cluster's token (RAY_AUTH_MODE and
    RAY_AUTH_TOKEN from the same Secret), so `ray job submit` authenticates like any other client."""
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": CLUSTER_NAME, "namespace": NAMESPACE, "labels": _labels("provider-job")},
        "spec": {
            "entrypoint": f"python {APP_DIR}/jobs/provider.py --config {CONFIG_PATH}",
            "clusterSelector": {"ray.io/cluster": CLUSTER_NAME},
            "submissionMode": "K8sJobMode",
        },
    }


def namespace() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": NAMESPACE, "labels": {"app.kubernetes.io/part-of": "etrid-ai-compute"}}}


def _env_value(value: Any) -> str:
    """ConfigMap values are strings; load_config parses each as JSON first, so write JSON for non-strings."""
    return value if isinstance(value, str) else json.dumps(value)


def in_cluster(config: ProviderConfig) -> ProviderConfig:
    """The config as the head pod runs it: the seed is the file the head mounts from the Secret (a
    `seed_file` of the machine the config was written on means nothing in the pod, and no container has
    an ETRID_SEED variable), and a journal left at its default (the home directory, gone with the pod)
    moves onto the state volume, so a restarted head pod recovers its unsettled jobs."""
    update: dict[str, Any] = {"chain": {"seed_file": Path(SEED_PATH)}}
    if config.provider.journal_path == ProviderSettings.model_fields["journal_path"].default:
        update["provider"] = {"journal_path": Path(STATE_DIR) / "journal.sqlite"}
    return config.model_copy(update=update)


def provider_yaml(config: ProviderConfig) -> str:
    dumped = in_cluster(config).model_dump(mode="json")
    return yaml.safe_dump(dumped, sort_keys=False, default_flow_style=False, width=1000)


def state_volume_claim() -> dict[str, Any]:
    """The head's state volume (ReadWriteOnce: one head at a time; the cluster's default storage class)."""
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": STATE_PVC_NAME, "namespace": NAMESPACE, "labels": _labels("state")},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": STATE_SIZE}}}}


def configmaps(config: ProviderConfig) -> list[dict[str, Any]]:
    """`etrid-provider-config`: the seed's keys as env vars (they override the file), and
    `etrid-provider-file`: provider.yaml, the whole config, mounted on the head at /etc/etrid."""
    flat = config.flat()
    env_data = {key: _env_value(flat[field]) for key, field in SEED_ENV_KEYS.items()}
    meta = {"namespace": NAMESPACE, "labels": _labels("config")}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CONFIGMAP_NAME, **meta}, "data": env_data},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CONFIG_FILE_CONFIGMAP_NAME, **meta},
         "data": {"provider.yaml": provider_yaml(config)}},
    ]


def secret_template() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": SECRET_NAME, "namespace": NAMESPACE, "labels": _labels("credentials")},
            "stringData": {key: PLACEHOLDER for key in SECRET_KEYS}}


def ray_token_secret_template() -> dict[str, Any]:
    """The Ray token authOptions names: KubeRay puts its `auth_token` into every Ray container's env."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": RAY_TOKEN_SECRET_NAME, "namespace": NAMESPACE, "labels": _labels("ray-token")},
            "stringData": {RAY_TOKEN_KEY: PLACEHOLDER}}


def network_policy(config: ProviderConfig) -> dict[str, Any]:
    """Who may open a connection to a Ray pod of the cluster. Ray's own nodes reach each other on any port
    (raylets, object managers, workers and agents use ports of their own); the Ray head's GCS, dashboard
    (and Jobs API) and client server are open to the namespace's pods (the RayJob's submitter, the exporter)
    and to the monitoring stack; the metrics ports to the monitoring stack. Everything else is refused.
    `kubectl port-forward` enters through the pod itself, so it still reaches the dashboard."""
    ray_pods = {"ray.io/cluster": CLUSTER_NAME}
    monitoring = {"namespaceSelector": {"matchLabels": dict(config.telemetry.monitoring_namespace_labels)}}
    control = [{"protocol": "TCP", "port": PORTS[name]} for name in ("gcs", "dashboard", "client")]
    metrics = [{"protocol": "TCP", "port": PORTS["metrics"]},
               {"protocol": "TCP", "port": PROVIDER_METRICS_PORT}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": f"{CLUSTER_NAME}-ray", "namespace": NAMESPACE, "labels": _labels("network")},
            "spec": {"podSelector": {"matchLabels": ray_pods}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"podSelector": {"matchLabels": ray_pods}}]},
                                 {"from": [{"podSelector": {}}, monitoring], "ports": control},
                                 {"from": [monitoring], "ports": metrics}]}}


def ray_grafana_dashboards() -> dict[str, str]:
    """Ray's own Grafana dashboards, name -> JSON, from the installed Ray's factory (what Ray writes to
    session_latest/metrics/grafana/dashboards/ at start). The factory reads RAY_GRAFANA_*_DASHBOARD_* overrides
    from the environment; they are ignored here, so the rendering does not change with the shell."""
    import os

    from ray.dashboard.modules.metrics import grafana_dashboard_factory as factory

    saved = {k: v for k, v in os.environ.items() if k.startswith("RAY_GRAFANA_") and "_DASHBOARD_" in k}
    for key in saved:
        del os.environ[key]
    try:
        out = {}
        for name in RAY_DASHBOARDS:
            content, _uid = getattr(factory, f"generate_{name}_grafana_dashboard")()
            out[name] = json.dumps(json.loads(content), separators=(",", ":"), ensure_ascii=False)
        return out
    finally:
        os.environ.update(saved)


def ray_dashboard_configmaps(config: ProviderConfig) -> list[dict[str, Any]]:
    """One ConfigMap per Ray dashboard in the monitoring namespace, labelled for Grafana's sidecar; each keeps
    Ray's uid, which is what the Ray dashboard's Metrics tab embeds."""
    docs = []
    for name, text in ray_grafana_dashboards().items():
        docs.append({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": f"ray-dashboard-{name.replace('_', '-')}",
                                  "namespace": config.telemetry.monitoring_namespace,
                                  "labels": {**_labels("grafana-dashboard"), GRAFANA_DASHBOARD_LABEL: "1"}},
                     "data": {f"ray_{name}_grafana_dashboard.json": text}})
    return docs


# ---------------------------------------------------------------------------------------------- files


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # a selector shared by two rules is written out twice, not as an &id001 anchor


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data else None  # provider.yaml as a readable block scalar
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_representer)


def dump_yaml(*docs: dict[str, Any]) -> str:
    return "---\n".join(yaml.dump(d, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000)
                        for d in docs)


SECRET_NOTE = ("# Templates: copy them, put the real values in (or create the Secrets with\n"
               "#   kubectl -n etrid-ai-compute create secret generic etrid-provider-credentials"
               " --from-file=ETRID_SEED=seed.txt\n"
               "#   kubectl -n etrid-ai-compute create secret generic etrid-provider"
               " --from-literal=auth_token=\"$(openssl rand -hex 32)\"),\n"
               "# drop the cloud keys you do not use (they are optional), and never commit the filled-in copies.\n"
               "# ETRID_SEED is mounted as a file (0400) into the head's Ray container only; aws-credentials is\n"
               "# an AWS shared-credentials file, azure-client-certificate a PEM (key and certificate). auth_token\n"
               "# is the Ray token every client presents (`Authorization: Bearer …`, or RAY_AUTH_TOKEN for Ray's\n"
               "# own clients).\n")


def render_all(config: ProviderConfig) -> dict[str, str]:
    """filename -> YAML text, the files `etrid-ray render` writes (committed under cluster/ for the default
    config)."""
    what = "the provider config"
    return {
        "namespace.yaml": HEADER.format(what=what) + dump_yaml(namespace()),
        "configmap.yaml": HEADER.format(what=what)
        + "# Env keys (etrid-provider-config) override provider.yaml (etrid-provider-file).\n"
        + dump_yaml(*configmaps(config)),
        "secret.template.yaml": HEADER.format(what=what) + SECRET_NOTE
        + dump_yaml(secret_template(), ray_token_secret_template()),
        "state.yaml": HEADER.format(what=what) + "# The head's journal: unsettled jobs survive a head pod restart.\n"
        + dump_yaml(state_volume_claim()),
        "raycluster.yaml": HEADER.format(what=what) + dump_yaml(raycluster(config)),
        "rayjob.yaml": HEADER.format(what=what) + dump_yaml(rayjob(config)),
        "networkpolicy.yaml": HEADER.format(what=what)
        + "# Ray's ports: the cluster's own pods, the namespace, and the monitoring stack only.\n"
        + dump_yaml(network_policy(config)),
        "ray-grafana-dashboards.yaml": HEADER.format(what=f"the installed Ray {ray_version()}'s dashboard factory")
        + "# Ray's own Grafana dashboards (what the Ray dashboard's Metrics tab embeds, by uid), for Grafana's\n"
        + f"# dashboard sidecar (label {GRAFANA_DASHBOARD_LABEL}). Too large for client-side apply: "
        + "`kubectl apply --server-side -f`.\n"
        + dump_yaml(*ray_dashboard_configmaps(config)),
    }
