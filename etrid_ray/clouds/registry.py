"""The cloud registry: one class per cloud, holding every fact about that cloud in one place.

A cloud (`Cloud` subclass, registered with `@register`) owns:

- `Settings`: its section of the config (`clouds.<name>`: region, instance type, spot max price, …,
  with their defaults and descriptions) and `flat_keys`, the seed's flat names for them
  (`aws_region`, `gcp_machine_type`, …);
- the pools it contributes (`pools`), its node startup time (`startup_s`), node shape and pool name;
- its spot notice: the documented length (`notice_s`), the metadata endpoint and the SDK's override
  variable, and the `NoticeSource` the spot-watch sidecar polls (`notice_source`);
- the KubeRay scheduling of its pods (`scheduling`: nodeSelector and tolerations);
- its live market reader (`market`: prices, quotas, capacity).

Pools, the KubeRay render, the simulator, the market feed, spot-watch and the config loop over
`clouds()` instead of naming clouds. Adding a cloud is one module in `etrid_ray/clouds/` holding one
registered class (and its tests): every module of this package is imported when the registry is first
read, and the order of `clouds()` is each class's `order`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from etrid_ray import pools
from etrid_ray.pools import Pool

if TYPE_CHECKING:  # the config sits above the clouds and hands them its sections; only its types are named here
    from etrid_ray.clouds.base import CloudMarket
    from etrid_ray.clouds.interruptions.sources import NoticeSource
    from etrid_ray.config import CloudsSettings, ProviderConfig

DEFAULT_NOTICE_S = 30.0  # a cloud that documents no notice length: assume the shortest the big three give
POOL_LABEL = "etrid.ai/pool"  # the node label a local GPU machine carries (set when joining it to the cluster)
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
# modules of this package that hold no cloud (everything else is imported to register its cloud)
_INFRASTRUCTURE = {"base", "feed", "registry", "report"}


class CloudSettings(BaseModel):
    """A cloud's section of the config. A cloud whose spot pool `Cloud.spot_pool` builds declares `enabled`,
    `region`, `instance_type` (a field, or a property over the cloud's own word for it: GCP's `machine_type`,
    Azure's `vm_size`), `spot_max_price` (USD per node-hour) and `max_nodes`, in the order its users read them."""

    model_config = ConfigDict(extra="forbid")

    ondemand_max_nodes: int = Field(0, ge=0, description="most nodes of this cloud's on-demand fallback pool (same "
                                    "instance type and region as its spot pool, priced at the catalog's on-demand "
                                    "price): it gets nodes only while the spot pool cannot launch any (no node came "
                                    "within its startup time) and only for jobs that pay its price; 0: no such pool")


class Cloud:
    """One cloud's facts. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str]
    order: ClassVar[int] = 100  # position in clouds(): pools are listed (and ties broken) in this order
    is_cloud: ClassVar[bool] = True  # False: the provider's own machines (no spot market, no bill per node)
    title: ClassVar[str] = ""  # how people name it ("AWS")
    Settings: ClassVar[type[BaseModel]] = CloudSettings
    flat_keys: ClassVar[dict[str, str]] = {}  # settings field → the seed's flat key, where not `<name>_<field>`
    env_aliases: ClassVar[dict[str, str]] = {}  # settings field → another env var it is read from (the SDK's name)
    # its spot pool
    pool_name: ClassVar[str] = ""
    startup_s: ClassVar[float] = 0.0  # time from request to a node that runs tasks
    node_cpus: ClassVar[int] = 96
    node_memory_gib: ClassVar[int] = 1152
    # spot interruption notices
    notice_s: ClassVar[float] = DEFAULT_NOTICE_S  # documented notice length, applied when a notice carries no time
    metadata_endpoint: ClassVar[str | None] = None  # the real metadata address (None: no notice endpoint)
    metadata_endpoint_env: ClassVar[str | None] = None  # the SDK's own override variable for it

    # --- config ---------------------------------------------------------------------------------

    @classmethod
    def flat_key(cls, field: str) -> str:
        """The seed's flat name of one of this cloud's settings (`aws_region`)."""
        return cls.flat_keys.get(field, f"{cls.name}_{field}")

    def settings(self, config: ProviderConfig) -> Any:
        """This cloud's settings in a config (its `clouds.<name>` section)."""
        return config.clouds.of(self.name)

    # --- pools ----------------------------------------------------------------------------------

    def pools(self, settings: Any, config: ProviderConfig) -> list[Pool]:
        """The pools this cloud contributes: its spot pool when enabled, and its on-demand fallback pool when
        `ondemand_max_nodes` allows one."""
        if not getattr(settings, "enabled", False):
            return []
        spot = self.spot_pool(settings)
        fallback = self.ondemand_pool(spot, getattr(settings, "ondemand_max_nodes", 0))
        return [spot] if fallback is None else [spot, fallback]

    def spot_pool(self, settings: Any) -> Pool:
        return Pool(name=self.pool_name, kind=self.name, instance_type=getattr(settings, "instance_type", None),
                    region=settings.region, max_spot_price=settings.spot_max_price, max_nodes=settings.max_nodes,
                    startup_s=self.startup_s, memory_gib=self.node_memory_gib, cpus_per_node=self.node_cpus)

    def ondemand_pool(self, spot: Pool, max_nodes: int) -> Pool | None:
        """The on-demand twin of a spot pool (None when `max_nodes` is 0): the same machines, priced at the
        on-demand rate (`PriceCatalog.quote` reads `spot=False`), no spot max price (it is no spot market). Why a
        pool of its own: it is a separate node group (KubeRay worker group, its own capacity type), and placement
        prices it apart; `scaling.capacity` lets it grow only while the spot pool cannot launch."""
        if max_nodes <= 0:
            return None
        name = ondemand_name(spot.name)
        return spot.model_copy(update={"name": name, "spot": False, "max_spot_price": None, "max_nodes": max_nodes,
                                       "min_nodes": 0})

    # --- KubeRay --------------------------------------------------------------------------------

    def scheduling(self, pool: Pool) -> tuple[dict[str, str], list[dict[str, str]]]:
        """nodeSelector and tolerations that put the pool's pods on its node pool: the instance type and region
        (well-known labels every managed Kubernetes sets), then the cloud's own spot labels and taints."""
        selector: dict[str, str] = {}
        if pool.instance_type:
            selector["node.kubernetes.io/instance-type"] = pool.instance_type
        selector["topology.kubernetes.io/region"] = pool.region
        tolerations = [dict(GPU_TOLERATION)]
        self.spot_scheduling(pool, selector, tolerations)
        return selector, tolerations

    def spot_scheduling(self, pool: Pool, selector: dict[str, str], tolerations: list[dict[str, str]]) -> None:
        """The cloud's own labels and taints (capacity type, spot node pools); none by default."""

    # --- market and notices ---------------------------------------------------------------------

    def market(self, settings: Any, clouds: CloudsSettings, clock: Callable[[], datetime]) -> CloudMarket | None:
        """The live market reader (prices, quotas, capacity), pointed at the configured endpoints (`clouds` holds
        the API timeout); None: this cloud has no API reader (the shipped catalog prices it)."""
        return None

    def notice_source_class(self) -> type[NoticeSource] | None:
        """The class that polls this cloud's interruption notices on a node (None: no notice endpoint, so no
        spot-watch sidecar)."""
        return None

    def notice_source(self, endpoint: str | None = None, *, timeout_s: float | None = None) -> NoticeSource:
        cls = self.notice_source_class()
        if cls is None:
            raise ValueError(f"{self.name} has no interruption notice endpoint")
        kwargs = {} if timeout_s is None else {"timeout_s": timeout_s}
        return cls(endpoint, **kwargs)  # type: ignore[call-arg]

    def __repr__(self) -> str:
        return f"<cloud {self.name}>"


# --- the registry -------------------------------------------------------------------------------------------

_REGISTRY: dict[str, Cloud] = {}
_KINDS: dict[str, bool] = {}  # name -> is_cloud, in clouds() order: what `pools.kinds()` reads
_loaded = False
_version = 0  # bumped on every change (the config caches its alias table by it)
C = TypeVar("C", bound=type[Cloud])


def register(cls: C) -> C:
    """Class decorator: registers one instance of a `Cloud` under its `name` (a later class of the same name
    replaces it)."""
    if not getattr(cls, "name", ""):
        raise ValueError(f"{cls.__name__} has no name")
    _REGISTRY[cls.name] = cls()
    _sync()
    return cls


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)
    _sync()


