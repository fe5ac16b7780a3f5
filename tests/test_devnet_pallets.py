"""Every call of the Etrid pallets, driven by plain substrate-interface against `etrid-ray devnet`.

Each test submits calls the way any external client would (compose_call, create_signed_extrinsic,
submit_extrinsic with wait_for_inclusion) and checks storage and events by their Etrid names.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from substrateinterface import SubstrateInterface

from etrid_ray.devnet.process import DevnetProcess
from tests.devnet_support import (
    ATTESTATION,
    EDSC,
    INPUT_HASH,
    MIN_STAKE,
    PLATFORM_FEE_BPS,
    RESULT_HASH,
    SPECS,
    TREASURY,
    balance,
    connect,
    error_name,
    event_names,
    events,
    fee,
    fund,
    gpu,
    job,
    key,
    raw,
    register_gpu,
    submit,
    submit_job,
    sudo,
    sudo_error_name,
    the_event,
)

PROVIDER, OTHER_PROVIDER, CONSUMER = key("PalletProvider"), key("PalletOtherProvider"), key("PalletConsumer")


@pytest.fixture(scope="module")
def s() -> Iterator[SubstrateInterface]:
    """A devnet of this module's own, with three freshly endowed accounts."""
    with DevnetProcess(block_time=0) as proc:
        substrate = connect(proc.url)
        fund(substrate, [PROVIDER, OTHER_PROVIDER, CONSUMER], 10_000 * EDSC)
        yield substrate
        substrate.close()


def now_secs(s: SubstrateInterface, block_hash: str) -> int:
    return int(s.query("Timestamp", "Now", block_hash=block_hash).value) // 1000


# metadata: the Etrid names and indices --------------------------------------------------------------

ETRID_CALLS = {
    "GpuRegistry": ["register_gpu", "unregister_gpu", "update_availability", "update_status", "report_heartbeat",
                    "slash_provider", "update_reputation"],
    "JobMarketplace": ["submit_job", "assign_job", "submit_result", "confirm_job", "report_failure", "dispute_job",
                       "cancel_job"],
}


def test_metadata_carries_the_etrid_call_indices_storage_and_constants(s: SubstrateInterface) -> None:
    for pallet, names in ETRID_CALLS.items():
        for index, name in enumerate(names):
            fn = s.get_metadata_call_function(pallet, name)
            assert fn is not None, f"{pallet}.{name} missing"
            assert fn.value["index"] == index, f"{pallet}.{name} has index {fn.value['index']}, Etrid says {index}"
    assert s.get_metadata_call_function("JobMarketplace", "claim_job") is not None  # devnet extensions
    assert s.get_metadata_call_function("GpuRegistry", "report_telemetry") is not None
    storage = {
        "GpuRegistry": {"GpuNodes", "NextGpuId", "ProviderGpus", "ActiveGpuCount", "GpuTelemetry"},
        "JobMarketplace": {"Jobs", "NextJobId", "UserJobs", "GpuJobs", "PendingJobs", "TotalJobs", "TotalVolume"},
        "ConfidentialCompute": {"TeeAttestations"},
        "Compliance": {"ComplianceConfigs"},
    }
    for pallet, names in storage.items():
        declared = {entry.value["name"] for entry in s.metadata.get_metadata_pallet(pallet).storage}
        assert names <= declared, f"{pallet} lacks {names - declared}"
    assert s.get_constant("GpuRegistry", "MinimumStake").value == MIN_STAKE
    assert s.get_constant("JobMarketplace", "PlatformFeeBps").value == PLATFORM_FEE_BPS
    assert s.get_constant("JobMarketplace", "TimeoutGraceSecs").value == 30
    assert s.properties["tokenDecimals"] == 18 and s.ss58_format == 42


# GpuRegistry ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gpu_id(s: SubstrateInterface) -> int:
    """PROVIDER's GPU, registered with 150 ËDSC of stake (checked in the first test)."""
    gid, _ = register_gpu(s, PROVIDER, stake=150 * EDSC)
    return gid


