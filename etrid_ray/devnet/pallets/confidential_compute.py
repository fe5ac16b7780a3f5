"""pallet_confidential_compute (Etrid): TEE attestations per GPU (larger quote bound on the devnet)."""

from __future__ import annotations

from typing import Any

from etrid_ray.devnet.common_types import to_bytes
from etrid_ray.devnet.pallet import Origin, Pallet
from etrid_ray.devnet.type_registry import Field, Variant

MAX_QUOTE_LEN = 8192  # devnet extension: an SEV-SNP report alone is 1184 bytes; Etrid's bound is 512


class ConfidentialCompute(Pallet):
    def declare(self) -> None:
        self.name, self.index, self.module = "ConfidentialCompute", 12, "pallet_confidential_compute"
        c, reg = self.runtime.types, self.reg
        p = ("pallet_confidential_compute",)
        self.tee_type_ty = reg.variant(p + ("TeeType",), [Variant(n, i) for i, n in
                                                          enumerate(["IntelSGX", "AMDSEV", "ARMTrustZone"])])
        self.attestation_ty = reg.composite(p + ("TeeAttestation",), [
            Field("tee_type", self.tee_type_ty, "TeeType"),
            Field("quote", reg.bounded_vec(c.u8, MAX_QUOTE_LEN), "BoundedVec<u8, ConstU32<8192>>"),
            Field("mrenclave", reg.bounded_vec(c.u8, 32), "BoundedVec<u8, ConstU32<32>>"),
            Field("timestamp", c.u64, "u64")])
        self.TeeAttestations = self.storage("TeeAttestations", self.attestation_ty, optional=True, key_ty=c.u64)
        self.call(0, "submit_attestation", [("gpu_id", c.u64, "u64"),
                                            ("attestation", self.attestation_ty, "TeeAttestation")],
                  self.submit_attestation)
        self.event("AttestationVerified", [("gpu_id", c.u64, "u64")])
        self.error("InvalidQuote", "The quote is empty.")
        self.constant("MaxQuoteLen", c.u32, MAX_QUOTE_LEN)

    def submit_attestation(self, origin: Origin, gpu_id: Any, attestation: Any) -> None:
        gpu_id = int(gpu_id)
        self.runtime.gpu_registry.owned_node(origin, gpu_id)
        if not to_bytes(attestation["quote"]):
            raise self.fail("InvalidQuote")
        self.runtime.state.put(self.TeeAttestations, gpu_id, attestation)
        self.emit("AttestationVerified", gpu_id=gpu_id)
