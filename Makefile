# Each target is one line; the work lives in the `deltran` command and pytest.
VENV ?= .venv
PYTHON ?= python3

.PHONY: up test test-fast migrate bench-clearing bench-mint clean load bench-gateway chaos

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV) && $(VENV)/bin/pip install -q --upgrade pip && $(VENV)/bin/pip install -q -e '.[test]' && touch $@

up: $(VENV)/.installed
	$(VENV)/bin/deltran up

test: $(VENV)/.installed
	$(VENV)/bin/pytest

test-fast: $(VENV)/.installed
	$(VENV)/bin/pytest -m "not system"

migrate: $(VENV)/.installed
	$(VENV)/bin/deltran migrate

bench-clearing: $(VENV)/.installed
	$(VENV)/bin/python -m bench.clearing

bench-mint: $(VENV)/.installed
	$(VENV)/bin/python -m bench.mint

load: $(VENV)/.installed
	$(VENV)/bin/python -m bench.load

bench-gateway: $(VENV)/.installed
	$(VENV)/bin/python -m bench.gateway

chaos: $(VENV)/.installed
	$(VENV)/bin/python -m bench.chaos
	DELTRAN_AUDIT_STEPS=$${DELTRAN_AUDIT_STEPS:-500} $(VENV)/bin/pytest -q -s tests/integration/test_auditor.py

clean:
	rm -rf .deltran .pytest_cache
