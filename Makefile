# asd-ganomaly: the commands a new user needs. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= data/demo
CHALLENGE_DIR ?= data/eval
QUALITY_ARGS ?=

.PHONY: help install lock lock-check demo challenge test test-fast coverage lint format bench quality clean slurm-up slurm-down

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

UV_VERSION := 0.13.9
LOCK := requirements.lock
LOCK_ARGS := pyproject.toml --all-extras --universal --python-version 3.10 --custom-compile-command "make lock"
UV := $(BIN)/uv pip
QUIET := -q

# the locked versions, exactly; then the package itself, built without build isolation (setuptools is locked too);
# then `pip check` and the load check of torch, torchaudio and torchvision
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(QUIET) --disable-pip-version-check uv==$(UV_VERSION)
	$(UV) install $(QUIET) --python $(BIN)/python -r $(LOCK)
	$(UV) install $(QUIET) --python $(BIN)/python --no-deps --no-build-isolation -e .
	$(UV) check $(QUIET) --python $(BIN)/python
	$(BIN)/python -m asd_ganomaly.stack
	touch $(STAMP)

install: $(STAMP)  ## create .venv with the locked versions (requirements.lock) and the package, then check they load

lock: | $(STAMP)  ## regenerate requirements.lock from pyproject.toml (keeps every pin that still satisfies it)
	$(UV) compile $(QUIET) $(LOCK_ARGS) -o $(LOCK)

lock-check: | $(STAMP)  ## fail when requirements.lock is stale against pyproject.toml
	@tmp=$$(mktemp); cp $(LOCK) $$tmp; \
	$(UV) compile $(QUIET) $(LOCK_ARGS) -o $$tmp; \
	if diff -u $(LOCK) $$tmp; then echo "requirements.lock is up to date"; rm -f $$tmp; \
	else rm -f $$tmp; echo "requirements.lock is stale against pyproject.toml: run make lock and commit it"; exit 1; fi

$(DEMO_DIR)/.complete: | $(STAMP)
	$(BIN)/asd-ganomaly synth $(DEMO_DIR) --clips-per-section 32 --test-clips 10 --seconds 10
	touch $@

demo: $(STAMP) $(DEMO_DIR)/.complete  ## synthesise a small dataset, sweep all 21 machine/section runs on CPU, print the table
	WANDB_SILENT=true $(BIN)/asd-train experiment=demo data.root=$(DEMO_DIR)
	$(BIN)/asd-ganomaly report outputs/demo

$(CHALLENGE_DIR)/.complete: | $(STAMP)
	$(BIN)/asd-ganomaly synth $(CHALLENGE_DIR) --eval --clips-per-section 16 --test-clips 10 --seconds 2
	touch $@

challenge: $(STAMP) $(CHALLENGE_DIR)/.complete  ## a synthetic evaluation set end to end: eval_all, submit, evaluate
	WANDB_SILENT=true $(BIN)/asd-train experiment=eval_all data.root=$(CHALLENGE_DIR) trainer=cpu \
	  model=ganomaly_small data.batch_size=8 data.features.seconds=2.0 data.features.frames=56 \
	  trainer.max_epochs=5 hydra/launcher=parallel
	$(BIN)/asd-ganomaly submit outputs/eval_all --out submission/
	$(BIN)/asd-ganomaly evaluate submission/ --ground-truth $(CHALLENGE_DIR)/ground_truth --out submission/results.csv

PYTEST_PARALLEL := -n auto --dist loadgroup

test: $(STAMP)  ## run the whole test suite on every core (what CI runs)
	$(BIN)/pytest -q $(PYTEST_PARALLEL)

test-fast: $(STAMP)  ## the tests that take under a second or so each, in one process (under a minute)
	$(BIN)/pytest -q -m "not slow"

coverage: $(STAMP)  ## the whole suite with the package's line coverage (the CLI's subprocesses included)
	COVERAGE_FILE=$(CURDIR)/.coverage $(BIN)/pytest -q $(PYTEST_PARALLEL) --cov=asd_ganomaly --cov-report=term

lint: $(STAMP)  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)  ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)  ## print feature, training and scoring throughput figures
	$(BIN)/python benchmarks/bench.py

quality: $(STAMP)  ## detection-quality benchmark on synthetic data (QUALITY_ARGS=--quick: a few minutes)
	WANDB_SILENT=true $(BIN)/python benchmarks/quality.py $(QUALITY_ARGS)

slurm-up:  ## start a one-node Slurm cluster here (root; installs slurm-wlm and munge when missing)
	bash tests/slurm/up.sh

slurm-down:  ## stop the cluster of slurm-up and remove its state
	bash tests/slurm/down.sh

clean:  ## remove caches and run outputs (keeps .venv)
	rm -rf outputs multirun submission .pytest_cache .ruff_cache .coverage
