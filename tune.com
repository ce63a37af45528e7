#!/bin/bash
# tune.com: a hyperparameter search as a Grid Engine array: each task is one tune.py worker on one study.
#
#   qsub -t 1-8 tune.com                                   # eight workers, 20 trials in all (TRIALS)
#   qsub -t 1-8 -tc 4 -v TRIALS=40,MODEL=roberta-base tune.com
#   qsub -hold_jid tune -v REPORT=1 tune.com               # the table, the best command, the plot
#   qsub -t 1-9 -v CONFIRM=2 tune.com                      # task N: run N of tune.py --confirm 2 (3 seeds each)
#   qsub -hold_jid tune -v CONFIRM=2,REPORT=1 tune.com     # then compare_runs' table against the baseline
#
# Each worker asks the study (a journal file in STUDY, on the shared filesystem: no database server) for a
# trial, runs it as an ordinary bert_model.py run in STUDY/trials/, and asks again until the study's budget
# is spent. A worker killed (qdel, h_rt, a lost node) leaves its trial to the next worker that looks: resumed
# from its checkpoint, or failed. Requeue: at s_rt Grid Engine sends SIGUSR1; the trial checkpoints, the
# worker exits 99, Grid Engine reruns the task, and it resumes its own trial (--resume), not from scratch.
# Settings (qsub -v NAME=value) below; the environment set-up (CONDA_ENV, CONDA_MODULE, PYTHON, CODE_DIR,
# OMP_NUM_THREADS) is run_transformer_model.com's. See docs/hec.md and docs/experiments.md ("Tuning").
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
#$ -N tune

set -uo pipefail
ME=tune.com
say() { echo "$ME: $*"; }
die() { echo "$ME: error: $*" >&2; exit 1; }
need() { [ -n "${!1}" ] || die "$1 is not set and \$global_storage is not set (the HEC sets it): qsub -v $1=..."; }
int() { [[ ${!1} =~ ^[0-9]+$ ]] && [ "${!1}" -ge "$2" ] || die "$1=${!1} is not a whole number >= $2"; }
TASK=${SGE_TASK_ID:-undefined}
say "job ${JOB_ID:-(not under Grid Engine)} task $TASK on $(hostname) at $(date '+%F %T')${RESTARTED:+, restarted=$RESTARTED}"

# ------------------------------------------------------------------ HEC software (as run_transformer_model.com)
CONDA_MODULE=${CONDA_MODULE-anaconda3/wmlce}
PYTHON=${PYTHON:-}
if [ -r /etc/profile ]; then
    JOB_PATH=$PATH; set +u; source /etc/profile >/dev/null 2>&1; set -u; PATH=$JOB_PATH:$PATH
fi
if [ -n "$CONDA_MODULE" ]; then
    if ! type module >/dev/null 2>&1; then
        say "no module system here (no 'module' command): skipping 'module add $CONDA_MODULE'"
    elif ! module add "$CONDA_MODULE" 2>&1; then
        die "'module add $CONDA_MODULE' failed: set CONDA_MODULE to a module that exists (module avail anaconda3)"
    fi
fi
G=${global_storage:-}
under_g() { if [ -n "$G" ]; then echo "$G/$1"; fi; }

# ------------------------------------------------------------------ settings (qsub -v NAME=value)
CODE_DIR=${CODE_DIR:-${SGE_O_WORKDIR:-$PWD}}
CONDA_ENV=${CONDA_ENV:-$(under_g conda_environments/py3.11-go-emotions)}
DATA_DIR=${DATA_DIR:-$(under_g data/go-emotions)}
MODEL=${MODEL:-bert-base-uncased}
STUDY=${STUDY:-$(under_g tuning/$(basename "$MODEL"))}   # the study's folder (journal and trials)
SPACE=${SPACE:-$CODE_DIR/sweeps/space.txt}               # the search space
TRIALS=${TRIALS:-20}                                     # trials in the whole study, all tasks together
HOURS=${HOURS:-0}                                        # no new trial after this long (0: no limit)
OBJECTIVE=${OBJECTIVE:-dev}                              # dev | dev-tuned
DEV_EVERY=${DEV_EVERY:-10000}                            # training examples between the pruner's looks
TUNE_ARGS=${TUNE_ARGS:-}                                 # more tune.py options, e.g. "--pruner none"
EXTRA_ARGS=${EXTRA_ARGS:-}                               # fixed bert_model.py options of every trial
CONFIRM=${CONFIRM:-0}                                    # K: the confirmation runs of the best K (task N: run N)
REPORT=${REPORT:-0}                                      # 1: tune.py --report (with CONFIRM: the comparison)
DEVICE=${DEVICE:-cuda}                                   # cuda | cpu
HF_HUB_CACHE=${HF_HUB_CACHE:-${HF_HOME:+$HF_HOME/hub}}
HF_HUB_CACHE=${HF_HUB_CACHE:-$(under_g huggingface_transformer_models_cache)}
HF_HUB_CACHE=${HF_HUB_CACHE:-$HOME/.cache/huggingface/hub}
export HF_HUB_CACHE HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1

