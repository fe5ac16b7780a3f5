"""The one configuration model: sections, with the seed's key names.

`ProviderConfig` is composed of sections — `chain`, `provider`, `scaling`, `clouds`, `tee`,
`compliance`, `telemetry` — and each part of the code base receives the section it needs (the pure
policies: `scaling` alone). One alias layer (`flat_aliases`, `nest`) maps the seed's flat names
(`rpc_url`, `PRICE_PER_SECOND`, `aws_region`, `ENABLE_TEE`, …) onto the sections, for a file (YAML or
JSON), for environment variables (`ETRID_<KEY>`, the seed's own upper-case names, and a few accepted
aliases such as `ETRID_WS_URL`) and for a Kubernetes ConfigMap alike; flat names also read
(`config.aws_region`) and copy (`model_copy(update={"aws_region": …})`) during the transition.

Every environment read of a setting happens here (`load_config`, `section_from_env`, `env_setting`).
Secrets are never fields: the seed phrase is read by the keys module from the env var or file that
`chain.seed_env` / `chain.seed_file` name, at the moment it is needed; cloud credentials are the SDKs'.

The config sits above the cloud registry and the pools: its `clouds` section is composed from the
registered clouds' settings, and `pools_from_config` asks each cloud for the pools its section describes.
The clouds receive the config's sections as arguments and never import this module.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from etrid_ray.chain.errors import ConfigError
from etrid_ray.chain.keys import DEFAULT_SEED_ENV
from etrid_ray.clouds import registry
from etrid_ray.pools import Pool

DEFAULT_METRICS_PORT = 9091  # the head's /metrics, /healthz, /readyz (the KubeRay head pod's etrid-metrics port)


class GpuConfig(BaseModel):
    """What this provider declares about its GPUs (used when NVML is absent, and registered on chain)."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(4, ge=0, le=100, description="GPUs per local node (NVML's count wins where a driver is "
                       "present); a local Ray that provider run starts advertises this many, simulated without one")
    model: str = Field("A100", min_length=1, max_length=64, description="GPU model registered on chain")
    vram_gb: int = Field(80, ge=1, le=65535, description="memory per GPU in GB")
    compute_units: int = Field(108, ge=1, description="streaming multiprocessors (or compute units) per GPU")
    clock_speed_mhz: int = Field(1410, ge=1, le=65535, description="boost clock in MHz")
    tdp_watts: int = Field(400, ge=1, le=65535, description="power per busy GPU (the local pool's electricity cost)")
    tee: Literal["sgx", "sev-snp", "tdx"] | None = Field(None, description="TEE type these GPUs' nodes provide")


class Section(BaseModel):
    """One section of the config. `flat_keys` names the seed's flat key of a field where it is not the field's own
    name (the alias layer, `flat_aliases`, maps every flat key onto its section)."""

    model_config = ConfigDict(extra="forbid")
    flat_keys: ClassVar[dict[str, str]] = {}


def _relocated(err: ValidationError, prefix: tuple[Any, ...]) -> list[Any]:
    """A nested model's errors as line errors of the enclosing one (their locations under `prefix`)."""
    out = []
    for e in err.errors():
        detail: dict[str, Any] = {"type": e["type"], "loc": (*prefix, *e["loc"]), "input": e["input"]}
        if "ctx" in e:
            detail["ctx"] = e["ctx"]
        out.append(detail)
    return out


