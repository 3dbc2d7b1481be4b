# The front-door commands: `make demo`, `make test` and `make lint`. Each sets up .venv first when
# it is missing or older than pyproject.toml / scripts/setup.sh.
PY := .venv/bin/python
BIN := .venv/bin
export OPENBLAS_NUM_THREADS ?= 1
export OMP_NUM_THREADS ?= 2

.PHONY: setup demo test test-fast lint clean

setup:
	bash scripts/setup.sh

demo: setup
	$(PY) -m app.cli screen examples --out demo-out

test: setup
	$(PY) -m pytest -v --durations=25

test-fast: setup
	$(PY) -m pytest -m "not slow" -q

# the house rules as checks (configured in pyproject.toml): style, types, who may import whom
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf demo-out .pytest_cache .mypy_cache .ruff_cache
