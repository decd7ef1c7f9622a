# Two entry points for a fresh machine: `make demo` and `make test`.
PY := .venv/bin/python
PIP := .venv/bin/pip

.venv/installed: pyproject.toml
	python3 -m venv .venv
	$(PIP) install --quiet --upgrade pip
	# The tested torch first: an unpinned torch would pull a multi-GB CUDA build on CPU machines.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[dev,ray]'
	touch $@

setup: .venv/installed

demo: setup
	$(PY) prepare_data.py --synthetic
	$(PY) train.py --config configs/smoke.yaml

test: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/pytest -q

.PHONY: setup demo test
