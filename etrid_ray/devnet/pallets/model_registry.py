"""pallet_model_registry (Etrid, index 14): the AI model catalog that `submit_job`'s `model_id` refers to.

Mirrors upstream's items and behaviour: `register_model` charges the registration fee (burnt, as upstream's
`Currency::withdraw` does), names the model `did:ai:{name}:{version}` (its AIDID, unique), indexes it by owner, name
and AIDID and, with a `parent_id`, records the version lineage; `record_inference` and `pay_royalty` are root-only
(upstream: "only callable by other pallets") and, as upstream, `pay_royalty` only counts the royalty.
"""

from __future__ import annotations

from typing import Any

from etrid_ray.devnet.common_types import to_bytes
from etrid_ray.devnet.pallet import Origin, Pallet
from etrid_ray.devnet.type_registry import Field, Variant

REGISTRATION_FEE = 10 * 10**18  # upstream `RegistrationFee = ConstU128<10_000_000_000_000_000_000>`: 10 ËDSC
MAX_ROYALTY_BPS = 5_000  # upstream `MaxRoyaltyBps = ConstU16<5000>`
MAX_OWNER_MODELS = 100
MAX_VERSIONS = 100
AIDID_LEN = 128


class ModelRegistry(Pallet):
    def declare(self) -> None:
        self.name, self.index, self.module = "ModelRegistry", 14, "pallet_model_registry"
        c, reg = self.runtime.types, self.reg
        p = ("pallet_model_registry",)
        self.visibility_ty = reg.variant(p + ("ModelVisibility",), [
            Variant(n, i) for i, n in enumerate(["Public", "Private", "Restricted"])])
        self.license_ty = reg.variant(p + ("LicenseType",), [
            Variant(n, i) for i, n in enumerate(["MIT", "Apache2", "GPLv3", "Proprietary", "CreativeCommons"])])
        name_ty, version_ty = reg.bounded_vec(c.u8, 64), reg.bounded_vec(c.u8, 32)
        description_ty, aidid_ty = reg.bounded_vec(c.u8, 256), reg.bounded_vec(c.u8, AIDID_LEN)
        category_ty = reg.bounded_vec(c.u8, 32)
        ids_ty = reg.bounded_vec(c.u64, MAX_VERSIONS)
        self.model_ty = reg.composite(p + ("ModelMetadata",), [
            Field("owner", c.account_id, "T::AccountId"), Field("name", name_ty, "BoundedVec<u8, ConstU32<64>>"),
            Field("version", version_ty, "BoundedVec<u8, ConstU32<32>>"),
            Field("description", description_ty, "BoundedVec<u8, ConstU32<256>>"),
            Field("weights_hash", c.h256, "T::Hash"), Field("aidid", aidid_ty, "BoundedVec<u8, ConstU32<128>>"),
            Field("size_bytes", c.u64, "u64"), Field("visibility", self.visibility_ty, "ModelVisibility"),
            Field("license", self.license_ty, "LicenseType"), Field("royalty_bps", c.u16, "u16"),
            Field("category", category_ty, "BoundedVec<u8, ConstU32<32>>"), Field("registered_at", c.u64, "u64"),
            Field("inference_count", c.u64, "u64"), Field("total_royalties", c.u128, "BalanceOf<T>")],
            params=(("T", None),))
        self.lineage_ty = reg.composite(p + ("ModelLineage",), [
            Field("parent_id", reg.option(c.u64), "Option<u64>"),
            Field("version_ids", ids_ty, "BoundedVec<u64, ConstU32<100>>")])
        self.Models = self.storage("Models", self.model_ty, optional=True, key_ty=c.u64)
        self.NextModelId = self.storage("NextModelId", c.u64, 0)
        self.OwnerModels = self.storage("OwnerModels", reg.bounded_vec(c.u64, MAX_OWNER_MODELS), [],
                                        key_ty=c.account_id)
        self.ModelByName = self.storage("ModelByName", ids_ty, [], key_ty=name_ty)
        self.ModelByAidid = self.storage("ModelByAidid", c.u64, optional=True, key_ty=aidid_ty)
        self.ModelLineages = self.storage("ModelLineages", self.lineage_ty, optional=True, key_ty=c.u64)
        self.TotalModels = self.storage("TotalModels", c.u64, 0)
        model_id = ("model_id", c.u64, "u64")
        self.call(0, "register_model", [
            ("name", name_ty, "BoundedVec<u8, ConstU32<64>>"), ("version", version_ty, "BoundedVec<u8, ConstU32<32>>"),
            ("description", description_ty, "BoundedVec<u8, ConstU32<256>>"), ("weights_hash", c.h256, "T::Hash"),
            ("size_bytes", c.u64, "u64"), ("visibility", self.visibility_ty, "ModelVisibility"),
            ("license", self.license_ty, "LicenseType"), ("royalty_bps", c.u16, "u16"),
            ("category", category_ty, "BoundedVec<u8, ConstU32<32>>"),
            ("parent_id", reg.option(c.u64), "Option<u64>")], self.register_model, weight=15_000_000)
        self.call(1, "update_visibility", [model_id, ("visibility", self.visibility_ty, "ModelVisibility")],
                  self.update_visibility)
        self.call(2, "record_inference", [model_id], self.record_inference)
        self.call(3, "pay_royalty", [model_id, ("amount", c.u128, "BalanceOf<T>")], self.pay_royalty)
        self.event("ModelRegistered", [model_id, ("owner", c.account_id, "T::AccountId"),
                                       ("aidid", aidid_ty, "BoundedVec<u8, ConstU32<128>>")])
        self.event("ModelUpdated", [model_id])
        self.event("VersionPublished", [model_id, ("parent_id", c.u64, "u64")])
        self.event("RoyaltyPaid", [model_id, ("owner", c.account_id, "T::AccountId"),
                                   ("amount", c.u128, "BalanceOf<T>")])
        self.event("InferenceCounted", [model_id])
        for err, doc in (("ModelNotFound", "Model not found"), ("NotModelOwner", "Not the model owner"),
                         ("ModelNameExists", "Model name already exists"), ("AididExists", "AIDID already exists"),
                         ("InvalidRoyalty", "Invalid royalty percentage"),
                         ("InsufficientBalance", "Insufficient balance"),
                         ("Overflow", "Overflow"), ("TooManyModels", "Too many models")):
            self.error(err, doc)
        self.constant("RegistrationFee", c.u128, REGISTRATION_FEE)
        self.constant("MaxRoyaltyBps", c.u16, MAX_ROYALTY_BPS)

    def model(self, model_id: int) -> dict[str, Any]:
        model = self.runtime.state.get(self.Models, model_id)
        if model is None:
            raise self.fail("ModelNotFound")
        return model

    def register_model(self, origin: Origin, name: Any, version: Any, description: Any, weights_hash: Any,
                       size_bytes: Any, visibility: Any, license: Any, royalty_bps: Any, category: Any,
                       parent_id: Any) -> None:
        owner = self.ensure_signed(origin)
        state = self.runtime.state
        if int(royalty_bps) > MAX_ROYALTY_BPS:
            raise self.fail("InvalidRoyalty")
        if self.runtime.balances.free(owner) < REGISTRATION_FEE:
            raise self.fail("InsufficientBalance")
        self.runtime.balances.withdraw(owner, REGISTRATION_FEE)
        name_b = to_bytes(name)
        aidid = (b"did:ai:" + name_b + b":" + to_bytes(version))
        aidid = aidid if len(aidid) <= AIDID_LEN else b""  # upstream: `BoundedVec::try_from(..).unwrap_or_default()`
        if state.contains(self.ModelByAidid, aidid):
            raise self.fail("AididExists")
        model_id = int(state.get(self.NextModelId))
        state.put(self.NextModelId, None, model_id + 1)
        state.put(self.Models, model_id, {
            "owner": owner, "name": name_b, "version": to_bytes(version), "description": to_bytes(description),
            "weights_hash": weights_hash, "aidid": aidid, "size_bytes": int(size_bytes), "visibility": visibility,
            "license": license, "royalty_bps": int(royalty_bps), "category": to_bytes(category),
            "registered_at": self.runtime.record_time(), "inference_count": 0, "total_royalties": 0})
        owned = list(state.get(self.OwnerModels, owner))
        if len(owned) >= MAX_OWNER_MODELS:
            raise self.fail("TooManyModels")
        state.put(self.OwnerModels, owner, owned + [model_id])
        versions = list(state.get(self.ModelByName, name_b))
        if len(versions) >= MAX_VERSIONS:
            raise self.fail("Overflow")
        state.put(self.ModelByName, name_b, versions + [model_id])
        state.put(self.ModelByAidid, aidid, model_id)
        if parent_id is not None:
            parent = int(parent_id)
            lineage = state.get(self.ModelLineages, parent)
            ids = list(lineage["version_ids"]) + [model_id] if lineage is not None else [parent, model_id]
            if len(ids) > MAX_VERSIONS:
                raise self.fail("Overflow")
            state.put(self.ModelLineages, parent, {"parent_id": lineage["parent_id"] if lineage else None,
                                                   "version_ids": ids})
            self.emit("VersionPublished", model_id=model_id, parent_id=parent)
        state.put(self.TotalModels, None, int(state.get(self.TotalModels)) + 1)
        self.emit("ModelRegistered", model_id=model_id, owner=owner, aidid=aidid)

    def update_visibility(self, origin: Origin, model_id: Any, visibility: Any) -> None:
        owner = self.ensure_signed(origin)
        model_id = int(model_id)
        model = self.model(model_id)
        if model["owner"] != owner:
            raise self.fail("NotModelOwner")
        self.runtime.state.put(self.Models, model_id, {**model, "visibility": visibility})
        self.emit("ModelUpdated", model_id=model_id)

    def record_inference(self, origin: Origin, model_id: Any) -> None:
        self.ensure_root(origin)
        model_id = int(model_id)
        model = self.model(model_id)
        self.runtime.state.put(self.Models, model_id, {**model, "inference_count": int(model["inference_count"]) + 1})
        self.emit("InferenceCounted", model_id=model_id)

    def pay_royalty(self, origin: Origin, model_id: Any, amount: Any) -> None:
        self.ensure_root(origin)
        model_id = int(model_id)
        model = self.model(model_id)
        total = int(model["total_royalties"]) + int(amount)
        self.runtime.state.put(self.Models, model_id, {**model, "total_royalties": total})
        self.emit("RoyaltyPaid", model_id=model_id, owner=model["owner"], amount=int(amount))
