#!/bin/bash
# download_model_data.com: fetch the GoEmotions data and the transformer model on a CPU node of the
# HEC (Son of Grid Engine), so the GPU job spends no GPU time downloading and needs no network.
#
#   qsub download_model_data.com                     # from this folder; log: download-model-data.o<JOB_ID>
#   qsub -v MODEL=roberta-base download_model_data.com
#   qsub -v DATA_FILE=$PWD/mine.jsonl,PREPARE_ARGS="--label-column tags" download_model_data.com   (your own data)
#
# Data: download_data.py into DATA_DIR (SHA-256 checked). Model: download_transformer_model.py into
# the Hugging Face cache (HF_HUB_CACHE), then checked to load with HF_HUB_OFFLINE=1.
# Resources (the #$ lines) are changed on the qsub command line (qsub -q other -l h_vmem=16G ...);
# everything else with qsub -v NAME=value[,NAME=value...] (no comma inside a value), see below.
# Where CPU and GPU queues are on one cluster, chain the training job behind this one:
#   qsub run_transformer_model.com -hold_jid download-model-data   (or -hold_jid <JOB_ID>)
#
#$ -S /bin/bash
#$ -q serial
#$ -l h_vmem=8G
#$ -l h_rt=01:00:00
#$ -cwd
#$ -j y
#$ -N download-model-data

set -uo pipefail
ME=download_model_data.com
say() { echo "$ME: $*"; }
die() { echo "$ME: error: $*" >&2; exit 1; }
say "job ${JOB_ID:-(not under Grid Engine)} on $(hostname) at $(date '+%F %T')"

# ------------------------------------------------------------------ HEC software (guarded)
# The HEC: /etc/profile defines `module` and $global_storage; the anaconda module provides conda.
# Elsewhere: CONDA_MODULE= (empty) skips the module, PYTHON=/path/to/python skips conda altogether.
CONDA_MODULE=${CONDA_MODULE-anaconda3/wmlce}
PYTHON=${PYTHON:-}
if [ -r /etc/profile ]; then  # keeps the PATH the job was given (qsub -v PATH=...) ahead of its own
    JOB_PATH=$PATH; set +u; source /etc/profile >/dev/null 2>&1; set -u; PATH=$JOB_PATH:$PATH
fi
if [ -n "$CONDA_MODULE" ]; then
    if ! type module >/dev/null 2>&1; then
        say "no module system here (no 'module' command): skipping 'module add $CONDA_MODULE'"
    elif ! module add "$CONDA_MODULE" 2>&1; then
        die "'module add $CONDA_MODULE' failed: set CONDA_MODULE to a module that exists (module avail anaconda3)"
    fi
fi
G=${global_storage:-}  # the HEC's per-user storage; all defaults below live there
under_g() { if [ -n "$G" ]; then echo "$G/$1"; fi; }

# ------------------------------------------------------------------ settings (qsub -v NAME=value)
CODE_DIR=${CODE_DIR:-${SGE_O_WORKDIR:-$PWD}}          # where the scripts are (the folder qsub ran in)
CONDA_ENV=${CONDA_ENV:-$(under_g conda_environments/py3.11-go-emotions)}  # made by install.com
DATA_FILE=${DATA_FILE:-}                              # your own data (docs/own-data.md): prepare_data.py, no download
PREPARE_ARGS=${PREPARE_ARGS:-}                        # prepare_data.py's options for it (split at spaces)
if [ -n "$DATA_FILE" ]; then STEM=$(basename "${DATA_FILE%.*}"); else STEM=go-emotions; fi
DATA_DIR=${DATA_DIR:-$(under_g data/$STEM)}           # the data goes here
DATA_MIRROR=${DATA_MIRROR:-}                          # a mirror for download_data.py --base-url (URL or folder)
MODEL=${MODEL:-bert-base-uncased}                     # hub name, or a model folder (then only checked)
DOWNLOAD_RETRIES=${DOWNLOAD_RETRIES:-4}               # retries of transient network errors
# The Hugging Face cache; the original README's TRANSFORMERS_CACHE (ignored by transformers 5)
# still works, and so does HF_HOME.
if [ -z "${HF_HUB_CACHE:-}" ]; then
    if [ -n "${TRANSFORMERS_CACHE:-}" ]; then
        HF_HUB_CACHE=$TRANSFORMERS_CACHE
        say "TRANSFORMERS_CACHE is ignored by transformers 5: using it as HF_HUB_CACHE=$HF_HUB_CACHE"
    elif [ -n "${HF_HOME:-}" ]; then
        HF_HUB_CACHE=$HF_HOME/hub
    else
        HF_HUB_CACHE=$(under_g huggingface_transformer_models_cache)
    fi