class ChainSettings(Section):
    """`chain`: the node, the account's key (by name only), and how the head talks to the chain."""

    rpc_url: str = Field("http://127.0.0.1:9944",
        description="the chain node's HTTP JSON-RPC URL (also the default blob store)")
    websocket_url: str = Field("ws://127.0.0.1:9944",
        description="the chain node's WebSocket URL: new-head subscriptions and extrinsics (env ETRID_WEBSOCKET_URL; "
                    "ETRID_WS_URL and the seed's WEBSOCKET_URL are accepted too)")
    seed_env: str = Field(DEFAULT_SEED_ENV, description="env var holding the provider's seed phrase or //Dev URI")
    seed_file: Path | None = Field(None, description="file holding the seed (used when seed_env is unset)")
    blob_store: str | None = Field(None, description="http(s)://, file:// or s3:// store; default: the devnet's")
    stake_edsc: int = Field(100, ge=100, description="stake per GPU in ËDSC (chain minimum: 100)")
    claim_batch: int = Field(256, ge=1, le=5000, description="most jobs claimed in one batched extrinsic")
    result_batch: int = Field(256, ge=1, le=5000,
        description="most results or failures settled in one batched extrinsic")
    heartbeat_interval_s: float = Field(30.0, gt=0,
        description="how often the head sends its GPUs' heartbeat (the chain marks silent GPUs offline)")
    telemetry_interval_s: float = Field(30.0, gt=0, description="how often utilization is reported on chain")
    poll_interval_s: float = Field(0.5, gt=0,
        description="queue polling interval when the new-head subscription is down")

    @field_validator("websocket_url")
    @classmethod
    def _ws_scheme(cls, v: str) -> str:
        if not v.startswith(("ws://", "wss://")):
            raise ValueError("must start with ws:// or wss://")
        return v

    @field_validator("rpc_url")
    @classmethod
    def _http_scheme(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v

    @property
    def blob_store_url(self) -> str:
        return self.blob_store or self.rpc_url


class ProviderSettings(Section):
    """`provider`: what this provider offers (price, GPUs, workloads) and how its head runs."""

    flat_keys: ClassVar[dict[str, str]] = {"price_per_second": "PRICE_PER_SECOND"}

    price_per_second: int = Field(10**14, ge=0, description="minimum price per GPU-second, in planck")
    gpus: GpuConfig = Field(default_factory=GpuConfig, description="the local GPUs, as registered on chain")
    allowed_handlers: list[str] = Field(default_factory=lambda: ["echo", "sleep", "matmul", "embedding"],
        description="workloads this provider runs (from etrid_ray/workloads); jobs naming others are left for other "
                    "providers")
    max_input_bytes: int = Field(16 * 1024 * 1024, ge=1,
        description="largest job input fetched from the blob store; larger jobs fail with a reason")
    max_inflight_per_gpu: int = Field(64, ge=1, description="claimed-but-unfinished jobs allowed per GPU")
    task_cpus: float = Field(1.0, ge=0, le=64, description="CPUs each job's Ray task reserves besides its GPUs")
    max_jobs_per_task: int = Field(16, ge=1, le=256,
        description="short jobs of one shape that may share a Ray task, one after another (1: a task per job); "
                    "only jobs of handlers seen to run shorter than Ray takes to start a task share one")
    journal_path: Path = Field(Path("~/.etrid-ray/journal.sqlite"),
        description="SQLite journal of claimed and finished jobs not yet settled, bound to the chain and the "
                    "account (another's is renamed aside as .stale-<time>, never used): keep it on a disk that "
                    "survives restarts")
    pool: str = Field("local-gpu", description="pool the head steers jobs to when no placement policy runs")
    region: str = Field("local", description="region label of the local GPU nodes (data residency rules match it)")
    ray_address: str | None = Field(None,
        description="Ray cluster to join (GCS address, e.g. 10.0.0.5:6379, or auto); null: provider run starts a "
                    "local Ray with the GPUs of `gpus`")
    namespace: str = Field("etrid", description="Ray namespace of the head actor (`etrid-provider`)")

    @property
    def journal_file(self) -> Path:
        return self.journal_path.expanduser()


class ScalingSettings(Section):
    """`scaling`: everything the pure policies read (etrid_ray/scaling, the simulator) — the seed's rules by
    default, the daily budget, the spot re-run premium and the rate revenue is valued at. The policies receive
    this section alone."""

    scale_up_queue_per_gpu: float = Field(5.0, ge=0, description="queue depth per GPU that triggers +50 %")
    scale_up_sustain_s: float = Field(60.0, ge=0,
        description="how long the queue must stay above scale_up_queue_per_gpu before growing")
    scale_up_factor: float = Field(0.5, gt=0, description="+50 %")
    scale_up_wait_s: float = Field(30.0, ge=0, description="average wait that triggers a scale-up")
    scale_down_queue_per_gpu: float = Field(1.0, ge=0,
        description="queue depth per GPU below which pools shrink by scale_down_factor")
    scale_down_sustain_s: float = Field(300.0, ge=0,
        description="how long the queue must stay below scale_down_queue_per_gpu before shrinking")
    scale_down_factor: float = Field(0.1, gt=0, description="−10 %")
    stabilization_s: float = Field(60.0, ge=0, description="no opposite decision for a pool within this window")
    idle_timeout_s: float = Field(300.0, ge=0, description="idle nodes removed after this (KubeRay/Ray)")
    scale_interval_s: float = Field(1.0, gt=0, description="how often the head re-plans pools")
    claim_order: Literal["best-paying", "first-come"] = Field(
        "best-paying", description="which queued jobs take scarce room first: the best price per GPU-second "
        "(then the most GPU-seconds; the most profit) or the chain queue's own order (the most jobs served)")
    daily_cloud_budget_usd: float = Field(2000.0, ge=0, description="cloud spend per UTC day; no growth above")
    spot_rerun_share: float = Field(0.5, ge=0, le=1, description="share of a node's work re-run after a spot "
                                    "interruption: effective cost × (1 + interruption rate × this)")
    edsc_usd: float = Field(1.0, ge=0, description="ËDSC→USD rate: what a job's payment is worth against cloud "
                            "costs (placement) and in reports")
    capacity_margin_s: float = Field(15.0, ge=0, description="a requested cloud node not joined within its pool's "
                                     "startup time (the learnt one, else the pool's startup_s) plus this is taken as "
                                     "capacity that will not come: the request is withdrawn and the pool backs off")
    capacity_backoff_s: float = Field(120.0, gt=0, description="how long a pool whose nodes did not come gets no new "
                                      "requests after its first failure; doubled for each failure in a row")
    capacity_backoff_max_s: float = Field(3600.0, gt=0, description="the longest such backoff")


class CloudsSettings(Section):
    """`clouds`: one section per registered cloud (`clouds.local`, `clouds.aws`, …: etrid_ray/clouds/registry.py
    holds each one's model and defaults), the cloud markets (live prices, quotas, capacity; the shipped catalog
    underneath), the spot notices' endpoint override and any extra pools."""

    model_config = ConfigDict(extra="allow")  # the per-cloud sections: validated against the registry below
    flat_keys: ClassVar[dict[str, str]] = {"api_timeout_s": "cloud_api_timeout_s"}

    live_prices: bool = Field(False, description="read prices, quotas and capacity from the cloud APIs "
                              "(needs credentials); off: the shipped catalog only, no network")
    price_max_age_s: float = Field(3600.0, gt=0, description="older live data falls back to the catalog")
    price_refresh_s: float = Field(300.0, ge=0, description="how often the cloud APIs are read again")
    api_timeout_s: float = Field(10.0, gt=0,
        description="timeout of one cloud API call (prices, quotas, capacity)")
    metadata_endpoint: str | None = Field(None, description="where spot-watch reads this node's interruption "
                                          "notices (env ETRID_METADATA_ENDPOINT); null: the SDK's override "
                                          "variable, else the cloud's own metadata address")
    pools: list[Pool] = Field(default_factory=list, description="extra or overriding pools, by name")

    @model_validator(mode="wrap")
    @classmethod
    def _per_cloud(cls, data: Any, handler: Any) -> Any:
        """Each registered cloud's section through that cloud's own model (defaults where absent); a key that is
        neither a setting nor a registered cloud is refused."""
        if isinstance(data, CloudsSettings) or not isinstance(data, Mapping):
            return handler(data)
        rest = dict(data)
        sections: dict[str, BaseModel] = {}
        errors: list[Any] = []
        for cloud in registry.clouds():
            raw = rest.pop(cloud.name, None)
            if isinstance(raw, cloud.Settings):
                sections[cloud.name] = raw
                continue
            try:
                sections[cloud.name] = cloud.Settings.model_validate({} if raw is None else raw)
            except ValidationError as err:
                errors += _relocated(err, (cloud.name,))
        for key in [k for k in rest if k not in cls.model_fields]:
            errors.append({"type": "extra_forbidden", "loc": (key,), "input": rest.pop(key)})
        try:
            model = handler(rest)
        except ValidationError as err:
            errors = _relocated(err, ()) + errors
            model = None
        if errors or model is None:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        model.__pydantic_extra__ = sections
        return model

    def of(self, name: str) -> Any:
        """A cloud's section (its defaults for a cloud registered after this config was read)."""
        extra = self.__pydantic_extra__ or {}
        if name in extra:
            return extra[name]
        return registry.cloud(name).Settings()


class TeeSettings(Section):
    """`tee`: confidential jobs on attested TEE nodes."""

    flat_keys: ClassVar[dict[str, str]] = {"enabled": "ENABLE_TEE", "region": "tee_region",
                                           "max_nodes": "tee_max_nodes", "config_file": "tee_config",
                                           "root": "tee_root"}

    enabled: bool = Field(False,
        description="serve confidential jobs on attested TEE nodes and add the azure-tee-h100 pool")
    region: str = Field("eastus2", description="Azure region of the confidential (SEV-SNP) pool, used with ENABLE_TEE")
    max_nodes: int = Field(2, ge=0, description="most nodes of the confidential pool")
    config_file: Path | None = Field(None, description="TEE settings file: trust roots, measurement allow-list, "
                                     "paths (env ETRID_TEE_CONFIG; etrid_ray/security/tee/config.py)")
    root: Path | None = Field(None, description="prefix for /dev and /sys (a fake tree in tests; env ETRID_TEE_ROOT)")


class ComplianceSettings(Section):
    """`compliance`: the templates enabled on chain (encryption, audit log, residency) and TLS trust."""

    flat_keys: ClassVar[dict[str, str]] = {"enabled": "ENABLE_COMPLIANCE"}

    enabled: bool = Field(False,
        description="turn on the compliance templates enabled on chain (encryption, audit log, residency)")
    audit_log: Path | None = Field(None, description="the audit log, JSON lines (env ETRID_AUDIT_LOG); null: "
                                   "audit.jsonl beside the journal when compliance is on, none otherwise")
    audit_fsync: bool = Field(True, description="fsync the audit log after every write (env ETRID_AUDIT_FSYNC)")
    ca_bundle: Path | None = Field(None, description="PEM file of CAs trusted for TLS besides the system's "
                                   "(env ETRID_CA_BUNDLE)")


class TelemetrySettings(Section):
    """`telemetry`: the head's metrics endpoint, log format, and the monitoring stack the KubeRay manifests point
    at."""

    metrics_host: str = Field("127.0.0.1", description="address of the head's /metrics, /healthz, /readyz "
                              "(env ETRID_METRICS_HOST; the KubeRay head pod listens on 0.0.0.0)")
    metrics_port: int = Field(DEFAULT_METRICS_PORT, ge=0, le=65535,
                              description="port of the head's /metrics (env ETRID_METRICS_PORT; 0 picks a free one)")
    log_format: Literal["text", "json"] = Field("text", description="log lines as text or one JSON object a line "
                                                "(env ETRID_LOG_FORMAT)")
    # The Ray dashboard's Metrics tab and the monitoring stack the KubeRay manifests point at (etrid_ray.kuberay):
    # the head's RAY_PROMETHEUS_HOST / RAY_GRAFANA_HOST / RAY_GRAFANA_IFRAME_HOST / RAY_PROMETHEUS_NAME. The
    # defaults are kube-prometheus-stack's in-cluster names in a `monitoring` namespace.
    ray_prometheus_host: str = Field("http://prometheus-operated.monitoring.svc:9090",
                                     description="Prometheus as the Ray head reaches it (the dashboard's queries)")
    ray_prometheus_name: str = Field("Prometheus", min_length=1,
                                     description="the Grafana datasource holding Ray's metrics (Ray's dashboards)")
    ray_grafana_host: str = Field("http://grafana.monitoring.svc:3000",
                                  description="Grafana as the Ray head reaches it (health check, dashboard links)")
    ray_grafana_iframe_host: str | None = Field(
        "http://127.0.0.1:3000", description="Grafana as the browser reaches it (the Metrics tab embeds it; "
        "default: `kubectl -n monitoring port-forward svc/grafana 3000`); null: ray_grafana_host")
    monitoring_namespace: str = Field("monitoring", min_length=1,
                                      description="namespace of Grafana's dashboard sidecar: Ray's dashboards go there")
    monitoring_namespace_labels: dict[str, str] = Field(
        default_factory=lambda: {"kubernetes.io/metadata.name": "monitoring"},
        description="labels of the monitoring stack's namespace: the NetworkPolicy admits its pods to the Ray "
        "head's metrics ports, dashboard, GCS and client port")

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v


class KubeRaySettings(Section):
    """`kuberay`: RayCluster features beyond the pools, rendered by `etrid-ray render` (etrid_ray/kuberay/render.py)."""

    upgrade_strategy: Literal["Recreate", "None"] = Field(
        "Recreate", description="the RayCluster's `upgradeStrategy.type` (KubeRay >= 1.4): Recreate replaces every "
        "pod when a pod template changes (a new image), the head's journal on its volume brings unsettled jobs "
        "back; None leaves running pods as they are until they are replaced for another reason")
    gcs_ft_redis_address: str | None = Field(
        None, pattern=r"^(rediss?://)?[A-Za-z0-9.-]+:[0-9]{1,5}$",
        description="GCS fault tolerance (off when null): the external Redis (host:port, e.g. "
        "`redis.etrid-ai-compute.svc:6379`) the Ray head's GCS keeps its state in, so a restarted head pod finds "
        "its worker nodes, actors and jobs again (`gcsFaultToleranceOptions`, KubeRay >= 1.3)")
    gcs_ft_redis_password_key: str | None = Field(
        None, pattern=r"^[-._A-Za-z0-9]+$",
        description="key of the Redis password in the etrid-provider-credentials Secret (null: a Redis without "
        "a password); KubeRay gives it to the Ray head alone")
    gcs_ft_storage_namespace: str | None = Field(
        None, pattern=r"^[-._A-Za-z0-9]+$",
        description="prefix of the cluster's keys in Redis (null: KubeRay uses the RayCluster's uid)")


class ProviderConfig(BaseModel):
    """Settings of one provider, in sections. The seed's flat names load, read and copy through the alias layer."""

    model_config = ConfigDict(extra="forbid")

    chain: ChainSettings = Field(default_factory=ChainSettings,
                                 description="the chain node, the account's key (by name) and the head's chain I/O")
    provider: ProviderSettings = Field(default_factory=ProviderSettings,
                                       description="what this provider offers and how its head runs")
    scaling: ScalingSettings = Field(default_factory=ScalingSettings,
                                     description="the scaling policy's settings (the seed's rules by default)")
    clouds: CloudsSettings = Field(default_factory=lambda: CloudsSettings(),
        description="the local GPU nodes and each cloud's spot pool (one section per registered cloud), the cloud "
                    "markets, and any extra pools")
    tee: TeeSettings = Field(default_factory=TeeSettings, description="confidential computing (TEE) nodes")
    compliance: ComplianceSettings = Field(default_factory=ComplianceSettings,
                                           description="compliance templates, the audit log and TLS trust")
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings,
                                         description="metrics, logs and the monitoring stack")
    kuberay: KubeRaySettings = Field(default_factory=KubeRaySettings,
                                     description="RayCluster features: upgrade strategy, GCS fault tolerance")

    @model_validator(mode="before")
    @classmethod
    def _seed_names(cls, data: Any) -> Any:
        """The alias layer: the seed's flat keys (`aws_region`, `PRICE_PER_SECOND`, …) onto their sections."""
        return nest(data) if isinstance(data, Mapping) else data

    def __getattr__(self, name: str) -> Any:
        """Read access by the seed's flat names (`config.aws_region` is `config.clouds.aws.region`), for the call
        sites not yet moved to the sections."""
        path = flat_aliases().get(name) if not name.startswith("_") else None
        if path is None:
            return super().__getattr__(name)  # type: ignore[misc]
        value: Any = self
        for part in path:
            value = value.of(part) if isinstance(value, CloudsSettings) and part not in CloudsSettings.model_fields \
                else getattr(value, part)
        return value

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> ProviderConfig:
        """As pydantic's, with `update` in flat keys or sections alike; the result is validated again."""
        if not update:
            return super().model_copy(deep=deep)
        data = _merge(self.model_dump(), nest(update))
        return type(self).model_validate(data)

    def flat(self) -> dict[str, Any]:
        """Every setting by its flat name (JSON values), as the seed's keys and a ConfigMap spell them."""
        return {key: _json_value(getattr(self, key)) for key in flat_aliases()}

    @property
    def blob_store_url(self) -> str:
        return self.chain.blob_store_url

    @property
    def journal_file(self) -> Path:
        return self.provider.journal_file


