"""AWS: live spot prices, spot placement scores and GPU instance quotas (boto3).

- Spot prices: `DescribeSpotPriceHistory` for the pool's instance type in its region with
  `StartTime=now`, which returns, per availability zone, the price in effect now (its record
  carries the time that price took effect, possibly days ago: still current). The pool is
  priced at the cheapest zone, like the catalog.
- Spot placement score (`GetSpotPlacementScores`, 1–10): shown, not used by the policy. Not
  every endpoint implements it (moto's server answers 500 "not implemented"); it is then
  reported as unavailable and not asked again by this reader.
- Quotas: Service Quotas counts GPU instances in vCPUs per family — P instances
  (L-417A185B "Running On-Demand P instances", L-7212CCBC "All P Spot Instance Requests") and
  G/VT instances (L-DB2E81BA, L-3819A6DF). Usage is the vCPUs of this account's pending and
  running instances of that family and market (DescribeInstances), so headroom =
  floor((quota − used) / vCPUs per node). A quota the endpoint does not know (moto implements
  only VPC quotas) degrades to unknown, never to zero.
- On-demand reference prices come from the shipped catalog (the Pricing API is not queried).

Credentials follow boto3's chain; none found → `CredentialsMissing` before any call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from etrid_ray.clouds.base import (
    CloudCallFailed,
    CredentialsMissing,
    MarketView,
    ZonePrice,
    headroom_nodes,
    utcnow,
)
from etrid_ray.clouds.interruptions.sources import AwsImds
from etrid_ray.clouds.registry import Cloud, CloudSettings, register
from etrid_ray.pools import Pool

if TYPE_CHECKING:
    from etrid_ray.clouds.interruptions.sources import NoticeSource
    from etrid_ray.config import CloudsSettings

log = logging.getLogger(__name__)

# family prefixes → (on-demand quota code, spot quota code), both in vCPUs
QUOTA_CODES: dict[str, tuple[str, str]] = {
    "p": ("L-417A185B", "L-7212CCBC"),  # Running On-Demand P instances / All P Spot Instance Requests
    "g": ("L-DB2E81BA", "L-3819A6DF"),  # Running On-Demand G and VT instances / All G and VT Spot Instance Requests
    "vt": ("L-DB2E81BA", "L-3819A6DF"),
}
PRODUCT_DESCRIPTIONS = ["Linux/UNIX", "Linux/UNIX (Amazon VPC)"]
THROTTLE_CODES = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
                  "SlowDown", "RequestThrottled", "ServiceUnavailable"}


def quota_family(instance_type: str) -> str | None:
    """'p4d.24xlarge' → 'p', 'g5.xlarge' → 'g', 'vt1.3xlarge' → 'vt'; None for families without a GPU quota."""
    family = instance_type.split(".", 1)[0]
    for prefix in sorted(QUOTA_CODES, key=len, reverse=True):
        if family.startswith(prefix) and family[len(prefix):len(prefix) + 1].isdigit():
            return prefix
    return None


def quota_code(instance_type: str, spot: bool) -> str | None:
    family = quota_family(instance_type)
    if family is None:
        return None
    ondemand, spot_code = QUOTA_CODES[family]
    return spot_code if spot else ondemand


def used_vcpus(instances: list[Mapping[str, Any]], family: str, spot: bool, vcpus: Mapping[str, int]) -> float:
    """vCPUs that count against a family's quota: pending/running instances of that family and market."""
    total = 0.0
    for inst in instances:
        itype = inst.get("InstanceType", "")
        if quota_family(itype) != family:
            continue
        if (inst.get("InstanceLifecycle") == "spot") != spot:
            continue
        per = vcpus.get(itype)
        if not per:  # a type describe_instance_types did not know: its CPU options say
            cpu = inst.get("CpuOptions") or {}
            per = cpu.get("CoreCount", 0) * cpu.get("ThreadsPerCore", 1)
        total += per
    return total


def latest_per_zone(history: list[Mapping[str, Any]]) -> list[ZonePrice]:
    """The newest record per availability zone (the price in effect)."""
    best: dict[str, Mapping[str, Any]] = {}
    for rec in history:
        zone = rec.get("AvailabilityZone")
        if not zone or "SpotPrice" not in rec:
            continue
        old = best.get(zone)
        newer = rec.get("Timestamp") is not None and (old is None or old.get("Timestamp") is None
                                                     or rec["Timestamp"] > old["Timestamp"])
        if old is None or newer:
            best[zone] = rec
    return [ZonePrice(zone, float(r["SpotPrice"]), r.get("Timestamp")) for zone, r in sorted(best.items())]