def test_register_gpu_reserves_the_stake_and_records_the_node(s: SubstrateInterface) -> None:
    before = balance(s, PROVIDER.ss58_address)
    active_before = s.query("GpuRegistry", "ActiveGpuCount").value
    next_id = s.query("GpuRegistry", "NextGpuId").value
    schedule = {"Custom": "0x" + "ff" * 21}
    gid, receipt = register_gpu(s, PROVIDER, stake=MIN_STAKE, schedule=schedule)

    assert gid == next_id
    assert the_event(receipt, "GpuRegistry", "GpuRegistered") == {
        "gpu_id": gid, "provider": PROVIDER.ss58_address, "stake": MIN_STAKE}
    assert the_event(receipt, "Balances", "Reserved") == {"who": PROVIDER.ss58_address, "amount": MIN_STAKE}
    after = balance(s, PROVIDER.ss58_address)
    assert after.reserved == before.reserved + MIN_STAKE
    assert after.free == before.free - MIN_STAKE - fee(receipt)

    node = gpu(s, gid)
    registered = now_secs(s, receipt.block_hash)
    assert node["provider"] == PROVIDER.ss58_address
    assert node["specs"] == SPECS
    assert node["attestation"]["benchmark_score"] == ATTESTATION["benchmark_score"]
    assert node["stake"] == MIN_STAKE and node["status"] == "Active"
    assert node["reputation"] == {"jobs_completed": 0, "jobs_failed": 0, "uptime_bps": 10_000, "rating": 0,
                                  "rating_count": 0}
    assert node["schedule"] == schedule
    assert node["registered_at"] == node["last_heartbeat"] == registered
    assert s.query("GpuRegistry", "NextGpuId").value == gid + 1
    assert gid in s.query("GpuRegistry", "ProviderGpus", [PROVIDER.ss58_address]).value
    assert s.query("GpuRegistry", "ActiveGpuCount").value == active_before + 1


def test_update_availability_replaces_the_schedule(s: SubstrateInterface, gpu_id: int) -> None:
    # a 168-bit week mask; 0xf0 bytes are not UTF-8, so scalecodec reads them back as 0x-hex
    for schedule in ("BusinessHours", {"Custom": "0x" + "f0" * 21}, "AlwaysOn"):
        receipt = submit(s, PROVIDER, "GpuRegistry", "update_availability", {"gpu_id": gpu_id, "schedule": schedule})
        assert receipt.is_success, receipt.error_message
        assert the_event(receipt, "GpuRegistry", "AvailabilityUpdated") == {"gpu_id": gpu_id}
        assert gpu(s, gpu_id)["schedule"] == schedule


def test_update_status_pauses_and_resumes_and_counts_active_gpus(s: SubstrateInterface, gpu_id: int) -> None:
    active = s.query("GpuRegistry", "ActiveGpuCount").value
    receipt = submit(s, PROVIDER, "GpuRegistry", "update_status", {"gpu_id": gpu_id, "status": "Paused"})
    assert the_event(receipt, "GpuRegistry", "GpuStatusUpdated") == {"gpu_id": gpu_id, "status": "Paused"}
    assert gpu(s, gpu_id)["status"] == "Paused"
    assert s.query("GpuRegistry", "ActiveGpuCount").value == active - 1

    receipt = submit(s, PROVIDER, "GpuRegistry", "update_status", {"gpu_id": gpu_id, "status": "Active"})
    assert the_event(receipt, "GpuRegistry", "GpuStatusUpdated") == {"gpu_id": gpu_id, "status": "Active"}
    assert s.query("GpuRegistry", "ActiveGpuCount").value == active

    stranger = submit(s, OTHER_PROVIDER, "GpuRegistry", "update_status", {"gpu_id": gpu_id, "status": "Offline"})
    assert error_name(stranger) == "NotGpuOwner"
    assert gpu(s, gpu_id)["status"] == "Active"


def test_report_heartbeat_stamps_the_block_time(s: SubstrateInterface, gpu_id: int) -> None:
    receipt = submit(s, PROVIDER, "GpuRegistry", "report_heartbeat", {"gpu_id": gpu_id})
    assert receipt.is_success, receipt.error_message
    assert gpu(s, gpu_id)["last_heartbeat"] == now_secs(s, receipt.block_hash)
    assert error_name(submit(s, OTHER_PROVIDER, "GpuRegistry", "report_heartbeat", {"gpu_id": gpu_id})) == \
        "NotGpuOwner"


