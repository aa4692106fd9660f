# Each target is one command; the work lives in the `deltran` command and pytest.
VENV ?= .venv
PYTHON ?= python3
# Test processes, each with its own PostgreSQL, Temporal dev server, worker and API. Most
# of a test's time is spent waiting on those servers, so three keep two cores busy.
TEST_PROCESSES ?= 3
PYTEST_PARALLEL = -n $(TEST_PROCESSES) --dist loadgroup --no-loadscope-reorder

.PHONY: up test test-fast migrate bench-clearing bench-mint bench-engines bench-list clean load load-curve bench-gateway chaos

# The interpreter's own pip puts uv into a venv made without pip (ensurepip alone takes
# about 4 s), and uv installs exactly the versions uv.lock records (resolved from
# pyproject.toml's ranges by `uv lock`; `--locked` refuses a lock that no longer matches
# them): no resolution and no index queries, 0.4 s from a warm cache against 7 s to
# resolve the ranges anew. uv is pinned to the version that wrote the lock
# (tests/unit/test_house_rules.py checks both). A failing `uv sync` (a stale lock, a hash
# mismatch, the network) fails the install. Only where uv itself cannot be installed (only
# pip's configured index reachable, or a pip too old for --python) does pip install the
# ranges, and says so. Modules are compiled to bytecode when first imported, not at
# install: compiling all 8,000 files took 12 s and 21 CPU-s, the suite imports a third.
$(VENV)/.installed: pyproject.toml uv.lock
	$(PYTHON) -m venv --without-pip $(VENV) && \
	if $(PYTHON) -m pip --python $(VENV)/bin/python install -q 'uv==0.13.10'; then \
		UV_PROJECT_ENVIRONMENT=$(VENV) $(VENV)/bin/uv sync -q --locked --extra test --python $(VENV)/bin/python; \
	else \
		echo "uv could not be installed: pip installs pyproject.toml's ranges, not uv.lock's versions" >&2 && \
		$(VENV)/bin/python -m ensurepip -q && $(VENV)/bin/python -m pip install -q -e '.[test]'; \
	fi && touch $@

up: $(VENV)/.installed
	$(VENV)/bin/deltran up

# The suite starts some thirty Python processes: where the environment sets
# PYTHONDONTWRITEBYTECODE, each would compile what it imports anew; unset, the first
# compiles it once for all.
test: $(VENV)/.installed
	PYTHONDONTWRITEBYTECODE= $(VENV)/bin/pytest $(PYTEST_PARALLEL)

test-fast: $(VENV)/.installed
	PYTHONDONTWRITEBYTECODE= $(VENV)/bin/pytest $(PYTEST_PARALLEL) -m "not system"

migrate: $(VENV)/.installed
	$(VENV)/bin/deltran migrate

bench-clearing: $(VENV)/.installed
	$(VENV)/bin/python -m bench.clearing

bench-mint: $(VENV)/.installed
	$(VENV)/bin/python -m bench.mint

bench-engines: $(VENV)/.installed
	$(VENV)/bin/python -m bench.engines

bench-list: $(VENV)/.installed
	$(VENV)/bin/python -m bench.payments_list

load: $(VENV)/.installed
	$(VENV)/bin/python -m bench.load

load-curve: $(VENV)/.installed
	$(VENV)/bin/python -m bench.load.curve

bench-gateway: $(VENV)/.installed
	$(VENV)/bin/python -m bench.gateway

chaos: $(VENV)/.installed
	$(VENV)/bin/python -m bench.chaos
	DELTRAN_AUDIT_STEPS=$${DELTRAN_AUDIT_STEPS:-500} $(VENV)/bin/pytest -q -s tests/integration/test_auditor.py
	DELTRAN_FUZZ_EXAMPLES=$${DELTRAN_FUZZ_EXAMPLES:-100} $(VENV)/bin/pytest -q -s tests/system/test_openapi_fuzz.py

clean:
	rm -rf .deltran .pytest_cache