def _error_text(err: Exception) -> tuple[str, bool]:
    """A short message and whether it was throttling."""
    from botocore.exceptions import ClientError

    if isinstance(err, ClientError):
        code = err.response.get("Error", {}).get("Code", "")
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        msg = err.response.get("Error", {}).get("Message", "") or str(err)
        return f"{code or status}: {msg}", code in THROTTLE_CODES or status in (429, 503)
    return f"{type(err).__name__}: {err}", False


class AwsMarket:
    """Reads the EC2 spot market and Service Quotas for AWS pools."""

    cloud: ClassVar[str] = "aws"

    def __init__(self, *, session: Any = None, endpoint_url: str | None = None,
                 service_endpoints: Mapping[str, str] | None = None, timeout_s: float = 10.0,
                 max_attempts: int = 3, clock: Callable[[], datetime] = utcnow) -> None:
        """`endpoint_url` points every service at one endpoint (moto's server in tests);
        `service_endpoints` overrides it per service name (e.g. {"service-quotas": url})."""
        import boto3

        self.session = session if session is not None else boto3.session.Session()
        self.endpoint_url = endpoint_url
        self.service_endpoints = dict(service_endpoints or {})
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.clock = clock
        self._clients: dict[tuple[str, str], Any] = {}
        self._vcpus: dict[str, int] = {}
        self.placement_scores_unavailable: str | None = None

    def _client(self, service: str, region: str) -> Any:
        key = (service, region)
        if key not in self._clients:
            from botocore.config import Config

            config = Config(connect_timeout=self.timeout_s, read_timeout=self.timeout_s,
                            retries={"mode": "standard", "total_max_attempts": self.max_attempts})
            self._clients[key] = self.session.client(
                service, region_name=region, config=config,
                endpoint_url=self.service_endpoints.get(service, self.endpoint_url))
        return self._clients[key]

    def _check_credentials(self) -> None:
        if self.session.get_credentials() is None:
            raise CredentialsMissing("aws: no credentials (env, shared file, role) found")

    def view(self, pool: Pool) -> MarketView:
        if not pool.instance_type:
            raise CloudCallFailed(f"aws pool {pool.name} has no instance_type")
        self._check_credentials()
        now = self.clock()
        notes: list[str] = []
        ec2 = self._client("ec2", pool.region)
        itype = pool.instance_type
        try:
            prices = self.spot_prices(ec2, itype, now) if pool.spot else []
            vcpus = self.vcpus_of(ec2, [itype]).get(itype)
        except Exception as err:
            text, throttled = _error_text(err)
            raise CloudCallFailed(f"aws {pool.region}: {text}", throttled=throttled) from err
        # zones with a spot price; () = the type has no spot offer in the region (no capacity)
        zones = tuple(p.zone for p in prices) if pool.spot else None
        if pool.spot and not prices:
            notes.append(f"no spot offer for {itype} in {pool.region}")
        score = self.placement_score(ec2, itype, pool.region, notes) if pool.spot else None
        headroom = self.quota_headroom(pool, vcpus or pool.cpus_per_node, notes)
        return MarketView(pool=pool.name, cloud="aws", region=pool.region, observed_at=now, source="aws-api",
                          zones=zones, spot_prices=tuple(prices), quota_headroom_nodes=headroom,
                          placement_score=score, notes=tuple(notes))

    # calls ---------------------------------------------------------------------------------------

    def spot_prices(self, ec2: Any, instance_type: str, now: datetime) -> list[ZonePrice]:
        history: list[Mapping[str, Any]] = []
        pages = ec2.get_paginator("describe_spot_price_history").paginate(
            InstanceTypes=[instance_type], ProductDescriptions=PRODUCT_DESCRIPTIONS, StartTime=now)
        for page in pages:
            history += page.get("SpotPriceHistory", [])
        return latest_per_zone(history)

    def vcpus_of(self, ec2: Any, types: list[str]) -> dict[str, int]:
        missing = [t for t in types if t not in self._vcpus]
        if missing:
            for it in ec2.describe_instance_types(InstanceTypes=missing).get("InstanceTypes", []):
                self._vcpus[it["InstanceType"]] = int(it.get("VCpuInfo", {}).get("DefaultVCpus", 0))
        return {t: self._vcpus[t] for t in types if t in self._vcpus}

    def placement_score(self, ec2: Any, instance_type: str, region: str, notes: list[str]) -> int | None:
        if self.placement_scores_unavailable is not None:
            notes.append(f"spot placement score unavailable ({self.placement_scores_unavailable})")
            return None
        try:
            resp = ec2.get_spot_placement_scores(InstanceTypes=[instance_type], TargetCapacity=1,
                                                 TargetCapacityUnitType="units", SingleAvailabilityZone=False,
                                                 RegionNames=[region])
        except Exception as err:  # not implemented by the endpoint, no permission, …
            from botocore.parsers import ResponseParserError

            text, throttled = _error_text(err)
            if isinstance(err, ResponseParserError):  # e.g. moto's server: an HTML 500 page, not an AWS error
                text = "GetSpotPlacementScores not implemented by this endpoint (it answered a non-AWS error page)"
            if not throttled:
                self.placement_scores_unavailable = text.splitlines()[0][:160]
            notes.append(f"spot placement score unavailable ({text.splitlines()[0][:160]})")
            log.info("aws: spot placement scores unavailable: %s", text)
            return None
        scores = [int(s["Score"]) for s in resp.get("SpotPlacementScores", []) if s.get("Region") in (region, None)]
        return max(scores) if scores else None

    def quota_headroom(self, pool: Pool, vcpus_per_node: int, notes: list[str]) -> int | None:
        itype = pool.instance_type or ""
        code = quota_code(itype, pool.spot)
        family = quota_family(itype)
        if code is None or family is None:
            notes.append(f"no GPU quota family for {itype}")
            return None
        try:
            sq = self._client("service-quotas", pool.region)
            limit = float(sq.get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"])
        except Exception as err:
            text, _ = _error_text(err)
            notes.append(f"quota {code} unknown ({text.splitlines()[0][:160]})")
            return None
        try:
            ec2 = self._client("ec2", pool.region)
            instances: list[Mapping[str, Any]] = []
            pages = ec2.get_paginator("describe_instances").paginate(
                Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}])
            for page in pages:
                for res in page.get("Reservations", []):
                    instances += res.get("Instances", [])
            types = sorted({i.get("InstanceType", "") for i in instances if quota_family(i.get("InstanceType", ""))})
            vcpus = self.vcpus_of(ec2, types) if types else {}
            used = used_vcpus(instances, family, pool.spot, vcpus)
        except Exception as err:
            text, _ = _error_text(err)
            notes.append(f"quota {code} usage unknown ({text.splitlines()[0][:160]})")
            return None
        headroom = headroom_nodes(limit, used, vcpus_per_node)
        notes.append(f"quota {code}: {used:g} of {limit:g} vCPUs used")
        return headroom