def test_report_telemetry_stores_utilization_and_earnings(s: SubstrateInterface, gpu_id: int) -> None:
    receipt = submit(s, PROVIDER, "GpuRegistry", "report_telemetry",
                     {"gpu_id": gpu_id, "utilization_bps": 8_250, "jobs_completed": 12, "earnings": 42 * EDSC})
    assert receipt.is_success, receipt.error_message
    assert the_event(receipt, "GpuRegistry", "TelemetryReported") == {"gpu_id": gpu_id, "utilization_bps": 8_250}
    assert s.query("GpuRegistry", "GpuTelemetry", [gpu_id]).value == {
        "utilization_bps": 8_250, "jobs_completed": 12, "earnings": 42 * EDSC,
        "reported_at": now_secs(s, receipt.block_hash)}
    too_busy = submit(s, PROVIDER, "GpuRegistry", "report_telemetry",
                      {"gpu_id": gpu_id, "utilization_bps": 10_001, "jobs_completed": 12, "earnings": 0})
    assert error_name(too_busy) == "Overflow"


def test_update_reputation_is_root_only_and_accumulates(s: SubstrateInterface, gpu_id: int) -> None:
    before = gpu(s, gpu_id)["reputation"]
    receipt = sudo(s, "GpuRegistry", "update_reputation", {"gpu_id": gpu_id, "job_success": True, "rating": 5})
    assert sudo_error_name(s, receipt) is None
    expected = {**before, "jobs_completed": before["jobs_completed"] + 1, "rating": before["rating"] + 5,
                "rating_count": before["rating_count"] + 1}
    assert the_event(receipt, "GpuRegistry", "ReputationUpdated") == {"gpu_id": gpu_id, "reputation": expected}

    receipt = sudo(s, "GpuRegistry", "update_reputation", {"gpu_id": gpu_id, "job_success": False, "rating": None})
    expected = {**expected, "jobs_failed": expected["jobs_failed"] + 1}
    assert gpu(s, gpu_id)["reputation"] == expected

    signed = submit(s, PROVIDER, "GpuRegistry", "update_reputation",
                    {"gpu_id": gpu_id, "job_success": True, "rating": 5})
    assert error_name(signed) == "BadOrigin"
    assert gpu(s, gpu_id)["reputation"] == expected


def test_slash_provider_moves_ten_percent_of_the_stake_to_the_treasury(s: SubstrateInterface) -> None:
    victim, _ = register_gpu(s, OTHER_PROVIDER, stake=200 * EDSC)
    provider_before, treasury_before = balance(s, OTHER_PROVIDER.ss58_address), balance(s, TREASURY)

    assert error_name(submit(s, OTHER_PROVIDER, "GpuRegistry", "slash_provider", {"gpu_id": victim})) == "BadOrigin"
    assert gpu(s, victim)["status"] == "Active"

    provider_before = balance(s, OTHER_PROVIDER.ss58_address)
    treasury_before = balance(s, TREASURY)
    receipt = sudo(s, "GpuRegistry", "slash_provider", {"gpu_id": victim})
    assert sudo_error_name(s, receipt) is None
    assert the_event(receipt, "GpuRegistry", "ProviderSlashed") == {"gpu_id": victim, "slash_amount": 20 * EDSC}
    node = gpu(s, victim)
    assert node["status"] == "Slashed" and node["stake"] == 180 * EDSC
    assert balance(s, OTHER_PROVIDER.ss58_address) == type(provider_before)(
        provider_before.free, provider_before.reserved - 20 * EDSC)
    assert balance(s, TREASURY).free == treasury_before.free + 20 * EDSC + fee(receipt)
    # a slashed GPU cannot set itself Active again
    back = submit(s, OTHER_PROVIDER, "GpuRegistry", "update_status", {"gpu_id": victim, "status": "Active"})
    assert error_name(back) == "GpuNotActive"


