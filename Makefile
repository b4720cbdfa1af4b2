# peftkit: the two commands of the README are `make reports` and `make test`.
PY ?= python3.11
VENV := .venv
VPY := $(VENV)/bin/python
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

bench: venv
	$(VPY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache
