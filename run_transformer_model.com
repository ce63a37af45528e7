#!/bin/bash
# run_transformer_model.com: fine-tune on GoEmotions on a GPU node of the HEC (Son of Grid Engine).
#
#   switch-gpu                                         # the HEC's GPU cluster
#   qsub run_transformer_model.com                     # from this folder; log: run-transformer-model.o<JOB_ID>
#   qsub -v MODEL=roberta-base,EPOCHS=2 run_transformer_model.com
#   qsub -l ngpus=2 run_transformer_model.com          # 2 GPUs: torchrun, DistributedDataParallel
#   qsub -t 1-5 run_transformer_model.com              # 5 tasks: the same settings, seeds 42..46
#   qsub -t 1-3 -v SWEEP=sweeps/taxonomies.tsv run_transformer_model.com   # task N: run line N of the file
#
# Needs the conda environment from install.com, and the data and the model in $global_storage from
# download_model_data.com (GPU nodes get no network: HF_HUB_OFFLINE=1).
#
# Resources (the #$ lines) are changed on the qsub command line, which beats them:
#   qsub -q other -l h_rt=04:00:00,s_rt=03:55:00 -l h_vmem=64G run_transformer_model.com
# Everything else is a setting below, changed with qsub -v NAME=value[,NAME=value...] (a value must
# not contain a comma). The GPU count comes from -l ngpus=N alone: the job reads what it was granted
# and, for N > 1, starts one process per GPU with torchrun (NGPUS overrides it where the site has no
# ngpus resource).
#
# Requeue: s_rt (soft limit, 5 minutes before h_rt) and -notify make Grid Engine send SIGUSR1/SIGUSR2
# before it stops the job. bert_model.py then finishes its step, writes a checkpoint beside the model
# and exits 99; this job exits 99 too, which tells Grid Engine to put it back in the queue. The rerun
# (same job ID, RESTARTED=1) continues from the checkpoint (--resume is always passed), so a long
# fine-tune finishes across several runs with no lost work. qdel JOB_ID stops it for good. In an array
# job each task has its own run folder, checkpoint and marker, and Grid Engine requeues that task alone.
#
# CPU threads: OMP_NUM_THREADS (and MKL_NUM_THREADS) per process are the CPUs granted (-l ncpus=N, else
# the NSLOTS of a -pe request) shared among the torchrun processes, unless set with qsub -v
# (docs/hec.md, "CPU threads"). Arrays of seeds and sweeps: docs/experiments.md.
#
#$ -S /bin/bash
#$ -q short
#$ -l ngpus=1
#$ -l ncpus=4
#$ -l h_vmem=40G
#$ -l h_rt=01:00:00
#$ -l s_rt=00:55:00
#$ -notify
#$ -cwd
#$ -j y
#$ -N run-transformer-model

