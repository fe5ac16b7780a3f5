"""The devnet runtime: pallets assembled as `construct_runtime!` would, its V14 metadata, genesis,
transaction validation and block execution."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scalecodec.base import RuntimeConfigurationObject
from scalecodec.type_registry import load_type_registry_preset
from substrateinterface import Keypair

from etrid_ray.devnet.codec import Codec, blake2_256, compact_decode
from etrid_ray.devnet.common_types import CommonTypes, hexstr
from etrid_ray.devnet.extrinsic import Extrinsic, ExtrinsicFormatError, encode_unsigned
from etrid_ray.devnet.pallet import ETRID_RAY, FLAVOURS, NONE, UPSTREAM, DispatchError, Origin, Pallet
from etrid_ray.devnet.pallets.balances import Balances
from etrid_ray.devnet.pallets.compliance import Compliance
from etrid_ray.devnet.pallets.confidential_compute import ConfidentialCompute
from etrid_ray.devnet.pallets.gpu_registry import GpuRegistry
from etrid_ray.devnet.pallets.job_marketplace import (
    DEFAULT_CONFIRM_WINDOW_BLOCKS,
    TIMEOUT_GRACE_SECS,
    JobMarketplace,
)
from etrid_ray.devnet.pallets.model_registry import ModelRegistry
from etrid_ray.devnet.pallets.randomness import RandomnessCollectiveFlip
from etrid_ray.devnet.pallets.sudo import Sudo
from etrid_ray.devnet.pallets.system import SS58_PREFIX, System
from etrid_ray.devnet.pallets.timestamp import Timestamp
from etrid_ray.devnet.pallets.transaction_payment import TransactionPayment
from etrid_ray.devnet.pallets.utility import BATCHED_CALLS_LIMIT, Utility
from etrid_ray.devnet.storage import Storage
from etrid_ray.devnet.type_registry import Field, TypeRegistry, Variant

SPEC_NAME = "ai-compute-pbc"
SPEC_VERSION = 100  # the etrid-ray runtime
UPSTREAM_SPEC_VERSION = 1  # upstream runtime/src/lib.rs: `spec_version: 1`
UPSTREAM_SECS_PER_BLOCK = 6  # upstream pallets' `current_timestamp()`: block number × 6
TRANSACTION_VERSION = 1
TOKEN_DECIMALS = 18
DEV_ACCOUNTS = ("Alice", "Bob", "Charlie", "Dave", "Eve", "Ferdie")
DEV_ENDOWMENT = 1_000_000 * 10**TOKEN_DECIMALS
TREASURY_SEED = b"modlpy/trsry"  # PalletId("py/trsry") account, as Substrate derives it
MAX_EXTRINSICS_PER_BLOCK = 4_000
# Substrate's default block length is 5 MiB, 75 % of it for normal transactions: a longer extrinsic can never
# be included, so it is refused before anything reads it.
MAX_EXTRINSIC_BYTES = 5 * 1024 * 1024 * 3 // 4
# Calls decoded per extrinsic, the whole tree counted (sudo(batch([...]))): a batch's own limit plus room for
# the wrappers. scalecodec decodes ~6,000 calls/s, so this bounds one extrinsic's decoding to ~2 s of a thread.
MAX_CALLS_PER_EXTRINSIC = BATCHED_CALLS_LIMIT + 8
BATCH_CALL_INDICES = (0, 2, 4)  # Utility.batch, batch_all, force_batch
SUDO_WRAPPER_INDICES = (0, 1)   # Sudo.sudo(call), sudo_unchecked_weight(call, weight): the call comes first

RUNTIME_APIS = [  # (name, version): what `state_getRuntimeVersion.apis` advertises
    ("Core", 4), ("Metadata", 2), ("BlockBuilder", 6), ("TaggedTransactionQueue", 3),
    ("AccountNonceApi", 1), ("TransactionPaymentApi", 4)]


@dataclass
class RuntimeConfig:
    confirm_window_blocks: int = DEFAULT_CONFIRM_WINDOW_BLOCKS
    timeout_grace_secs: int = TIMEOUT_GRACE_SECS  # devnet option --timeout-grace (tests shorten it)
    flavour: str = ETRID_RAY  # --runtime: `upstream` (Etrid's shape exactly) or `etrid-ray` (with our extensions)
    assigner_slots: int = 0  # --assigner: Processing jobs per GPU the built-in matcher fills (0: no matcher)

    def __post_init__(self) -> None:
        if self.flavour not in FLAVOURS:
            raise ValueError(f"runtime {self.flavour!r} is unknown: choose one of {', '.join(FLAVOURS)}")
        if self.assigner_slots < 0:
            raise ValueError("assigner slots must be >= 0")


class InvalidTransaction(Exception):
    """A transaction the pool refuses, with Substrate's RPC error code and message."""

    def __init__(self, code: int, message: str, data: str) -> None:
        super().__init__(f"{message}: {data}")
        self.code, self.message, self.data = code, message, data


