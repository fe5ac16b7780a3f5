"""The chain client for the Etrid AI-Compute pallets, on top of substrate-interface.

Every pallet, call and storage name is read from the node's metadata, so the
client works the same against ``etrid-ray devnet`` and a real Etrid node, and
degrades cleanly where a runtime lacks a devnet extension.

Modules, one job each: ``keys`` (secrets from env/file), ``connection``
(reconnect, RPC errors), ``metadata``/``codec`` (names and fast SCALE),
``nonce`` + ``submit`` (many extrinsics in flight, batches, receipts),
``reader`` (typed and bulk storage reads), ``events``, ``watch`` (the queue),
``provider`` and ``consumer`` (the two sides), ``client`` (the facade).
"""

from etrid_ray.chain.client import ChainClient
from etrid_ray.chain.connection import Connection, RetryPolicy
from etrid_ray.chain.consumer import ConsumerClient, SubmittedJob
from etrid_ray.chain.errors import (
    ChainConnectionError,
    ChainError,
    ConfigError,
    ExtrinsicFailed,
    InclusionTimeout,
    KeyLoadError,
    PalletError,
    RpcError,
    UnsupportedError,
)
from etrid_ray.chain.keys import Signer, dev_signer, load_signer
from etrid_ray.chain.models import (
    AccountBalance,
    ChainInfo,
    ComplianceConfig,
    GpuNode,
    GpuSpecs,
    GpuStatus,
    HardwareAttestation,
    Job,
    JobStatus,
    ModelType,
    Payment,
    Priority,
    Schedule,
    TeeAttestation,
)
from etrid_ray.chain.provider import ClaimOutcome, ProviderClient, truncate_utf8
from etrid_ray.chain.reader import ChainReader
from etrid_ray.chain.submit import Call, Receipt, Submitter
from etrid_ray.chain.units import format_edsc, from_planck, to_planck
from etrid_ray.chain.watch import QueueUpdate, QueueWatcher

__all__ = [
    "AccountBalance",
    "Call",
    "ChainClient",
    "ChainConnectionError",
    "ChainError",
    "ChainInfo",
    "ChainReader",
    "ClaimOutcome",
    "ComplianceConfig",
    "ConfigError",
    "Connection",
    "ConsumerClient",
    "ExtrinsicFailed",
    "GpuNode",
    "GpuSpecs",
    "GpuStatus",
    "HardwareAttestation",
    "InclusionTimeout",
    "Job",
    "JobStatus",
    "KeyLoadError",
    "ModelType",
    "PalletError",
    "Payment",
    "Priority",
    "ProviderClient",
    "QueueUpdate",
    "QueueWatcher",
    "Receipt",
    "RetryPolicy",
    "RpcError",
    "Schedule",
    "Signer",
    "SubmittedJob",
    "Submitter",
    "TeeAttestation",
    "UnsupportedError",
    "dev_signer",
    "format_edsc",
    "from_planck",
    "load_signer",
    "to_planck",
    "truncate_utf8",
]
