"""Azure: resource SKUs and their restrictions per region, vCPU usage against quota.

Calls (azure-mgmt-compute): `ResourceSkus.list($filter=location eq '<region>')` — the VM size
must be listed for the region, spot pools need its `LowPriorityCapable` capability, and a
`Location` restriction (`NotAvailableForSubscription`, `QuotaId`) makes it unlaunchable for
this subscription; `Zone` restrictions only narrow the zones. `Usage.list(<region>)` gives
current vs limit per quota: spot VMs count against `lowPriorityCores` (regional low-priority
vCPUs), on-demand VMs against the size's family quota (e.g. `standardNDAMSv4_A100Family`) and
the regional `cores`. Headroom = floor((limit − current) / vCPUs of the size).

Prices come from the shipped catalog (the Retail Prices API is not queried; the catalog's
Azure rows have no zone). Credentials: a `TokenCredential` passed in, else
`azure.identity.DefaultAzureCredential` when azure-identity is installed; the subscription id
comes from the config's `clouds.azure.subscription_id` (`azure_subscription_id`, or the env's
`AZURE_SUBSCRIPTION_ID`). Without either nothing is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from etrid_ray.clouds.base import (
    CloudCallFailed,
    CredentialsMissing,
    MarketView,
    headroom_nodes,
    min_known,
    utcnow,
)
from etrid_ray.clouds.interruptions.sources import AzureScheduledEvents
from etrid_ray.clouds.registry import Cloud, CloudSettings, register
from etrid_ray.pools import Pool

if TYPE_CHECKING:
    from etrid_ray.clouds.interruptions.sources import NoticeSource
    from etrid_ray.config import CloudsSettings, ProviderConfig

log = logging.getLogger(__name__)


def _text(value: Any) -> str:
    """An SDK enum member (`ResourceSkuRestrictionsReasonCode.QUOTA_ID`) as its wire value ('QuotaId')."""
    return str(getattr(value, "value", value))


def _cap(sku: Any, name: str) -> str | None:
    for c in sku.capabilities or ():
        if c.name == name:
            return c.value
    return None


def sku_restriction(sku: Any, region: str, spot: bool) -> tuple[str | None, tuple[str, ...] | None, list[str]]:
    """(why the size cannot be launched here or None, zones it may use (None = regional), notes)."""
    notes: list[str] = []
    region_l = region.lower()
    zones: tuple[str, ...] | None = None
    for info in sku.location_info or ():
        if (info.location or "").lower() == region_l and info.zones:
            zones = tuple(sorted(info.zones))
    for r in sku.restrictions or ():
        values = [v.lower() for v in (r.values_property or ())]
        kind = _text(r.type)
        if kind == "Location" and region_l in values:
            return f"{sku.name} restricted in {region}: {_text(r.reason_code)}", (), notes
        if kind == "Zone" and region_l in values and zones is not None:
            blocked = set(r.restriction_info.zones or ()) if r.restriction_info else set()
            zones = tuple(z for z in zones if z not in blocked)
            notes.append(f"zones {', '.join(sorted(blocked))} restricted ({_text(r.reason_code)})")
    if spot and (_cap(sku, "LowPriorityCapable") or "True").lower() == "false":
        return f"{sku.name} is not spot-capable", (), notes
    return None, zones, notes


class AzureMarket:
    """Reads Azure Compute for Azure pools (VM size = the pool's `instance_type`)."""

    cloud: ClassVar[str] = "azure"

    def __init__(self, *, subscription_id: str | None = None, credential: Any = None, base_url: str | None = None,
                 connection_verify: bool | str = True, timeout_s: float = 10.0, retry_total: int = 3,
                 retry_backoff_factor: float = 0.8, clock: Callable[[], datetime] = utcnow) -> None:
        self.subscription_id = subscription_id  # the config's clouds.azure.subscription_id (or AZURE_SUBSCRIPTION_ID)
        self.credential = credential
        self.base_url = base_url
        self.connection_verify = connection_verify
        self.timeout_s = timeout_s
        self.retry_total = retry_total
        self.retry_backoff_factor = retry_backoff_factor
        self.clock = clock
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            if not self.subscription_id:
                raise CredentialsMissing("azure: no subscription id (set azure_subscription_id)")
            if self.credential is None:
                try:
                    from azure.identity import DefaultAzureCredential  # type: ignore[import-not-found]
                except ImportError:
                    raise CredentialsMissing("azure: no credential (azure-identity missing; pass one)") from None
                self.credential = DefaultAzureCredential()
            from azure.mgmt.compute import ComputeManagementClient

            kwargs: dict[str, Any] = {"connection_verify": self.connection_verify, "retry_total": self.retry_total,
                                      "retry_backoff_factor": self.retry_backoff_factor,
                                      "connection_timeout": self.timeout_s, "read_timeout": self.timeout_s}
            if self.base_url:
                kwargs["base_url"] = self.base_url
            self._client = ComputeManagementClient(self.credential, self.subscription_id, **kwargs)
        return self._client

    def view(self, pool: Pool) -> MarketView:
        if not pool.instance_type:
            raise CloudCallFailed(f"azure pool {pool.name} has no instance_type (VM size)")
        client = self.client()
        from azure.core.exceptions import AzureError, HttpResponseError

        now = self.clock()
        size = pool.instance_type.lower()
        region = pool.region
        notes: list[str] = []
        try:
            sku = None
            for s in client.resource_skus.list(filter=f"location eq '{region}'"):
                if (s.resource_type or "").lower() == "virtualmachines" and (s.name or "").lower() == size \
                        and region.lower() in [loc.lower() for loc in s.locations or ()]:
                    sku = s
                    break
            usages = {u.name.value: (float(u.current_value), float(u.limit)) for u in client.usage.list(region)}
        except HttpResponseError as err:
            status = err.status_code or 0
            raise CloudCallFailed(f"azure {region}: {status} {err.reason or ''} {err.message}".strip(),
                                  throttled=status in (429, 503)) from err
        except AzureError as err:
            raise CloudCallFailed(f"azure {region}: {type(err).__name__}: {err.message}") from err
        if sku is None:
            return MarketView(pool=pool.name, cloud="azure", region=region, observed_at=now, source="azure-api",
                              zones=(), restricted=f"{pool.instance_type} not offered in {region}")
        restricted, zones, notes = sku_restriction(sku, region, pool.spot)
        vcpus = float(_cap(sku, "vCPUs") or pool.cpus_per_node)
        names = ["lowPriorityCores"] if pool.spot else [n for n in (sku.family, "cores") if n]
        headrooms = []
        for name in names:
            if name not in usages:
                notes.append(f"quota {name} not listed")
                continue
            current, limit = usages[name]
            notes.append(f"quota {name}: {current:g} of {limit:g} vCPUs used")
            headrooms.append(headroom_nodes(limit, current, vcpus))
        return MarketView(pool=pool.name, cloud="azure", region=region, observed_at=now, source="azure-api",
                          zones=zones, quota_headroom_nodes=min_known(headrooms), restricted=restricted,
                          notes=tuple(notes))


# --- the cloud ------------------------------------------------------------------------------------


class AzureSettings(CloudSettings):
    """`clouds.azure` (the seed-style `azure_enabled`, `azure_region`, `azure_vm_size`, …)."""

    enabled: bool = Field(True, description="burst to the Azure spot pool")
    region: str = Field("eastus", description="Azure region of the Azure spot pool")
    vm_size: str = Field("Standard_ND96amsr_A100_v4", description="VM size of the Azure spot pool")
    spot_max_price: float | None = Field(8.0, gt=0, description="USD per node-hour")
    max_nodes: int = Field(4, ge=0, description="most nodes of the Azure spot pool")
    subscription_id: str | None = Field(None, description="Azure subscription (env AZURE_SUBSCRIPTION_ID too)")
    base_url: str | None = Field(None, description="API endpoint override; default: management.azure.com")

    @property
    def instance_type(self) -> str:
        return self.vm_size


@register
class Azure(Cloud):
    name = "azure"
    order = 30
    title = "Azure"
    Settings = AzureSettings
    pool_name = "azure-spot-a100"
    startup_s = 240.0
    node_memory_gib = 1900
    notice_s = 30.0  # Scheduled Events' Preempt: at least 30 s
    metadata_endpoint = "http://169.254.169.254"
    env_aliases: ClassVar[dict[str, str]] = {"subscription_id": "AZURE_SUBSCRIPTION_ID"}  # the SDKs' own name
    # the confidential (SEV-SNP) pool the `tee` section asks for: confidential H100 VMs
    tee_pool_name = "azure-tee-h100"
    tee_vm_size = "Standard_NCC40ads_H100_v5"
    tee_startup_s = 300.0

    def pools(self, settings: Any, config: ProviderConfig) -> list[Pool]:
        pools = super().pools(settings, config)
        tee = config.tee
        if tee.enabled:
            pools.append(Pool(name=self.tee_pool_name, kind=self.name, accelerator="H100", gpus_per_node=1,
                              cpus_per_node=40, memory_gib=320, vram_gb=94, instance_type=self.tee_vm_size,
                              region=tee.region, tee="sev-snp", max_nodes=tee.max_nodes, startup_s=self.tee_startup_s))
        return pools

    def spot_scheduling(self, pool: Pool, selector: dict[str, str], tolerations: list[dict[str, str]]) -> None:
        if pool.spot:
            selector["kubernetes.azure.com/scalesetpriority"] = "spot"
            tolerations.append({"key": "kubernetes.azure.com/scalesetpriority", "operator": "Equal",
                                "value": "spot", "effect": "NoSchedule"})

    def market(self, settings: Any, clouds: CloudsSettings, clock: Callable[[], datetime]) -> AzureMarket:
        return AzureMarket(subscription_id=settings.subscription_id, base_url=settings.base_url,
                           timeout_s=clouds.api_timeout_s, clock=clock)

    def notice_source_class(self) -> type[NoticeSource]:
        return AzureScheduledEvents