set -uo pipefail
ME=run_transformer_model.com
say() { echo "$ME: $*"; }
die() { echo "$ME: error: ${WHERE:+$WHERE: }$*" >&2; exit 1; }  # WHERE: the sweep file and line
need() { [ -n "${!1}" ] || die "$1 is not set and \$global_storage is not set (the HEC sets it): qsub -v $1=..."; }
int() { [[ ${!1} =~ ^[0-9]+$ ]] && [ "${!1}" -ge "$2" ] || die "$1=${!1} is not a whole number >= $2"; }
num() { [[ ${!1} =~ ^([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$ ]] || die "$1=${!1} is not a number"; }
check() {  # NAME: die unless the setting's value is valid (also used for every cell of a sweep file)
    case $1 in
        EPOCHS|BATCH_SIZE) int "$1" 1 ;;
        MAX_LENGTH) [ "$MAX_LENGTH" = auto ] || int "$1" 8 ;;
        MAX_WINDOWS) int "$1" 1 ;;
        SEED|CHECKPOINT_EVERY) int "$1" 0 ;;
        LEARNING_RATE|THRESHOLD|CHECKPOINT_MINUTES) num "$1" ;;
        TAXONOMY) case $TAXONOMY in original|ekman|sentiment) ;; *) die "TAXONOMY=$TAXONOMY: use original, ekman or sentiment";; esac ;;
        PRECISION) case $PRECISION in auto|fp32|bf16|fp16) ;; *) die "PRECISION=$PRECISION: use auto, fp32, bf16 or fp16";; esac ;;
        LONG_TEXTS) case $LONG_TEXTS in auto|truncate|head-tail|windows) ;; *) die "LONG_TEXTS=$LONG_TEXTS: use auto, truncate, head-tail or windows";; esac ;;
        POOLING) case $POOLING in tuned|max|logsumexp|mean) ;; *) die "POOLING=$POOLING: use tuned, max, logsumexp or mean";; esac ;;
        LOSS) case $LOSS in bce|weighted-bce|focal|asl) ;; *) die "LOSS=$LOSS: use bce, weighted-bce, focal or asl";; esac ;;
    esac
}
granted() {  # NAME: the N of this job's hard -l NAME=N request (qstat -j), empty if none or not under Grid Engine
    if [ -n "${JOB_ID:-}" ] && command -v qstat >/dev/null 2>&1; then
        qstat -j "$JOB_ID" 2>/dev/null | sed -n "s/^hard resource_list:.*\b$1=\([0-9][0-9]*\).*/\1/p" | head -n 1
    fi
}
TASK=${SGE_TASK_ID:-undefined}  # Grid Engine's "undefined": not an array job
[ "$TASK" = undefined ] && IN_ARRAY="" || IN_ARRAY=" task $TASK"
say "job ${JOB_ID:-(not under Grid Engine)}$IN_ARRAY on $(hostname) at $(date '+%F %T')${RESTARTED:+, restarted=$RESTARTED}"

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

# ------------------------------------------------------------------ sweeps: qsub -t 1-N -v SWEEP=FILE
# A sweep file (sweeps/*.tsv, tab-separated): a header of setting names, then one run a line; task N
# takes run line N (# comments and blank lines do not count). A cell beats qsub -v; an empty cell, or
# a setting with no column, leaves the -v value or the default. Every line is checked before any
# training; DRY_RUN=1 outside an array job prints every task's command. See docs/experiments.md.
SWEEP=${SWEEP:-}
SWEEP_SETTINGS=" MODEL RUN_NAME EPOCHS BATCH_SIZE LEARNING_RATE MAX_LENGTH LONG_TEXTS MAX_WINDOWS POOLING SEED THRESHOLD
                 TAXONOMY LOSS PRECISION CHECKPOINT_MINUTES CHECKPOINT_EVERY EXTRA_ARGS "
