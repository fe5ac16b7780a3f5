"""One way down: the layer contract in pyproject.toml (`[tool.importlinter]`) holds, and names every module.

`make lint` runs the same contract (`lint-imports`); CI runs `make test`, so this test is what enforces it there.
Imports of the project sit at the top of their module, where the contract and a reader see them; inside a
function only in the CLI (its commands load lazily) and the few places `IN_FUNCTION` names, each with its reason.
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import etrid_ray

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "etrid_ray"
# (module, imported module) pairs allowed inside a function outside etrid_ray/cli, and why
IN_FUNCTION = {
    # the workload modules import the registry's WorkloadContext: they can load only once its names exist
    ("etrid_ray.workloads.registry", "etrid_ray.workloads"),
}
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


def _in_function_imports(path: Path, module: str) -> set[tuple[str, str]]:
    tree = ast.parse(path.read_text())
    found: set[tuple[str, str]] = set()

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if in_function and isinstance(child, ast.ImportFrom) and (child.module or "").startswith("etrid_ray"):
                found.add((module, child.module or ""))
            elif in_function and isinstance(child, ast.Import):
                found.update((module, a.name) for a in child.names if a.name.startswith("etrid_ray"))
            visit(child, inner)

    visit(tree, False)
    return found


def test_no_project_import_inside_a_function_outside_the_cli() -> None:
    found: set[tuple[str, str]] = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[1] == "cli":
            continue
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found |= _in_function_imports(path, module)
    assert found - IN_FUNCTION == set(), "move these imports to the top of their module (or say why in IN_FUNCTION)"
