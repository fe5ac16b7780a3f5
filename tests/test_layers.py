"""One way down: the layer contract in pyproject.toml (`[tool.importlinter]`) holds, and names every module.

`make lint` runs the same contract (`lint-imports`); CI runs `make test`, so this test is what enforces it there.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import etrid_ray

ROOT = Path(__file__).resolve().parents[1]
LINT = ("import sys\nfrom importlinter.cli import lint_imports\n"
        "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))")


def _contract() -> dict:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = config["contracts"]
    return contract


def test_the_layer_contract_is_kept() -> None:
    proc = subprocess.run([sys.executable, "-c", LINT], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "One way down KEPT" in proc.stdout


def test_every_module_of_the_package_has_a_layer() -> None:
    """A new top-level module or package must be placed in the contract, or nothing checks its imports."""
    layered = {name.strip() for layer in _contract()["layers"] for name in layer.split("|")}
    modules = {m.name for m in pkgutil.iter_modules(etrid_ray.__path__)}
    assert modules - layered == set(), "add these to [tool.importlinter] layers in pyproject.toml"
    assert layered - modules == set(), "the contract names modules that do not exist"
