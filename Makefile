# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NEEDS_311 := import sys; sys.exit(sys.version_info < (3, 11))

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c '$(NEEDS_311)' || { echo "nightloop needs Python 3.11 or newer; run e.g. make PYTHON=python3.11"; exit 1; }
	@{ $(BIN)/python -c '$(NEEDS_311)' && $(BIN)/python -m pip --version; } >/dev/null 2>&1 || { rm -rf $(VENV); $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m nightloop.demo

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	for f in benchmarks/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) demo .pytest_cache
