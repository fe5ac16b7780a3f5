"""The V4 extrinsic envelope: decoding, the signing payload, and signature checks.

The envelope is parsed by hand because the signing payload must be rebuilt
from the exact bytes the client signed (call ++ extra ++ additional), not from
a re-encoding; the call inside it is decoded by scalecodec from metadata.
Parsing the envelope is cheap and needs no state, so the signature is checked
before the call is decoded: an unauthenticated sender never buys scalecodec time.
Compacts must be canonical (minimal, within their type), as a real runtime demands.
"""

from __future__ import annotations

from dataclasses import dataclass

import ed25519_zebra
import sr25519

from etrid_ray.devnet.codec import blake2_256, compact_decode, compact_encode
from etrid_ray.extrinsic_builder import signing_payload


class ExtrinsicFormatError(ValueError):
    """The bytes are not a well-formed extrinsic (maps to RPC error 1002)."""


@dataclass(frozen=True)
class Era:
    """`sp_runtime::generic::Era`: immortal, or mortal with a period and phase."""

    period: int = 0
    phase: int = 0

    @property
    def immortal(self) -> bool:
        return self.period == 0

    @staticmethod
    def decode(data: bytes, offset: int) -> tuple[Era, int]:
        if offset >= len(data):
            raise ExtrinsicFormatError("truncated era")
        if data[offset] == 0:
            return Era(), offset + 1
        if offset + 2 > len(data):
            raise ExtrinsicFormatError("truncated era")
        encoded = int.from_bytes(data[offset:offset + 2], "little")
        period = 2 << (encoded % (1 << 4))
        quantize_factor = max(period >> 12, 1)
        phase = (encoded >> 4) * quantize_factor
        if period < 4 or phase >= period:
            raise ExtrinsicFormatError("invalid mortal era")
        return Era(period, phase), offset + 2

    def birth(self, current: int) -> int:
        if self.immortal:
            return 0
        return (max(current, self.phase) - self.phase) // self.period * self.period + self.phase

    def death(self, current: int) -> int:
        if self.immortal:
            return 2**64 - 1
        return self.birth(current) + self.period


SIGNATURE_SCHEMES = {0: ("Ed25519", 64), 1: ("Sr25519", 64), 2: ("Ecdsa", 65)}


@dataclass(frozen=True)
class Extrinsic:
    raw: bytes                     # the whole extrinsic, length prefix included (what goes into a block)
    signed: bool
    call: bytes
    signer: bytes | None = None    # 32-byte account id
    scheme: str | None = None
    signature: bytes | None = None
    era: Era = Era()
    nonce: int = 0
    tip: int = 0
    extra: bytes = b""             # era ++ Compact(nonce) ++ Compact(tip), exactly as signed

    @property
    def hash(self) -> bytes:
        return blake2_256(self.raw)

    @staticmethod
    def decode(raw: bytes) -> Extrinsic:
        try:
            length, offset = compact_decode(raw, 0, bits=32)
        except ValueError as err:
            raise ExtrinsicFormatError(str(err)) from err
        if length != len(raw) - offset:
            raise ExtrinsicFormatError(f"length prefix {length} does not match {len(raw) - offset} bytes")
        if offset >= len(raw):
            raise ExtrinsicFormatError("empty extrinsic")
        version = raw[offset]
        offset += 1
        if version & 0x7F != 4:
            raise ExtrinsicFormatError(f"unsupported extrinsic version {version & 0x7F}")
        if not version & 0x80:
            return Extrinsic(raw=raw, signed=False, call=raw[offset:])
        if offset >= len(raw) or raw[offset] != 0:
            raise ExtrinsicFormatError("only MultiAddress::Id signers are supported")
        signer = raw[offset + 1:offset + 33]
        offset += 33
        if len(signer) != 32 or offset >= len(raw):
            raise ExtrinsicFormatError("truncated signer")
        scheme_idx = raw[offset]
        if scheme_idx not in SIGNATURE_SCHEMES:
            raise ExtrinsicFormatError(f"unknown signature scheme {scheme_idx}")
        scheme, sig_len = SIGNATURE_SCHEMES[scheme_idx]
        signature = raw[offset + 1:offset + 1 + sig_len]
        offset += 1 + sig_len
        if len(signature) != sig_len:
            raise ExtrinsicFormatError("truncated signature")
        extra_start = offset
        era, offset = Era.decode(raw, offset)
        try:
            nonce, offset = compact_decode(raw, offset, bits=32)  # CheckNonce: Compact<u32>
            tip, offset = compact_decode(raw, offset, bits=128)   # ChargeTransactionPayment: Compact<u128>
        except ValueError as err:
            raise ExtrinsicFormatError(str(err)) from err
        if offset >= len(raw):
            raise ExtrinsicFormatError("missing call")
        return Extrinsic(raw=raw, signed=True, call=raw[offset:], signer=bytes(signer), scheme=scheme,
                         signature=bytes(signature), era=era, nonce=nonce, tip=tip,
                         extra=raw[extra_start:offset])

    def signing_payload(self, spec_version: int, tx_version: int, genesis_hash: bytes, era_hash: bytes) -> bytes:
        payload = (self.call + self.extra + spec_version.to_bytes(4, "little") + tx_version.to_bytes(4, "little")
                   + genesis_hash + era_hash)
        return signing_payload(payload)  # the client signs the same bytes (etrid_ray.extrinsic_builder)

    def verify(self, payload: bytes) -> bool:
        assert self.signature is not None and self.signer is not None
        try:
            if self.scheme == "Sr25519":
                return bool(sr25519.verify(self.signature, payload, self.signer))
            if self.scheme == "Ed25519":
                return bool(ed25519_zebra.ed_verify(self.signature, payload, self.signer))
        except (ValueError, TypeError, OverflowError):
            return False
        return False  # ECDSA signers would need key recovery; the devnet's dev accounts are sr25519


def encode_unsigned(call: bytes) -> bytes:
    body = b"\x04" + call
    return compact_encode(len(body)) + body