# --- the cloud ------------------------------------------------------------------------------------


class AwsSettings(CloudSettings):
    """`clouds.aws` (the seed's `aws_enabled`, `aws_region`, `aws_instance_type`, `aws_spot_max_price`, …)."""

    enabled: bool = Field(True, description="burst to the AWS spot pool")
    region: str = Field("us-east-1", description="AWS region of the AWS spot pool")
    instance_type: str = Field("p4d.24xlarge",
        description="EC2 instance type of the AWS spot pool (8 GPUs per node for p4d.24xlarge)")
    spot_max_price: float | None = Field(12.0, gt=0, description="USD per node-hour")
    max_nodes: int = Field(4, ge=0, description="most nodes of the AWS spot pool")
    endpoint_url: str | None = Field(None, description="API endpoint override (emulators); default: AWS's")


@register
class Aws(Cloud):
    name = "aws"
    order = 10
    title = "AWS"
    Settings = AwsSettings
    pool_name = "aws-spot-a100"
    startup_s = 180.0
    node_memory_gib = 1152
    notice_s = 120.0  # the spot instance action's two minutes
    metadata_endpoint = "http://169.254.169.254"
    metadata_endpoint_env = "AWS_EC2_METADATA_SERVICE_ENDPOINT"  # botocore's own override

    def spot_scheduling(self, pool: Pool, selector: dict[str, str], tolerations: list[dict[str, str]]) -> None:
        selector["karpenter.sh/capacity-type"] = "spot" if pool.spot else "on-demand"

    def market(self, settings: Any, clouds: CloudsSettings, clock: Callable[[], datetime]) -> AwsMarket:
        return AwsMarket(endpoint_url=settings.endpoint_url, timeout_s=clouds.api_timeout_s, clock=clock)

    def notice_source_class(self) -> type[NoticeSource]:
        return AwsImds
