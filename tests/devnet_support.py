"""Helpers for the devnet suites: plain substrate-interface, as any external client would use it.

Nothing here goes through `etrid_ray.chain`; the point of these suites is that a stock client
drives the devnet by the Etrid names alone.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any

from scalecodec.utils.ss58 import ss58_encode
from substrateinterface import ExtrinsicReceipt, Keypair, SubstrateInterface

EDSC = 10**18
MIN_STAKE = 100 * EDSC
PLATFORM_FEE_BPS = 500
TREASURY = "0x" + (b"modlpy/trsry" + b"\x00" * 20).hex()
TREASURY_ADDRESS = ss58_encode(TREASURY, 42)
DEV_NAMES = ("Alice", "Bob", "Charlie", "Dave", "Eve", "Ferdie")
SPECS = {"model": "NVIDIA A100-SXM4-80GB", "vram_gb": 80, "compute_units": 108, "clock_speed_mhz": 1410,
         "tdp_watts": 400}
ATTESTATION = {"tpm_quote": "0x" + "ab" * 64, "benchmark_score": 19_500, "timestamp": 1_700_000_000}
INPUT_HASH = "0x" + "11" * 32
RESULT_HASH = "0x" + "22" * 32


def raw(value: str) -> bytes:
    """A `Vec<u8>` as scalecodec decodes it (text when the bytes are UTF-8, else 0x-hex) back to bytes."""
    if value.startswith("0x"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            pass
    return value.encode()


def key(name: str) -> Keypair:
    return Keypair.create_from_uri(f"//{name}")


def connect(url: str) -> SubstrateInterface:
    return SubstrateInterface(url=url, ss58_format=42)


def submit(s: SubstrateInterface, signer: Keypair, module: str, function: str,
           params: dict[str, Any] | None = None) -> ExtrinsicReceipt:
    """compose_call → create_signed_extrinsic → submit, waiting for inclusion (the stock client path)."""
    call = s.compose_call(module, function, params or {})
    receipt = s.submit_extrinsic(s.create_signed_extrinsic(call, signer), wait_for_inclusion=True)
    assert receipt.is_success is not None  # forces the receipt to load its events
    return receipt


def sudo(s: SubstrateInterface, module: str, function: str, params: dict[str, Any],
         signer: Keypair | None = None) -> ExtrinsicReceipt:
    inner = s.compose_call(module, function, params)
    return submit(s, signer or key("Alice"), "Sudo", "sudo", {"call": inner})


def events(receipt: ExtrinsicReceipt, module: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
    """The receipt's events as {module_id, event_id, attributes} dicts, optionally filtered."""
    out = []
    for record in receipt.triggered_events:
        ev = record.value
        if (module is None or ev["module_id"] == module) and (name is None or ev["event_id"] == name):
            out.append(ev)
    return out


def event_names(receipt: ExtrinsicReceipt) -> list[str]:
    return [f"{e['module_id']}.{e['event_id']}" for e in events(receipt)]


def the_event(receipt: ExtrinsicReceipt, module: str, name: str) -> dict[str, Any]:
    found = events(receipt, module, name)
    assert len(found) == 1, f"expected one {module}.{name}, got {event_names(receipt)}"
    return found[0]["attributes"]


def fee(receipt: ExtrinsicReceipt) -> int:
    """What the signer paid, from TransactionPayment.TransactionFeePaid.actual_fee."""
    return int(the_event(receipt, "TransactionPayment", "TransactionFeePaid")["actual_fee"])


def error_name(receipt: ExtrinsicReceipt) -> str | None:
    if receipt.is_success:
        return None
    return receipt.error_message["name"]


def sudo_error_name(s: SubstrateInterface, receipt: ExtrinsicReceipt) -> str | None:
    """The error of the call dispatched by Sudo.sudo (the sudo extrinsic itself succeeds)."""
    result = the_event(receipt, "Sudo", "Sudid")["sudo_result"]
    if "Ok" in result:
        return None
    err = result["Err"]
    if isinstance(err, str):
        return err
    module = err["Module"]
    return s.metadata.get_module_error(module_index=module["index"],
                                       error_index=int(module["error"][2:4], 16)).name


@dataclass(frozen=True)
class Balance:
    free: int
    reserved: int


def balance(s: SubstrateInterface, who: str) -> Balance:
    data = s.query("System", "Account", [who]).value["data"]
    return Balance(int(data["free"]), int(data["reserved"]))


def register_gpu(s: SubstrateInterface, provider: Keypair, stake: int = MIN_STAKE,
                 schedule: Any = "AlwaysOn") -> tuple[int, ExtrinsicReceipt]:
    receipt = submit(s, provider, "GpuRegistry", "register_gpu",
                     {"specs": SPECS, "attestation": ATTESTATION, "stake": stake, "schedule": schedule})
    assert receipt.is_success, receipt.error_message
    return int(the_event(receipt, "GpuRegistry", "GpuRegistered")["gpu_id"]), receipt


def job_params(payment: int, max_compute_time: int = 600, **overrides: Any) -> dict[str, Any]:
    params = {"model_id": 7, "model_type": "LLM", "input_hash": INPUT_HASH, "output_format": "json",
              "max_compute_time": max_compute_time, "payment": payment, "priority": "Standard"}
    params.update(overrides)
    return params


def submit_job(s: SubstrateInterface, submitter: Keypair, payment: int, max_compute_time: int = 600,
               **overrides: Any) -> tuple[int, ExtrinsicReceipt]:
    receipt = submit(s, submitter, "JobMarketplace", "submit_job", job_params(payment, max_compute_time, **overrides))
    assert receipt.is_success, receipt.error_message
    return int(the_event(receipt, "JobMarketplace", "JobSubmitted")["job_id"]), receipt


def job(s: SubstrateInterface, job_id: int) -> dict[str, Any] | None:
    return s.query("JobMarketplace", "Jobs", [job_id]).value


def gpu(s: SubstrateInterface, gpu_id: int) -> dict[str, Any] | None:
    return s.query("GpuRegistry", "GpuNodes", [gpu_id]).value


def fund(s: SubstrateInterface, accounts: list[Keypair], amount: int) -> None:
    """Alice endows fresh accounts in one Utility.batch_all."""
    calls = [s.compose_call("Balances", "transfer_keep_alive", {"dest": a.ss58_address, "value": amount})
             for a in accounts]
    receipt = submit(s, key("Alice"), "Utility", "batch_all", {"calls": calls})
    assert receipt.is_success, receipt.error_message


def block_number(s: SubstrateInterface) -> int:
    return int(s.get_block_header()["header"]["number"])


def http_rpc(http_url: str, payload: Any, timeout: float = 10.0) -> Any:
    """One JSON-RPC POST with urllib (no client library), as the seed README's curl does."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(http_url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())
