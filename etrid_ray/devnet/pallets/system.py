"""frame_system: accounts and nonces, block number and hashes, and the per-block event list."""

from __future__ import annotations

from typing import Any

from etrid_ray.devnet.codec import blake2_256
from etrid_ray.devnet.common_types import hexstr, to_bytes
from etrid_ray.devnet.pallet import Origin, Pallet
from etrid_ray.devnet.type_registry import Field, Variant

SS58_PREFIX = 42
BLOCK_HASH_COUNT = 4096
EMPTY_ACCOUNT = {"nonce": 0, "consumers": 0, "providers": 0, "sufficients": 0,
                 "data": {"free": 0, "reserved": 0, "frozen": 0, "flags": 1 << 127}}


class System(Pallet):
    def declare(self) -> None:
        self.name, self.index, self.module = "System", 0, "frame_system"
        c, reg = self.runtime.types, self.reg
        self.account_data_ty = reg.composite(("pallet_balances", "types", "AccountData"), [
            Field("free", c.u128, "Balance"), Field("reserved", c.u128, "Balance"),
            Field("frozen", c.u128, "Balance"),
            Field("flags", reg.composite(("pallet_balances", "types", "ExtraFlags"), [Field(None, c.u128, "u128")]),
                  "ExtraFlags")], params=(("Balance", c.u128),))
        self.account_info_ty = reg.composite(("frame_system", "AccountInfo"), [
            Field("nonce", c.u32, "Nonce"), Field("consumers", c.u32, "RefCount"),
            Field("providers", c.u32, "RefCount"), Field("sufficients", c.u32, "RefCount"),
            Field("data", self.account_data_ty, "AccountData")],
            params=(("Nonce", c.u32), ("AccountData", self.account_data_ty)))
        self.phase_ty = reg.variant(("frame_system", "Phase"), [
            Variant("ApplyExtrinsic", 0, (Field(None, c.u32, "u32"),)), Variant("Finalization", 1),
            Variant("Initialization", 2)])
        self.Account = self.storage("Account", self.account_info_ty, EMPTY_ACCOUNT, key_ty=c.account_id,
                                    docs="The full account information for a particular account ID.")
        self.Number = self.storage("Number", c.u32, 0, docs="The current block number being processed.")
        self.ParentHash = self.storage("ParentHash", c.h256, "0x" + "00" * 32)
        self.BlockHash = self.storage("BlockHash", c.h256, "0x" + "00" * 32, key_ty=c.u32, hasher="Twox64Concat")
        self.EventCount = self.storage("EventCount", c.u32, 0)
        self.call(0, "remark", [("remark", c.bytes, "Vec<u8>")], self.remark, "Make some on-chain remark.")
        self.call(7, "remark_with_event", [("remark", c.bytes, "Vec<u8>")], self.remark_with_event,
                  "Make some on-chain remark and emit an event.")
        self.event("ExtrinsicSuccess", [("dispatch_info", c.dispatch_info, "DispatchInfo")])
        self.event("ExtrinsicFailed", [("dispatch_error", c.dispatch_error, "DispatchError"),
                                       ("dispatch_info", c.dispatch_info, "DispatchInfo")])
        self.event("CodeUpdated", [])
        self.event("NewAccount", [("account", c.account_id, "T::AccountId")])
        self.event("KilledAccount", [("account", c.account_id, "T::AccountId")])
        self.event("Remarked", [("sender", c.account_id, "T::AccountId"), ("hash", c.h256, "T::Hash")])
        for err in ("InvalidSpecName", "SpecVersionNeedsToIncrease", "FailedToExtractRuntimeVersion",
                    "NonDefaultComposite", "NonZeroRefCount", "CallFiltered"):
            self.error(err)
        self.constant("BlockHashCount", c.u32, BLOCK_HASH_COUNT)
        self.constant("SS58Prefix", c.u16, SS58_PREFIX)

    def finish_declare(self) -> None:
        """Events reference the runtime-wide event type, known only once every pallet has declared."""
        rt, c, reg = self.runtime, self.runtime.types, self.reg
        self.event_record_ty = reg.composite(("frame_system", "EventRecord"), [
            Field("phase", self.phase_ty, "Phase"), Field("event", rt.runtime_event_ty, "E"),
            Field("topics", reg.sequence(c.h256), "Vec<T>")],
            params=(("E", rt.runtime_event_ty), ("T", c.h256)))
        self.Events = self.storage("Events", reg.sequence(self.event_record_ty), [],
                                   docs="Events deposited for the current block.")

    # accounts -------------------------------------------------------------------------------------

    def account(self, who: str) -> dict[str, Any]:
        return self.runtime.state.get(self.Account, who)

    def set_account(self, who: str, info: dict[str, Any]) -> None:
        existed = self.runtime.state.contains(self.Account, who)
        self.runtime.state.put(self.Account, who, info)
        if not existed:
            self.emit("NewAccount", account=who)

    def nonce(self, who: str) -> int:
        return self.account(who)["nonce"]

    def inc_nonce(self, who: str) -> None:
        info = self.account(who)
        self.set_account(who, {**info, "nonce": info["nonce"] + 1})

    # calls ----------------------------------------------------------------------------------------

    def remark(self, origin: Origin, remark: Any) -> None:
        self.ensure_signed(origin)

    def remark_with_event(self, origin: Origin, remark: Any) -> None:
        who = self.ensure_signed(origin)
        self.emit("Remarked", sender=who, hash=hexstr(blake2_256(to_bytes(remark))))
