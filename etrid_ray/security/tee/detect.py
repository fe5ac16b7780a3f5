"""Which TEE this node runs in, and through which interface it can produce evidence.

What is looked at (under a configurable root, so tests lay out fake trees):

- Intel SGX: ``/dev/sgx_enclave`` and ``/dev/sgx_provision`` (the in-kernel driver, 5.11+); quotes come
  through Gramine's ``/dev/attestation`` pseudo-files (``user_report_data`` in, ``quote`` out).
- Intel TDX guest: ``/dev/tdx_guest``; AMD SEV-SNP guest: ``/dev/sev-guest``. Their reports come
  through the kernel's unified interface, configfs-tsm (``/sys/kernel/config/tsm/report``, 6.7+):
  ``mkdir`` an entry, write ``inblob``, read ``outblob``; the entry's ``provider`` attribute says
  which TEE answers (``tdx_guest``, ``sev_guest``), and that is what detection trusts over device names
  (a configfs-tsm provider alone, without the /dev node mounted, is enough).

Each device is *present* (a character device, or a regular file in a fake tree), *absent*, or *broken*
(a dangling link, a directory, unreadable). A TEE is detected only with its devices present **and** a
working evidence interface; everything else comes back as a problem in words, never an exception.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from etrid_ray.security.tee.config import TeeConfig

DEVICES: dict[str, tuple[str, ...]] = {"sgx": ("sgx_enclave", "sgx_provision"), "tdx": ("tdx_guest",),
                                       "sev-snp": ("sev-guest",)}
TSM_PROVIDERS = {"tdx_guest": "tdx", "sev_guest": "sev-snp"}  # configfs-tsm `provider` → TEE type
PREFERENCE = ("tdx", "sev-snp", "sgx")  # a confidential VM that also exposes SGX attests as the VM

State = Literal["present", "absent", "broken"]


@dataclass(frozen=True)
class DeviceCheck:
    path: str
    state: State
    detail: str = ""


@dataclass(frozen=True)
class Detection:
    """What this node offers: ``tee`` (None when nothing usable) and the interface evidence comes through."""

    tee: str | None
    interface: str | None  # "configfs-tsm" | "gramine"
    devices: tuple[DeviceCheck, ...] = ()
    problems: tuple[str, ...] = ()
    candidates: tuple[str, ...] = ()  # TEE types whose devices are all present
    tsm_provider: str | None = None

    @property
    def ok(self) -> bool:
        return self.tee is not None

    def as_dict(self) -> dict[str, Any]:
        return {"tee": self.tee, "interface": self.interface, "candidates": list(self.candidates),
                "tsm_provider": self.tsm_provider, "problems": list(self.problems),
                "devices": [{"path": d.path, "state": d.state, "detail": d.detail} for d in self.devices]}


def check_device(path: Path) -> DeviceCheck:
    try:
        st = path.stat()  # follows links: a dangling one raises FileNotFoundError …
    except FileNotFoundError:
        if path.is_symlink():  # … which tells it from a missing one
            return DeviceCheck(str(path), "broken", "dangling symlink")
        return DeviceCheck(str(path), "absent")
    except OSError as exc:
        return DeviceCheck(str(path), "broken", f"cannot stat ({errno.errorcode.get(exc.errno or 0, exc)})")
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        return DeviceCheck(str(path), "broken", "not a character device")
    if not os.access(path, os.R_OK | os.W_OK):
        return DeviceCheck(str(path), "broken", "no read/write access (device permissions or container mounts)")
    return DeviceCheck(str(path), "present")


@dataclass
class _TsmProbe:
    provider: str | None = None
    problem: str | None = None
    entries: list[str] = field(default_factory=list)


def probe_tsm(report_dir: Path, timeout_s: float = 2.0) -> _TsmProbe:
    """Creates a configfs-tsm entry, reads which provider answers, removes it. No report is generated:
    only reading ``outblob`` does that."""
    if not report_dir.exists():
        return _TsmProbe(problem=f"{report_dir} absent (kernel without configfs-tsm, or configfs not mounted)")
    if not report_dir.is_dir():
        return _TsmProbe(problem=f"{report_dir} is not a directory")
    entry = report_dir / f"etrid-probe-{os.getpid()}-{time.monotonic_ns()}"
    try:
        entry.mkdir()
    except OSError as exc:
        return _TsmProbe(problem=f"cannot create a report entry in {report_dir} ({type(exc).__name__})")
    try:
        provider_file = entry / "provider"
        deadline = time.monotonic() + timeout_s
        while not provider_file.exists():  # the kernel creates attributes with the entry; emulations may lag
            if time.monotonic() > deadline:
                return _TsmProbe(problem=f"{report_dir}: a new entry has no `provider` attribute (no TSM provider)")
            time.sleep(0.005)
        try:
            provider = provider_file.read_text().strip()
        except OSError as exc:
            return _TsmProbe(problem=f"{provider_file} unreadable ({type(exc).__name__})")
        if provider not in TSM_PROVIDERS:
            return _TsmProbe(provider=provider, problem=f"configfs-tsm provider {provider!r} is not one we attest with")
        return _TsmProbe(provider=provider)
    finally:
        remove_entry(entry)


def remove_entry(entry: Path) -> None:
    """``rmdir`` the entry: configfs removes its attributes with it. A plain directory standing in for configfs
    (a test tree) refuses a non-empty ``rmdir``; then the files of this entry, which we created, go first."""
    try:
        os.rmdir(entry)
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            return
        with contextlib.suppress(OSError):
            for child in entry.iterdir():
                if child.is_file() and not child.is_symlink():
                    child.unlink()
            os.rmdir(entry)


def gramine_problem(gramine_dir: Path) -> str | None:
    """None when Gramine's attestation pseudo-FS can produce DCAP quotes."""
    if not gramine_dir.is_dir():
        return f"{gramine_dir} absent (not running under Gramine with remote attestation enabled)"
    kind_file = gramine_dir / "attestation_type"
    try:
        kind = kind_file.read_text().strip()
    except OSError:
        return f"{kind_file} unreadable"
    if kind != "dcap":
        return f"Gramine attestation type is {kind!r}; DCAP quotes need sgx.remote_attestation = \"dcap\""
    for name in ("user_report_data", "quote"):
        if not (gramine_dir / name).exists():
            return f"{gramine_dir / name} absent"
    return None


