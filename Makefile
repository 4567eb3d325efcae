# convnn-ref: every target sets itself up (a virtual environment in .venv, the project
# installed editable, the test toolchain at the versions pinned in constraints.txt). torch is
# pinned first to the CPU build 2.13.0 so that nothing pulls a multi-GB CUDA build; NATTEN (the
# neighbourhood-attention baseline, pinned in constraints.txt) is then built from its sdist
# against that torch without build isolation (isolated, its unpinned build requirement on torch
# would pull a CUDA build into the build environment); on a GPU
# host, point TORCH_SPEC at the torch you want (or reuse an environment:
# make bench PYTHON=/path/to/python VENV=).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
CONSTRAINTS ?= constraints.txt
PY := $(if $(VENV),$(VENV)/bin/python,$(PYTHON))
STAMP := $(if $(VENV),$(VENV)/.installed,.no-venv)
HYPOTHESIS_PROFILE ?= ci
# A seed for the randomized profiles (dev, nightly): the same examples again, or other ones.
HYPOTHESIS_SEED ?=
PRESET ?= default
BENCH_ARGS ?=
RESULTS ?= results/bench
REPORT_OUT ?= reports/out
IMPL ?= reference

.PHONY: help setup verify verify-nightly test lint typecheck bench bench-check report conformance mutants lock clean

help:
	@echo "make bench        benchmark sweep (PRESET=default|canonical|full, DEVICE=cpu|cuda) + report in reports/out/"
	@echo "make bench-check  stopwatch self-check: the bar pairs quiet, then with busy processes (reports/bench-check/)"
	@echo "make verify       lint, type check, equivalence suite (ci profile), benchmark smoke test"
	@echo "make conformance  IMPL=module:object  conformance report in reports/conformance/<name>/"
	@echo "make report       rebuild the report from $(RESULTS) (JSON, or a stopped sweep's journal) into $(REPORT_OUT)"
	@echo "make mutants      plant the catalogue of bugs one at a time, report the kill rate in reports/mutants/"

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check '$(TORCH_SPEC)'
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -c $(CONSTRAINTS) setuptools
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check --no-build-isolation -c $(CONSTRAINTS) natten
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -c $(CONSTRAINTS) -e '.[dev]'
	touch $@

.no-venv:
	@true

setup: $(STAMP)

lint: setup
	$(PY) -m ruff check convnn_ref suites reports examples conftest.py

typecheck: setup
	$(PY) -m mypy

test: setup
	HYPOTHESIS_PROFILE=$(HYPOTHESIS_PROFILE) CONVNN_REQUIRE_NATTEN=1 $(PY) -m pytest -q -p no:cacheprovider --benchmark-disable $(foreach i,$(IMPL),--impl $(i)) $(if $(HYPOTHESIS_SEED),--hypothesis-seed=$(HYPOTHESIS_SEED))

verify: lint typecheck test

verify-nightly:
	$(MAKE) test HYPOTHESIS_PROFILE=nightly

bench: setup
	$(PY) -m suites.bench --preset $(PRESET) --out $(RESULTS) $(if $(DEVICE),--device $(DEVICE)) $(BENCH_ARGS)
	$(PY) -m reports build $(RESULTS) --out $(REPORT_OUT)

# The stopwatch's self-check: every bar pair timed quiet, then beside a busy process pinned to every
# core but one, then to every core; exit 1 when a verdict flips between met and not met. It starts
# and stops its busy processes itself. BENCH_CHECK_ARGS=--quick halves the pair budget.
BENCH_CHECK_ARGS ?=
bench-check: setup
	$(PY) -m suites.bench.selfcheck --preset $(PRESET) --out reports/bench-check $(BENCH_CHECK_ARGS)

# Without results the report command says what to run (exit 2), no traceback.
report: setup
	@$(PY) -m reports build $(RESULTS) --out $(REPORT_OUT)

# The runner exits 0 (all hold), 1 (some property did not pass) or 3 (could not run); make turns
# any of them but 0 into its own 2, so the recipe says which it was.
conformance: setup
	@$(PY) -m suites.conformance $(foreach i,$(IMPL),--impl $(i)) --out reports/conformance --hypothesis-profile $(HYPOTHESIS_PROFILE) $(CONFORMANCE_ARGS); \
	rc=$$?; case $$rc in 0) ;; 1) echo "conformance: some properties did not pass (runner exit 1)";; \
	3) echo "conformance: the properties could not be run (runner exit 3)";; *) echo "conformance: runner exit $$rc";; esac; exit $$rc

# Mutation testing: every planted bug of suites/mutation/catalogue.py against the ci suite.
mutants: setup
	$(PY) -m suites.mutation --out reports/mutants $(MUTANTS_ARGS)

# Refresh constraints.txt: the newest toolchain pip resolves today, beside TORCH_SPEC, in a
# throw-away environment. Then run make verify and make verify-nightly before committing it.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q --disable-pip-version-check '$(TORCH_SPEC)'
	.lock-venv/bin/python -m pip install -q --disable-pip-version-check setuptools
	.lock-venv/bin/python -m pip install -q --disable-pip-version-check --no-build-isolation "$$(grep -i '^natten==' $(CONSTRAINTS))"
	.lock-venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	{ sed -n '/^#/p' $(CONSTRAINTS); { .lock-venv/bin/python -m pip freeze --all --exclude-editable | grep -iE '^setuptools=='; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable | grep -viE '^(torch|nvidia-|triton)[=-]'; } | sort -f; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