def invalid(data: str) -> InvalidTransaction:
    return InvalidTransaction(1010, "Invalid Transaction", data)


def undecodable(data: str) -> InvalidTransaction:
    return InvalidTransaction(1002, "Verification Error: Runtime error: Execution failed", data)


@dataclass
class CheckedExtrinsic:
    ext: Extrinsic
    call: dict[str, Any]
    sender: str | None
    fee: int
    weight: int


@dataclass
class ApplyResult:
    success: bool
    error: Any = None


def treasury_account() -> str:
    return hexstr(TREASURY_SEED + b"\x00" * (32 - len(TREASURY_SEED)))


def dev_account(name: str) -> str:
    return hexstr(Keypair.create_from_uri(f"//{name}").public_key)


@dataclass
class Runtime:
    config: RuntimeConfig = field(default_factory=RuntimeConfig)

    def __post_init__(self) -> None:
        self.registry = TypeRegistry()
        self.types = CommonTypes.build(self.registry)
        self.runtime_call_ty = self.registry.reserve()
        self.runtime_event_ty = self.registry.reserve()
        self.system = System(self)
        self.timestamp = Timestamp(self)
        self.balances = Balances(self)
        self.transaction_payment = TransactionPayment(self)
        self.sudo = Sudo(self)
        self.randomness = RandomnessCollectiveFlip(self)
        self.gpu_registry = GpuRegistry(self)
        self.job_marketplace = JobMarketplace(self)
        self.model_registry = ModelRegistry(self)
        self.confidential_compute = ConfidentialCompute(self)
        self.compliance = Compliance(self)
        # upstream's construct_runtime! order and indices (the pallets of upstream's we do not mirror — consensus,
        # session, staking, the advanced features, bridges — leave their indices unused); ours come after
        self.pallets: list[Pallet] = [self.system, self.timestamp, self.balances, self.transaction_payment,
                                      self.sudo, self.randomness, self.gpu_registry, self.job_marketplace,
                                      self.model_registry, self.confidential_compute, self.compliance]
        self.utility: Utility | None = None
        if self.config.flavour == ETRID_RAY:
            self.utility = Utility(self)
            self.pallets.append(self.utility)
        self.spec_version = UPSTREAM_SPEC_VERSION if self.config.flavour == UPSTREAM else SPEC_VERSION
        for pallet in self.pallets:
            pallet.declare()
        self.system.finish_declare()
        for pallet in self.pallets:
            pallet.build_enums()
        self._define_runtime_enums()
        self.metadata_value = self._metadata_value()
        self.metadata_bytes = self._encode_metadata(self.metadata_value)
        self.codec = Codec(self.metadata_bytes, SS58_PREFIX)
        self.state = Storage(self.codec)
        for pallet in self.pallets:
            for item in pallet.storage_items:
                self.state.register(item)
        self.dispatch_table = {(p.name, c.name): (p, c) for p in self.pallets for c in p.calls}
        self.call_indices = {(p.index, c.index) for p in self.pallets for c in p.calls}
        self.treasury = treasury_account()
        self.block_number = 0
        self.genesis_hash = b"\x00" * 32
        self._events: list[dict[str, Any]] = []
        self._phase: Any = "Initialization"

    # types and metadata ---------------------------------------------------------------------------

    def _define_runtime_enums(self) -> None:
        reg, c = self.registry, self.types
        runtime_path = ("etrid_ai_compute_runtime",)
        reg.define_variant(self.runtime_call_ty, runtime_path + ("RuntimeCall",), [
            Variant(p.name, p.index, (Field(None, p.call_ty, f"CallableCallFor<{p.name}, Runtime>"),))
            for p in self.pallets if p.call_ty is not None])
        reg.define_variant(self.runtime_event_ty, runtime_path + ("RuntimeEvent",), [
            Variant(p.name, p.index, (Field(None, p.event_ty, f"{p.module}::Event<Runtime>"),))
            for p in self.pallets if p.event_ty is not None])
        u8 = c.u8
        sig64, sig65 = reg.array(64, u8), reg.array(65, u8)
        def signature(scheme: str, array: int, rust_array: str) -> int:
            return reg.composite(("sp_core", scheme, "Signature"), [Field(None, array, rust_array)])

        self.signature_ty = reg.variant(("sp_runtime", "MultiSignature"), [
            Variant("Ed25519", 0, (Field(None, signature("ed25519", sig64, "[u8; 64]"), "ed25519::Signature"),)),
            Variant("Sr25519", 1, (Field(None, signature("sr25519", sig64, "[u8; 64]"), "sr25519::Signature"),)),
            Variant("Ecdsa", 2, (Field(None, signature("ecdsa", sig65, "[u8; 65]"), "ecdsa::Signature"),))])
        era_variants = [Variant("Immortal", 0)] + [Variant(f"Mortal{i}", i, (Field(None, u8),)) for i in range(1, 256)]
        era_ty = reg.variant(("sp_runtime", "generic", "era", "Era"), era_variants)
        ext = ("frame_system", "extensions")
        unit_params = (("T", None),)

        def marker(path: tuple[str, ...], fields: list[Field] | None = None) -> int:
            return reg.composite(path, fields or [], params=unit_params)

        self.signed_extensions = [
            ("CheckNonZeroSender", marker(ext + ("check_non_zero_sender", "CheckNonZeroSender")), c.unit),
            ("CheckSpecVersion", marker(ext + ("check_spec_version", "CheckSpecVersion")), c.u32),
            ("CheckTxVersion", marker(ext + ("check_tx_version", "CheckTxVersion")), c.u32),
            ("CheckGenesis", marker(ext + ("check_genesis", "CheckGenesis")), c.h256),
            ("CheckMortality", marker(ext + ("check_mortality", "CheckMortality"), [Field(None, era_ty, "Era")]),
             c.h256),
            ("CheckNonce", marker(ext + ("check_nonce", "CheckNonce"), [Field(None, c.compact_u32, "T::Nonce")]),
             c.unit),
            ("CheckWeight", marker(ext + ("check_weight", "CheckWeight")), c.unit),
            ("ChargeTransactionPayment",
             marker(("pallet_transaction_payment", "ChargeTransactionPayment"),
                    [Field(None, c.compact_u128, "BalanceOf<T>")]), c.unit),
        ]
        extra_ty = reg.tuple(*[ty for _, ty, _ in self.signed_extensions])
        self.extrinsic_ty = reg.composite(
            ("sp_runtime", "generic", "unchecked_extrinsic", "UncheckedExtrinsic"),
            [Field(None, c.bytes, "Vec<u8>")],
            params=(("Address", c.multi_address), ("Call", self.runtime_call_ty),
                    ("Signature", self.signature_ty), ("Extra", extra_ty)))
        self.runtime_ty = reg.composite(runtime_path + ("Runtime",), [])

    def _metadata_value(self) -> dict[str, Any]:
        pallets = []
        for p in self.pallets:
            storage = None
            if p.storage_items:
                entries = []
                for item in p.storage_items:
                    if item.is_map:
                        ty: Any = {"Map": {"hashers": [item.hasher], "key": item.key_ty, "value": item.value_ty}}
                    else:
                        ty = {"Plain": item.value_ty}
                    default = b"\x00" if item.optional else self._encode_default(item.value_ty, item.default)
                    entries.append({"name": item.name, "modifier": "Optional" if item.optional else "Default",
                                    "type": ty, "default": hexstr(default), "documentation": list(item.docs)})
                storage = {"prefix": p.storage_prefix or p.name, "entries": entries}
            pallets.append({
                "name": p.name, "storage": storage,
                "calls": {"ty": p.call_ty} if p.call_ty is not None else None,
                "event": {"ty": p.event_ty} if p.event_ty is not None else None,
                "constants": [{"name": k.name, "type": k.ty, "value": hexstr(self._encode_default(k.ty, k.value)),
                               "documentation": list(k.docs)} for k in p.constants],
                "error": {"ty": p.error_ty} if p.error_ty is not None else None,
                "index": p.index})
        return {"types": self.registry.portable_registry(), "pallets": pallets,
                "extrinsic": {"ty": self.extrinsic_ty, "version": 4,
                              "signed_extensions": [{"identifier": name, "ty": ty, "additional_signed": add}
                                                    for name, ty, add in self.signed_extensions]},
                "runtime_type": self.runtime_ty}

    def _bootstrap_config(self) -> RuntimeConfigurationObject:
        if not hasattr(self, "_boot"):
            config = RuntimeConfigurationObject(ss58_format=SS58_PREFIX)
            config.update_type_registry(load_type_registry_preset("core"))
            self._boot = config
        return self._boot

    def _encode_default(self, type_id: int, value: Any) -> bytes:
        """Encodes constants and storage defaults before the metadata (and thus the codec) exists."""
        config = self._bootstrap_config()
        if not getattr(self, "_boot_registry_loaded", False):
            config.update_from_scale_info_types(
                [_as_scale_info(t) for t in self.registry.portable_registry()["types"]], prefix="scale_info")
            self._boot_registry_loaded = True
        obj = config.create_scale_object(f"scale_info::{type_id}")
        return bytes(obj.encode(value).data)

    def _encode_metadata(self, value: dict[str, Any]) -> bytes:
        obj = self._bootstrap_config().create_scale_object("MetadataVersioned")
        return bytes(obj.encode(["0x6d657461", {"V14": value}]).data)

    @property
    def version(self) -> dict[str, Any]:
        return {"specName": SPEC_NAME, "implName": "etrid-ray-devnet", "authoringVersion": 1,
                "specVersion": self.spec_version, "implVersion": 1,
                "apis": [[hexstr(blake2_256(name.encode())[:8]), v] for name, v in RUNTIME_APIS],
                "transactionVersion": TRANSACTION_VERSION, "stateVersion": 1}

    # genesis --------------------------------------------------------------------------------------

    def build_genesis(self) -> None:
        for name in DEV_ACCOUNTS:
            self.balances.mint(dev_account(name), DEV_ENDOWMENT)
        self.balances.mint(self.treasury, 10**18)
        self.state.put(self.sudo.Key, None, dev_account("Alice"))
        self.state.put(self.timestamp.Now, None, 0)
        self._events.clear()
        # The genesis writes stay in the block changes: the node takes them with block 0 (and persists them).
        self.after_load()

    def after_load(self) -> None:
        self.job_marketplace.after_load()

    # events ---------------------------------------------------------------------------------------

    def deposit_event(self, pallet: str, name: str, fields: dict[str, Any] | None) -> None:
        inner: Any = {name: fields} if fields is not None else name
        self._events.append({"phase": self._phase, "event": {pallet: inner}, "topics": []})

    def savepoint(self) -> tuple[int, int]:
        """Where a failed dispatch rolls back to: its storage writes *and its events*. In Substrate the events
        are storage, so a transactional call that fails reverts them with the rest; a `Utility.batch` item or a
        `Sudo.sudo` call that fails must not leave, say, a `JobSubmitted` for a job that was never stored."""
        return self.state.savepoint(), len(self._events)

    def rollback(self, savepoint: tuple[int, int]) -> None:
        state_mark, events_mark = savepoint
        self.state.rollback(state_mark)
        del self._events[events_mark:]

    # time -----------------------------------------------------------------------------------------

    def now_secs(self) -> int:
        return self.timestamp.now_secs()

    def record_time(self) -> int:
        """The time the AI-Compute pallets record (`submitted_at`, `registered_at` …): unix seconds in the
        etrid-ray runtime; upstream's `current_timestamp()`, block number × 6, in the upstream runtime."""
        if self.config.flavour == UPSTREAM:
            return self.block_number * UPSTREAM_SECS_PER_BLOCK
        return self.now_secs()

    # dispatch -------------------------------------------------------------------------------------

    def dispatch(self, origin: Origin, call: Any) -> None:
        module, function, args = _call_parts(call)
        entry = self.dispatch_table.get((module, function))
        if entry is None:
            raise DispatchError("CannotLookup", f"unknown call {module}.{function}")
        _, call_def = entry
        call_def.handler(origin, **args)

    def call_weight(self, call: Any) -> int:
        module, function, args = _call_parts(call)
        entry = self.dispatch_table.get((module, function))
        weight = entry[1].weight if entry else 0
        if module == "Utility":
            weight += sum(self.call_weight(c) for c in args.get("calls", []))
        if module == "Sudo" and "call" in args:
            weight += self.call_weight(args["call"])
        return weight

    # transactions ---------------------------------------------------------------------------------

    def check(self, raw: bytes, block_hash_at: Any) -> CheckedExtrinsic:
        """Validates a transaction against the current state: decoding, signature, era, nonce, fee.

        `block_hash_at(number)` returns the hash of a known block, or None. The node runs the three
        steps itself so that the call's decoding (the only costly one) can leave the event loop."""
        ext = self.check_envelope(raw, block_hash_at)
        return self.finish_check(ext, self.decode_checked_call(ext))

    def check_envelope(self, raw: bytes, block_hash_at: Any) -> Extrinsic:
        """Everything that is cheap and needs no decoded call: size, envelope, the batch's length prefix,
        era and signature. Nothing an unauthenticated sender controls reaches scalecodec."""
        if len(raw) > MAX_EXTRINSIC_BYTES:
            raise invalid(f"Transaction would exhaust the block limits ({len(raw)} bytes, "
                          f"at most {MAX_EXTRINSIC_BYTES})")
        try:
            ext = Extrinsic.decode(raw)
        except ExtrinsicFormatError as err:
            raise undecodable(f"Could not decode extrinsic: {err}") from err
        self.precheck_call(ext.call)
        if not ext.signed:
            # Nothing vouches for an unsigned call and none is accepted: refuse it unread (its index
            # alone tells garbage, 1002, from a well-formed but unexpected call, 1010).
            if len(ext.call) < 2 or (ext.call[0], ext.call[1]) not in self.call_indices:
                raise undecodable("Could not decode call: unknown pallet or call index")
            raise invalid("Transaction call is not expected")
        era_birth = ext.era.birth(self.block_number)
        era_hash = block_hash_at(era_birth) if era_birth <= self.block_number else None
        if era_hash is None or self.block_number >= ext.era.death(self.block_number):
            raise invalid("Transaction has an ancient birth block")
        payload = ext.signing_payload(self.spec_version, TRANSACTION_VERSION, self.genesis_hash, era_hash)
        if not ext.verify(payload):
            raise invalid("Transaction has a bad signature")
        return ext

    def precheck_call(self, call: bytes, depth: int = 0) -> None:
        """Reads a batch's Compact length prefix (under Sudo wrappers too) and refuses more calls than
        `batched_calls_limit` before any of them is decoded; the bytes must hold at least 2 per call."""
        if len(call) < 2:
            return  # too short to be a call: decoding says so
        pallet, function = call[0], call[1]
        if self.utility is not None and pallet == self.utility.index and function in BATCH_CALL_INDICES:
            try:
                count, offset = compact_decode(call, 2, bits=32)
            except ValueError as err:
                raise undecodable(f"Could not decode call: batch length: {err}") from err
            if count > BATCHED_CALLS_LIMIT:
                raise invalid(f"Utility batch of {count} calls exceeds batched_calls_limit ({BATCHED_CALLS_LIMIT})")
            if count * 2 > len(call) - offset:
                raise undecodable(f"Could not decode call: a batch of {count} calls in {len(call) - offset} bytes")
        elif pallet == self.sudo.index and function in SUDO_WRAPPER_INDICES and depth < 4:
            self.precheck_call(call[2:], depth + 1)

    def decode_checked_call(self, ext: Extrinsic) -> dict[str, Any]:
        """Decodes and bounds-checks the call (pure: safe on a worker thread); raises 1002 when it cannot."""
        try:
            call = self.codec.decode_call(ext.call, MAX_CALLS_PER_EXTRINSIC)
            _call_parts(call)
            self.registry.check_bounds(self.runtime_call_ty, _variant_form(call))
        except Exception as err:  # scalecodec raises many kinds on garbage
            raise undecodable(f"Could not decode call: {type(err).__name__}: {err}") from err
        return call

    def finish_check(self, ext: Extrinsic, call: dict[str, Any]) -> CheckedExtrinsic:
        """The state-dependent part of validation: the sender can pay the fee."""
        assert ext.signer is not None
        sender = hexstr(ext.signer)
        weight = self.call_weight(call)
        fee = self.transaction_payment.fee(len(ext.raw), weight) + ext.tip
        if self.balances.free(sender) < fee:
            raise invalid("Inability to pay some fees (e.g. account balance too low)")
        return CheckedExtrinsic(ext, call, sender, fee, weight)

    def apply(self, checked: CheckedExtrinsic, index: int) -> ApplyResult:
        """Applies one checked extrinsic in the block being built: fee, nonce, dispatch, events."""
        self._phase = {"ApplyExtrinsic": index}
        if not checked.ext.signed:
            self.dispatch(NONE, checked.call)
            self._extrinsic_event(True, None, checked.weight, "Mandatory")
            return ApplyResult(True)
        sender = checked.sender
        assert sender is not None
        self.balances.withdraw(sender, checked.fee, keep_alive=False)
        self.balances.emit("Withdraw", who=sender, amount=checked.fee)
        self.system.inc_nonce(sender)
        sp = self.savepoint()
        try:
            self.dispatch(Origin.signed(sender), checked.call)
            error = None
        except DispatchError as err:
            self.rollback(sp)
            error = err.value
        except Exception as err:  # a bug in a pallet must not take the chain down; it fails the extrinsic
            self.rollback(sp)
            error = "Other"
            print(f"devnet: dispatch raised {type(err).__name__}: {err}", flush=True)
        self.balances.deposit(self.treasury, checked.fee, event=True)
        self.transaction_payment.emit("TransactionFeePaid", who=sender, actual_fee=checked.fee, tip=checked.ext.tip)
        self._extrinsic_event(error is None, error, checked.weight, "Normal")
        return ApplyResult(error is None, error)

    def _extrinsic_event(self, success: bool, error: Any, weight: int, klass: str) -> None:
        info = {"weight": {"ref_time": weight, "proof_size": 0}, "class": klass,
                "pays_fee": "Yes" if klass == "Normal" else "No"}
        if success:
            self.system.emit("ExtrinsicSuccess", dispatch_info=info)
        else:
            self.system.emit("ExtrinsicFailed", dispatch_error=error, dispatch_info=info)

    # blocks ---------------------------------------------------------------------------------------

    def initialize_block(self, number: int, parent_hash: bytes, timestamp_ms: int) -> bytes:
        """Starts a block and applies the timestamp inherent; returns that inherent's bytes."""
        self.block_number = number
        self._events = []
        self._phase = "Initialization"
        self.state.put(self.system.Number, None, number)
        self.state.put(self.system.ParentHash, None, hexstr(parent_hash))
        if number > 0:
            self.state.put(self.system.BlockHash, number - 1, hexstr(parent_hash))
        for pallet in self.pallets:
            pallet.on_initialize(number)
        call_bytes = self.codec.encode_call("Timestamp", "set", {"now": timestamp_ms})
        inherent = encode_unsigned(call_bytes)
        checked = CheckedExtrinsic(Extrinsic(raw=inherent, signed=False, call=call_bytes),
                                   self.codec.decode_call(call_bytes), None, 0, 0)
        self.apply(checked, 0)
        return inherent

    def finalize_block(self) -> list[dict[str, Any]]:
        """Writes the block's events to `System.Events` and returns them."""
        self._phase = "Finalization"
        events = self._events
        self.state.put(self.system.Events, None, events)
        self.state.put(self.system.EventCount, None, len(events))
        return events