def test_unregister_gpu_returns_the_stake_and_forgets_the_node(s: SubstrateInterface) -> None:
    gid, _ = register_gpu(s, PROVIDER, stake=120 * EDSC)
    submit(s, PROVIDER, "GpuRegistry", "report_telemetry",
           {"gpu_id": gid, "utilization_bps": 1, "jobs_completed": 0, "earnings": 0})
    assert error_name(submit(s, OTHER_PROVIDER, "GpuRegistry", "unregister_gpu", {"gpu_id": gid})) == "NotGpuOwner"
    before = balance(s, PROVIDER.ss58_address)
    active = s.query("GpuRegistry", "ActiveGpuCount").value

    receipt = submit(s, PROVIDER, "GpuRegistry", "unregister_gpu", {"gpu_id": gid})
    assert the_event(receipt, "GpuRegistry", "GpuUnregistered") == {"gpu_id": gid, "provider": PROVIDER.ss58_address}
    assert the_event(receipt, "Balances", "Unreserved") == {"who": PROVIDER.ss58_address, "amount": 120 * EDSC}
    assert balance(s, PROVIDER.ss58_address) == type(before)(before.free + 120 * EDSC - fee(receipt),
                                                             before.reserved - 120 * EDSC)
    assert gpu(s, gid) is None
    assert s.query("GpuRegistry", "GpuTelemetry", [gid]).value is None
    assert gid not in s.query("GpuRegistry", "ProviderGpus", [PROVIDER.ss58_address]).value
    assert s.query("GpuRegistry", "ActiveGpuCount").value == active - 1
    again = submit(s, PROVIDER, "GpuRegistry", "unregister_gpu", {"gpu_id": gid})
    assert error_name(again) == "GpuNotFound"


# JobMarketplace -------------------------------------------------------------------------------------

def test_submit_job_escrows_the_payment_and_queues_the_job(s: SubstrateInterface) -> None:
    payment = 3 * EDSC + 7
    before = balance(s, CONSUMER.ss58_address)
    totals = (s.query("JobMarketplace", "TotalJobs").value, s.query("JobMarketplace", "TotalVolume").value)
    next_id = s.query("JobMarketplace", "NextJobId").value

    jid, receipt = submit_job(s, CONSUMER, payment, max_compute_time=900, model_id=42, model_type="ImageGen",
                              output_format="png", priority="Premium")
    assert jid == next_id
    assert the_event(receipt, "JobMarketplace", "JobSubmitted") == {
        "job_id": jid, "submitter": CONSUMER.ss58_address, "payment": payment}
    assert job(s, jid) == {
        "submitter": CONSUMER.ss58_address, "model_id": 42, "model_type": "ImageGen", "input_hash": INPUT_HASH,
        "output_format": "png", "max_compute_time": 900, "payment": payment, "priority": "Premium",
        "status": "Pending", "assigned_gpu": None, "result_hash": None,
        "submitted_at": now_secs(s, receipt.block_hash), "completed_at": None}
    assert s.query("JobMarketplace", "PendingJobs").value[-1] == jid
    assert jid in s.query("JobMarketplace", "UserJobs", [CONSUMER.ss58_address]).value
    assert s.query("JobMarketplace", "NextJobId").value == jid + 1
    assert s.query("JobMarketplace", "TotalJobs").value == totals[0] + 1
    assert s.query("JobMarketplace", "TotalVolume").value == totals[1] + payment
    after = balance(s, CONSUMER.ss58_address)
    assert after == type(before)(before.free - payment - fee(receipt), before.reserved + payment)


def test_assign_job_via_sudo_moves_the_job_to_the_gpu(s: SubstrateInterface, gpu_id: int) -> None:
    jid, _ = submit_job(s, CONSUMER, EDSC)
    receipt = sudo(s, "JobMarketplace", "assign_job", {"job_id": jid, "gpu_id": gpu_id})
    assert sudo_error_name(s, receipt) is None
    assert the_event(receipt, "JobMarketplace", "JobAssigned") == {"job_id": jid, "gpu_id": gpu_id}
    assigned = job(s, jid)
    assert assigned["status"] == "Processing" and assigned["assigned_gpu"] == gpu_id
    assert jid not in s.query("JobMarketplace", "PendingJobs").value
    assert jid in s.query("JobMarketplace", "GpuJobs", [gpu_id]).value


