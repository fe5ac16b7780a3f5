# `make demo` and `make test` work from a fresh clone: each creates .venv when missing and
# (re)installs the project with its test extras only when pyproject.toml changed.
#
# uv installs the dependencies (a fresh install: ~65 s here, where pip took ~3 min); torch alone goes through pip
# first, because pip honours the machine's pip configuration (a local CPU wheel, a mirror or a CPU index)
# and uv does not: left to uv, the pinned torch would be PyPI's multi-GB CUDA build. uv then finds it installed.
# --compile-bytecode, as pip does: without it every new Ray worker of a first run compiles Ray's and torch's
# modules as it imports them, and the demo's first jobs waited so long for workers that 43 of 64 timed out.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.etrid-ray-installed
UV_VERSION := 0.13.9
TORCH_PIN = $(shell $(VPY) -c 'import tomllib; print(next(r for r in tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["embedding"] if r.startswith("torch")))')

.PHONY: venv test demo lifecycle bench lint prometheus

venv: $(STAMP)

$(VPY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(VPY)
	$(VPY) -m pip install -q --disable-pip-version-check uv==$(UV_VERSION) '$(TORCH_PIN)'
	$(VENV)/bin/uv pip install --python $(VPY) -q --compile-bytecode -e '.[test,embedding]'
	touch $(STAMP)

# Debian's prometheus (it brings promtool): tests/test_prometheus.py runs a real one on loopback.
prometheus:
	@command -v prometheus >/dev/null || (apt-get update -qq >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null) || \
		echo "could not install prometheus (apt-get install -y prometheus): tests/test_prometheus.py will fail" >&2

test: venv prometheus
	$(VPY) -m pytest -q

demo: venv
	$(VPY) -m etrid_ray demo

lifecycle: venv
	$(VPY) -m etrid_ray.demo.lifecycle

bench: venv
	$(VPY) bench/devnet.py
	$(VPY) bench/throughput.py
	$(VPY) bench/economics.py

# ruff, then the layer contract in pyproject.toml ([tool.importlinter]: one way down, cli → … → core);
# tests/test_layers.py runs the same contract, so `make test` (CI) enforces it too.
lint: venv
	$(VPY) -m ruff check .
	$(VENV)/bin/lint-imports --no-cache --no-logo
