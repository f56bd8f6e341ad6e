# Two commands do everything on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck layers pytest bench schema clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The main job on the embedded SQLite default (.reconciler/state.db).
demo: install
	$(BIN)/reconcile validate specs/
	$(BIN)/reconcile plan specs/
	$(BIN)/reconcile apply specs/
	$(BIN)/reconcile associates import examples/associates.csv
	$(BIN)/reconcile contacts import examples/contacts.csv
	$(BIN)/reconcile events ingest examples/events.jsonl
	$(BIN)/reconcile run --once
	$(BIN)/reconcile status
	$(BIN)/reconcile outbox

lint: install
	$(BIN)/ruff check reconciler tests benchmarks examples
	$(BIN)/ruff format --check reconciler tests benchmarks examples

typecheck: install
	$(BIN)/mypy

layers: install
	$(BIN)/lint-imports

# pytest exits 5 when it collected nothing: that is a failure here, said out loud.
# Tests run on every core (pytest-xdist): many wait on child processes, servers and
# PostgreSQL, and each PostgreSQL test has a schema of its own. PYTEST_WORKERS=0: one process.
PYTEST_WORKERS ?= auto
pytest: install
	@$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --cov --cov-report=term --cov-fail-under=90 $(PYTEST_ARGS); \
	rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

test: lint typecheck layers pytest

bench: install
	$(BIN)/python benchmarks/validate.py
	$(BIN)/python benchmarks/plan.py
	$(BIN)/python benchmarks/contacts_import.py
	$(BIN)/python benchmarks/executor.py
	$(BIN)/python benchmarks/outbox.py
	$(BIN)/python benchmarks/watch.py

schema: install
	$(BIN)/reconcile schema > schemas/flow.schema.json

clean:
	rm -rf $(VENV) .reconciler .pytest_cache .mypy_cache .ruff_cache .coverage
