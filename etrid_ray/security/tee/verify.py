"""Offline verification of TEE evidence: structure, nonce binding, freshness, measurement, signature, chain.

Everything here works without the vendors' online services: the trust anchors (AMD's ARK, Intel's SGX
Root CA) and any intermediates or cached leaves (ASK, VCEK, PCK CA) come from configuration, and the
evidence brings the rest (the SEV-SNP certificate table of configfs-tsm's ``auxblob``; the PCK chain a
DCAP quote embeds). What is *not* checked offline: revocation (CRLs), TCB levels against Intel's TCB
info / AMD's current TCB, and the QE identity — those need collateral fetched from the vendors, and the
policy hook for them is :class:`TeePolicy`.

Formats (little-endian, offsets in bytes):

- SEV-SNP ``ATTESTATION_REPORT`` (AMD SEV-SNP ABI, table "ATTESTATION_REPORT Structure"), 0x4A0 = 1184
  bytes: VERSION @0x00, GUEST_SVN @0x04, POLICY @0x08 (bit 19 = debug allowed), VMPL @0x30,
  SIGNATURE_ALGO @0x34 (1 = ECDSA P-384 with SHA-384), REPORT_DATA @0x50 (64), MEASUREMENT @0x90 (48),
  HOST_DATA @0xC0, REPORT_ID @0x140, REPORTED_TCB @0x180, CHIP_ID @0x1A0 (64), SIGNATURE @0x2A0:
  R (72 bytes LE) and S (72 bytes LE), over bytes 0x000–0x29F, by the VCEK (or VLEK).
- DCAP quote (Intel SGX ECDSA Quote Library reference, v3 for SGX and v4 for TDX): a 48-byte header
  (version, attestation key type 2 = ECDSA-256-with-P-256, TEE type 0x81 = TDX in v4), the report body
  (SGX: 384 bytes, MRENCLAVE @64, MRSIGNER @128, REPORT_DATA @320; TDX: 584 bytes, TD_ATTRIBUTES @120,
  MRTD @136, REPORT_DATA @520), then the signature data: the quote signature by the attestation key, the
  attestation key, the QE report (whose REPORT_DATA binds SHA-256(attestation key ‖ QE auth data)) and
  its signature by the PCK key, and the PCK certificate chain (PEM).

The nonce: REPORT_DATA = block hash (32) ‖ BLAKE2b-256 over (account, GPU id, block hash), personalised
``etrid-tee-v1``. The block hash makes it fresh (a verifier refuses blocks older than ``max_block_age``
and blocks not on the chain), the account and GPU id make it specific (another provider's or another
GPU's report never matches), and :class:`ReplayGuard` refuses a report it has already seen.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

NONCE_PERSON = b"etrid-tee-v1"
STALE_ANSWER = "stale: the report answers another nonce than the one just issued (an old or replayed report)"
REPORT_DATA_LEN = 64

# --- nonce -------------------------------------------------------------------------------------------


def make_nonce(account_id: bytes, gpu_id: int, block_hash: bytes) -> bytes:
    """The 64 bytes of REPORT_DATA for (provider account, GPU id, recent block)."""
    if len(account_id) != 32 or len(block_hash) != 32:
        raise ValueError("account id and block hash are 32 bytes each")
    tag = hashlib.blake2b(account_id + struct.pack("<Q", gpu_id) + block_hash, digest_size=32,
                          person=NONCE_PERSON).digest()
    return block_hash + tag


def nonce_block(report_data: bytes) -> bytes:
    """The block hash a nonce names (its first 32 bytes)."""
    return bytes(report_data[:32])


# --- SEV-SNP -----------------------------------------------------------------------------------------

SNP_REPORT_SIZE = 0x4A0
SNP_SIGNED_LEN = 0x2A0
SNP_POLICY_DEBUG = 1 << 19
SNP_SIG_ALGO_ECDSA_P384_SHA384 = 1
SNP_VERSIONS = (2, 3, 4, 5)
# certificate table GUIDs (SEV-SNP GHCB spec, "SNP Extended Guest Request")
GUID_VCEK = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd")
GUID_VLEK = uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1")
GUID_ASK = uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782")
GUID_ARK = uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae")


class EvidenceError(ValueError):
    """Evidence that is malformed: the message says which field and why."""


@dataclass(frozen=True)
class SnpReport:
    raw: bytes
    version: int
    guest_svn: int
    policy: int
    vmpl: int
    signature_algo: int
    report_data: bytes
    measurement: bytes
    host_data: bytes
    report_id: bytes
    reported_tcb: int
    chip_id: bytes
    sig_r: int
    sig_s: int

    tee = "sev-snp"

    @property
    def debug(self) -> bool:
        return bool(self.policy & SNP_POLICY_DEBUG)

    @property
    def signed(self) -> bytes:
        return self.raw[:SNP_SIGNED_LEN]


def parse_snp_report(data: bytes) -> SnpReport:
    if len(data) != SNP_REPORT_SIZE:
        raise EvidenceError(f"SEV-SNP report is {len(data)} bytes, not {SNP_REPORT_SIZE}")
    version, guest_svn, policy = struct.unpack_from("<IIQ", data, 0)
    vmpl, sig_algo = struct.unpack_from("<II", data, 0x30)
    if version not in SNP_VERSIONS:
        raise EvidenceError(f"SEV-SNP report version {version} unknown")
    if sig_algo != SNP_SIG_ALGO_ECDSA_P384_SHA384:
        raise EvidenceError(f"SEV-SNP signature algorithm {sig_algo} is not ECDSA P-384/SHA-384")
    r = int.from_bytes(data[0x2A0:0x2A0 + 72], "little")
    s = int.from_bytes(data[0x2E8:0x2E8 + 72], "little")
    if r == 0 or s == 0:
        raise EvidenceError("SEV-SNP report is unsigned (zero signature)")
    (reported_tcb,) = struct.unpack_from("<Q", data, 0x180)
    return SnpReport(raw=bytes(data), version=version, guest_svn=guest_svn, policy=policy, vmpl=vmpl,
                     signature_algo=sig_algo, report_data=data[0x50:0x90], measurement=data[0x90:0xC0],
                     host_data=data[0xC0:0xE0], report_id=data[0x140:0x160], reported_tcb=reported_tcb,
                     chip_id=data[0x1A0:0x1E0], sig_r=r, sig_s=s)


def parse_cert_table(aux: bytes) -> dict[uuid.UUID, bytes]:
    """The SEV-SNP extended-report certificate table: (GUID, offset u32, length u32) entries ending with an
    all-zero one, offsets from the table's start. Returns DER by GUID."""
    out: dict[uuid.UUID, bytes] = {}
    pos = 0
    while pos + 24 <= len(aux):
        guid = uuid.UUID(bytes_le=bytes(aux[pos:pos + 16]))
        offset, length = struct.unpack_from("<II", aux, pos + 16)
        pos += 24
        if guid.int == 0 and offset == 0 and length == 0:
            return out
        if offset + length > len(aux) or length == 0:
            raise EvidenceError(f"certificate table entry {guid} points outside the table")
        out[guid] = bytes(aux[offset:offset + length])
    if aux:
        raise EvidenceError("certificate table has no terminating entry")
    return out


