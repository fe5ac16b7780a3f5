"""The entry point: ``ChainClient(url)`` connects, describes the chain, and hands out the two sides.

Why a facade: the CLI, the provider head and the demo all need the same three
things (a connection, a reader, a signer-bound side) wired the same way; one
constructor keeps them from drifting apart.
"""

from __future__ import annotations

from collections.abc import Sequence

from etrid_ray.blobs import BlobStore
from etrid_ray.chain.connection import Connection, RetryPolicy
from etrid_ray.chain.consumer import ConsumerClient
from etrid_ray.chain.keys import Signer
from etrid_ray.chain.models import AccountBalance, ChainInfo
from etrid_ray.chain.provider import ProviderClient
from etrid_ray.chain.reader import ChainReader
from etrid_ray.chain.submit import Call


class ChainClient:
    def __init__(self, url: str, *, retry: RetryPolicy | None = None, timeout: float = 60.0) -> None:
        self.conn = Connection(url, retry=retry, timeout=timeout)
        self.reader = ChainReader(self.conn)

    @property
    def url(self) -> str:
        return self.conn.url

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> ChainClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def info(self) -> ChainInfo:
        """Chain name, runtime, best and finalized blocks, token, pallets."""
        props = self.conn.rpc("system_properties") or {}
        version = self.conn.rpc("state_getRuntimeVersion") or {}
        best_hash = self.conn.block_hash()
        best = int(self.conn.rpc("chain_getHeader", [best_hash])["number"], 16)

        def first(v: object, default: object) -> object:
            return v[0] if isinstance(v, list) and v else (default if v is None else v)

        return ChainInfo(
            url=self.url,
            chain=str(self.conn.rpc("system_chain")),
            spec_name=str(version.get("specName", "")),
            spec_version=int(version.get("specVersion", 0)),
            best_number=best,
            best_hash=best_hash,
            finalized_number=self.conn.finalized_number(),
            token_symbol=str(first(props.get("tokenSymbol"), "")),
            token_decimals=int(first(props.get("tokenDecimals"), 0)),  # type: ignore[arg-type]
            ss58_format=int(props.get("ss58Format", 42)),
            pallets=self.conn.metadata.pallet_names(),
        )

    def balance(self, address: str) -> AccountBalance:
        return self.reader.balance(address)

    def provider(self, signer: Signer) -> ProviderClient:
        return ProviderClient(self.conn, signer)

    def consumer(self, signer: Signer, blobs: BlobStore | None = None) -> ConsumerClient:
        return ConsumerClient(self.conn, signer, blobs)

    def fund(self, payer: Signer, addresses: Sequence[str], planck: int) -> None:
        """`planck` from `payer` to each of `addresses`, in batches (a demo's or a bench's accounts, from Alice)."""
        self.consumer(payer).submitter.batch(
            [Call("Balances", "transfer_keep_alive", {"dest": a, "value": planck}) for a in addresses])
