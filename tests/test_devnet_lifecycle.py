"""The job lifecycle on `etrid-ray devnet`, to the planck, and who may do what.

Balances are checked exactly: every signed extrinsic's fee is taken from its
TransactionPayment.TransactionFeePaid event and goes to the treasury, the
escrow moves by the job's payment, the provider gets payment − 5 % and the
treasury the 5 %. Total issuance never changes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from substrateinterface import ExtrinsicReceipt, Keypair, SubstrateInterface

from etrid_ray.devnet.process import DevnetProcess
from tests.devnet_support import (
    EDSC,
    MIN_STAKE,
    PLATFORM_FEE_BPS,
    RESULT_HASH,
    TREASURY,
    TREASURY_ADDRESS,
    Balance,
    balance,
    connect,
    error_name,
    events,
    fee,
    fund,
    gpu,
    job,
    job_params,
    key,
    register_gpu,
    submit,
    submit_job,
    sudo,
    sudo_error_name,
    the_event,
)

GENESIS_FREE = 1_000_000 * EDSC
TREASURY_GENESIS = EDSC
PAYMENT = 12_345_678_901_234_567_891  # not a round number: the 5 % is floored
PLATFORM_FEE = PAYMENT * PLATFORM_FEE_BPS // 10_000
BOB, CHARLIE, DAVE = key("Bob"), key("Charlie"), key("Dave")  # provider, consumer, a bystander


def platform_fee(payment: int) -> int:
    return payment * PLATFORM_FEE_BPS // 10_000


class Ledger:
    """Counts the fees each signer paid (all of which the treasury receives) and checks conservation."""

    def __init__(self, s: SubstrateInterface) -> None:
        self.s = s
        self.issuance = s.query("Balances", "TotalIssuance").value
        self.fees: dict[str, int] = {}

    def paid(self, who: Keypair, receipt: ExtrinsicReceipt) -> ExtrinsicReceipt:
        amount = fee(receipt)
        assert amount > 0
        self.fees[who.ss58_address] = self.fees.get(who.ss58_address, 0) + amount
        return receipt

    def fees_of(self, who: Keypair) -> int:
        return self.fees.get(who.ss58_address, 0)

    @property
    def all_fees(self) -> int:
        return sum(self.fees.values())

    def assert_issuance_unchanged(self) -> None:
        assert self.s.query("Balances", "TotalIssuance").value == self.issuance
        holders = [key(n).ss58_address for n in ("Alice", "Bob", "Charlie", "Dave", "Eve", "Ferdie")] + [TREASURY]
        assert sum(b.free + b.reserved for b in map(lambda a: balance(self.s, a), holders)) == self.issuance


def open_devnet(*extra: str) -> DevnetProcess:
    return DevnetProcess(block_time=0, extra_args=list(extra))


@pytest.fixture()
def s(fresh_devnet: DevnetProcess) -> Iterator[SubstrateInterface]:
    substrate = connect(fresh_devnet.url)
    yield substrate
    substrate.close()


def test_genesis_endows_the_dev_accounts_and_the_treasury(s: SubstrateInterface) -> None:
    for name in ("Alice", "Bob", "Charlie", "Dave", "Eve", "Ferdie"):
        assert balance(s, key(name).ss58_address) == Balance(GENESIS_FREE, 0)
    assert balance(s, TREASURY) == Balance(TREASURY_GENESIS, 0)
    assert s.query("Sudo", "Key").value == key("Alice").ss58_address


def test_confirmed_job_pays_the_provider_payment_minus_5_percent_and_the_treasury_the_fee(
        s: SubstrateInterface) -> None:
    ledger = Ledger(s)
    gpu_id, receipt = register_gpu(s, BOB, stake=MIN_STAKE)
    ledger.paid(BOB, receipt)
    assert balance(s, BOB.ss58_address) == Balance(GENESIS_FREE - MIN_STAKE - ledger.fees_of(BOB), MIN_STAKE)

    # submit: the payment is escrowed (reserved), the fee was predicted exactly by payment_queryInfo
    call = s.compose_call("JobMarketplace", "submit_job", job_params(PAYMENT))
    predicted = s.get_payment_info(call, CHARLIE)["partialFee"]
    job_id, receipt = submit_job(s, CHARLIE, PAYMENT)
    ledger.paid(CHARLIE, receipt)
    assert fee(receipt) == predicted
    assert balance(s, CHARLIE.ss58_address) == Balance(GENESIS_FREE - PAYMENT - ledger.fees_of(CHARLIE), PAYMENT)

    # claim and submit_result move no money
    ledger.paid(BOB, submit(s, BOB, "JobMarketplace", "claim_job", {"job_id": job_id, "gpu_id": gpu_id}))
    ledger.paid(BOB, submit(s, BOB, "JobMarketplace", "submit_result", {"job_id": job_id,
                                                                        "result_hash": RESULT_HASH}))
    assert job(s, job_id)["status"] == "Completed"
    assert balance(s, CHARLIE.ss58_address) == Balance(GENESIS_FREE - PAYMENT - ledger.fees_of(CHARLIE), PAYMENT)
    assert balance(s, BOB.ss58_address) == Balance(GENESIS_FREE - MIN_STAKE - ledger.fees_of(BOB), MIN_STAKE)

    # confirm: provider gets payment − 5 %, the treasury the 5 %, out of the escrow
    receipt = submit(s, CHARLIE, "JobMarketplace", "confirm_job", {"job_id": job_id})
    ledger.paid(CHARLIE, receipt)
    assert the_event(receipt, "JobMarketplace", "PaymentReleased") == {
        "job_id": job_id, "provider": BOB.ss58_address, "amount": PAYMENT - PLATFORM_FEE}
    moves = [e["attributes"] for e in events(receipt, "Balances", "ReserveRepatriated")]
    assert moves == [{"from": CHARLIE.ss58_address, "to": BOB.ss58_address, "amount": PAYMENT - PLATFORM_FEE},
                     {"from": CHARLIE.ss58_address, "to": TREASURY_ADDRESS, "amount": PLATFORM_FEE}]

    assert balance(s, CHARLIE.ss58_address) == Balance(GENESIS_FREE - PAYMENT - ledger.fees_of(CHARLIE), 0)
    assert balance(s, BOB.ss58_address) == Balance(
        GENESIS_FREE - MIN_STAKE - ledger.fees_of(BOB) + PAYMENT - PLATFORM_FEE, MIN_STAKE)
    assert balance(s, TREASURY) == Balance(TREASURY_GENESIS + ledger.all_fees + PLATFORM_FEE, 0)
    ledger.assert_issuance_unchanged()


def test_auto_confirm_pays_the_provider_after_the_confirm_window() -> None:
    window = 3
    with open_devnet("--confirm-window", str(window)) as proc:
        s = connect(proc.url)
        assert s.get_constant("JobMarketplace", "ConfirmWindowBlocks").value == window
        ledger = Ledger(s)
        gpu_id, receipt = register_gpu(s, BOB)
        ledger.paid(BOB, receipt)
        job_id, receipt = submit_job(s, CHARLIE, PAYMENT)
        ledger.paid(CHARLIE, receipt)
        ledger.paid(BOB, submit(s, BOB, "JobMarketplace", "claim_job", {"job_id": job_id, "gpu_id": gpu_id}))
        receipt = submit(s, BOB, "JobMarketplace", "submit_result", {"job_id": job_id, "result_hash": RESULT_HASH})
        ledger.paid(BOB, receipt)
        completed_in = s.get_block_number(receipt.block_hash)
        assert s.query("JobMarketplace", "AwaitingConfirmation", [job_id]).value == completed_in + window

        unpaid = Balance(GENESIS_FREE - MIN_STAKE - ledger.fees_of(BOB), MIN_STAKE)
        for _ in range(window - 1):  # the consumer stays silent; blocks pass (Dave's remarks)
            tick = ledger.paid(DAVE, submit(s, DAVE, "System", "remark", {"remark": "tick"}))
            assert s.get_block_number(tick.block_hash) < completed_in + window
            assert balance(s, BOB.ss58_address) == unpaid
            assert job(s, job_id)["status"] == "Completed"

        tick = ledger.paid(DAVE, submit(s, DAVE, "System", "remark", {"remark": "tick"}))
        assert s.get_block_number(tick.block_hash) == completed_in + window
        initialization = [e.value for e in s.get_events(tick.block_hash) if e.value["phase"] == "Initialization"]
        released = [e["attributes"] for e in initialization if e["event_id"] == "PaymentReleased"]
        assert released == [{"job_id": job_id, "provider": BOB.ss58_address, "amount": PAYMENT - PLATFORM_FEE}]
        assert s.query("JobMarketplace", "AwaitingConfirmation", [job_id]).value is None
        assert balance(s, BOB.ss58_address) == Balance(unpaid.free + PAYMENT - PLATFORM_FEE, MIN_STAKE)
        assert balance(s, CHARLIE.ss58_address) == Balance(GENESIS_FREE - PAYMENT - ledger.fees_of(CHARLIE), 0)
        assert balance(s, TREASURY) == Balance(TREASURY_GENESIS + ledger.all_fees + PLATFORM_FEE, 0)

        # confirming late changes nothing: the job was already paid
        late = ledger.paid(CHARLIE, submit(s, CHARLIE, "JobMarketplace", "confirm_job", {"job_id": job_id}))
        assert error_name(late) == "InvalidJobStatus"
        assert balance(s, BOB.ss58_address) == Balance(unpaid.free + PAYMENT - PLATFORM_FEE, MIN_STAKE)
        ledger.assert_issuance_unchanged()
        s.close()


def test_reported_failure_refunds_the_whole_payment(s: SubstrateInterface) -> None:
    ledger = Ledger(s)
    gpu_id, receipt = register_gpu(s, BOB)
    ledger.paid(BOB, receipt)
    job_id, receipt = submit_job(s, CHARLIE, PAYMENT)
    ledger.paid(CHARLIE, receipt)
    ledger.paid(BOB, submit(s, BOB, "JobMarketplace", "claim_job", {"job_id": job_id, "gpu_id": gpu_id}))
    receipt = submit(s, BOB, "JobMarketplace", "report_failure", {"job_id": job_id, "reason": "handler crashed"})
    ledger.paid(BOB, receipt)

    assert the_event(receipt, "JobMarketplace", "JobFailed") == {"job_id": job_id, "reason": "handler crashed"}
    assert the_event(receipt, "Balances", "Unreserved") == {"who": CHARLIE.ss58_address, "amount": PAYMENT}
    assert job(s, job_id)["status"] == "Failed"
    assert gpu(s, gpu_id)["reputation"]["jobs_failed"] == 1
    assert s.query("JobMarketplace", "GpuJobs", [gpu_id]).value == []
    assert balance(s, CHARLIE.ss58_address) == Balance(GENESIS_FREE - ledger.fees_of(CHARLIE), 0)
    assert balance(s, BOB.ss58_address) == Balance(GENESIS_FREE - MIN_STAKE - ledger.fees_of(BOB), MIN_STAKE)
    assert balance(s, TREASURY) == Balance(TREASURY_GENESIS + ledger.all_fees, 0)
    ledger.assert_issuance_unchanged()


def test_a_job_past_max_compute_time_plus_grace_fails_with_timeout_and_is_refunded() -> None:
    # --timeout-grace 0 keeps this test short; the default grace (30 s) is in the metadata test
    with open_devnet("--timeout-grace", "0") as proc:
        s = connect(proc.url)
        assert s.get_constant("JobMarketplace", "TimeoutGraceSecs").value == 0
        ledger = Ledger(s)
        gpu_id, receipt = register_gpu(s, BOB)
        ledger.paid(BOB, receipt)
        job_id, receipt = submit_job(s, CHARLIE, PAYMENT, max_compute_time=1)
        ledger.paid(CHARLIE, receipt)
        claim = submit(s, BOB, "JobMarketplace", "claim_job", {"job_id": job_id, "gpu_id": gpu_id})
        ledger.paid(BOB, claim)
        claimed_at = s.query("Timestamp", "Now", block_hash=claim.block_hash).value // 1000
        deadline = claimed_at + 1 + 0

        # the very next block still sees the claim block's time: the job runs on
        ledger.paid(DAVE, submit(s, DAVE, "System", "remark", {"remark": "tick"}))
        assert job(s, job_id)["status"] == "Processing"

        failed_in = None
        give_up = time.monotonic() + 15
        while failed_in is None and time.monotonic() < give_up:
            time.sleep(0.3)
            tick = ledger.paid(DAVE, submit(s, DAVE, "System", "remark", {"remark": "tick"}))
            timed_out = [e.value for e in s.get_events(tick.block_hash)
                         if e.value["event_id"] == "JobFailed" and e.value["phase"] == "Initialization"]
            if timed_out:
                assert timed_out[0]["attributes"] == {"job_id": job_id, "reason": "timeout"}
                failed_in = tick.block_hash
        assert failed_in is not None, "the job never timed out"
        parent = s.get_block_header(failed_in)["header"]["parentHash"]
        assert s.query("Timestamp", "Now", block_hash=parent).value // 1000 > deadline  # not a moment early

        assert job(s, job_id)["status"] == "Failed"
        assert balance(s, CHARLIE.ss58_address) == Balance(GENESIS_FREE - ledger.fees_of(CHARLIE), 0)
        assert balance(s, BOB.ss58_address) == Balance(GENESIS_FREE - MIN_STAKE - ledger.fees_of(BOB), MIN_STAKE)
        assert gpu(s, gpu_id)["reputation"]["jobs_failed"] == 1
        late = ledger.paid(BOB, submit(s, BOB, "JobMarketplace", "submit_result",
                                       {"job_id": job_id, "result_hash": RESULT_HASH}))
        assert error_name(late) == "InvalidJobStatus"  # a result after the timeout is refused
        assert balance(s, TREASURY) == Balance(TREASURY_GENESIS + ledger.all_fees, 0)
        ledger.assert_issuance_unchanged()
        s.close()


def test_cancel_refunds_a_pending_job_and_nothing_else(s: SubstrateInterface) -> None:
    ledger = Ledger(s)
    job_id, receipt = submit_job(s, CHARLIE, PAYMENT)
    ledger.paid(CHARLIE, receipt)
    receipt = submit(s, CHARLIE, "JobMarketplace", "cancel_job", {"job_id": job_id})
    ledger.paid(CHARLIE, receipt)
    assert the_event(receipt, "JobMarketplace", "JobCancelled") == {"job_id": job_id}
    assert job(s, job_id)["status"] == "Cancelled"
    assert s.query("JobMarketplace", "PendingJobs").value == []
    assert balance(s, CHARLIE.ss58_address) == Balance(GENESIS_FREE - ledger.fees_of(CHARLIE), 0)
    assert balance(s, TREASURY) == Balance(TREASURY_GENESIS + ledger.all_fees, 0)

    again = submit(s, CHARLIE, "JobMarketplace", "cancel_job", {"job_id": job_id})
    ledger.paid(CHARLIE, again)
    assert error_name(again) == "InvalidJobStatus"

    # once a provider has it, the job can no longer be cancelled: the escrow stays
    gpu_id, receipt = register_gpu(s, BOB)
    ledger.paid(BOB, receipt)
    running, receipt = submit_job(s, CHARLIE, PAYMENT)
    ledger.paid(CHARLIE, receipt)
    ledger.paid(BOB, submit(s, BOB, "JobMarketplace", "claim_job", {"job_id": running, "gpu_id": gpu_id}))
    refused = submit(s, CHARLIE, "JobMarketplace", "cancel_job", {"job_id": running})
    ledger.paid(CHARLIE, refused)
    assert error_name(refused) == "InvalidJobStatus"
    assert balance(s, CHARLIE.ss58_address) == Balance(GENESIS_FREE - PAYMENT - ledger.fees_of(CHARLIE), PAYMENT)
    ledger.assert_issuance_unchanged()


# authorization (on the shared devnet, with accounts of its own) --------------------------------------

PROVIDER, INTRUDER, CONSUMER = key("AuthProvider"), key("AuthIntruder"), key("AuthConsumer")


@pytest.fixture(scope="module")
def shared(devnet: DevnetProcess) -> Iterator[SubstrateInterface]:
    substrate = connect(devnet.url)
    fund(substrate, [PROVIDER, INTRUDER, CONSUMER], 10_000 * EDSC)
    yield substrate
    substrate.close()


@pytest.fixture(scope="module")
def gpus(shared: SubstrateInterface) -> tuple[int, int]:
    """The provider's GPU and the intruder's own (Active) GPU."""
    return register_gpu(shared, PROVIDER)[0], register_gpu(shared, INTRUDER)[0]


def claimed_job(s: SubstrateInterface, gpu_id: int) -> int:
    job_id, _ = submit_job(s, CONSUMER, EDSC)
    receipt = submit(s, PROVIDER, "JobMarketplace", "claim_job", {"job_id": job_id, "gpu_id": gpu_id})
    assert receipt.is_success, receipt.error_message
    return job_id


def test_only_the_assigned_provider_may_submit_a_result_or_report_failure(
        shared: SubstrateInterface, gpus: tuple[int, int]) -> None:
    s, (mine, _) = shared, gpus
    job_id = claimed_job(s, mine)
    for outsider in (INTRUDER, CONSUMER, key("Alice")):  # another provider, the submitter, the sudo key
        forged = submit(s, outsider, "JobMarketplace", "submit_result", {"job_id": job_id, "result_hash": RESULT_HASH})
        assert error_name(forged) == "NotAssignedProvider"
        failed = submit(s, outsider, "JobMarketplace", "report_failure", {"job_id": job_id, "reason": "sabotage"})
        assert error_name(failed) == "NotAssignedProvider"
    untouched = job(s, job_id)
    assert untouched["status"] == "Processing" and untouched["result_hash"] is None
    assert submit(s, PROVIDER, "JobMarketplace", "submit_result",
                  {"job_id": job_id, "result_hash": RESULT_HASH}).is_success


def test_assign_job_needs_root(shared: SubstrateInterface, gpus: tuple[int, int]) -> None:
    s, (mine, _) = shared, gpus
    job_id, _ = submit_job(s, CONSUMER, EDSC)
    direct = submit(s, key("Alice"), "JobMarketplace", "assign_job", {"job_id": job_id, "gpu_id": mine})
    assert error_name(direct) == "BadOrigin"  # even the sudo key must go through Sudo.sudo
    not_sudo = sudo(s, "JobMarketplace", "assign_job", {"job_id": job_id, "gpu_id": mine}, signer=PROVIDER)
    assert error_name(not_sudo) == "RequireSudo"
    assert job(s, job_id)["status"] == "Pending"
    assert sudo_error_name(s, sudo(s, "JobMarketplace", "assign_job", {"job_id": job_id, "gpu_id": mine})) is None
    assert job(s, job_id)["status"] == "Processing"


def test_stake_below_100_edsc_is_refused(shared: SubstrateInterface) -> None:
    s = shared
    next_id = s.query("GpuRegistry", "NextGpuId").value
    before = balance(s, INTRUDER.ss58_address)
    receipt = submit(s, INTRUDER, "GpuRegistry", "register_gpu",
                     {"specs": {"model": "RTX 4090", "vram_gb": 24, "compute_units": 128, "clock_speed_mhz": 2520,
                                "tdp_watts": 450},
                      "attestation": {"tpm_quote": "0x01", "benchmark_score": 1, "timestamp": 0},
                      "stake": MIN_STAKE - 1, "schedule": "AlwaysOn"})
    assert error_name(receipt) == "InsufficientStake"
    assert s.query("GpuRegistry", "NextGpuId").value == next_id
    assert balance(s, INTRUDER.ss58_address) == Balance(before.free - fee(receipt), before.reserved)
    assert register_gpu(s, INTRUDER, stake=MIN_STAKE)[0] == next_id  # exactly 100 ËDSC is enough


def test_only_a_pending_job_can_be_claimed(shared: SubstrateInterface, gpus: tuple[int, int]) -> None:
    s, (mine, theirs) = shared, gpus
    taken = claimed_job(s, mine)
    race = submit(s, INTRUDER, "JobMarketplace", "claim_job", {"job_id": taken, "gpu_id": theirs})
    assert error_name(race) == "InvalidJobStatus"
    assert job(s, taken)["assigned_gpu"] == mine

    submit(s, PROVIDER, "JobMarketplace", "submit_result", {"job_id": taken, "result_hash": RESULT_HASH})
    assert error_name(submit(s, PROVIDER, "JobMarketplace", "claim_job",
                             {"job_id": taken, "gpu_id": mine})) == "InvalidJobStatus"
    cancelled, _ = submit_job(s, CONSUMER, EDSC)
    submit(s, CONSUMER, "JobMarketplace", "cancel_job", {"job_id": cancelled})
    assert error_name(submit(s, PROVIDER, "JobMarketplace", "claim_job",
                             {"job_id": cancelled, "gpu_id": mine})) == "InvalidJobStatus"
    assert error_name(submit(s, PROVIDER, "JobMarketplace", "claim_job",
                             {"job_id": 10**12, "gpu_id": mine})) == "JobNotFound"


def test_claims_need_an_active_registered_gpu_of_ones_own(shared: SubstrateInterface, gpus: tuple[int, int]) -> None:
    s, (mine, theirs) = shared, gpus
    job_id, _ = submit_job(s, CONSUMER, EDSC)
    unknown = submit(s, PROVIDER, "JobMarketplace", "claim_job", {"job_id": job_id, "gpu_id": 10**12})
    assert error_name(unknown) == "GpuNotFound"
    assert sudo_error_name(s, sudo(s, "JobMarketplace", "assign_job",
                                   {"job_id": job_id, "gpu_id": 10**12})) == "GpuNotFound"
    borrowed = submit(s, PROVIDER, "JobMarketplace", "claim_job", {"job_id": job_id, "gpu_id": theirs})
    assert error_name(borrowed) == "NotGpuOwner"

    submit(s, PROVIDER, "GpuRegistry", "update_status", {"gpu_id": mine, "status": "Paused"})
    paused = submit(s, PROVIDER, "JobMarketplace", "claim_job", {"job_id": job_id, "gpu_id": mine})
    assert error_name(paused) == "GpuNotActive"
    submit(s, PROVIDER, "GpuRegistry", "update_status", {"gpu_id": mine, "status": "Active"})
    assert job(s, job_id)["status"] == "Pending"

    gone, _ = register_gpu(s, PROVIDER)
    submit(s, PROVIDER, "GpuRegistry", "unregister_gpu", {"gpu_id": gone})
    assert error_name(submit(s, PROVIDER, "GpuRegistry", "report_heartbeat", {"gpu_id": gone})) == "GpuNotFound"
    assert error_name(submit(s, PROVIDER, "JobMarketplace", "claim_job",
                             {"job_id": job_id, "gpu_id": gone})) == "GpuNotFound"


def test_only_the_submitter_confirms_disputes_or_cancels(shared: SubstrateInterface, gpus: tuple[int, int]) -> None:
    s, (mine, _) = shared, gpus
    job_id = claimed_job(s, mine)
    submit(s, PROVIDER, "JobMarketplace", "submit_result", {"job_id": job_id, "result_hash": RESULT_HASH})
    for call in ("confirm_job", "dispute_job"):
        assert error_name(submit(s, PROVIDER, "JobMarketplace", call, {"job_id": job_id})) == "NotJobSubmitter"
    pending, _ = submit_job(s, CONSUMER, EDSC)
    assert error_name(submit(s, INTRUDER, "JobMarketplace", "cancel_job", {"job_id": pending})) == "NotJobSubmitter"
    assert job(s, pending)["status"] == "Pending"
