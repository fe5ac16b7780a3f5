"""Job handlers that run inside Ray tasks, keyed by the manifest's `handler` name.

Nothing outside this registry runs: the handler name in a stranger's manifest
selects one of these functions, never an import path or a command.
"""

from etrid_ray.workloads.registry import REGISTRY, UnknownHandler, Workload, WorkloadContext, get_workload

__all__ = ["REGISTRY", "UnknownHandler", "Workload", "WorkloadContext", "get_workload"]
