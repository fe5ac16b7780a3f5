"""pallet_sudo: //Alice dispatches root calls (assign_job, slash_provider, update_reputation)."""

from __future__ import annotations

from typing import Any

from etrid_ray.devnet.common_types import to_account
from etrid_ray.devnet.pallet import ROOT, DispatchError, Origin, Pallet


class Sudo(Pallet):
    def declare(self) -> None:
        self.name, self.index, self.module = "Sudo", 4, "pallet_sudo"
        c, rt = self.runtime.types, self.runtime
        boxed_call = ("call", rt.runtime_call_ty, "Box<<T as Config>::RuntimeCall>")
        self.Key = self.storage("Key", c.account_id, optional=True, docs="The `AccountId` of the sudo key.")
        self.call(0, "sudo", [boxed_call], self.sudo, "Dispatch a call with Root origin.")
        self.call(1, "sudo_unchecked_weight", [boxed_call, ("weight", c.weight, "Weight")],
                  self.sudo_unchecked_weight)
        self.call(2, "set_key", [("new", c.multi_address, "AccountIdLookupOf<T>")], self.set_key)
        self.call(3, "sudo_as", [("who", c.multi_address, "AccountIdLookupOf<T>"), boxed_call], self.sudo_as)
        self.event("Sudid", [("sudo_result", c.dispatch_result, "DispatchResult")])
        self.event("KeyChanged", [("old", self.reg.option(c.account_id), "Option<T::AccountId>"),
                                  ("new", c.account_id, "T::AccountId")])
        self.event("SudoAsDone", [("sudo_result", c.dispatch_result, "DispatchResult")])
        self.error("RequireSudo", "Sender must be the Sudo account.")

    def _ensure_sudo(self, origin: Origin) -> str:
        who = self.ensure_signed(origin)
        if self.runtime.state.get(self.Key) != who:
            raise self.fail("RequireSudo")
        return who

    def _dispatch_as(self, origin: Origin, call: Any, event: str) -> None:
        sp = self.runtime.savepoint()
        try:
            self.runtime.dispatch(origin, call)
            result: Any = {"Ok": ()}
        except DispatchError as err:
            self.runtime.rollback(sp)
            result = {"Err": err.value}
        self.emit(event, sudo_result=result)

    def sudo(self, origin: Origin, call: Any) -> None:
        self._ensure_sudo(origin)
        self._dispatch_as(ROOT, call, "Sudid")

    def sudo_unchecked_weight(self, origin: Origin, call: Any, weight: Any) -> None:
        self.sudo(origin, call)

    def set_key(self, origin: Origin, new: Any) -> None:
        old = self._ensure_sudo(origin)
        new_key = to_account(new)
        self.runtime.state.put(self.Key, None, new_key)
        self.emit("KeyChanged", old=old, new=new_key)

    def sudo_as(self, origin: Origin, who: Any, call: Any) -> None:
        self._ensure_sudo(origin)
        self._dispatch_as(Origin.signed(to_account(who)), call, "SudoAsDone")