fi
HF_HUB_CACHE=${HF_HUB_CACHE:-$HOME/.cache/huggingface/hub}  # huggingface_hub's own default
export HF_HUB_CACHE TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1

# ------------------------------------------------------------------ CPU threads
# torch (and numpy) start one thread per core of the node, not per CPU granted. Unless OMP_NUM_THREADS
# is set (qsub -v OMP_NUM_THREADS=N): the -l ncpus=N request, else NSLOTS (the slots of a -pe request;
# 1 without one), at most the cores nproc sees. MKL_NUM_THREADS follows unless set.
if [ -z "${OMP_NUM_THREADS:-}" ] && [ -n "${JOB_ID:-}" ]; then
    CPUS=""
    if command -v qstat >/dev/null 2>&1; then
        CPUS=$(qstat -j "$JOB_ID" 2>/dev/null | sed -n 's/^hard resource_list:.*\bncpus=\([0-9][0-9]*\).*/\1/p' | head -n 1)
    fi
    CPUS=${CPUS:-${NSLOTS:-1}}
    OMP_NUM_THREADS=$(( CPUS > $(nproc) ? $(nproc) : CPUS > 1 ? CPUS : 1 ))
fi
if [ -n "${OMP_NUM_THREADS:-}" ]; then
    [[ $OMP_NUM_THREADS =~ ^[1-9][0-9]*$ ]] || die "OMP_NUM_THREADS=$OMP_NUM_THREADS is not a whole number >= 1"
    export OMP_NUM_THREADS MKL_NUM_THREADS=${MKL_NUM_THREADS:-$OMP_NUM_THREADS}
    say "CPU threads: OMP_NUM_THREADS=$OMP_NUM_THREADS MKL_NUM_THREADS=$MKL_NUM_THREADS"
fi

# ------------------------------------------------------------------ check the settings
need() { [ -n "${!1}" ] || die "$1 is not set and \$global_storage is not set (the HEC sets it): qsub -v $1=..."; }
need DATA_DIR
[[ $DOWNLOAD_RETRIES =~ ^[0-9]+$ ]] || die "DOWNLOAD_RETRIES=$DOWNLOAD_RETRIES is not a whole number"
for f in download_data.py download_transformer_model.py; do
    [ -f "$CODE_DIR/$f" ] || die "no $f in CODE_DIR=$CODE_DIR: qsub from the project folder, or -v CODE_DIR=..."
done
if [ -z "$PYTHON" ]; then
    need CONDA_ENV
    [ -x "$CONDA_ENV/bin/python" ] || die "no conda environment at CONDA_ENV=$CONDA_ENV: run install.com first (or -v PYTHON=...)"
    if ! command -v conda >/dev/null 2>&1; then
        die "conda not found (no anaconda module?): set CONDA_MODULE, or -v PYTHON=/path/to/python"
    fi
    set +u; source activate "$CONDA_ENV" || die "'source activate $CONDA_ENV' failed"; set -u
    PYTHON=$CONDA_ENV/bin/python
fi
if [ ! -x "$PYTHON" ]; then
    FOUND=$(command -v "$PYTHON") || die "PYTHON=$PYTHON is not an executable"
    PYTHON=$FOUND
fi

# ------------------------------------------------------------------ download
if [ -n "$DATA_FILE" ]; then
    say "data: $DATA_FILE prepared -> $DATA_DIR"
    # shellcheck disable=SC2086  # PREPARE_ARGS is a list of options
    "$PYTHON" "$CODE_DIR/prepare_data.py" "$DATA_FILE" "$DATA_DIR" $PREPARE_ARGS \
        || die "prepare_data.py failed (exit $?); see the line above"
else
    say "data -> $DATA_DIR${DATA_MIRROR:+ (mirror $DATA_MIRROR)}"
    "$PYTHON" "$CODE_DIR/download_data.py" "$DATA_DIR" ${DATA_MIRROR:+--base-url "$DATA_MIRROR"} --retries "$DOWNLOAD_RETRIES" \
        || die "download_data.py failed (exit $?); see the line above"
fi
say "model $MODEL -> $HF_HUB_CACHE"
"$PYTHON" "$CODE_DIR/download_transformer_model.py" --transformer-model "$MODEL" --retries "$DOWNLOAD_RETRIES" \
    || die "download_transformer_model.py failed (exit $?); see the line above"
say "done: the GPU job reads the data from DATA_DIR=$DATA_DIR and the model from HF_HUB_CACHE=$HF_HUB_CACHE"
