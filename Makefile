# peftkit: the two commands of the README are `make reports` and `make test`.
# Two environments: .venv from requirements.lock (the runtime: transformers 5) and .venv-peers from
# requirements-peers.lock (transformers 4.57 + AdapterHub adapters + peft: the peers peftkit is checked against).
PY ?= python3.11
VENV := .venv
VPY := $(VENV)/bin/python
PEERS := .venv-peers
PPY := $(PEERS)/bin/python
PIP_FLAGS := -q --disable-pip-version-check
# The data directory: yours if set; else ../shared/data where it exists; else none, and the hub serves GLUE
# (`peftkit data fetch` lays out the rest, see the README).
ifeq ($(origin PEFTKIT_DATA_DIR),undefined)
ifneq ($(wildcard ../shared/data/.),)
PEFTKIT_DATA_DIR := $(abspath ../shared/data)
endif
endif
ifdef PEFTKIT_DATA_DIR
export PEFTKIT_DATA_DIR
endif
PROFILE ?= cpu

.PHONY: venv peers test reports params bench bench-peers cuda-check clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install $(PIP_FLAGS) -r requirements.lock
	$(VPY) -m pip install $(PIP_FLAGS) --no-deps --no-build-isolation -e .
	touch $@

# peftkit is installed editable (--no-deps) in both environments: the same source runs on 4.57 and 5.x.
peers: $(PEERS)/.installed

$(PEERS)/.installed: requirements-peers.lock pyproject.toml
	test -x $(PPY) || $(PY) -m venv $(PEERS)
	$(PPY) -m pip install $(PIP_FLAGS) -r requirements-peers.lock
	$(PPY) -m pip install $(PIP_FLAGS) --no-deps --no-build-isolation -e .
	touch $@

# The suite on the runtime lock, then in the peers venv the tests marked `peers` (AdapterHub goldens, bench) and
# peftkit's method and compat tests on transformers 4.57; all always run, and the target fails if any failed.
PEERS_CORE := tests/test_compat.py tests/test_methods.py
test: venv peers
	@rc=0; \
	$(VPY) -m pytest -q -m "not peers" || rc=$$?; \
	$(PPY) -m pytest -q -m peers || rc=$$?; \
	$(PPY) -m pytest -q $(PEERS_CORE) || rc=$$?; \
	exit $$rc

params: venv
	$(VPY) -m peftkit.cli params-report --out reports

# Every notebook headlessly (papermill) in the $(PROFILE) profile (cpu by default). Runs whose record (result.json)
# exists are read, not trained: with the committed cpu records this re-renders every report without training.
# FRESH=1 retrains every run (hours on 2 cores); it prints the time to resume it from after a stop:
# make reports RETRAIN_BEFORE=<that time> retrains only the runs recorded before it.
RAY := --executor ray --cpus-per-run 1
reports: params
	$(VPY) -m peftkit.cli reproduce --profile $(PROFILE) $(if $(FRESH),--fresh $(RAY),) \
	    $(if $(RETRAIN_BEFORE),--retrain-before $(RETRAIN_BEFORE) $(RAY),)

# MiniLM only by default, written under runs/bench/ (the committed reports/benchmarks.* are only replaced when asked:
# make bench bench-peers BENCH_ARGS="--backbone all --threads 2" BENCH_OUT=reports/benchmarks.json). `bench` times
# peftkit on the runtime (transformers 5) against peft and plain PyTorch there; the AdapterHub groups need
# transformers 4.57, so `bench-peers` times them in the peers venv, written beside as *_adapters.json / .md.
BENCH_OUT ?= runs/bench/benchmarks.json
BENCH_ARGS ?=
bench: venv
	$(VPY) -m bench $(BENCH_ARGS) --out $(BENCH_OUT)

bench-peers: peers
	$(PPY) -m bench $(BENCH_ARGS) --peer adapters --out $(basename $(BENCH_OUT))_adapters.json

# The CUDA path in one command (bench/cuda_check.py; README "On a GPU"): at most 8 minutes on one GPU, writes
# $(OUT)/cuda_check.json and cuda_check.md. No venv needed: where .venv is absent (a GPU machine that got the
# repository only) it runs with that machine's python3 (torch with CUDA, transformers, peft; ray for the packing
# section). CHECK_ARGS=--dry rehearses it on the CPU on tiny configurations (under a minute).
OUT ?= runs/cuda_check
CHECK_ARGS ?=
CHECK_PY ?= $(if $(wildcard $(VPY)),$(VPY),python3)
cuda-check:
	$(CHECK_PY) -m bench.cuda_check --out $(OUT) $(CHECK_ARGS)

clean:
	rm -rf $(VENV) $(PEERS) .pytest_cache
