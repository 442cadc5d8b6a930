# The only commands users, developers and CI need. Each target sets up the project venv first
# (created once, reinstalled only when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test lint perf bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing into $(VENV) (first time: a few minutes)"
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v "is ignored: it is neither" || true
	@$(PY) -c "import bench, torch, torch_fidelity, optuna, mlflow" || (echo "install failed" && exit 1)
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check bench tests benchmarks
	$(VENV)/bin/ruff format --check bench tests benchmarks

perf: $(STAMP)
	$(PY) benchmarks/perf.py

bench: $(STAMP)
	$(PY) -m bench run --dataset ring8 --method none --steps 3000 --seed 0

clean:
	rm -rf $(VENV) .pytest_cache