def build_cert_table(certs: Mapping[uuid.UUID, bytes]) -> bytes:
    """The inverse of :func:`parse_cert_table` (the host's side; the test fixtures build auxblobs with it)."""
    header_len = 24 * (len(certs) + 1)
    header, body = b"", b""
    for guid, der in certs.items():
        header += guid.bytes_le + struct.pack("<II", header_len + len(body), len(der))
        body += der
    return header + b"\0" * 24 + body


def snp_signature_der(report: SnpReport) -> bytes:
    return encode_dss_signature(report.sig_r, report.sig_s)


# --- DCAP quotes (SGX v3, TDX v4) ---------------------------------------------------------------------

QUOTE_HEADER_LEN = 48
SGX_BODY_LEN = 384
TDX_BODY_LEN = 584
ATT_KEY_ECDSA_P256 = 2
TEE_TYPE_SGX = 0x00000000
TEE_TYPE_TDX = 0x00000081
CERT_TYPE_PCK_CHAIN = 5
CERT_TYPE_QE_REPORT = 6
SGX_ATTR_DEBUG = 1 << 1
TDX_ATTR_DEBUG = 1 << 0


@dataclass(frozen=True)
class DcapQuote:
    raw: bytes
    tee: str  # "sgx" | "tdx"
    version: int
    header_and_body: bytes  # what the attestation key signed
    report_data: bytes
    measurement: bytes  # SGX MRENCLAVE | TDX MRTD
    mr_signer: bytes  # SGX MRSIGNER | TDX MRSIGNERSEAM
    attributes: int  # SGX ATTRIBUTES.flags | TDX TD_ATTRIBUTES
    signature: bytes  # r ‖ s, big-endian, 64 bytes
    attestation_key: bytes  # x ‖ y, 64 bytes
    qe_report: bytes
    qe_report_signature: bytes
    qe_auth_data: bytes
    pck_chain_pem: bytes

    @property
    def debug(self) -> bool:
        return bool(self.attributes & (SGX_ATTR_DEBUG if self.tee == "sgx" else TDX_ATTR_DEBUG))


