"""GCP: zones that offer the machine type, accelerator types per zone, regional GPU quotas.

Calls (google-cloud-compute, REST transport): `Regions.get` (the region's zones and its quota
list), then per zone `MachineTypes.get` (404 = the zone does not offer the type; the type's
`accelerators` name its bundled GPUs, e.g. a2-ultragpu-8g → 8 × nvidia-a100-80gb) and
`AcceleratorTypes.list` (the zone offers that GPU). A zone counts only when it offers both.

Quotas are regional and counted in GPUs: spot and preemptible VMs use
`PREEMPTIBLE_<GPU>_GPUS` when the project has that quota, otherwise they consume the standard
`<GPU>_GPUS` quota (GCP's documented rule); on-demand VMs use the standard one. Headroom =
floor((limit − usage) / GPUs per node). The project-wide `GPUS_ALL_REGIONS` quota is not read.

Prices are not published by these APIs: they come from the shipped catalog, restricted to the
zones found here. GCP bills the GPUs separately from the host VM; the catalog's GCP rows are
already host + GPUs summed (see `etrid_ray/data/README.md`), so a node's price is one row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from etrid_ray.clouds.base import CloudCallFailed, CredentialsMissing, MarketView, headroom_nodes, utcnow
from etrid_ray.clouds.interruptions.sources import GcpMetadata
from etrid_ray.clouds.registry import Cloud, CloudSettings, register
from etrid_ray.pools import Pool

if TYPE_CHECKING:
    from etrid_ray.clouds.interruptions.sources import NoticeSource
    from etrid_ray.config import CloudsSettings

log = logging.getLogger(__name__)

SCOPES = ["https://www.googleapis.com/auth/compute.readonly"]
# accelerator type → quota metric stem (GCP's names drop "tesla" and, for H100/H200, the memory size)
GPU_METRIC = {
    "nvidia-tesla-a100": "NVIDIA_A100",
    "nvidia-a100-80gb": "NVIDIA_A100_80GB",
    "nvidia-h100-80gb": "NVIDIA_H100",
    "nvidia-h100-mega-80gb": "NVIDIA_H100_MEGA",
    "nvidia-h200-141gb": "NVIDIA_H200",
    "nvidia-l4": "NVIDIA_L4",
    "nvidia-tesla-t4": "NVIDIA_T4",
    "nvidia-tesla-v100": "NVIDIA_V100",
    "nvidia-tesla-p100": "NVIDIA_P100",
    "nvidia-tesla-p4": "NVIDIA_P4",
}


def gpu_quota_metrics(accelerator_type: str) -> tuple[str, str]:
    """(standard metric, preemptible metric) for an accelerator type, e.g. nvidia-a100-80gb →
    (NVIDIA_A100_80GB_GPUS, PREEMPTIBLE_NVIDIA_A100_80GB_GPUS)."""
    stem = GPU_METRIC.get(accelerator_type) or accelerator_type.upper().replace("TESLA-", "").replace("-", "_")
    return f"{stem}_GPUS", f"PREEMPTIBLE_{stem}_GPUS"


def quota_for(quotas: Mapping[str, tuple[float, float]], accelerator_type: str,
              spot: bool) -> tuple[str, float, float] | None:
    """(metric, limit, usage) that bounds this market's GPUs; None when the region lists neither."""
    standard, preemptible = gpu_quota_metrics(accelerator_type)
    if spot and preemptible in quotas and quotas[preemptible][0] > 0:
        return (preemptible, *quotas[preemptible])
    if standard in quotas:
        return (standard, *quotas[standard])
    return None


