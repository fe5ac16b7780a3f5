"""pallet_transaction_payment: a fee per extrinsic (base + per byte + per weight), paid before dispatch."""

from __future__ import annotations

from etrid_ray.devnet.pallet import Pallet
from etrid_ray.devnet.type_registry import Field

BASE_FEE = 10**14          # 0.0001 ËDSC
BYTE_FEE = 10**11          # per encoded byte
WEIGHT_FEE_PER_REF_TIME = 1_000  # planck per unit of ref_time


class TransactionPayment(Pallet):
    def declare(self) -> None:
        self.name, self.index, self.module = "TransactionPayment", 3, "pallet_transaction_payment"
        c = self.runtime.types
        self.NextFeeMultiplier = self.storage(
            "NextFeeMultiplier",
            self.reg.composite(("sp_arithmetic", "fixed_point", "FixedU128"), [Field_(c.u128)]),
            10**18)
        self.event("TransactionFeePaid", [("who", c.account_id, "T::AccountId"),
                                          ("actual_fee", c.u128, "BalanceOf<T>"), ("tip", c.u128, "BalanceOf<T>")])
        self.constant("OperationalFeeMultiplier", c.u8, 5)

    @staticmethod
    def fee(length: int, weight: int) -> int:
        return BASE_FEE + BYTE_FEE * length + WEIGHT_FEE_PER_REF_TIME * weight


def Field_(ty: int):  # noqa: N802 - local shorthand for an unnamed field

    return Field(None, ty, "u128")
