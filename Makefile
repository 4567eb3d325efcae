# convnn-ref: every target sets itself up (a virtual environment in .venv, the project
# installed editable). torch is pinned first to the CPU build 2.13.0 so that nothing pulls a
# multi-GB CUDA build; on a GPU host, point TORCH_SPEC at the torch you want (or reuse an
# environment: make bench PYTHON=/path/to/python VENV=).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(if $(VENV),$(VENV)/bin/python,$(PYTHON))
STAMP := $(if $(VENV),$(VENV)/.installed,.no-venv)
HYPOTHESIS_PROFILE ?= ci
PRESET ?= default
BENCH_ARGS ?=
RESULTS ?= results/bench
REPORT_OUT ?= reports/out
IMPL ?= reference

.PHONY: help setup verify verify-nightly test lint typecheck bench report conformance clean

help:
	@echo "make bench        benchmark sweep (PRESET=default|canonical|full, DEVICE=cpu|cuda) + report in reports/out/"
	@echo "make verify       lint, type check, equivalence suite (ci profile), benchmark smoke test"
	@echo "make conformance  IMPL=module:object  conformance report in reports/conformance/<name>/"
	@echo "make report       rebuild the report from $(RESULTS) (JSON, or a stopped sweep's journal) into $(REPORT_OUT)"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check '$(TORCH_SPEC)'
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

.no-venv:
	@true

setup: $(STAMP)

lint: setup
	$(PY) -m ruff check convnn_ref suites reports examples conftest.py

typecheck: setup
	$(PY) -m mypy

test: setup
	HYPOTHESIS_PROFILE=$(HYPOTHESIS_PROFILE) $(PY) -m pytest -q -p no:cacheprovider --benchmark-disable $(foreach i,$(IMPL),--impl $(i))

verify: lint typecheck test

verify-nightly:
	$(MAKE) test HYPOTHESIS_PROFILE=nightly

bench: setup
	$(PY) -m suites.bench --preset $(PRESET) --out $(RESULTS) $(if $(DEVICE),--device $(DEVICE)) $(BENCH_ARGS)
	$(PY) -m reports build $(RESULTS) --out $(REPORT_OUT)

# Without results the report command says what to run (exit 2), no traceback.
report: setup
	@$(PY) -m reports build $(RESULTS) --out $(REPORT_OUT)

conformance: setup
	$(PY) -m suites.conformance $(foreach i,$(IMPL),--impl $(i)) --out reports/conformance --hypothesis-profile $(HYPOTHESIS_PROFILE) $(CONFORMANCE_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
