"""pallet_confidential_compute (Etrid, index 15): TEE attestations per GPU.

`upstream` runtime: quotes of at most 512 bytes, any signed account files one for any GPU id (upstream checks
nothing yet), error `InvalidAttestation`. `etrid-ray` runtime: the same type with a larger quote bound (an SEV-SNP
report alone is 1184 bytes), the GPU's owner only, an empty quote refused, and the bound as a constant.
"""

from __future__ import annotations

from typing import Any

from etrid_ray.devnet.common_types import to_bytes
from etrid_ray.devnet.pallet import Origin, Pallet
from etrid_ray.devnet.type_registry import Field, Variant

UPSTREAM_MAX_QUOTE_LEN = 512
MAX_QUOTE_LEN = 8192  # devnet extension


class ConfidentialCompute(Pallet):
    def declare(self) -> None:
        self.name, self.index, self.module = "ConfidentialCompute", 15, "pallet_confidential_compute"
        c, reg = self.runtime.types, self.reg
        p = ("pallet_confidential_compute",)
        bound = MAX_QUOTE_LEN if self.extended else UPSTREAM_MAX_QUOTE_LEN
        self.tee_type_ty = reg.variant(p + ("TeeType",), [Variant(n, i) for i, n in
                                                          enumerate(["IntelSGX", "AMDSEV", "ARMTrustZone"])])
        self.attestation_ty = reg.composite(p + ("TeeAttestation",), [
            Field("tee_type", self.tee_type_ty, "TeeType"),
            Field("quote", reg.bounded_vec(c.u8, bound), f"BoundedVec<u8, ConstU32<{bound}>>"),
            Field("mrenclave", reg.bounded_vec(c.u8, 32), "BoundedVec<u8, ConstU32<32>>"),
            Field("timestamp", c.u64, "u64")])
        self.TeeAttestations = self.storage("TeeAttestations", self.attestation_ty, optional=True, key_ty=c.u64)
        self.call(0, "submit_attestation", [("gpu_id", c.u64, "u64"),
                                            ("attestation", self.attestation_ty, "TeeAttestation")],
                  self.submit_attestation)
        self.event("AttestationVerified", [("gpu_id", c.u64, "u64")])
        self.error("InvalidAttestation", "The attestation is not acceptable (here: an empty quote).")
        if self.extended:
            self.constant("MaxQuoteLen", c.u32, MAX_QUOTE_LEN)

    def submit_attestation(self, origin: Origin, gpu_id: Any, attestation: Any) -> None:
        gpu_id = int(gpu_id)
        if self.extended:
            self.runtime.gpu_registry.owned_node(origin, gpu_id)
            if not to_bytes(attestation["quote"]):
                raise self.fail("InvalidAttestation")
        else:
            self.ensure_signed(origin)
        self.runtime.state.put(self.TeeAttestations, gpu_id, attestation)
        self.emit("AttestationVerified", gpu_id=gpu_id)