def detect(config: TeeConfig | None = None, *, want: str | None = None) -> Detection:
    """This node's TEE, or why there is none. ``want`` restricts the answer to one type (a pool's)."""
    config = config or TeeConfig()
    checks: list[DeviceCheck] = []
    problems: list[str] = []
    candidates: list[str] = []
    for tee, names in DEVICES.items():
        found = [check_device(config.dev / n) for n in names]
        checks += found
        states = {c.state for c in found}
        if states == {"present"}:
            candidates.append(tee)
        elif "broken" in states or (states == {"present", "absent"}):
            bad = [f"{c.path}: {c.state}{' (' + c.detail + ')' if c.detail else ''}" for c in found
                   if c.state != "present"]
            problems.append(f"{tee}: " + "; ".join(bad))
    tsm = _TsmProbe()
    if any(t in candidates for t in ("tdx", "sev-snp")) or config.tsm.is_dir():
        tsm = probe_tsm(config.tsm, timeout_s=min(2.0, config.report_timeout_s))
        if tsm.problem:
            problems.append(f"configfs-tsm: {tsm.problem}")
        elif tsm.provider in TSM_PROVIDERS:
            # configfs-tsm alone is enough: its provider is the guest driver itself, loaded in the kernel even
            # when the /dev node is not mounted into this container (a broken one still disqualifies it)
            tee = TSM_PROVIDERS[tsm.provider]
            broken = any(c.state == "broken" for c in checks if Path(c.path).name in DEVICES[tee])
            if tee not in candidates and not broken:
                candidates.append(tee)
    usable: dict[str, str] = {}
    for tee in candidates:
        if tee == "sgx":
            problem = gramine_problem(config.gramine)
            if problem:
                problems.append(f"sgx: {problem}")
            else:
                usable[tee] = "gramine"
        elif tsm.provider is not None and TSM_PROVIDERS.get(tsm.provider) == tee and not tsm.problem:
            usable[tee] = "configfs-tsm"
        elif tsm.provider is not None and not tsm.problem:
            problems.append(f"{tee}: device present but configfs-tsm is served by {tsm.provider!r}")
    if not candidates and not problems:
        problems.append("no TEE devices (" + ", ".join(str(config.dev / n) for ns in DEVICES.values() for n in ns)
                        + ")")
    order = [t for t in PREFERENCE if t in usable and (want is None or t == want)]
    if want is not None and not order:
        problems.append(f"{want}: not available on this node")
    tee = order[0] if order else None
    return Detection(tee=tee, interface=usable.get(tee) if tee else None, devices=tuple(checks),
                     problems=tuple(problems), candidates=tuple(candidates), tsm_provider=tsm.provider)
