# Two entry points for a fresh machine (see README):
#   make demo   set up, then run the main job offline on real whisper-tiny.en
#   make test   set up, then run the test suite
# TORCH selects the torch build. The default pin takes the CPU build from local disk on the
# development machines; on a GPU box install your CUDA torch first or pass e.g.
#   make test TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
WB := $(VENV)/bin/workbench
OUT ?= workspace/demo
DEMO_CLIPS ?= 32

.PHONY: setup demo test clean-demo

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

demo: setup
	$(WB) corpus synth --n $(DEMO_CLIPS) --out $(OUT)/corpus
	$(WB) corpus info $(OUT)/corpus
	$(WB) models info whisper-tiny.en
	$(WB) cache --model whisper-tiny.en --corpus $(OUT)/corpus --hooks 'encoder.blocks.*.hook_resid_post' --out $(OUT)/caches/whisper-tiny.en
	$(WB) probe --cache $(OUT)/caches/whisper-tiny.en --target phones --split speaker --out $(OUT)/probes/phones
	$(WB) sae train --cache $(OUT)/caches/whisper-tiny.en --hook encoder.blocks.3.hook_resid_post --expansion 8 --k 50 --tokens 2000000 --out $(OUT)/saes/block3
	$(WB) sae eval --sae $(OUT)/saes/block3 --cache $(OUT)/caches/whisper-tiny.en --model whisper-tiny.en --out $(OUT)/saes/block3/eval

test: setup
	$(PY) -m pytest -q

clean-demo:
	rm -rf $(OUT)
