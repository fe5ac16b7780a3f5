"""Fake TEEs for tests: a test CA that signs reports the way the hardware does, and fake /dev and
configfs-tsm trees whose behaviour follows the kernel's as far as plain directories allow.

- :class:`TestCA`: an AMD-like chain (ARK → ASK → VCEK, ECDSA P-384) that signs SEV-SNP
  ATTESTATION_REPORTs (R and S little-endian in the 0x2A0 signature field, over bytes 0x000–0x29F),
  and an Intel-like chain (Root CA → PCK Platform CA → PCK, P-256) with a quoting enclave whose
  attestation key signs DCAP quotes (SGX v3, TDX v4) and whose QE report binds that key.
- :class:`FakeTeeTree`: ``dev/`` with the devices of one TEE, and for TDX/SEV-SNP a configfs-tsm
  ``sys/kernel/config/tsm/report`` emulated by a thread (a new entry gets ``provider``, ``generation``,
  ``inblob``, ``outblob``, ``auxblob``; a write to ``inblob`` produces a signed report and bumps
  ``generation``, outblob first); for SGX, Gramine's ``dev/attestation`` (a write to
  ``user_report_data`` produces ``quote``). Modes: ``live``; ``stale`` (the TEE keeps handing back a
  report made for an earlier nonce); ``garbage`` (a wrong-sized report); layouts ``absent``,
  ``dangling`` (a device symlink to nowhere), ``not-a-device`` (a directory), ``partial`` (SGX without
  ``sgx_provision``), ``no-provider`` (configfs-tsm without a provider: entries stay empty), ``tsm-only``
  (configfs-tsm without the /dev node, as in a container that mounts only /sys/kernel/config).
- :class:`FakeBlocks`: a chain's recent blocks for the verifier.
- :class:`TeeGatedHead`: the provider head with the :class:`~etrid_ray.security.tee.node.TeeGate` calls
  in place, exactly where ``provider/head.py`` should make them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import secrets
import shutil
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from etrid_ray.security.tee import verify as v
from etrid_ray.security.tee.config import TeeConfig

SNP_POLICY_DEFAULT = 0x30000  # bit 16 (must be one) and bit 17 (SMT allowed)
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "etrid-ray test CA"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key: Any, issuer: str, issuer_key: Any, *, ca: bool, hash_alg: Any,
          not_before: dt.datetime | None = None, days: int = 365) -> x509.Certificate:
    now = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True)
    return builder.sign(issuer_key, hash_alg)


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _der(c: x509.Certificate) -> bytes:
    return c.public_bytes(serialization.Encoding.DER)


def _raw_sig(der: bytes, size: int) -> tuple[int, int]:
    r, s = decode_dss_signature(der)
    return r, s


class TestCA:
    """Test roots and signing keys for the three TEE types (fresh keys per instance)."""

    __test__ = False  # not a pytest class

    def __init__(self, *, vcek_expired: bool = False) -> None:
        p384, p256 = ec.SECP384R1(), ec.SECP256R1()
        self.ark_key = ec.generate_private_key(p384)
        self.ask_key = ec.generate_private_key(p384)
        self.vcek_key = ec.generate_private_key(p384)
        self.ark = _cert("ARK-Genoa (test)", self.ark_key, "ARK-Genoa (test)", self.ark_key, ca=True,
                         hash_alg=hashes.SHA384(), days=3650)
        self.ask = _cert("SEV-Genoa (test)", self.ask_key, "ARK-Genoa (test)", self.ark_key, ca=True,
                         hash_alg=hashes.SHA384(), days=3650)
        month_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
        self.vcek = _cert("SEV-VCEK (test)", self.vcek_key, "SEV-Genoa (test)", self.ask_key, ca=False,
                          hash_alg=hashes.SHA384(), **({"not_before": month_ago, "days": 10} if vcek_expired else {}))
        self.intel_root_key = ec.generate_private_key(p256)
        self.pck_ca_key = ec.generate_private_key(p256)
        self.pck_key = ec.generate_private_key(p256)
        self.attest_key = ec.generate_private_key(p256)  # the quoting enclave's attestation key
        self.intel_root = _cert("Intel SGX Root CA (test)", self.intel_root_key, "Intel SGX Root CA (test)",
                                self.intel_root_key, ca=True, hash_alg=hashes.SHA256(), days=3650)
        self.pck_ca = _cert("Intel SGX PCK Platform CA (test)", self.pck_ca_key, "Intel SGX Root CA (test)",
                            self.intel_root_key, ca=True, hash_alg=hashes.SHA256(), days=3650)
        self.pck = _cert("Intel SGX PCK Certificate (test)", self.pck_key, "Intel SGX PCK Platform CA (test)",
                         self.pck_ca_key, ca=False, hash_alg=hashes.SHA256())
        self.chip_id = secrets.token_bytes(64)

    # SEV-SNP ---------------------------------------------------------------------------------------

    def snp_report(self, report_data: bytes, measurement: bytes, *, policy: int = SNP_POLICY_DEFAULT,
                   debug: bool = False, version: int = 3, key: Any = None) -> bytes:
        """An ATTESTATION_REPORT as the AMD secure processor writes it, signed with the VCEK."""
        if debug:
            policy |= v.SNP_POLICY_DEBUG
        buf = bytearray(v.SNP_REPORT_SIZE)
        struct.pack_into("<IIQ", buf, 0, version, 1, policy)
        struct.pack_into("<II", buf, 0x30, 0, v.SNP_SIG_ALGO_ECDSA_P384_SHA384)
        tcb = 0x1B_00_00_00_00_00_00_03
        struct.pack_into("<QQ", buf, 0x38, tcb, 0x3)  # CURRENT_TCB, PLATFORM_INFO
        buf[0x50:0x90] = report_data.ljust(64, b"\0")[:64]
        buf[0x90:0xC0] = measurement.ljust(48, b"\0")[:48]
        buf[0x140:0x160] = secrets.token_bytes(32)  # REPORT_ID
        struct.pack_into("<Q", buf, 0x180, tcb)  # REPORTED_TCB
        buf[0x1A0:0x1E0] = self.chip_id
        struct.pack_into("<Q", buf, 0x1E0, tcb)  # COMMITTED_TCB
        sig = (key or self.vcek_key).sign(bytes(buf[:v.SNP_SIGNED_LEN]), ec.ECDSA(hashes.SHA384()))
        r, s = _raw_sig(sig, 48)
        buf[0x2A0:0x2A0 + 72] = r.to_bytes(72, "little")
        buf[0x2E8:0x2E8 + 72] = s.to_bytes(72, "little")
        return bytes(buf)

    def snp_aux(self, *, vcek: x509.Certificate | None = None) -> bytes:
        """The host's certificate table (configfs-tsm ``auxblob``): VCEK, ASK, ARK."""
        return v.build_cert_table({v.GUID_VCEK: _der(vcek or self.vcek), v.GUID_ASK: _der(self.ask),
                                   v.GUID_ARK: _der(self.ark)})

    # DCAP ------------------------------------------------------------------------------------------

    def _qe_cert_data(self) -> tuple[bytes, bytes]:
        attest_pub = self.attest_key.public_key().public_bytes(serialization.Encoding.X962,
                                                                serialization.PublicFormat.UncompressedPoint)[1:]
        auth = secrets.token_bytes(32)
        qe_report = bytearray(v.SGX_BODY_LEN)
        qe_report[64:96] = hashlib.sha256(b"test quoting enclave").digest()  # QE MRENCLAVE
        qe_report[320:384] = hashlib.sha256(attest_pub + auth).digest() + b"\0" * 32
        qe_sig = self._p256_raw(self.pck_key.sign(bytes(qe_report), ec.ECDSA(hashes.SHA256())))
        pem = _pem(self.pck, self.pck_ca, self.intel_root)
        inner = (bytes(qe_report) + qe_sig + struct.pack("<H", len(auth)) + auth
                 + struct.pack("<HI", v.CERT_TYPE_PCK_CHAIN, len(pem)) + pem)
        return attest_pub, inner

    @staticmethod
    def _p256_raw(der: bytes) -> bytes:
        r, s = decode_dss_signature(der)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def _quote(self, header: bytes, body: bytes, v4: bool) -> bytes:
        attest_pub, inner = self._qe_cert_data()
        sig = self._p256_raw(self.attest_key.sign(header + body, ec.ECDSA(hashes.SHA256())))
        cert_data = struct.pack("<HI", v.CERT_TYPE_QE_REPORT, len(inner)) + inner if v4 else inner
        sig_data = sig + attest_pub + cert_data
        return header + body + struct.pack("<I", len(sig_data)) + sig_data

    def sgx_quote(self, report_data: bytes, mrenclave: bytes, *, debug: bool = False) -> bytes:
        """A DCAP v3 quote of an SGX enclave, as the quoting enclave produces it."""
        header = struct.pack("<HHIHH", 3, v.ATT_KEY_ECDSA_P256, 0, 1, 1) + INTEL_QE_VENDOR_ID + b"\0" * 20
        body = bytearray(v.SGX_BODY_LEN)
        struct.pack_into("<Q", body, 48, 0x4 | (v.SGX_ATTR_DEBUG if debug else 0))  # INIT (+ DEBUG)
        body[64:96] = mrenclave.ljust(32, b"\0")[:32]
        body[128:160] = hashlib.sha256(b"enclave signer").digest()
        body[320:384] = report_data.ljust(64, b"\0")[:64]
        return self._quote(header, bytes(body), v4=False)

    def tdx_quote(self, report_data: bytes, mrtd: bytes, *, debug: bool = False) -> bytes:
        """A DCAP v4 quote of a TD, as the TD quoting enclave produces it."""
        header = struct.pack("<HHIHH", 4, v.ATT_KEY_ECDSA_P256, v.TEE_TYPE_TDX, 0, 0) + INTEL_QE_VENDOR_ID + b"\0" * 20
        body = bytearray(v.TDX_BODY_LEN)
        struct.pack_into("<Q", body, 120, v.TDX_ATTR_DEBUG if debug else 0)
        body[136:184] = mrtd.ljust(48, b"\0")[:48]
        body[520:584] = report_data.ljust(64, b"\0")[:64]
        return self._quote(header, bytes(body), v4=True)

    def report(self, tee: str, report_data: bytes, measurement: bytes, **kw: Any) -> bytes:
        if tee == "sev-snp":
            return self.snp_report(report_data, measurement, **kw)
        if tee == "tdx":
            return self.tdx_quote(report_data, measurement, **kw)
        return self.sgx_quote(report_data, measurement, **kw)

    # files -----------------------------------------------------------------------------------------

    def write(self, directory: Path) -> dict[str, dict[str, list[Path]]]:
        """PEM files of the roots and intermediates; returns TeeConfig's ``trust_roots`` and ``certificates``."""
        directory.mkdir(parents=True, exist_ok=True)
        files = {"ark.pem": _pem(self.ark), "ask.pem": _pem(self.ask), "vcek.pem": _pem(self.vcek),
                 "intel-root.pem": _pem(self.intel_root), "pck-ca.pem": _pem(self.pck_ca)}
        for name, data in files.items():
            (directory / name).write_bytes(data)
        d = directory
        return {"trust_roots": {"sev-snp": [d / "ark.pem"], "sgx": [d / "intel-root.pem"],
                                "tdx": [d / "intel-root.pem"]},
                "certificates": {"sev-snp": [d / "ask.pem", d / "vcek.pem"], "sgx": [d / "pck-ca.pem"],
                                 "tdx": [d / "pck-ca.pem"]}}


