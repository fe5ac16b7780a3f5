"""pallet_balances: free and reserved balances, transfers, and the reserve/repatriate escrow the market uses."""

from __future__ import annotations

from typing import Any

from etrid_ray.devnet.common_types import to_account
from etrid_ray.devnet.pallet import Origin, Pallet

EXISTENTIAL_DEPOSIT = 10**15  # 0.001 ËDSC


class Balances(Pallet):
    def declare(self) -> None:
        self.name, self.index, self.module = "Balances", 2, "pallet_balances"
        c = self.runtime.types
        self.TotalIssuance = self.storage("TotalIssuance", c.u128, 0, docs="The total units issued in the system.")
        dest = ("dest", c.multi_address, "AccountIdLookupOf<T>")
        value = ("value", c.compact_u128, "T::Balance")
        self.call(0, "transfer_allow_death", [dest, value], self.transfer_allow_death)
        self.call(2, "force_transfer", [("source", c.multi_address, "AccountIdLookupOf<T>"), dest, value],
                  self.force_transfer)
        self.call(3, "transfer_keep_alive", [dest, value], self.transfer_keep_alive,
                  "Same as transfer_allow_death, but the sender is kept alive.")
        self.call(4, "transfer_all", [dest, ("keep_alive", c.bool, "bool")], self.transfer_all)
        acct = ("who", c.account_id, "T::AccountId")
        amount = ("amount", c.u128, "T::Balance")
        self.event("Endowed", [("account", c.account_id, "T::AccountId"), ("free_balance", c.u128, "T::Balance")])
        self.event("Transfer", [("from", c.account_id, "T::AccountId"), ("to", c.account_id, "T::AccountId"),
                                amount])
        self.event("Reserved", [acct, amount])
        self.event("Unreserved", [acct, amount])
        self.event("ReserveRepatriated", [("from", c.account_id, "T::AccountId"),
                                          ("to", c.account_id, "T::AccountId"), amount])
        self.event("Deposit", [acct, amount])
        self.event("Withdraw", [acct, amount])
        self.event("Slashed", [acct, amount])
        for err in ("VestingBalance", "LiquidityRestrictions", "InsufficientBalance", "ExistentialDeposit",
                    "Expendability", "ExistingVestingSchedule", "DeadAccount", "TooManyReserves"):
            self.error(err)
        self.constant("ExistentialDeposit", c.u128, EXISTENTIAL_DEPOSIT)

    # balance primitives used by other pallets -----------------------------------------------------

    @property
    def system(self) -> Any:
        return self.runtime.system

    def free(self, who: str) -> int:
        return int(self.system.account(who)["data"]["free"])

    def reserved(self, who: str) -> int:
        return int(self.system.account(who)["data"]["reserved"])

    def _set(self, who: str, free: int, reserved: int) -> None:
        info = self.system.account(who)
        self.system.set_account(who, {**info, "data": {**info["data"], "free": free, "reserved": reserved},
                                      "providers": max(info["providers"], 1)})

    def deposit(self, who: str, amount: int, event: bool = True) -> None:
        self._set(who, self.free(who) + amount, self.reserved(who))
        if event and amount:
            self.emit("Deposit", who=who, amount=amount)

    def withdraw(self, who: str, amount: int, keep_alive: bool = True) -> None:
        free = self.free(who)
        if amount > free:
            raise self.fail("InsufficientBalance")
        if keep_alive and free - amount < EXISTENTIAL_DEPOSIT and self.reserved(who) == 0:
            raise self.fail("Expendability")
        self._set(who, free - amount, self.reserved(who))

    def transfer(self, source: str, dest: str, amount: int, keep_alive: bool) -> None:
        if amount > self.free(source):
            raise self.fail("InsufficientBalance")
        if self.free(dest) + self.reserved(dest) + amount < EXISTENTIAL_DEPOSIT:
            raise self.fail("ExistentialDeposit")
        self.withdraw(source, amount, keep_alive)
        self.deposit(dest, amount, event=False)
        self.emit("Transfer", **{"from": source, "to": dest, "amount": amount})

    def reserve(self, who: str, amount: int) -> None:
        free = self.free(who)
        if amount > free:
            raise self.fail("InsufficientBalance")
        self._set(who, free - amount, self.reserved(who) + amount)
        self.emit("Reserved", who=who, amount=amount)

    def unreserve(self, who: str, amount: int) -> None:
        amount = min(amount, self.reserved(who))
        self._set(who, self.free(who) + amount, self.reserved(who) - amount)
        self.emit("Unreserved", who=who, amount=amount)

    def repatriate_reserved(self, source: str, dest: str, amount: int) -> None:
        """Moves reserved funds of `source` into the free balance of `dest` (escrow release)."""
        amount = min(amount, self.reserved(source))
        self._set(source, self.free(source), self.reserved(source) - amount)
        self.deposit(dest, amount, event=False)
        self.emit("ReserveRepatriated", **{"from": source, "to": dest, "amount": amount})

    def mint(self, who: str, amount: int) -> None:
        """Genesis endowment."""
        self._set(who, self.free(who) + amount, self.reserved(who))
        issuance = int(self.runtime.state.get(self.TotalIssuance))
        self.runtime.state.put(self.TotalIssuance, None, issuance + amount)

    # calls ----------------------------------------------------------------------------------------

    def transfer_allow_death(self, origin: Origin, dest: Any, value: Any) -> None:
        self.transfer(self.ensure_signed(origin), to_account(dest), int(value), keep_alive=False)

    def transfer_keep_alive(self, origin: Origin, dest: Any, value: Any) -> None:
        self.transfer(self.ensure_signed(origin), to_account(dest), int(value), keep_alive=True)

    def force_transfer(self, origin: Origin, source: Any, dest: Any, value: Any) -> None:
        self.ensure_root(origin)
        self.transfer(to_account(source), to_account(dest), int(value), keep_alive=False)

    def transfer_all(self, origin: Origin, dest: Any, keep_alive: Any) -> None:
        who = self.ensure_signed(origin)
        amount = self.free(who) - (EXISTENTIAL_DEPOSIT if keep_alive else 0)
        if amount > 0:
            self.transfer(who, to_account(dest), amount, keep_alive=bool(keep_alive))