def _last(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


class GcpMarket:
    """Reads GCP Compute for GCP pools (machine type = the pool's `instance_type`)."""

    cloud: ClassVar[str] = "gcp"

    def __init__(self, *, project: str | None = None, credentials: Any = None, api_endpoint: str | None = None,
                 timeout_s: float = 10.0, retry_initial_s: float = 1.0, retry_deadline_s: float | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        """`retry_initial_s` / `retry_deadline_s`: backoff of the retries on 429/503 (deadline default: 3 × timeout)."""
        self.project = project
        self.credentials = credentials
        self.api_endpoint = api_endpoint
        self.timeout_s = timeout_s
        self.retry_initial_s = retry_initial_s
        self.retry_deadline_s = retry_deadline_s if retry_deadline_s is not None else 3 * timeout_s
        self.clock = clock
        self._clients: dict[str, Any] = {}

    def _auth(self) -> tuple[Any, str]:
        creds, project = self.credentials, self.project
        if creds is None:
            import google.auth
            from google.auth.exceptions import DefaultCredentialsError

            try:
                creds, adc_project = google.auth.default(scopes=SCOPES)
            except DefaultCredentialsError as err:
                raise CredentialsMissing(f"gcp: no application default credentials ({err})") from None
            project = project or adc_project
            self.credentials = creds
        if not project:
            raise CredentialsMissing("gcp: no project (set gcp_project)")
        self.project = project
        return creds, project

    def _client(self, name: str, creds: Any) -> Any:
        if name not in self._clients:
            from google.api_core.client_options import ClientOptions
            from google.cloud import compute_v1

            options = ClientOptions(api_endpoint=self.api_endpoint) if self.api_endpoint else None
            cls = {"regions": compute_v1.RegionsClient, "machine_types": compute_v1.MachineTypesClient,
                   "accelerator_types": compute_v1.AcceleratorTypesClient}[name]
            self._clients[name] = cls(credentials=creds, transport="rest", client_options=options)
        return self._clients[name]

    def _retry(self) -> Any:
        from google.api_core import exceptions, retry

        return retry.Retry(predicate=retry.if_exception_type(exceptions.TooManyRequests,
                                                             exceptions.ServiceUnavailable),
                           initial=self.retry_initial_s, maximum=self.retry_initial_s * 8, multiplier=2,
                           timeout=self.retry_deadline_s)

    def view(self, pool: Pool) -> MarketView:
        if not pool.instance_type:
            raise CloudCallFailed(f"gcp pool {pool.name} has no instance_type (machine type)")
        creds, project = self._auth()
        from google.api_core import exceptions
        from google.auth.exceptions import GoogleAuthError

        now = self.clock()
        call = {"timeout": self.timeout_s, "retry": self._retry()}
        notes: list[str] = []
        try:
            region = self._client("regions", creds).get(project=project, region=pool.region, **call)
            quotas = {q.metric: (float(q.limit), float(q.usage)) for q in region.quotas}
            zones: list[str] = []
            accelerators: dict[str, int] = {}
            for zone in sorted(_last(z) for z in region.zones):
                try:
                    mt = self._client("machine_types", creds).get(project=project, zone=zone,
                                                                  machine_type=pool.instance_type, **call)
                except exceptions.NotFound:
                    continue
                wanted = {a.guest_accelerator_type: int(a.guest_accelerator_count) for a in mt.accelerators}
                if wanted:
                    offered = {a.name for a in self._client("accelerator_types", creds).list(
                        project=project, zone=zone, **call)}
                    if not set(wanted) <= offered:
                        notes.append(f"{zone} offers {pool.instance_type} but not {', '.join(sorted(wanted))}")
                        continue
                accelerators.update(wanted)
                zones.append(zone)
        except exceptions.GoogleAPICallError as err:
            throttled = isinstance(err, exceptions.TooManyRequests | exceptions.ServiceUnavailable)
            raise CloudCallFailed(f"gcp {pool.region}: {err.code} {err.message}", throttled=throttled) from err
        except exceptions.RetryError as err:
            raise CloudCallFailed(f"gcp {pool.region}: gave up retrying ({err.cause})", throttled=True) from err
        except (OSError, GoogleAuthError) as err:  # requests' connection/timeout errors; token refresh failures
            raise CloudCallFailed(f"gcp {pool.region}: {type(err).__name__}: {err}") from err
        headroom = None
        if not zones:
            notes.append(f"no zone of {pool.region} offers {pool.instance_type}")
        elif not accelerators:
            notes.append(f"{pool.instance_type} has no bundled GPUs: GPU quota not checked")
        else:
            limits = []
            for accel, count in sorted(accelerators.items()):
                q = quota_for(quotas, accel, pool.spot)
                if q is None:
                    notes.append(f"no {accel} quota listed in {pool.region}")
                    continue
                metric, limit, usage = q
                notes.append(f"quota {metric}: {usage:g} of {limit:g} GPUs used")
                limits.append(headroom_nodes(limit, usage, count))
            known = [h for h in limits if h is not None]
            headroom = min(known) if known else None
        return MarketView(pool=pool.name, cloud="gcp", region=pool.region, observed_at=now, source="gcp-api",
                          zones=tuple(zones), quota_headroom_nodes=headroom, notes=tuple(notes))


# --- the cloud ------------------------------------------------------------------------------------

# GKE's accelerator label values (cloud.google.com/gke-accelerator), by (accelerator, VRAM GB).
GKE_ACCELERATORS = {("A100", 40): "nvidia-tesla-a100", ("A100", 80): "nvidia-a100-80gb",
                    ("H100", 80): "nvidia-h100-80gb", ("H100", 94): "nvidia-h100-80gb",
                    ("L4", 24): "nvidia-l4", ("T4", 16): "nvidia-tesla-t4", ("V100", 16): "nvidia-tesla-v100",
                    ("A10G", 24): "nvidia-a10g"}


class GcpSettings(CloudSettings):
    """`clouds.gcp` (the seed-style `gcp_enabled`, `gcp_region`, `gcp_machine_type`, …)."""

    enabled: bool = Field(True, description="burst to the GCP spot pool")
    region: str = Field("europe-west4", description="GCP region of the GCP spot pool (EU: GDPR jobs may run there)")
    machine_type: str = Field("a2-ultragpu-8g", description="GCE machine type of the GCP spot pool")
    spot_max_price: float | None = Field(24.0, gt=0, description="USD per node-hour")
    max_nodes: int = Field(4, ge=0, description="most nodes of the GCP spot pool")
    project: str | None = Field(None, description="GCP project (default: the credentials' project)")
    api_endpoint: str | None = Field(None, description="API endpoint override; default: compute.googleapis.com")

    @property
    def instance_type(self) -> str:
        return self.machine_type


@register
class Gcp(Cloud):
    name = "gcp"
    order = 20
    title = "GCP"
    Settings = GcpSettings
    pool_name = "gcp-spot-a100"
    startup_s = 150.0
    node_memory_gib = 1360
    notice_s = 30.0  # preemption: 30 s, announced without a time
    metadata_endpoint = "http://metadata.google.internal"
    metadata_endpoint_env = "GCE_METADATA_HOST"  # google-auth's own override (host[:port])

    def spot_scheduling(self, pool: Pool, selector: dict[str, str], tolerations: list[dict[str, str]]) -> None:
        gke = GKE_ACCELERATORS.get((pool.accelerator, pool.vram_gb))
        if gke:
            selector["cloud.google.com/gke-accelerator"] = gke
        if pool.spot:
            selector["cloud.google.com/gke-spot"] = "true"
            tolerations.append({"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true",
                                "effect": "NoSchedule"})

    def market(self, settings: Any, clouds: CloudsSettings, clock: Callable[[], datetime]) -> GcpMarket:
        return GcpMarket(project=settings.project, api_endpoint=settings.api_endpoint, timeout_s=clouds.api_timeout_s,
                         clock=clock)

    def notice_source_class(self) -> type[NoticeSource]:
        return GcpMetadata
