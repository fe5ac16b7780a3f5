"""The TEE settings: where the TEE interfaces live, what to trust, which measurements may run, how fresh.

Kept in its own file (``ETRID_TEE_CONFIG`` names it; YAML or JSON) because it is shared by the head
(the verifier) and every confidential worker node (the attester), and because the trust anchors and
the measurement allow-list are security policy, reviewed apart from prices and pools.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from etrid_ray.chain.errors import ConfigError
from etrid_ray.config import read_mapping_file, section_from_env

TeeType = Literal["sgx", "sev-snp", "tdx"]
# the env names of the config's tee.config_file and tee.root (read through etrid_ray.config)
TEE_CONFIG_ENV = "ETRID_TEE_CONFIG"
TEE_ROOT_ENV = "ETRID_TEE_ROOT"


class TeeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    root: Path | None = Field(None, description="prefix for every path below (a fake tree in tests); None = /")
    dev_dir: Path = Path("/dev")
    tsm_report_dir: Path = Path("/sys/kernel/config/tsm/report")
    gramine_dir: Path = Path("/dev/attestation")
    trust_roots: dict[TeeType, list[Path]] = Field(
        default_factory=dict, description="PEM files of the roots: AMD ARK (SEV-SNP), Intel SGX Root CA (SGX, TDX)")
    certificates: dict[TeeType, list[Path]] = Field(
        default_factory=dict, description="PEM files of intermediates and cached leaves (ASK, VCEK, PCK CA, PCK)")
    allowed_measurements: dict[TeeType, list[str]] = Field(
        default_factory=dict, description="hex: SGX MRENCLAVE, TDX MRTD, SEV-SNP MEASUREMENT")
    allow_debug: bool = Field(False, description="accept debug enclaves/guests (never in production)")
    max_block_age: int = Field(50, ge=0, description="a nonce's block may be at most this many blocks old")
    refresh_interval_s: float = Field(300.0, gt=0, description="re-attest this often")
    max_age_s: float = Field(900.0, gt=0, description="an attestation counts for this long after it verified")
    report_timeout_s: float = Field(5.0, gt=0, description="wait this long for the TEE to produce a report")

    @field_validator("allowed_measurements")
    @classmethod
    def _hex(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for tee, values in v.items():
            for value in values:
                try:
                    bytes.fromhex(value.removeprefix("0x"))
                except ValueError:
                    raise ValueError(f"{tee}: {value!r} is not hex") from None
        return {tee: [x.removeprefix("0x").lower() for x in values] for tee, values in v.items()}

    def path(self, p: Path) -> Path:
        """``p`` under ``root`` (``/dev`` → ``<root>/dev``), or ``p`` itself without a root."""
        return p if self.root is None else self.root / p.relative_to(p.anchor)

    @property
    def dev(self) -> Path:
        return self.path(self.dev_dir)

    @property
    def tsm(self) -> Path:
        return self.path(self.tsm_report_dir)

    @property
    def gramine(self) -> Path:
        return self.path(self.gramine_dir)


def load_tee_config(path: str | Path | None = None, env: Mapping[str, str] | None = None, *,
                    settings: Any = None) -> TeeConfig:
    """From ``path``, else the file the provider config's ``tee.config_file`` names (``ETRID_TEE_CONFIG``), else
    the defaults; ``tee.root`` (``ETRID_TEE_ROOT``) sets root. ``settings``: a config's ``tee`` section, under this
    process's environment."""
    tee = section_from_env("tee", env, base=settings)
    path = path or tee.config_file
    data: dict[str, object] = {}
    if path:
        data = read_mapping_file(path, "TEE config", f"pass --tee-config or set {TEE_CONFIG_ENV}")
    if tee.root is not None:
        data["root"] = tee.root
    try:
        return TeeConfig.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"invalid TEE config — {problems}") from None
