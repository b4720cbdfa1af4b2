# peftkit: the two commands of the README are `make reports` and `make test`.
PY ?= python3.11
VENV := .venv
VPY := $(VENV)/bin/python
PEFTKIT_DATA_DIR ?= $(abspath ../shared/data)
export PEFTKIT_DATA_DIR
PROFILE ?= cpu

.PHONY: venv test reports params bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check -r requirements.lock
	$(VPY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

test: venv
	$(VPY) -m pytest -q

params: venv
	$(VPY) -m peftkit.cli params-report --out reports

# Every notebook headlessly (papermill) in the $(PROFILE) profile (cpu by default: hours on 2 cores; runs resume).
reports: params
	$(VPY) -m peftkit.cli reproduce --profile $(PROFILE)

# MiniLM only by default, written under runs/bench/ (the committed reports/benchmarks.* are only replaced when asked:
# make bench BENCH_ARGS="--backbone all --threads 2" BENCH_OUT=reports/benchmarks.json).
BENCH_OUT ?= runs/bench/benchmarks.json
BENCH_ARGS ?=
bench: venv
	$(VPY) -m bench $(BENCH_ARGS) --out $(BENCH_OUT)

clean:
	rm -rf $(VENV) .pytest_cache
