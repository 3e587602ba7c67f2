# Two commands on a fresh machine:
#   make reproduce   install into .venv and run the whole pipeline (dvc repro, offline, synthetic data)
#   make test        install into .venv (with dev tools) and run ruff + the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export PYTHONUNBUFFERED := 1
# dvc.yaml runs `python -m pipelines.<stage>`: the venv comes first on PATH.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install reproduce test test-fast lint bench repro-env paper rehearse-paper cpu

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

# pip byte-compiles file by file; compileall on every core afterwards is about 3 min faster here. Its exit status
# is ignored: a few test files inside torch use newer syntax, and a module that is not compiled still imports.
$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -e '.[dev]'
	-$(BIN)/python -m compileall -q -j 0 "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" > /dev/null
	touch $@

install: $(VENV)/.installed

# DVC analytics off and a local git identity (dvc exp needs one; CI has none).
repro-env: install
	$(BIN)/dvc config --local core.analytics false
	@git config user.name >/dev/null || git config --local user.name "ldp-bench"
	@git config user.email >/dev/null || git config --local user.email "ldp-bench@localhost"

reproduce: repro-env
	$(BIN)/dvc repro

lint: install
	$(BIN)/ruff check .

test: repro-env lint
	$(BIN)/python -m pytest -q -ra

# Everything but the end-to-end DVC tests and the rehearsal (a few minutes).
test-fast: repro-env lint
	$(BIN)/python -m pytest -q -ra -m "not e2e"

bench: install
	$(BIN)/python benchmarks/bench_loader.py
	$(BIN)/python benchmarks/bench_models.py
	$(BIN)/python benchmarks/bench_blurmap.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_eval.py

# The paper profile (DPDD, OpenAI CLIP weights, paper-scale recipes; needs a GPU): docs/reproducing.md
# It runs as the DVC experiment `paper` in a temp copy (--temp), its values set by -S; params.yaml is not rewritten.
paper: repro-env
	$(BIN)/ldp profile-overrides profiles/paper.yaml | xargs -d '\n' $(BIN)/dvc exp run --temp -n paper

# The paper profile's code paths on the CPU at micro sizes (real DPDD Canon scenes from ../shared, OpenAI-format
# CLIP files, every row of the grid): docs/reproducing.md, "The dress rehearsal". Scratch folder: .rehearsal/
rehearse-paper: repro-env
	$(BIN)/python scripts/rehearse_paper.py --work .rehearsal

# The CPU profile (profiles/cpu.yaml): numbers that carry information on 2 CPU cores, offline, in under 2 hours
# (docs/reproducing.md, "The CPU profile"). Work copy: .cpu-profile/; results copied to results/cpu/.
cpu: repro-env
	$(BIN)/python scripts/run_cpu_profile.py --work .cpu-profile