MEASUREMENTS = {"sev-snp": hashlib.sha384(b"etrid worker image (SNP launch digest)").digest(),
                "tdx": hashlib.sha384(b"etrid worker image (MRTD)").digest(),
                "sgx": hashlib.sha256(b"etrid worker enclave (MRENCLAVE)").digest()}


def tee_config(tmp: Path, ca: TestCA, *, root: Path | None, allowed: dict[str, list[bytes]] | None = None,
               **kw: Any) -> TeeConfig:
    """A TeeConfig trusting ``ca``, allowing MEASUREMENTS (or ``allowed``), reading the tree at ``root``."""
    certs = ca.write(tmp / "pki")
    allowed = allowed if allowed is not None else {t: [m] for t, m in MEASUREMENTS.items()}
    return TeeConfig(root=root, trust_roots=certs["trust_roots"], certificates=certs["certificates"],
                     allowed_measurements={t: [m.hex() for m in ms] for t, ms in allowed.items()},
                     **{"report_timeout_s": 2.0, **kw})


# --- fake trees ---------------------------------------------------------------------------------------

TSM_PROVIDER = {"sev-snp": "sev_guest", "tdx": "tdx_guest"}


@dataclass
class FakeTeeTree:
    """``root`` laid out like a node with ``tee``; ``start()`` runs the kernel/Gramine emulation."""

    root: Path
    tee: str  # "sev-snp" | "tdx" | "sgx"
    ca: TestCA
    mode: str = "live"  # live | stale | garbage | racy-once (how the emulation answers)
    layout: str = "present"  # present | absent | dangling | not-a-device | partial | no-provider | tsm-only
    measurement: bytes = b""
    debug: bool = False
    provider: str | None = None  # configfs-tsm provider name (default: the TEE's own)
    poll_s: float = 0.003
    reports: int = 0  # reports produced
    _stale: bytes = b""
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _entries: dict[str, bytes] = field(default_factory=dict)
    _generation: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.measurement = self.measurement or MEASUREMENTS[self.tee]
        # a report the TEE made for some earlier nonce: what a stuck or replaying interface hands back
        self._stale = self.ca.report(self.tee, b"\x01" * 64, self.measurement)

    @property
    def dev(self) -> Path:
        return self.root / "dev"

    @property
    def tsm(self) -> Path:
        return self.root / "sys/kernel/config/tsm/report"

    @property
    def gramine(self) -> Path:
        return self.root / "dev/attestation"

    @property
    def scratch(self) -> Path:
        return self.root / ".emulation"

    def build(self) -> FakeTeeTree:
        self.dev.mkdir(parents=True, exist_ok=True)
        self.scratch.mkdir(parents=True, exist_ok=True)
        if self.layout == "absent":
            return self
        names = {"sgx": ["sgx_enclave", "sgx_provision"], "tdx": ["tdx_guest"], "sev-snp": ["sev-guest"]}[self.tee]
        for i, name in enumerate(names):
            path = self.dev / name
            if self.layout == "dangling":
                path.symlink_to(self.root / "nowhere" / name)
            elif self.layout == "not-a-device":
                path.mkdir()
            elif (self.layout == "partial" and i > 0) or self.layout == "tsm-only":
                continue
            else:
                path.write_bytes(b"")
        if self.tee == "sgx":
            self.gramine.mkdir(parents=True, exist_ok=True)
            (self.gramine / "attestation_type").write_text("dcap")
            (self.gramine / "user_report_data").write_bytes(b"\0" * 64)
            (self.gramine / "quote").write_bytes(self._stale)
        else:
            self.tsm.mkdir(parents=True, exist_ok=True)
        return self

    def start(self) -> FakeTeeTree:
        self.build()
        if self.layout != "no-provider":
            self._thread = threading.Thread(target=self._run, name=f"fake-{self.tee}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeTeeTree:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_mode(self, mode: str) -> None:
        with self._lock:
            self.mode = mode

    # the emulation ---------------------------------------------------------------------------------

    def _answer(self, report_data: bytes) -> bytes:
        with self._lock:
            mode = self.mode
        if mode == "stale":
            return self._stale
        if mode == "garbage":
            return b"\x02" * 100
        self.reports += 1
        return self.ca.report(self.tee, report_data, self.measurement, debug=self.debug)

    def _put(self, path: Path, data: bytes) -> None:
        tmp = self.scratch / f"{path.name}.{threading.get_ident()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.tee == "sgx":
                    self._gramine_tick()
                else:
                    self._tsm_tick()
            except OSError:  # an entry removed under us: the next tick sees the new state
                pass
            self._stop.wait(self.poll_s)

    def _tsm_tick(self) -> None:
        if not self.tsm.is_dir():
            return
        live = set()
        for entry in self.tsm.iterdir():
            if not entry.is_dir():
                continue
            live.add(entry.name)
            if entry.name not in self._entries:  # the kernel creates the attributes with the directory
                self._put(entry / "provider", (self.provider or TSM_PROVIDER[self.tee]).encode() + b"\n")
                self._put(entry / "inblob", b"")
                self._put(entry / "outblob", b"")
                self._put(entry / "auxblob", b"")
                self._put(entry / "privlevel_floor", b"0\n")
                self._put(entry / "generation", b"0\n")
                self._entries[entry.name] = b""
                self._generation[entry.name] = 0
                continue
            inblob = (entry / "inblob").read_bytes()
            if inblob and inblob != self._entries[entry.name]:
                self._entries[entry.name] = inblob
                report = self._answer(inblob.ljust(64, b"\0")[:64])
                self._put(entry / "outblob", report)
                if self.tee == "sev-snp":
                    self._put(entry / "auxblob", self.ca.snp_aux())
                with self._lock:  # racy-once: another writer's write lands too, once (generation +2)
                    bump, self.mode = (2, "live") if self.mode == "racy-once" else (1, self.mode)
                self._generation[entry.name] += bump  # outblob first, then generation: readers see both or neither
                self._put(entry / "generation", f"{self._generation[entry.name]}\n".encode())
        for gone in [n for n in self._entries if n not in live]:
            del self._entries[gone]
            self._generation.pop(gone, None)

    def _gramine_tick(self) -> None:
        data = (self.gramine / "user_report_data").read_bytes()
        if data and data != self._entries.get("user_report_data"):
            self._entries["user_report_data"] = data
            self._put(self.gramine / "quote", self._answer(data.ljust(64, b"\0")[:64]))


# --- a chain's blocks -------------------------------------------------------------------------------


class FakeBlocks:
    """Recent blocks of a chain: ``best()``, ``best_number()``, ``number_of(hash)``; ``advance()`` seals more."""

    def __init__(self, height: int = 10) -> None:
        self.hashes: list[bytes] = []
        self.advance(height + 1)

    def advance(self, n: int = 1) -> None:
        for _ in range(n):
            self.hashes.append(hashlib.blake2b(b"block %d" % len(self.hashes), digest_size=32).digest())

    def best_number(self) -> int:
        return len(self.hashes) - 1

    def best(self) -> tuple[int, bytes]:
        return self.best_number(), self.hashes[-1]

    def number_of(self, block_hash: bytes) -> int | None:
        try:
            return self.hashes.index(block_hash)
        except ValueError:
            return None


def clear(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# --- the provider head with the TEE gate wired in -----------------------------------------------------


def apply_node_start(ray_cr: dict[str, Any], pool: str, resources: dict[str, float]) -> dict[str, Any]:
    """What the TEE worker's start command does to its node, applied to the group's rayStartParams: the
    fake multi-node provider starts nodes from the node type and cannot run that command itself."""
    for group in ray_cr["spec"]["workerGroupSpecs"]:
        if group["groupName"] != pool:
            continue
        params = group["rayStartParams"]
        current = json.loads(params["resources"][1:-1].replace("\\", ""))
        for key, value in resources.items():
            if value:
                current[key] = int(value)
            else:
                current.pop(key, None)  # Ray drops zero quantities: the node does not advertise it
        params["resources"] = '"' + json.dumps(current, separators=(", ", ": ")).replace('"', '\\"') + '"'
    return ray_cr


def tee_gated_head_class() -> type:
    """``ProviderHead`` (whose TeeGate hooks are built in) that also records the node each job ran on."""
    from etrid_ray.provider.head import ProviderHead

    class TeeGatedHead(ProviderHead):
        def start(self, *, background: bool = True) -> TeeGatedHead:
            self.node_of: dict[int, str] = {}
            profit = self.harvester.on_outcome

            def record(tracked: Any, outcome: Any) -> None:
                self.node_of[tracked.job_id] = getattr(outcome, "node_id", "")
                if profit is not None:
                    profit(tracked, outcome)

            self.harvester.on_outcome = record
            super().start(background=background)
            return self

    return TeeGatedHead