def test_claim_submit_result_and_confirm_pay_the_provider(s: SubstrateInterface, gpu_id: int) -> None:
    payment = 20 * EDSC
    jid, _ = submit_job(s, CONSUMER, payment)
    claim = submit(s, PROVIDER, "JobMarketplace", "claim_job", {"job_id": jid, "gpu_id": gpu_id})
    assert the_event(claim, "JobMarketplace", "JobAssigned") == {"job_id": jid, "gpu_id": gpu_id}
    assert jid in s.query("JobMarketplace", "GpuJobs", [gpu_id]).value
    completed_before = gpu(s, gpu_id)["reputation"]["jobs_completed"]

    result = submit(s, PROVIDER, "JobMarketplace", "submit_result", {"job_id": jid, "result_hash": RESULT_HASH})
    assert the_event(result, "JobMarketplace", "JobCompleted") == {"job_id": jid, "result_hash": RESULT_HASH}
    done = job(s, jid)
    assert done["status"] == "Completed" and done["result_hash"] == RESULT_HASH
    assert done["completed_at"] == now_secs(s, result.block_hash)
    assert jid not in s.query("JobMarketplace", "GpuJobs", [gpu_id]).value
    assert gpu(s, gpu_id)["reputation"]["jobs_completed"] == completed_before + 1

    provider_before = balance(s, PROVIDER.ss58_address)
    confirm = submit(s, CONSUMER, "JobMarketplace", "confirm_job", {"job_id": jid})
    amount = payment - payment * PLATFORM_FEE_BPS // 10_000
    assert the_event(confirm, "JobMarketplace", "PaymentReleased") == {
        "job_id": jid, "provider": PROVIDER.ss58_address, "amount": amount}
    assert balance(s, PROVIDER.ss58_address).free == provider_before.free + amount
    again = submit(s, CONSUMER, "JobMarketplace", "confirm_job", {"job_id": jid})
    assert error_name(again) == "InvalidJobStatus"


def test_report_failure_fails_the_job_and_refunds_the_escrow(s: SubstrateInterface, gpu_id: int) -> None:
    payment = 5 * EDSC
    jid, _ = submit_job(s, CONSUMER, payment)
    submit(s, PROVIDER, "JobMarketplace", "claim_job", {"job_id": jid, "gpu_id": gpu_id})
    before = balance(s, CONSUMER.ss58_address)
    receipt = submit(s, PROVIDER, "JobMarketplace", "report_failure", {"job_id": jid, "reason": "CUDA out of memory"})
    assert the_event(receipt, "JobMarketplace", "JobFailed") == {"job_id": jid, "reason": "CUDA out of memory"}
    assert job(s, jid)["status"] == "Failed"
    assert balance(s, CONSUMER.ss58_address) == type(before)(before.free + payment, before.reserved - payment)


def test_dispute_job_holds_the_payment(s: SubstrateInterface, gpu_id: int) -> None:
    payment = 4 * EDSC
    jid, _ = submit_job(s, CONSUMER, payment)
    submit(s, PROVIDER, "JobMarketplace", "claim_job", {"job_id": jid, "gpu_id": gpu_id})
    submit(s, PROVIDER, "JobMarketplace", "submit_result", {"job_id": jid, "result_hash": RESULT_HASH})
    assert error_name(submit(s, PROVIDER, "JobMarketplace", "dispute_job", {"job_id": jid})) == "NotJobSubmitter"
    before = balance(s, CONSUMER.ss58_address)
    receipt = submit(s, CONSUMER, "JobMarketplace", "dispute_job", {"job_id": jid})
    assert the_event(receipt, "JobMarketplace", "JobDisputed") == {"job_id": jid}
    assert job(s, jid)["status"] == "Disputed"
    assert balance(s, CONSUMER.ss58_address).reserved == before.reserved  # still escrowed, nobody paid
    assert not events(receipt, "JobMarketplace", "PaymentReleased")
    assert error_name(submit(s, CONSUMER, "JobMarketplace", "confirm_job", {"job_id": jid})) == "InvalidJobStatus"