need STUDY
int TRIALS 1; int DEV_EVERY 1; int CONFIRM 0
[[ $HOURS =~ ^[0-9]+\.?[0-9]*$ ]] || die "HOURS=$HOURS is not a number"
case $OBJECTIVE in dev|dev-tuned) ;; *) die "OBJECTIVE=$OBJECTIVE: use dev or dev-tuned";; esac
case $DEVICE in cuda) DEVICE_FLAG=(--cuda) ;; cpu) DEVICE_FLAG=() ;; *) die "DEVICE=$DEVICE: use cuda or cpu";; esac
[ -f "$CODE_DIR/tune.py" ] || die "no tune.py in CODE_DIR=$CODE_DIR: qsub from the project folder, or -v CODE_DIR=..."
if [ "$REPORT" != 1 ]; then
    need DATA_DIR
    for f in train.tsv dev.tsv test.tsv emotions.txt; do
        [ -f "$DATA_DIR/$f" ] || die "no $f in DATA_DIR=$DATA_DIR: run download_model_data.com first, or -v DATA_DIR=..."
    done
fi

# CPU threads per process: the CPUs granted (-l ncpus, else NSLOTS), unless OMP_NUM_THREADS is set.
if [ -z "${OMP_NUM_THREADS:-}" ] && [ -n "${JOB_ID:-}" ]; then
    CPUS=$(qstat -j "$JOB_ID" 2>/dev/null | sed -n 's/^hard resource_list:.*\bncpus=\([0-9][0-9]*\).*/\1/p' | head -n 1)
    OMP_NUM_THREADS=${CPUS:-${NSLOTS:-1}}
    [ "$OMP_NUM_THREADS" -le "$(nproc)" ] || OMP_NUM_THREADS=$(nproc)
fi
if [ -n "${OMP_NUM_THREADS:-}" ]; then
    export OMP_NUM_THREADS MKL_NUM_THREADS=${MKL_NUM_THREADS:-$OMP_NUM_THREADS}
    say "CPU threads: OMP_NUM_THREADS=$OMP_NUM_THREADS per process"
fi

if [ -z "$PYTHON" ]; then
    need CONDA_ENV
    [ -x "$CONDA_ENV/bin/python" ] || die "no conda environment at CONDA_ENV=$CONDA_ENV: run install.com first (or -v PYTHON=...)"
    command -v conda >/dev/null 2>&1 || die "conda not found (no anaconda module?): set CONDA_MODULE, or -v PYTHON=/path/to/python"
    set +u; source activate "$CONDA_ENV" || die "'source activate $CONDA_ENV' failed"; set -u
    PYTHON=$CONDA_ENV/bin/python
fi
if [ ! -x "$PYTHON" ]; then
    FOUND=$(command -v "$PYTHON") || die "PYTHON=$PYTHON is not an executable"
    PYTHON=$FOUND
fi

# ------------------------------------------------------------------ the worker (or the report, a confirmation run)
read -r -a MORE <<< "$TUNE_ARGS"
read -r -a EXTRA <<< "$EXTRA_ARGS"
CMD=("$PYTHON" "$CODE_DIR/tune.py" "$STUDY")
if [ "$CONFIRM" -gt 0 ]; then
    CMD+=(--confirm "$CONFIRM" ${DATA_DIR:+--data "$DATA_DIR"} "${MORE[@]}")
    if [ "$REPORT" != 1 ]; then
        [ "$TASK" != undefined ] || die "CONFIRM=$CONFIRM runs one confirmation run a task: qsub -t 1-N (N: (CONFIRM + 1) x 3 seeds)"
        CMD+=(--task "$TASK")
    fi
elif [ "$REPORT" = 1 ]; then
    CMD+=(--report "${MORE[@]}")
else
    CMD+=(--data "$DATA_DIR" --space "$SPACE" --trials "$TRIALS" --hours "$HOURS" --objective "$OBJECTIVE"
          --dev-every "$DEV_EVERY" --python "$PYTHON" "${MORE[@]}"
          -- --transformer-model "$MODEL" "${DEVICE_FLAG[@]}" "${EXTRA[@]}")
fi
say "command: $(printf '%q ' "${CMD[@]}")"
if [ "${DRY_RUN:-0}" = 1 ]; then say "DRY_RUN=1: not running"; exit 0; fi

GOT_SIGNAL=""
trap 'GOT_SIGNAL=USR1' USR1
trap 'GOT_SIGNAL=USR2' USR2
trap 'GOT_SIGNAL=TERM' TERM
"${CMD[@]}"
RC=$?
say "tune.py exited $RC"
if [ "$RC" = 99 ] || { [ "$RC" != 0 ] && [ -n "$GOT_SIGNAL" ]; }; then
    say "stopped by ${GOT_SIGNAL:+SIG$GOT_SIGNAL }at a checkpoint: exit 99, so Grid Engine requeues this task and it resumes its trial"
    exit 99
fi
exit "$RC"
