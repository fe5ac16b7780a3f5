"""pallet_compliance (Etrid, index 23): per-account compliance template and data residency.

Upstream refuses a second `enable_compliance` (`AlreadyEnabled`); the `etrid-ray` runtime lets an account change its
template by enabling again (its extension), with the same errors in the same order."""

from __future__ import annotations

from typing import Any

from etrid_ray.devnet.common_types import to_bytes
from etrid_ray.devnet.pallet import Origin, Pallet
from etrid_ray.devnet.type_registry import Field, Variant

TEMPLATES = ["HIPAA", "GDPR", "SOC2", "CCPA", "FedRAMP"]
ENCRYPTION_REQUIRED = {"HIPAA", "GDPR", "FedRAMP", "SOC2", "CCPA"}


class Compliance(Pallet):
    def declare(self) -> None:
        self.name, self.index, self.module = "Compliance", 23, "pallet_compliance"
        c, reg = self.runtime.types, self.reg
        p = ("pallet_compliance",)
        self.template_ty = reg.variant(p + ("ComplianceTemplate",), [Variant(n, i) for i, n in enumerate(TEMPLATES)])
        residency = reg.bounded_vec(c.u8, 32)
        self.config_ty = reg.composite(p + ("ComplianceConfig",), [
            Field("account", c.account_id, "AccountId"), Field("template", self.template_ty, "ComplianceTemplate"),
            Field("data_residency", residency, "BoundedVec<u8, ConstU32<32>>"),
            Field("encryption_required", c.bool, "bool"), Field("audit_logs_required", c.bool, "bool"),
            Field("enabled_at", c.u64, "u64")], params=(("AccountId", c.account_id),))
        self.ComplianceConfigs = self.storage("ComplianceConfigs", self.config_ty, optional=True,
                                              key_ty=c.account_id)
        self.call(0, "enable_compliance", [("template", self.template_ty, "ComplianceTemplate"),
                                           ("data_residency", residency, "BoundedVec<u8, ConstU32<32>>")],
                  self.enable_compliance)
        self.call(1, "disable_compliance", [], self.disable_compliance)
        self.event("ComplianceEnabled", [("account", c.account_id, "T::AccountId"),
                                         ("template", self.template_ty, "ComplianceTemplate")])
        self.event("ComplianceDisabled", [("account", c.account_id, "T::AccountId")])
        self.error("AlreadyEnabled", "The account has a compliance configuration already.")
        self.error("NotEnabled", "The account has no compliance configuration.")

    def enable_compliance(self, origin: Origin, template: Any, data_residency: Any) -> None:
        who = self.ensure_signed(origin)
        if not self.extended and self.runtime.state.contains(self.ComplianceConfigs, who):
            raise self.fail("AlreadyEnabled")
        self.runtime.state.put(self.ComplianceConfigs, who, {
            "account": who, "template": template, "data_residency": to_bytes(data_residency),
            "encryption_required": template in ENCRYPTION_REQUIRED, "audit_logs_required": True,
            "enabled_at": self.runtime.record_time()})
        self.emit("ComplianceEnabled", account=who, template=template)

    def disable_compliance(self, origin: Origin) -> None:
        who = self.ensure_signed(origin)
        if not self.runtime.state.contains(self.ComplianceConfigs, who):
            raise self.fail("NotEnabled")
        self.runtime.state.remove(self.ComplianceConfigs, who)
        self.emit("ComplianceDisabled", account=who)