cells() {  # LINE: split at tabs into CELLS, keeping empty cells (read -a would merge them)
    local rest=$1; CELLS=()
    while [[ $rest == *$'\t'* ]]; do CELLS+=("${rest%%$'\t'*}"); rest=${rest#*$'\t'}; done
    CELLS+=("$rest")
}
if [ "$TASK" != undefined ]; then int SGE_TASK_ID 1; fi
if [ -n "$SWEEP" ]; then
    [ -f "$SWEEP" ] || die "SWEEP=$SWEEP: no such file (a path from the folder qsub ran in)"
    HEADER=(); RUN_LINES=(); RUNS=(); n=0
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1)); line=${line%$'\r'}
        if [[ $line =~ ^[[:space:]]*(#|$) ]]; then continue; fi
        cells "$line"; WHERE="$SWEEP line $n"
        if [ ${#HEADER[@]} = 0 ]; then
            HEADER=("${CELLS[@]}")
            for name in "${HEADER[@]}"; do
                [[ $SWEEP_SETTINGS == *" $name "* ]] || die "unknown setting '$name' (a sweep sets: $(echo $SWEEP_SETTINGS))"
                [ "$(printf '%s\n' "${HEADER[@]}" | grep -cx "$name")" = 1 ] || die "$name is in the header twice"
            done
        else
            [ ${#CELLS[@]} = ${#HEADER[@]} ] || die "${#CELLS[@]} cell(s) but the header has ${#HEADER[@]}"
            for i in "${!HEADER[@]}"; do  # check each cell in a subshell: the settings stay untouched
                if [ -n "${CELLS[i]}" ]; then ( printf -v "${HEADER[i]}" '%s' "${CELLS[i]}"; check "${HEADER[i]}" ) || exit 1; fi
            done
            RUN_LINES+=("$n"); RUNS+=("$line")
        fi
    done < "$SWEEP"
    WHERE=""
    [ ${#RUNS[@]} -gt 0 ] || die "SWEEP=$SWEEP has no run lines (a header of setting names, then one run a line)"
    if [ "$TASK" = undefined ]; then
        [ "${DRY_RUN:-0}" = 1 ] || die "SWEEP=$SWEEP has ${#RUNS[@]} run(s): submit an array job, qsub -t 1-${#RUNS[@]} -v SWEEP=$SWEEP $ME (or DRY_RUN=1 to print every task's command)"
        for t in "${!RUNS[@]}"; do  # each task as the array job would run it
            OUT=$(SGE_TASK_ID=$((t + 1)) DRY_RUN=1 bash "$0") || exit 1
            say "task $((t + 1)) ($SWEEP line ${RUN_LINES[t]}): $(sed -n "s/^$ME: command: //p" <<< "$OUT")"
        done
        exit 0
    fi
    [ "$TASK" -le ${#RUNS[@]} ] || die "task $TASK, but SWEEP=$SWEEP has ${#RUNS[@]} run line(s) (the last on line ${RUN_LINES[-1]}): qsub -t 1-${#RUNS[@]}"
    cells "${RUNS[TASK - 1]}"; SET=""
    for i in "${!HEADER[@]}"; do
        if [ -n "${CELLS[i]}" ]; then printf -v "${HEADER[i]}" '%s' "${CELLS[i]}"; SET="$SET ${HEADER[i]}=${CELLS[i]}"; fi
    done
    say "task $TASK: $SWEEP line ${RUN_LINES[TASK - 1]}:${SET:- (no cells set)}"
fi
# An array task writes RUN_NAME-taskN (SAVE_FP-taskN when SAVE_FP is given), so no two tasks share a
# file. Seeds: SEED if set (qsub -v, or the sweep line), else 41 + the task ID (task 1: 42, the
# default) in a plain array job, and 42 in a sweep.
SUFFIX=""; DEFAULT_SEED=42
if [ "$TASK" != undefined ]; then
    SUFFIX=-task$TASK
    if [ -z "$SWEEP" ]; then DEFAULT_SEED=$((41 + TASK)); fi
    for v in METRICS_FILE PREDICTIONS_FILE PLOT_FILE; do
        [ -z "${!v:-}" ] || die "$v is set, but in an array job every task writes its own beside SAVE_FP: leave $v unset"
    done
fi

# ------------------------------------------------------------------ settings (qsub -v NAME=value)
CODE_DIR=${CODE_DIR:-${SGE_O_WORKDIR:-$PWD}}          # where bert_model.py is (the folder qsub ran in)
CONDA_ENV=${CONDA_ENV:-$(under_g conda_environments/py3.11-go-emotions)}  # made by install.com
DATA_DIR=${DATA_DIR:-$(under_g data/go-emotions)}     # train.tsv dev.tsv test.tsv emotions.txt (+ .json)
MODEL=${MODEL:-bert-base-uncased}                     # hub name (already in the cache) or a model folder
MODEL_DIR=${MODEL_DIR:-$(under_g models/go-emotions)} # where the fine-tuned model goes
RUN_NAME=${RUN_NAME:-$(basename "$MODEL")${SWEEP:+-$(basename "$SWEEP" .tsv)}}$SUFFIX
SAVE_FP=${SAVE_FP:+$SAVE_FP$SUFFIX}
SAVE_FP=${SAVE_FP:-${MODEL_DIR:+$MODEL_DIR/$RUN_NAME}} # the model folder; metrics etc. beside it
METRICS_FILE=${METRICS_FILE:-${SAVE_FP:+$SAVE_FP.metrics.json}}
PREDICTIONS_FILE=${PREDICTIONS_FILE:-${SAVE_FP:+$SAVE_FP.predictions.tsv}}
PLOT_FILE=${PLOT_FILE-${SAVE_FP:+$SAVE_FP.png}}       # empty: no plot
EPOCHS=${EPOCHS:-4}
BATCH_SIZE=${BATCH_SIZE:-16}                          # per GPU
LEARNING_RATE=${LEARNING_RATE:-5e-5}
MAX_LENGTH=${MAX_LENGTH:-auto}                        # auto: GoEmotions' 50, else from your training texts
LONG_TEXTS=${LONG_TEXTS:-auto}                        # auto (GoEmotions: truncate, else windows) | truncate | head-tail | windows
MAX_WINDOWS=${MAX_WINDOWS:-8}                         # windows: at most this many a text
POOLING=${POOLING:-tuned}                             # windows: tuned (per label, on dev) | max | logsumexp | mean
SEED=${SEED:-$DEFAULT_SEED}                          # see the seeds above
THRESHOLD=${THRESHOLD:-0.3}
TAXONOMY=${TAXONOMY:-original}                        # original | ekman | sentiment
LOSS=${LOSS:-bce}                                     # bce | weighted-bce | focal | asl (their options: EXTRA_ARGS)
PRECISION=${PRECISION:-auto}                          # auto | fp32 | bf16 | fp16
CHECKPOINT_MINUTES=${CHECKPOINT_MINUTES:-10}          # minutes between checkpoints (and every epoch end)
CHECKPOINT_EVERY=${CHECKPOINT_EVERY:-0}               # also every N steps (0: off)
DEVICE=${DEVICE:-cuda}                                # cuda | cpu (cpu: tests, or a CPU-only site)
EXTRA_ARGS=${EXTRA_ARGS:-}                            # more bert_model.py options, e.g. "--max-train-examples 64"
DRY_RUN=${DRY_RUN:-0}                                 # 1: print the command, do not train
NGPUS=${NGPUS:-}                                      # default: the granted -l ngpus
# The Hugging Face cache download_model_data.com filled; the original README's TRANSFORMERS_CACHE
# (ignored by transformers 5) still works, and so does HF_HOME.
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
export HF_HUB_CACHE HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1

# ------------------------------------------------------------------ check the settings
for v in DATA_DIR SAVE_FP; do need $v; done
for v in EPOCHS BATCH_SIZE MAX_LENGTH LONG_TEXTS MAX_WINDOWS POOLING SEED CHECKPOINT_EVERY LEARNING_RATE THRESHOLD \
         CHECKPOINT_MINUTES TAXONOMY LOSS PRECISION; do
    check $v
done
case $DEVICE in cuda) DEVICE_FLAG=(--cuda) ;; cpu) DEVICE_FLAG=() ;; *) die "DEVICE=$DEVICE: use cuda or cpu";; esac
[ -f "$CODE_DIR/bert_model.py" ] || die "no bert_model.py in CODE_DIR=$CODE_DIR: qsub from the project folder, or -v CODE_DIR=..."
for f in train.tsv dev.tsv test.tsv emotions.txt; do
    [ -f "$DATA_DIR/$f" ] || die "no $f in DATA_DIR=$DATA_DIR: run download_model_data.com first, or -v DATA_DIR=..."
done

# The GPU count: what Grid Engine granted (-l ngpus=N), unless NGPUS says otherwise.
GRANTED=$(granted ngpus)
if [ -z "$NGPUS" ]; then NGPUS=${GRANTED:-1}; fi
int NGPUS 1
if [ -n "$GRANTED" ] && [ "$NGPUS" != "$GRANTED" ]; then
    die "NGPUS=$NGPUS but the job was granted -l ngpus=$GRANTED: submit with qsub -l ngpus=$NGPUS instead"
fi

# CPU threads per process: torch's default is one per core of the node, not the CPUs granted. Unless
# OMP_NUM_THREADS is set (qsub -v OMP_NUM_THREADS=N), the CPUs granted: the -l ncpus=N request, else
# NSLOTS (the slots of a -pe request; 1 without one), at most the cores nproc sees, shared among the
# NGPUS processes (at least 1 each). MKL_NUM_THREADS follows unless set. Not under Grid Engine:
# torch's default (a laptop owns its cores).
if [ -n "${OMP_NUM_THREADS:-}" ]; then
    int OMP_NUM_THREADS 1; WHY="OMP_NUM_THREADS given"
elif [ -n "${JOB_ID:-}" ]; then
    CPUS=$(granted ncpus); WHY="-l ncpus=$CPUS granted"
    if [ -z "$CPUS" ]; then CPUS=${NSLOTS:-1}; WHY="NSLOTS=$CPUS, no -l ncpus request"; fi
    if [ "$CPUS" -gt "$(nproc)" ]; then CPUS=$(nproc); WHY="$WHY, $CPUS cores here"; fi
    OMP_NUM_THREADS=$(( CPUS / NGPUS > 1 ? CPUS / NGPUS : 1 )); WHY="$WHY, $NGPUS process(es)"
fi
if [ -n "${OMP_NUM_THREADS:-}" ]; then
    export OMP_NUM_THREADS MKL_NUM_THREADS=${MKL_NUM_THREADS:-$OMP_NUM_THREADS}
    say "CPU threads: OMP_NUM_THREADS=$OMP_NUM_THREADS MKL_NUM_THREADS=$MKL_NUM_THREADS per process ($WHY)"
else
    say "CPU threads: torch's default (not under Grid Engine, OMP_NUM_THREADS unset)"
fi

# Python: the given one, else the conda environment install.com made.
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

# ------------------------------------------------------------------ train
if [ "$NGPUS" -gt 1 ]; then
    # torchrun starts its workers in sessions of their own, out of reach of Grid Engine's signals: it
    # forwards SIGUSR1/SIGUSR2 to them (--signals-to-handle, torch 2.9 and newer), then gives them a grace
    # period to write their checkpoint before it kills them: 120 s with --shutdown-timeout (torch 2.12 and
    # newer); older launchers reject that flag and give a fixed 30 s. Only what this torchrun accepts is passed.
    LAUNCH=("$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$NGPUS")
    TORCHRUN_HELP=$("$PYTHON" -m torch.distributed.run --help 2>&1) || die "'$PYTHON -m torch.distributed.run --help' failed: $(tail -n 1 <<< "$TORCHRUN_HELP")"
    if grep -q -- '--signals-to-handle' <<< "$TORCHRUN_HELP"; then
        LAUNCH+=(--signals-to-handle SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1,SIGUSR2)
    else
        say "warning: this torchrun has no --signals-to-handle (torch older than 2.9): Grid Engine's s_rt warning does not reach the workers, so a job stopped at its time limit resumes from its last timed checkpoint"
    fi
    if grep -q -- '--shutdown-timeout' <<< "$TORCHRUN_HELP"; then
        LAUNCH+=(--shutdown-timeout 120)
        say "torchrun: the workers get 120 s after a stop signal to write their checkpoint (--shutdown-timeout)"
    else
        say "torchrun: no --shutdown-timeout here (torch older than 2.12): the workers get its fixed 30 s after a stop signal to write their checkpoint"
    fi
else
    LAUNCH=("$PYTHON")
fi
read -r -a EXTRA <<< "$EXTRA_ARGS"
CMD=("${LAUNCH[@]}" "$CODE_DIR/bert_model.py" "$DATA_DIR/train.tsv" "$DATA_DIR/dev.tsv" "$DATA_DIR/test.tsv"
     "$DATA_DIR/emotions.txt" "$SAVE_FP" --transformer-model "$MODEL" --epochs "$EPOCHS" --batch-size "$BATCH_SIZE"
     --learning-rate "$LEARNING_RATE" --max-length "$MAX_LENGTH" --long-texts "$LONG_TEXTS"
     --max-windows "$MAX_WINDOWS" --pooling "$POOLING" --seed "$SEED" --threshold "$THRESHOLD"
     --taxonomy "$TAXONOMY" --loss "$LOSS" --precision "$PRECISION" --checkpoint-every "$CHECKPOINT_EVERY"
     --checkpoint-minutes "$CHECKPOINT_MINUTES" --resume
     --metrics-file "$METRICS_FILE" --predictions-file "$PREDICTIONS_FILE" ${PLOT_FILE:+--plot-file "$PLOT_FILE"}
     "${DEVICE_FLAG[@]}" "${EXTRA[@]}")
say "HF_HUB_CACHE=$HF_HUB_CACHE HF_HUB_OFFLINE=$HF_HUB_OFFLINE NGPUS=$NGPUS"
say "command: $(printf '%q ' "${CMD[@]}")"
if [ "$DRY_RUN" = 1 ]; then say "DRY_RUN=1: not training"; exit 0; fi
mkdir -p "$(dirname "$SAVE_FP")" || die "cannot create the folder of SAVE_FP=$SAVE_FP"

GPU_LOG=""
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi
    GPU_LOG=$(mktemp)
    nvidia-smi --query-gpu=index,memory.used,memory.total --format=csv,noheader,nounits -l 10 > "$GPU_LOG" 2>/dev/null &
    GPU_SAMPLER=$!
else
    say "nvidia-smi not found: no GPU report"
fi

# Grid Engine signals the job's whole process group: bert_model.py (or torchrun) gets the signal
# itself. This shell only notes it: the traps keep it alive until training has stopped.
GOT_SIGNAL=""
trap 'GOT_SIGNAL=USR1' USR1
trap 'GOT_SIGNAL=USR2' USR2
trap 'GOT_SIGNAL=TERM' TERM
START=$(date +%s)
rm -f "$SAVE_FP.requeue"  # a stale marker must not requeue a run that fails for another reason
"${CMD[@]}"
RC=$?
say "bert_model.py exited $RC after $(( $(date +%s) - START )) s"

if [ -n "$GPU_LOG" ]; then
    kill "$GPU_SAMPLER" 2>/dev/null
    awk -F', ' '$2 > m { m = $2; t = $3 } END { if (m) printf "GPU memory (nvidia-smi, sampled every 10 s): peak %d of %d MiB\n", m, t }' "$GPU_LOG"
    rm -f "$GPU_LOG"
fi
# 99: stopped on a signal after writing the checkpoint. torchrun reports its own exit code, so
# bert_model.py also leaves SAVE_FP.requeue behind then. A signal that came before bert_model.py
# could catch it killed it: requeue as well, the rerun resumes from the last checkpoint (if any).
if [ "$RC" = 99 ] || { [ "$RC" != 0 ] && { [ -f "$SAVE_FP.requeue" ] || [ -n "$GOT_SIGNAL" ]; }; }; then
    say "stopped by ${GOT_SIGNAL:+SIG$GOT_SIGNAL }with a checkpoint beside $SAVE_FP: exit 99, so Grid Engine requeues this job and the rerun resumes"
    exit 99
fi
if [ "$RC" != 0 ]; then
    die "training failed (bert_model.py exit $RC); see the lines above"
fi
say "model: $SAVE_FP"
say "metrics: $METRICS_FILE"
say "predictions: $PREDICTIONS_FILE"
say "memory used by this job: qacct -j ${JOB_ID:-ID} | grep maxvmem (once the job has ended)"