@contextmanager
def registered(cls: type[Cloud]) -> Iterator[Cloud]:
    """Registers a cloud for the duration of a block (tests), restoring what was there."""
    _load()
    before = _REGISTRY.get(cls.name)
    register(cls)
    try:
        yield _REGISTRY[cls.name]
    finally:
        if before is None:
            unregister(cls.name)
        else:
            _REGISTRY[cls.name] = before
            _sync()


def version() -> int:
    _load()
    return _version


def _sync() -> None:
    global _version
    _version += 1
    _KINDS.clear()
    _KINDS.update((c.name, c.is_cloud) for c in sorted(_REGISTRY.values(), key=lambda c: (c.order, c.name)))


def kinds() -> dict[str, bool]:
    """Every registered cloud's name and whether it is a cloud (`Cloud.is_cloud`), in `clouds()` order."""
    _load()
    return _KINDS


def _load() -> None:
    """Imports every module of this package once: each registers its cloud."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    package = __name__.rpartition(".")[0]  # etrid_ray.clouds: this module's own package
    for info in sorted(pkgutil.iter_modules(importlib.import_module(package).__path__), key=lambda m: m.name):
        if not info.ispkg and info.name not in _INFRASTRUCTURE:
            importlib.import_module(f"{package}.{info.name}")


def ondemand_name(spot_pool: str) -> str:
    """The on-demand fallback pool's name: `aws-spot-a100` → `aws-ondemand-a100` (`-ondemand` appended when the
    name has no `spot` in it)."""
    return spot_pool.replace("spot", "ondemand", 1) if "spot" in spot_pool else f"{spot_pool}-ondemand"


def clouds() -> list[Cloud]:
    """Every registered cloud, in `order` (then name)."""
    _load()
    return sorted(_REGISTRY.values(), key=lambda c: (c.order, c.name))


def names() -> list[str]:
    return [c.name for c in clouds()]


def cloud(name: str) -> Cloud:
    """The cloud registered under `name`; KeyError names the known ones."""
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown cloud {name!r} (known: {', '.join(names())})") from None


def find(name: str) -> Cloud | None:
    _load()
    return _REGISTRY.get(name)


def notice_clouds() -> list[str]:
    """Clouds whose nodes have an interruption notice endpoint (`etrid-ray spot-watch --cloud`)."""
    return [c.name for c in clouds() if c.notice_source_class() is not None]


def notice_period(name: str) -> float:
    """The documented notice length of a cloud (DEFAULT_NOTICE_S for one not registered)."""
    found = find(name)
    return found.notice_s if found is not None else DEFAULT_NOTICE_S


pools.use_kinds(kinds)  # pools (below the clouds) validate a kind and tell clouds from own machines through it
