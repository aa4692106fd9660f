# Each target is one line; the work lives in the `deltran` command and pytest.
VENV ?= .venv
PYTHON ?= python3

.PHONY: up test migrate bench-clearing clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV) && $(VENV)/bin/pip install -q --upgrade pip && $(VENV)/bin/pip install -q -e '.[test]' && touch $@

up: $(VENV)/.installed
	$(VENV)/bin/deltran up

test: $(VENV)/.installed
	$(VENV)/bin/pytest

migrate: $(VENV)/.installed
	$(VENV)/bin/deltran migrate

bench-clearing: $(VENV)/.installed
	$(VENV)/bin/python -m bench.clearing

clean:
	rm -rf .deltran .pytest_cache
