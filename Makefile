# sdworker developer entry points. Everything a fresh machine needs is created here:
# the virtualenv with pinned dependencies (requirements.lock) and the Go-built control
# plane (cached outside the repo by tools/testcluster/build.sh).

PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv tools demo test test-unit test-integration chaos lint fmt cluster computesim bench bench-quick helm chart-generate chart-lint lock clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.lock pyproject.toml
	@echo "[venv] creating $(VENV) with pinned dependencies"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet --require-virtualenv -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

venv: $(VENV)/.installed ## create the virtualenv (pinned dependencies)

tools: ## build the Go control plane, kwok and Karpenter (cached outside the repo; no-op when cached)
	@tools/testcluster/build.sh >/dev/null
	@tools/karpenter/build.sh >/dev/null

test: lint tools ## lint (ruff, mypy --strict, import-linter), then unit + integration tests (starts and stops its own control plane)
	$(PY) -m pytest $(PYTEST_ARGS)

chaos: venv tools ## the full chaos campaign (tests/chaos: 100-node scale-out/in under 22 operator kills, agent kills, cloud faults, races, operator peering, API server restart, Karpenter + pod runner); prints the table, writes out/chaos/
	SDWORKER_CHAOS=full $(PY) -m pytest tests/chaos $(PYTEST_ARGS)

test-unit: venv ## unit tests only (no cluster)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: venv tools ## integration tests only
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

lint: venv ## ruff (lint + format check), mypy --strict, import-linter
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

fmt: venv ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

DEMO_ARGS ?= --nodes 3 --latency realistic --warm-pool 1
demo: venv tools ## the local demo: control plane, compute simulator, Karpenter, operator, agents; scale-out and -in (ARGS="--ci" to exit by itself); Ctrl-C stops and cleans up
	$(VENV)/bin/sdworker-dev demo $(DEMO_ARGS) $(ARGS)

cluster: venv tools ## run a local control plane with 3 kwok GPU nodes until Ctrl-C
	$(VENV)/bin/sdworker-dev cluster up --gpu-nodes 3

computesim: venv ## run the compute API simulator until Ctrl-C (PROFILE=fast|realistic)
	$(PY) -m sdworker_tools.computesim --latency-profile $(or $(PROFILE),fast)

bench: venv tools ## benchmarks: image build stage by stage vs its floors, parallel prefetch vs sequential read (SIZE_GB=2), scale-out 1/10/100 nodes (and 1000 on a simulated mount layer) vs the reference
	$(PY) bench/bench_image_build.py --size-gb $(or $(SIZE_GB),2)
	$(PY) bench/bench_prefetch.py
	$(PY) -m bench.bench_scaleout --full

bench-quick: venv tools ## quick benchmarks (a few minutes): image build at 0.5 GB / 5,000 files vs its floors, scale-out 1 and 10 nodes (scripted and Karpenter) vs the reference (fast cloud)
	$(PY) bench/bench_image_build.py --size-gb 0.5 --files 5000
	$(PY) -m bench.bench_scaleout --quick --latency fast

helm: ## build the pinned helm CLI (cached outside the repo); prints its path
	tools/helm/build.sh

chart-generate: venv ## regenerate charts/sdworker/crds and dashboards from crds/ and the operator's dashboard
	$(VENV)/bin/python charts/sdworker/scripts/generate.py

chart-lint: ## helm lint --strict with every ci values file
	H=$$(tools/helm/build.sh) && $$H lint --strict charts/sdworker && \
	for f in charts/sdworker/ci/*-values.yaml; do $$H lint --strict charts/sdworker -f $$f || exit 1; done

lock: ## re-resolve requirements.lock from pyproject.toml (needs network)
	rm -rf /tmp/sdworker-lock && $(PYTHON) -m venv /tmp/sdworker-lock
	/tmp/sdworker-lock/bin/pip install --quiet setuptools wheel -e '.[dev]'
	{ sed -n '1,2p' requirements.lock; /tmp/sdworker-lock/bin/pip freeze --all | grep -v -E '^(-e|pip==|sdworker)'; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean: ## remove the virtualenv and Python caches (the Go cache stays)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