def test_cancel_job_unqueues_and_refunds_a_pending_job(s: SubstrateInterface) -> None:
    payment = 2 * EDSC
    jid, _ = submit_job(s, CONSUMER, payment)
    before = balance(s, CONSUMER.ss58_address)
    assert error_name(submit(s, PROVIDER, "JobMarketplace", "cancel_job", {"job_id": jid})) == "NotJobSubmitter"
    receipt = submit(s, CONSUMER, "JobMarketplace", "cancel_job", {"job_id": jid})
    assert the_event(receipt, "JobMarketplace", "JobCancelled") == {"job_id": jid}
    assert the_event(receipt, "Balances", "Unreserved") == {"who": CONSUMER.ss58_address, "amount": payment}
    assert job(s, jid)["status"] == "Cancelled"
    assert jid not in s.query("JobMarketplace", "PendingJobs").value
    assert balance(s, CONSUMER.ss58_address) == type(before)(before.free + payment - fee(receipt),
                                                             before.reserved - payment)


def test_submit_job_rejects_zero_payment_zero_time_and_oversized_fields(s: SubstrateInterface) -> None:
    assert error_name(submit(s, CONSUMER, "JobMarketplace", "submit_job",
                             {**_job(0), "payment": 0})) == "InsufficientPayment"
    assert error_name(submit(s, CONSUMER, "JobMarketplace", "submit_job",
                             {**_job(EDSC), "max_compute_time": 0})) == "InvalidComputeTime"
    with pytest.raises(Exception, match="1002|[Dd]ecode|bounded"):  # BoundedVec<u8, 32> overflows: undecodable
        submit(s, CONSUMER, "JobMarketplace", "submit_job", {**_job(EDSC), "output_format": "x" * 33})


def _job(payment: int) -> dict[str, object]:
    return {"model_id": 1, "model_type": "Custom", "input_hash": INPUT_HASH, "output_format": "bin",
            "max_compute_time": 60, "payment": payment, "priority": "Economy"}


# ConfidentialCompute and Compliance -----------------------------------------------------------------

def test_submit_attestation_stores_a_full_size_sev_snp_report(s: SubstrateInterface, gpu_id: int) -> None:
    attestation = {"tee_type": "AMDSEV", "quote": "0x" + "5a" * 1184, "mrenclave": "0x" + "e1" * 32,
                   "timestamp": 1_700_000_123}
    receipt = submit(s, PROVIDER, "ConfidentialCompute", "submit_attestation",
                     {"gpu_id": gpu_id, "attestation": attestation})
    assert receipt.is_success, receipt.error_message
    assert the_event(receipt, "ConfidentialCompute", "AttestationVerified") == {"gpu_id": gpu_id}
    stored = s.query("ConfidentialCompute", "TeeAttestations", [gpu_id]).value
    assert stored["tee_type"] == "AMDSEV" and stored["timestamp"] == 1_700_000_123
    assert raw(stored["quote"]) == b"\x5a" * 1184
    assert raw(stored["mrenclave"]) == b"\xe1" * 32
    stranger = submit(s, OTHER_PROVIDER, "ConfidentialCompute", "submit_attestation",
                      {"gpu_id": gpu_id, "attestation": attestation})
    assert error_name(stranger) == "NotGpuOwner"
    empty = submit(s, PROVIDER, "ConfidentialCompute", "submit_attestation",
                   {"gpu_id": gpu_id, "attestation": {**attestation, "quote": "0x"}})
    assert error_name(empty) == "InvalidAttestation"