class _Reader:
    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def take(self, n: int, field_name: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise EvidenceError(f"{self.what}: truncated at {field_name} (offset {self.pos}, {n} bytes)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u16(self, name: str) -> int:
        return int(struct.unpack("<H", self.take(2, name))[0])

    def u32(self, name: str) -> int:
        return int(struct.unpack("<I", self.take(4, name))[0])


def parse_dcap_quote(data: bytes) -> DcapQuote:
    r = _Reader(bytes(data), "DCAP quote")
    version = r.u16("version")
    att_key_type = r.u16("attestation key type")
    tee_word = r.u32("TEE type")
    r.take(QUOTE_HEADER_LEN - 8, "header")
    if att_key_type != ATT_KEY_ECDSA_P256:
        raise EvidenceError(f"DCAP quote attestation key type {att_key_type} is not ECDSA-256-with-P-256")
    if version == 3:
        tee = "sgx"
    elif version == 4:
        if tee_word == TEE_TYPE_TDX:
            tee = "tdx"
        elif tee_word == TEE_TYPE_SGX:
            tee = "sgx"
        else:
            raise EvidenceError(f"DCAP quote v4 TEE type {tee_word:#x} unknown")
    else:
        raise EvidenceError(f"DCAP quote version {version} unsupported (3: SGX, 4: SGX/TDX)")
    body = r.take(SGX_BODY_LEN if tee == "sgx" else TDX_BODY_LEN, "report body")
    if tee == "sgx":
        attributes = struct.unpack_from("<Q", body, 48)[0]
        measurement, mr_signer, report_data = body[64:96], body[128:160], body[320:384]
    else:
        attributes = struct.unpack_from("<Q", body, 120)[0]
        measurement, mr_signer, report_data = body[136:184], body[64:112], body[520:584]
    header_and_body = bytes(data[:r.pos])
    sig_len = r.u32("signature data length")
    if r.pos + sig_len != len(data):
        raise EvidenceError(f"DCAP quote: signature data length {sig_len} does not match the quote's size")
    signature = r.take(64, "quote signature")
    attestation_key = r.take(64, "attestation key")
    if version == 4:
        cert_type = r.u16("certification data type")
        size = r.u32("certification data size")
        if cert_type != CERT_TYPE_QE_REPORT:
            raise EvidenceError(f"DCAP v4 certification data type {cert_type}: expected 6 (QE report)")
        r = _Reader(r.take(size, "QE report certification data"), "QE report certification data")
    qe_report = r.take(SGX_BODY_LEN, "QE report")
    qe_report_signature = r.take(64, "QE report signature")
    qe_auth_data = r.take(r.u16("QE auth data size"), "QE auth data")
    cert_type = r.u16("PCK certification data type")
    size = r.u32("PCK certification data size")
    if cert_type != CERT_TYPE_PCK_CHAIN:
        raise EvidenceError(f"DCAP certification data type {cert_type}: expected 5 (PCK certificate chain)")
    pck_chain = r.take(size, "PCK certificate chain")
    return DcapQuote(raw=bytes(data), tee=tee, version=version, header_and_body=header_and_body,
                     report_data=bytes(report_data), measurement=bytes(measurement), mr_signer=bytes(mr_signer),
                     attributes=int(attributes), signature=signature, attestation_key=attestation_key,
                     qe_report=qe_report, qe_report_signature=qe_report_signature, qe_auth_data=qe_auth_data,
                     pck_chain_pem=pck_chain)


def raw_sig_der(sig64: bytes) -> bytes:
    return encode_dss_signature(int.from_bytes(sig64[:32], "big"), int.from_bytes(sig64[32:], "big"))


def p256_key(xy: bytes) -> ec.EllipticCurvePublicKey:
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + xy)
    except ValueError:
        raise EvidenceError("DCAP quote: attestation key is not a P-256 point") from None


def parse_report(tee: str, data: bytes) -> SnpReport | DcapQuote:
    """Structure check: the report or quote of ``tee``, parsed, or :class:`EvidenceError` naming the fault."""
    if tee == "sev-snp":
        return parse_snp_report(data)
    if tee in ("sgx", "tdx"):
        quote = parse_dcap_quote(data)
        if quote.tee != tee:
            raise EvidenceError(f"a {quote.tee} quote where a {tee} one was expected")
        return quote
    raise EvidenceError(f"unknown TEE type {tee!r}")


def report_data_of(tee: str, data: bytes) -> bytes:
    return parse_report(tee, data).report_data


def measurement_of(report: SnpReport | DcapQuote) -> bytes:
    return report.measurement


# --- certificates -----------------------------------------------------------------------------------


def load_pem_certs(data: bytes) -> list[x509.Certificate]:
    return list(x509.load_pem_x509_certificates(data)) if data.strip() else []


def load_cert_files(paths: Iterable[Path]) -> list[x509.Certificate]:
    out: list[x509.Certificate] = []
    for p in paths:
        raw = Path(p).read_bytes()
        out += load_pem_certs(raw) if b"-----BEGIN" in raw else [x509.load_der_x509_certificate(raw)]
    return out


def _valid_at(cert: x509.Certificate, now: datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def verify_chain(leaf: x509.Certificate, pool: Iterable[x509.Certificate], anchors: Iterable[x509.Certificate],
                 now: datetime) -> str | None:
    """None when ``leaf`` chains through CA certificates of ``pool`` to one of ``anchors`` (every link's
    signature and validity checked), else the reason."""
    anchors = list(anchors)
    if not anchors:
        return "no trust anchor configured for this TEE type"
    pool = [c for c in pool if c != leaf]
    if not _valid_at(leaf, now):
        return f"certificate {leaf.subject.rfc4514_string()} is outside its validity period"
    current = leaf
    for _ in range(8):
        for anchor in anchors:
            if _issued_by(current, anchor):
                if not _valid_at(anchor, now):
                    return f"trust anchor {anchor.subject.rfc4514_string()} is outside its validity period"
                return None
        nxt = next((c for c in pool if _is_ca(c) and _issued_by(current, c)), None)
        if nxt is None:
            return (f"no trusted issuer for {current.subject.rfc4514_string()} "
                    f"(issuer {current.issuer.rfc4514_string()})")
        if not _valid_at(nxt, now):
            return f"certificate {nxt.subject.rfc4514_string()} is outside its validity period"
        pool = [c for c in pool if c != nxt]
        current = nxt
    return "certificate chain too long"


# --- policy and freshness ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TeePolicy:
    """What a verifier trusts: anchors and extra certificates per TEE type, the measurement allow-list."""

    trust_anchors: Mapping[str, tuple[x509.Certificate, ...]] = field(default_factory=dict)
    certificates: Mapping[str, tuple[x509.Certificate, ...]] = field(default_factory=dict)
    allowed_measurements: Mapping[str, frozenset[bytes]] = field(default_factory=dict)
    allow_debug: bool = False
    max_block_age: int = 50

    @classmethod
    def from_config(cls, config: Any) -> TeePolicy:
        """From a :class:`~etrid_ray.security.tee.config.TeeConfig` (certificate files are read here)."""
        return cls(trust_anchors={t: tuple(load_cert_files(ps)) for t, ps in config.trust_roots.items()},
                   certificates={t: tuple(load_cert_files(ps)) for t, ps in config.certificates.items()},
                   allowed_measurements={t: frozenset(bytes.fromhex(m) for m in ms)
                                         for t, ms in config.allowed_measurements.items()},
                   allow_debug=config.allow_debug, max_block_age=config.max_block_age)


class BlockView(Protocol):
    """The chain as a verifier needs it: the best block number and the number of a block hash."""

    def best_number(self) -> int: ...

    def number_of(self, block_hash: bytes) -> int | None: ...


class ChainBlocks:
    """:class:`BlockView` over a live connection (``chain_getHeader``), with a small cache of hashes seen."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._numbers: OrderedDict[bytes, int] = OrderedDict()

    def best_number(self) -> int:
        return int(self.conn.best_number())

    def best(self) -> tuple[int, bytes]:
        header = self.conn.rpc("chain_getHeader", [])
        number = int(header["number"], 16)
        return number, bytes.fromhex(self.conn.block_hash(number).removeprefix("0x"))

    def number_of(self, block_hash: bytes) -> int | None:
        if block_hash in self._numbers:
            return self._numbers[block_hash]
        try:
            header = self.conn.rpc("chain_getHeader", ["0x" + block_hash.hex()])
        except Exception:  # an unknown hash is an error on some nodes, null on others: both mean "not ours"
            return None
        if not header:
            return None
        number = int(header["number"], 16)
        try:  # a hash the node knows but that is not canonical (a fork) does not count
            canonical = self.conn.block_hash(number)
        except Exception:
            return None
        if bytes.fromhex(str(canonical).removeprefix("0x")) != block_hash:
            return None
        self._numbers[block_hash] = number
        while len(self._numbers) > 4096:
            self._numbers.popitem(last=False)
        return number


class ReplayGuard:
    """Remembers what was accepted: the same REPORT_DATA is never accepted twice, and for one key (account,
    GPU, node) a report on an older block than one already accepted is refused."""

    def __init__(self, capacity: int = 65_536) -> None:
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._latest: dict[Any, int] = {}
        self._lock = threading.Lock()
        self.capacity = capacity

    def problem(self, key: Any, report_data: bytes, block_number: int) -> str | None:
        with self._lock:
            if report_data in self._seen:
                return "replayed: this report's nonce was already accepted"
            latest = self._latest.get(key)
            if latest is not None and block_number < latest:
                return f"replayed: block #{block_number} is older than #{latest}, already attested"
            return None

    def record(self, key: Any, report_data: bytes, block_number: int) -> None:
        with self._lock:
            self._seen[report_data] = None
            while len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
            self._latest[key] = max(block_number, self._latest.get(key, block_number))


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str
    tee: str | None = None
    measurement: bytes | None = None
    block_number: int | None = None
    report_data: bytes | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "reason": self.reason, "tee": self.tee,
                "measurement": self.measurement.hex() if self.measurement else None,
                "block_number": self.block_number}


def _refuse(reason: str, tee: str | None = None, **kw: Any) -> Verdict:
    return Verdict(False, reason, tee, **kw)


def verify_evidence(tee: str, quote: bytes, *, account_id: bytes, gpu_id: int, policy: TeePolicy,
                    blocks: BlockView, aux: bytes = b"", guard: ReplayGuard | None = None,
                    guard_key: Any = None, expected_nonce: bytes | None = None,
                    now: datetime | None = None) -> Verdict:
    """The whole offline check, cheapest first. Accepted evidence is recorded in ``guard`` (if given).

    ``expected_nonce``: the nonce the verifier itself just issued (a challenge); the report must answer
    exactly that one, not merely some recent block's."""
    now = now or datetime.now(UTC)
    try:
        report = parse_report(tee, quote)
    except EvidenceError as exc:
        return _refuse(f"malformed: {exc}", tee)
    rd = bytes(report.report_data)
    block_hash = nonce_block(rd)
    if expected_nonce is not None and rd != expected_nonce:
        return _refuse(STALE_ANSWER, tee)
    if rd != make_nonce(account_id, gpu_id, block_hash):
        return _refuse("nonce mismatch: the report is not bound to this provider, GPU and block", tee)
    number = blocks.number_of(block_hash)
    if number is None:
        return _refuse(f"nonce names block 0x{block_hash.hex()[:16]}…, not a block of this chain", tee)
    best = blocks.best_number()
    if best - number > policy.max_block_age:
        return _refuse(f"stale: nonce from block #{number}, {best - number} blocks behind #{best} "
                       f"(max {policy.max_block_age})", tee, block_number=number)
    if report.debug and not policy.allow_debug:
        return _refuse("debug TEE: its memory is readable by the host", tee, block_number=number)
    allowed = policy.allowed_measurements.get(tee, frozenset())
    if report.measurement not in allowed:
        return _refuse(f"measurement {report.measurement.hex()} not in the allow-list", tee,
                       measurement=report.measurement, block_number=number)
    problem = (_snp_signature_problem(report, aux, policy, now) if isinstance(report, SnpReport)
               else _dcap_signature_problem(report, policy, now))
    if problem:
        return _refuse(problem, tee, measurement=report.measurement, block_number=number)
    key = guard_key if guard_key is not None else (account_id, gpu_id)
    if guard is not None:
        replay = guard.problem(key, rd, number)
        if replay:
            return _refuse(replay, tee, measurement=report.measurement, block_number=number)
        guard.record(key, rd, number)
    return Verdict(True, "ok", tee, report.measurement, number, rd)


def _snp_signature_problem(report: SnpReport, aux: bytes, policy: TeePolicy, now: datetime) -> str | None:
    try:
        table = parse_cert_table(aux) if aux else {}
    except EvidenceError as exc:
        return f"malformed: {exc}"
    try:
        from_aux = [x509.load_der_x509_certificate(der) for der in table.values()]
    except ValueError:
        return "malformed: a certificate in the report's certificate table is not DER X.509"
    leaves = [x509.load_der_x509_certificate(table[g]) for g in (GUID_VCEK, GUID_VLEK) if g in table]
    configured = list(policy.certificates.get("sev-snp", ()))
    leaves += [c for c in configured if not _is_ca(c)]
    if not leaves:
        return "no VCEK/VLEK: neither the report's certificate table nor the configuration has one"
    signature = snp_signature_der(report)
    for leaf in leaves:
        key = leaf.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
            continue
        try:
            key.verify(signature, report.signed, ec.ECDSA(hashes.SHA384()))
        except InvalidSignature:
            continue
        chain = verify_chain(leaf, from_aux + configured, policy.trust_anchors.get("sev-snp", ()), now)
        return None if chain is None else f"VCEK chain: {chain}"
    return "signature: the report is not signed by any VCEK/VLEK offered"


def _dcap_signature_problem(quote: DcapQuote, policy: TeePolicy, now: datetime) -> str | None:
    try:
        p256_key(quote.attestation_key).verify(raw_sig_der(quote.signature), quote.header_and_body,
                                               ec.ECDSA(hashes.SHA256()))
    except EvidenceError as exc:
        return f"malformed: {exc}"
    except InvalidSignature:
        return "signature: the quote is not signed by its attestation key"
    expected = hashlib.sha256(quote.attestation_key + quote.qe_auth_data).digest() + b"\0" * 32
    if quote.qe_report[320:384] != expected:
        return "signature: the QE report does not vouch for this attestation key"
    try:
        chain = load_pem_certs(quote.pck_chain_pem)
    except ValueError:
        return "malformed: the PCK certificate chain is not PEM X.509"
    configured = list(policy.certificates.get(quote.tee, ()))
    leaves = chain[:1] + [c for c in configured if not _is_ca(c)]
    if not leaves:
        return "no PCK certificate in the quote or the configuration"
    for leaf in leaves:
        key = leaf.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            continue
        try:
            key.verify(raw_sig_der(quote.qe_report_signature), quote.qe_report, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        problem = verify_chain(leaf, chain[1:] + configured, policy.trust_anchors.get(quote.tee, ()), now)
        return None if problem is None else f"PCK chain: {problem}"
    return "signature: the QE report is not signed by any PCK certificate offered"
