# Two entry points for a fresh machine: `make demo` and `make test`; `make lock` refreshes the lock.
PY := .venv/bin/python
PIP := .venv/bin/pip
# The tested torch, installed by pip outside the lock: its wheel differs by platform and
# accelerator (CPU, CUDA), and pip finds the right one; an unpinned torch would pull a multi-GB
# CUDA build on CPU machines. Keep it equal to [tool.uv.dependency-metadata] in pyproject.toml.
TORCH := torch==2.13.0
LOCK := requirements.lock
# `make lock` keeps every pin it can (new or changed dependencies only);
# `make lock LOCK_FLAGS=--upgrade` moves everything to the newest allowed versions.
LOCK_FLAGS :=
# e.g. https://download.pytorch.org/whl/cpu: the CPU build of the same torch on a CPU-only Linux
TORCH_INDEX :=

.venv/installed: $(LOCK) pyproject.toml
	rm -rf .venv
	python3 -m venv .venv
	$(PIP) install --quiet --upgrade pip
	# Exactly the lock: every version and hash fixed, nothing resolved here.
	$(PIP) install --quiet --require-hashes --no-deps -r $(LOCK)
	$(PIP) install --quiet $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	$(PIP) check
	touch $@

setup: .venv/installed

# uv in a venv of its own: the project's venv may not install until the lock is refreshed
UV := .venv-lock/bin/uv
$(UV):
	python3 -m venv .venv-lock
	.venv-lock/bin/pip install --quiet uv==0.13.9

lock: $(UV)
	echo "$(TORCH)" > .venv-lock/torch-override.txt
	$(UV) pip compile pyproject.toml --extra dev --extra ray --universal \
	  --python-version 3.10 --generate-hashes --override .venv-lock/torch-override.txt \
	  --no-emit-package torch --custom-compile-command "make lock" $(LOCK_FLAGS) -o $(LOCK)

# A short Optuna night on the synthetic corpora in a scratch clone (runs/demo-night), then its
# report page; about a minute on two cores, offline.
demo: setup
	$(PY) prepare_data.py --synthetic
	$(PY) -m nerlab.demo

test: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/pytest -q

.PHONY: setup lock demo test
