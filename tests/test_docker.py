"""docker/Dockerfile and .dockerignore, checked without a container engine: the base image is Ray's own
GPU image at the Ray version pyproject.toml pins, the package goes in with its embedding extra, the image
runs as a non-root user, carries no secret, and holds the paths the KubeRay manifests run."""

from __future__ import annotations

import fnmatch
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from etrid_ray.kuberay import render as r

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and backslash continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, args = full.partition(" ")
        out.append((word.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return out


@pytest.fixture(scope="module")
def steps() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


def pinned_ray() -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d for d in deps if re.match(r"ray(\[[^\]]*\])?==", d)]
    return pin.split("==", 1)[1]


def test_parser_handles_continuations_and_comments() -> None:
    text = "# c\nFROM a:1\nRUN x \\\n  # inner\n  && y\nUSER 1000\n"
    assert instructions(text) == [("FROM", "a:1"), ("RUN", "x && y"), ("USER", "1000")]


def test_base_image_is_rays_gpu_image_at_the_pinned_version(steps: list[tuple[str, str]]) -> None:
    froms = [args for cmd, args in steps if cmd == "FROM"]
    assert len(froms) == 1, "one stage: the image users run is Ray's own"
    image = froms[0].split()[0]
    assert image == f"rayproject/ray:{pinned_ray()}-py311-gpu"
    assert pinned_ray() == r.ray_version()  # the venv runs the Ray the image ships
    assert r.raycluster(r.ProviderConfig())["spec"]["rayVersion"] == pinned_ray()


def test_installs_the_package_with_the_embedding_extra(steps: list[tuple[str, str]]) -> None:
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for cmd, a in steps if cmd == "ARG" and "=" in a}
    runs = [a for cmd, a in steps if cmd == "RUN"]
    installs = [run for run in runs if "pip install" in run]
    assert installs, "no pip install"
    install = installs[-1].replace("${EXTRAS}", args.get("EXTRAS", "")).replace("$EXTRAS", args.get("EXTRAS", ""))
    assert '.[embedding]' in install
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "embedding" in extras


def test_runs_as_a_non_root_user(steps: list[tuple[str, str]]) -> None:
    users = [a for cmd, a in steps if cmd == "USER"]
    assert users, "set USER explicitly: the manifests demand runAsNonRoot"
    for user in users:
        name = user.split(":")[0]
        assert name not in ("root", "0")
    uid, _, gid = users[-1].partition(":")
    assert int(uid) == r.RAY_UID and int(gid) == r.RAY_GID  # what the pods' securityContext runs as
    # every file the build copies belongs to that user
    for cmd, args in steps:
        if cmd in ("COPY", "ADD"):
            assert f"--chown={r.RAY_UID}:{r.RAY_GID}" in args


def test_no_secret_in_the_image(steps: list[tuple[str, str]]) -> None:
    secretish = re.compile(r"SEED|SECRET|TOKEN|PASSWORD|PRIVATE|ACCESS_KEY|CREDENTIAL", re.I)
    for cmd, args in steps:
        if cmd in ("ENV", "ARG", "LABEL"):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_.-]*)=", args) or [args.split()[0]]
            assert not [n for n in names if secretish.search(n)], (cmd, args)
        if cmd in ("COPY", "ADD"):
            assert not secretish.search(args), args
            assert "cluster" not in shlex.split(args)[0:-1]


def test_the_image_holds_what_the_manifests_run(steps: list[tuple[str, str]]) -> None:
    workdirs = [a for cmd, a in steps if cmd == "WORKDIR"]
    assert workdirs[-1] == r.APP_DIR
    copied: dict[str, str] = {}
    for cmd, args in steps:
        if cmd == "COPY":
            *sources, dest = [t for t in shlex.split(args) if not t.startswith("--")]
            copied.update({source: dest for source in sources})
    assert copied.get("jobs") == "./jobs"  # cluster/rayjob.yaml: python /home/ray/etrid-ray/jobs/provider.py
    assert copied.get("etrid_ray") == "./etrid_ray"  # prestop hook: python -m etrid_ray.kuberay.prestop
    (job,) = [d for d in yaml.safe_load_all((ROOT / "cluster" / "rayjob.yaml").read_text()) if d]
    script = job["spec"]["entrypoint"].split()[1]
    assert script.startswith(r.APP_DIR + "/") and (ROOT / script[len(r.APP_DIR) + 1:]).is_file()


# ------------------------------------------------------------------------------------------- .dockerignore


def ignore_patterns() -> list[str]:
    return [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
            if line.strip() and not line.strip().startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, closely enough for these patterns: the last matching pattern wins, `!` re-includes,
    a pattern that matches a directory excludes everything under it, `**/` matches any depth."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        candidates = [pat, pat[3:]] if pat.startswith("**/") else [pat]
        if any(fnmatch.fnmatchcase(p, c) for p in prefixes for c in candidates):
            result = not negate
    return result


def test_dockerignore_keeps_the_build_inputs_and_drops_the_rest(steps: list[tuple[str, str]]) -> None:
    patterns = ignore_patterns()
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    needed = [p for p in tracked if p.split("/")[0] in ("etrid_ray", "jobs") or p in ("pyproject.toml", "README.md")]
    assert any(p.startswith("etrid_ray/data/") for p in needed)
    assert [p for p in needed if ignored(p, patterns)] == []
    for cmd, args in steps:
        if cmd == "COPY":
            for source in [s for s in shlex.split(args) if not s.startswith("--")][:-1]:
                assert not ignored(source, patterns), source
    for path in (".venv/bin/python", ".git/HEAD", "tests/test_docker.py", "etrid_ray/__pycache__/x.pyc",
                 "secrets/.env", "cluster/secret.template.yaml", "a/prod-secret.yaml", "tls/server.key"):
        assert ignored(path, patterns), path


def test_readme_says_how_to_build_the_image() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "## Building the image" in readme
    section = readme.split("## Building the image", 1)[1].split("\n## ", 1)[0]
    assert "docker build -f docker/Dockerfile" in section
    assert r.project_image() in section
