# Two entry points (see README): `make run` and `make test`. Both set up .venv first, and
# are quick when it is already installed (a stamp file tracks the requirements).
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export GRADIO_ANALYTICS_ENABLED := False
export PYTHONUNBUFFERED := 1

PEERS := $(VENV)/.peers-installed

.PHONY: install peers run test test-fast bench motion-model clean

$(STAMP): requirements.txt constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -r requirements.txt
	# the repo root on the venv's path: `streamlit run app/main.py`, `huey_consumer jobs.tasks`
	# and `python -m backend.*` then import app/backend/jobs/db from any working directory
	$(BIN)/python -c "import os, site; open(os.path.join(site.getsitepackages()[0], 'csn_explorer.pth'), 'w').write(os.getcwd() + chr(10))"
	touch $(STAMP)

install: $(STAMP)

# test-only: the peers' own packages (pytorchvideo, mmaction2) for tests/test_convert_peers.py,
# without their dependency resolution so torch and the app's pins stay as they are
$(PEERS): $(STAMP) requirements-peers.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -c constraints.txt -r requirements-peers.txt
	touch $(PEERS)

peers: $(PEERS)

run: install
	$(BIN)/python -m app.launch

test: install peers
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

bench: install
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

# Re-train the shipped demo model (backend/assets/motion_csn.*): ~1 min of data, 15-20 min of
# training on 2 CPU cores. The commands are recorded in backend/assets/motion_csn.json.
MOTION_DATA ?= var/motion-data
MOTION_RUN ?= var/motion-run
motion-model: install
	$(BIN)/python -m backend.motion_model --reproduce --run $(MOTION_RUN) --data $(MOTION_DATA) --out backend/assets

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
