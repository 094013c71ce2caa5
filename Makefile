# The two commands of the README. Both build the environment first (idempotent).
PY := .venv/bin/python

.PHONY: env demo test lint bench
env:
	bash scripts/bootstrap.sh

# Main job: the whole STL pipeline on the built-in synthetic data set (a GPU when torch sees one,
# else the CPU), prints mAP / top-1.
demo: env
	$(PY) projects/stl_search/run_pipeline.py $(ARGS)

# Test suite (what CI runs): the lint and format gate, then the tests.
test: lint
	$(PY) -m pytest -q tests $(ARGS)

# The lint and format gate (ruff.toml).
lint: env
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# Speed and memory figures (benchmarks/README.md; raw results in benchmarks/results/).
bench: env
	$(PY) benchmarks/run_all.py $(ARGS)