def test_enable_and_disable_compliance(s: SubstrateInterface) -> None:
    receipt = submit(s, CONSUMER, "Compliance", "enable_compliance", {"template": "HIPAA", "data_residency": "US"})
    assert the_event(receipt, "Compliance", "ComplianceEnabled") == {"account": CONSUMER.ss58_address,
                                                                     "template": "HIPAA"}
    assert s.query("Compliance", "ComplianceConfigs", [CONSUMER.ss58_address]).value == {
        "account": CONSUMER.ss58_address, "template": "HIPAA", "data_residency": "US", "encryption_required": True,
        "audit_logs_required": True, "enabled_at": now_secs(s, receipt.block_hash)}

    receipt = submit(s, CONSUMER, "Compliance", "disable_compliance")
    assert the_event(receipt, "Compliance", "ComplianceDisabled") == {"account": CONSUMER.ss58_address}
    assert s.query("Compliance", "ComplianceConfigs", [CONSUMER.ss58_address]).value is None
    assert error_name(submit(s, CONSUMER, "Compliance", "disable_compliance")) == "NotEnabled"


# Balances and Utility -------------------------------------------------------------------------------

def test_transfer_keep_alive_moves_exactly_the_amount(s: SubstrateInterface) -> None:
    sender, dest = balance(s, CONSUMER.ss58_address), balance(s, OTHER_PROVIDER.ss58_address)
    amount = 123 * EDSC + 456
    receipt = submit(s, CONSUMER, "Balances", "transfer_keep_alive",
                     {"dest": OTHER_PROVIDER.ss58_address, "value": amount})
    assert the_event(receipt, "Balances", "Transfer") == {
        "from": CONSUMER.ss58_address, "to": OTHER_PROVIDER.ss58_address, "amount": amount}
    assert balance(s, CONSUMER.ss58_address).free == sender.free - amount - fee(receipt)
    assert balance(s, OTHER_PROVIDER.ss58_address).free == dest.free + amount
    # keep-alive refuses to empty the account
    everything = submit(s, CONSUMER, "Balances", "transfer_keep_alive",
                        {"dest": OTHER_PROVIDER.ss58_address, "value": balance(s, CONSUMER.ss58_address).free - 1})
    assert not everything.is_success
    assert balance(s, OTHER_PROVIDER.ss58_address).free == dest.free + amount


def test_utility_batch_stops_at_the_first_error_and_keeps_what_ran(s: SubstrateInterface) -> None:
    dest = key("BatchDest").ss58_address
    ok = s.compose_call("Balances", "transfer_keep_alive", {"dest": dest, "value": EDSC})
    bad = s.compose_call("JobMarketplace", "cancel_job", {"job_id": 999_999})
    receipt = submit(s, CONSUMER, "Utility", "batch", {"calls": [ok, bad, ok]})
    assert receipt.is_success
    interrupted = the_event(receipt, "Utility", "BatchInterrupted")
    assert interrupted["index"] == 1
    assert interrupted["error"] == {"Module": {"index": 13, "error": "0x00000000"}}  # JobMarketplace.JobNotFound
    assert len(events(receipt, "Utility", "ItemCompleted")) == 1
    assert balance(s, dest).free == EDSC

    receipt = submit(s, CONSUMER, "Utility", "batch", {"calls": [ok, ok]})
    assert event_names(receipt).count("Utility.ItemCompleted") == 2
    assert "Utility.BatchCompleted" in event_names(receipt)
    assert balance(s, dest).free == 3 * EDSC


def test_utility_batch_all_is_atomic(s: SubstrateInterface) -> None:
    dest = key("BatchAllDest").ss58_address
    ok = s.compose_call("Balances", "transfer_keep_alive", {"dest": dest, "value": EDSC})
    bad = s.compose_call("JobMarketplace", "cancel_job", {"job_id": 999_999})
    before = balance(s, CONSUMER.ss58_address)
    receipt = submit(s, CONSUMER, "Utility", "batch_all", {"calls": [ok, ok, bad]})
    assert error_name(receipt) == "JobNotFound"
    assert balance(s, dest).free == 0  # both transfers rolled back
    assert balance(s, CONSUMER.ss58_address).free == before.free - fee(receipt)  # only the fee was taken

    receipt = submit(s, CONSUMER, "Utility", "batch_all", {"calls": [ok, ok]})
    assert receipt.is_success and "Utility.BatchCompleted" in event_names(receipt)
    assert balance(s, dest).free == 2 * EDSC