def _call_parts(call: Any) -> tuple[str, str, dict[str, Any]]:
    """Accepts scalecodec's GenericCall value or the plain variant form, as nested calls come in either."""
    if isinstance(call, dict) and "call_module" in call:
        args = {a["name"]: a["value"] for a in call.get("call_args", [])}
        return call["call_module"], call["call_function"], args
    if isinstance(call, dict) and len(call) == 1:
        (module, inner), = call.items()
        if isinstance(inner, dict) and len(inner) == 1:
            (function, args), = inner.items()
            return module, function, dict(args or {})
        if isinstance(inner, str):
            return module, inner, {}
    raise ValueError(f"not a call: {call!r}")


def _variant_form(call: Any) -> Any:
    module, function, args = _call_parts(call)
    return {module: {function: {k: _variant_form(v) if _is_call(v) else
                                ([_variant_form(x) if _is_call(x) else x for x in v] if isinstance(v, list) else v)
                                for k, v in args.items()}}}


def _is_call(value: Any) -> bool:
    return isinstance(value, dict) and "call_module" in value


def _as_scale_info(entry: dict[str, Any]) -> Any:
    """Adapts a registry entry to the object shape scalecodec's `update_from_scale_info_types` reads."""
    class _Wrapped:
        def __init__(self, value: Any) -> None:
            self.value = value

    return {"id": _Wrapped(entry["id"]), "type": _Wrapped(entry["type"])}
