# The two front-door commands: `make demo` and `make test`. Both set up .venv first when it is
# missing or older than pyproject.toml / scripts/setup.sh.
PY := .venv/bin/python
export OPENBLAS_NUM_THREADS ?= 1
export OMP_NUM_THREADS ?= 2

.PHONY: setup demo test test-fast clean

setup:
	bash scripts/setup.sh

demo: setup
	$(PY) -m app.cli screen examples --out demo-out

test: setup
	$(PY) -m pytest -v --durations=25

test-fast: setup
	$(PY) -m pytest -m "not slow" -q

clean:
	rm -rf demo-out .pytest_cache