def pools_from_config(config: ProviderConfig) -> list[Pool]:
    """The pools the config's clouds describe (each registered cloud's, in the registry's order: the local GPU
    nodes first), then any explicitly configured ones (same name wins)."""
    pools: list[Pool] = []
    for cloud in registry.clouds():
        pools += cloud.pools(cloud.settings(config), config)
    by_name = {p.name: p for p in pools}
    for extra in config.clouds.pools:
        by_name[extra.name] = extra
    return list(by_name.values())


def _json_value(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


# --- the alias layer: the seed's flat names onto the sections ----------------------------------------------

_ALIASES: tuple[int, dict[str, tuple[str, ...]]] | None = None


def flat_aliases() -> dict[str, tuple[str, ...]]:
    """Every flat key (the seed's names: `aws_region`, `local_nodes`, `cloud_api_timeout_s`, …) → its path in the
    sections. The clouds' keys come from the registry (`Cloud.flat_key`)."""
    global _ALIASES
    if _ALIASES is not None and _ALIASES[0] == registry.version():
        return _ALIASES[1]
    table: dict[str, tuple[str, ...]] = {}
    for section, field in ProviderConfig.model_fields.items():
        model = field.annotation
        if not (isinstance(model, type) and issubclass(model, Section)):
            continue
        for name in model.model_fields:
            table[model.flat_keys.get(name, name)] = (section, name)
        if model is CloudsSettings:
            for cloud in registry.clouds():
                for name in cloud.Settings.model_fields:
                    table[cloud.flat_key(name)] = (section, cloud.name, name)
    _ALIASES = (registry.version(), table)
    return table


def _plain(value: Any) -> Any:
    return value.model_dump() if isinstance(value, BaseModel) else value


def nest(data: Mapping[str, Any], used: dict[tuple[str, ...], str] | None = None) -> dict[str, Any]:
    """A mapping with flat keys (the seed's names) as the sections hold it. Section keys pass as they are; a flat
    key is applied after them, so within one mapping the flat key wins. `used` collects path → flat key, so
    errors can name the key as it was written."""
    table = flat_aliases()
    out: dict[str, Any] = {}
    flat: list[tuple[tuple[str, ...], str, Any]] = []
    for key, value in data.items():
        path = table.get(key)
        if path is None:
            out[key] = _merge(_plain(out[key]), value) if isinstance(value, dict) and key in out else value
        else:
            flat.append((path, key, value))
    for path, key, value in flat:
        target = out
        for part in path[:-1]:
            inner = _plain(target.get(part))
            target[part] = inner = dict(inner) if isinstance(inner, Mapping) else {}
            target = inner
        old = _plain(target.get(path[-1]))
        target[path[-1]] = _merge(old, value) if isinstance(value, dict) and isinstance(old, dict) else value
        if used is not None:
            used[path] = key
    return out


ENV_PREFIX = "ETRID_"
# The seed's own env var names (read bare, as well as ETRID_<KEY>), in the order the ConfigMap lists them.
SEED_ENV_NAMES = ("RPC_URL", "WEBSOCKET_URL", "PRICE_PER_SECOND", "ENABLE_TEE", "ENABLE_COMPLIANCE", "AWS_ENABLED",
                  "AWS_REGION", "AWS_INSTANCE_TYPE", "AWS_SPOT_MAX_PRICE")
# Other names a setting is accepted under (never written; the canonical ETRID_<KEY> or the seed's name wins when
# both are set; an empty value counts as unset). The clouds add theirs (`Cloud.env_aliases`).
ENV_ALIASES = {"ETRID_WS_URL": "websocket_url"}
# The variables the chain's WebSocket URL is read from, canonical first (what a CLI `--url` option should name).
WEBSOCKET_URL_ENVVARS = ("ETRID_WEBSOCKET_URL", "WEBSOCKET_URL", "ETRID_WS_URL")


def env_aliases() -> dict[str, str]:
    """Every accepted alias variable → its flat key (ours, and each registered cloud's)."""
    out = dict(ENV_ALIASES)
    for cloud in registry.clouds():
        out.update({var: cloud.flat_key(field) for field, var in cloud.env_aliases.items()})
    return out


def seed_env_keys() -> dict[str, str]:
    """The seed's env var names → their flat keys (`RPC_URL` → `rpc_url`): the ConfigMap's keys."""
    by_lower = {flat.lower(): flat for flat in flat_aliases()}
    return {name: by_lower[name.lower()] for name in SEED_ENV_NAMES}


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """`ETRID_PRICE_PER_SECOND=…`, `ETRID_GPUS__COUNT=2`, `ETRID_CLOUDS__AWS__REGION=…`, the seed's bare names
    (`PRICE_PER_SECOND`) and the accepted aliases (`ETRID_WS_URL`), keyed as a file would be (flat keys or
    sections)."""
    known = {name.lower(): name for name in ProviderConfig.model_fields}
    known.update({flat.lower(): flat for flat in flat_aliases()})
    out: dict[str, Any] = {}
    aliased = {flat: env[var] for var, flat in env_aliases().items() if env.get(var, "").strip()}
    for key, value in [*((f"{ENV_PREFIX}{flat}", v) for flat, v in aliased.items()), *env.items()]:
        if key.startswith(ENV_PREFIX):
            name = key[len(ENV_PREFIX):]
        elif key in SEED_ENV_NAMES:
            name = key
        else:
            continue
        parts = name.lower().split("__")
        if parts[0] not in known or name.upper() in ("SEED",):
            continue
        path = [known[parts[0]], *parts[1:]]  # ETRID_GPUS__COUNT -> gpus.count; ETRID_REGION -> region
        target = out
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = _parse_scalar(value)
    return out


def env_setting(flat_key: str, env: Mapping[str, str] | None = None) -> str | None:
    """The raw value one setting has in the environment (`ETRID_<KEY>`, the seed's name, an alias), unparsed and
    unvalidated: a cheap look for hot paths (is an audit log configured?); None when unset."""
    env = os.environ if env is None else env
    names = [f"{ENV_PREFIX}{flat_key.upper()}"]
    if flat_key.upper() in SEED_ENV_NAMES:
        names.append(flat_key.upper())
    names += [var for var, flat in env_aliases().items() if flat == flat_key]
    for name in names:
        value = env.get(name)
        if value:
            return value
    return None


def section_from_env(name: str, env: Mapping[str, str] | None = None, *, base: Section | None = None) -> Any:
    """One section as this process's environment sets it over `base` (a config's section; default: the defaults):
    for processes and helpers that hold no provider config, or read their own environment where they run (the
    head's metrics endpoint, the audit log, the TEE and TLS helpers, spot-watch). Errors name the variable's key
    and the fix, as `load_config`'s do."""
    used: dict[tuple[str, ...], str] = {}
    data = nest(_env_overrides(os.environ if env is None else env), used)
    model = ProviderConfig.model_fields[name].annotation
    assert isinstance(model, type) and issubclass(model, Section)
    try:
        over = data.get(name, {})
        if base is None:
            return model.model_validate(over)
        return model.model_validate(_merge(base.model_dump(), over)) if over else base
    except ValidationError as err:
        problems = [f"{ENV_PREFIX}{_key((name, *e['loc']), used).upper()}: {e['msg']}" for e in err.errors()]
        raise ConfigError("invalid environment setting — " + "; ".join(problems)) from None


def _parse_scalar(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in over.items():
        merged[k] = _merge(merged[k], v) if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
    return merged


def read_mapping_file(path: str | Path, what: str, missing_hint: str) -> dict[str, Any]:
    """A YAML or JSON file holding one mapping; errors name the file and what to do (shared by every config)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} {p} does not exist: {missing_hint}")
    text = p.read_text()
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    except Exception as err:
        raise ConfigError(f"{what} {p} is not valid {p.suffix.lstrip('.') or 'JSON'}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {p} must hold a mapping of settings, not {type(data).__name__}")
    return data


SECRET_KEY_NAMES = {"seed", "etrid_seed", "seed_phrase", "mnemonic", "private_key", "secret", "secret_key"}


def _model_at(loc: tuple[Any, ...]) -> Any:
    """The model that holds the setting at `loc` (None when the path leads nowhere)."""
    model: Any = ProviderConfig
    for part in loc:
        if model is CloudsSettings and str(part) not in model.model_fields:
            found = registry.find(str(part))
            model = found.Settings if found is not None else None
            continue
        field = model.model_fields.get(str(part)) if isinstance(model, type) else None
        model = field.annotation if field is not None else None
    return model


def _unknown_hint(loc: tuple[Any, ...]) -> str:
    """For a misspelt key, the setting it was probably meant to be."""
    import difflib

    if str(loc[-1]).lower() in SECRET_KEY_NAMES:
        return "remove it (the key is never a setting: export the variable seed_env names, or set seed_file)"
    model = _model_at(loc[:-1])
    known = list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []
    if model is ProviderConfig:
        known += list(flat_aliases())
    elif model is CloudsSettings:
        known += registry.names()
    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(str(loc[-1]).lower(), list(by_lower), n=1)
    if close:
        return f"unknown setting: did you mean {by_lower[close[0]]}?"
    if model is CloudsSettings:
        return f"remove it (neither a setting nor a registered cloud: {', '.join(registry.names())})"
    return "remove it (unknown setting)"


def _key(loc: tuple[Any, ...], used: Mapping[tuple[str, ...], str]) -> str:
    """A setting's name as it was written: the flat key where one was used (`gpus.count`, `aws_region`), else its
    path in the sections (`clouds.aws.region`)."""
    for n in range(len(loc), 0, -1):
        flat = used.get(tuple(str(x) for x in loc[:n]))
        if flat is not None:
            return ".".join([flat, *(str(x) for x in loc[n:])])
    return ".".join(str(x) for x in loc) or "(root)"


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None) -> ProviderConfig:
    """Reads a YAML/JSON file, then env vars, then explicit overrides (each in flat keys or sections: the alias
    layer maps them before they are merged, so a later source wins either way); errors name the key and the fix."""
    used: dict[tuple[str, ...], str] = {}
    data: dict[str, Any] = {}
    if path is not None:
        data = nest(read_mapping_file(path, "config file", "pass --config with an existing YAML or JSON file"), used)
    data = _merge(data, nest(_env_overrides(os.environ if env is None else env), used))
    data = _merge(data, nest(overrides or {}, used))
    try:
        return ProviderConfig.model_validate(data)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            hint = _unknown_hint(e["loc"]) if e["type"] == "extra_forbidden" else e["msg"]
            problems.append(f"{_key(e['loc'], used)}: {hint}")
        raise ConfigError("invalid provider config — " + "; ".join(problems)) from None
