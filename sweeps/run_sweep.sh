#!/bin/bash
# sweeps/run_sweep.sh: every run line of a sweep file on this machine, as `qsub -t 1-N -v SWEEP=...
# run_transformer_model.com` runs them on the HEC. `make sweep SWEEP=sweeps/NAME.tsv` calls it.
#
#   SWEEP=sweeps/taxonomies.tsv JOBS=2 bash sweeps/run_sweep.sh
#
# Task N is run_transformer_model.com with SGE_TASK_ID=N: the same settings, checks, seed rule and
# outputs as the array job (MODEL_DIR/<run name>-taskN*, its log in MODEL_DIR/<sweep>-taskN.log).
# Every line is checked (DRY_RUN) before any training. Settings: the job's (from the environment),
# plus JOBS (runs at a time; each then gets nproc/JOBS CPU threads unless OMP_NUM_THREADS is set),
# TASKS ("2 5": only those lines), DRY_RUN=1 (print every task's command). Exit 1 if a task failed.
set -uo pipefail
ME=run_sweep.sh
die() { echo "$ME: error: $*" >&2; exit 1; }
JOB=$(cd "$(dirname "$0")/.." && pwd)/run_transformer_model.com
JOBS=${JOBS:-1}
[ -n "${SWEEP:-}" ] || die "SWEEP is not set: make sweep SWEEP=sweeps/NAME.tsv"
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || die "JOBS=$JOBS is not a whole number >= 1"
ROOT=$(dirname "$JOB")
# A laptop's defaults: this checkout's venv and data/ (make run's), no modules, the hub reachable,
# the GPU when torch sees one.
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PYTHON" ] || die "PYTHON=$PYTHON is not an executable (make sweep creates $ROOT/.venv)"
DEVICE=${DEVICE:-$("$PYTHON" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}
export SWEEP PYTHON DEVICE DATA_DIR=${DATA_DIR:-data} MODEL_DIR=${MODEL_DIR:-runs/sweeps}
export CONDA_MODULE=${CONDA_MODULE-} HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-0}
unset SGE_TASK_ID JOB_ID

LIST=$(DRY_RUN=1 bash "$JOB") || exit 1  # checks every line, before any training
N=$(grep -c "^run_transformer_model.com: task [0-9]* (" <<< "$LIST")
if [ "${DRY_RUN:-0}" = 1 ]; then echo "$LIST"; exit 0; fi
TASKS=${TASKS:-$(seq 1 "$N")}
for t in $TASKS; do
    [[ $t =~ ^[1-9][0-9]*$ ]] && [ "$t" -le "$N" ] || die "TASKS: $t is not a task of $SWEEP (1 to $N)"
done
if [ "$JOBS" -gt 1 ] && [ -z "${OMP_NUM_THREADS:-}" ]; then
    export OMP_NUM_THREADS=$(( $(nproc) / JOBS > 1 ? $(nproc) / JOBS : 1 ))
    echo "$ME: $JOBS runs at a time: OMP_NUM_THREADS=$OMP_NUM_THREADS each"
fi
mkdir -p "$MODEL_DIR" || die "cannot create MODEL_DIR=$MODEL_DIR"
FAILED=$(mktemp)
run() {  # TASK
    local log=$MODEL_DIR/$(basename "$SWEEP" .tsv)-task$1.log
    echo "$ME: task $1 started, log: $log"
    if SGE_TASK_ID=$1 bash "$JOB" > "$log" 2>&1; then
        echo "$ME: task $1 done: $(grep "^run_transformer_model.com: model: " "$log" | tail -n 1 | cut -d' ' -f3-)"
    else
        echo "$ME: task $1 failed (exit $?): $(tail -n 1 "$log")"; echo "$1" >> "$FAILED"
    fi
}
for t in $TASKS; do
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
    run "$t" &
done
wait
if [ -s "$FAILED" ]; then
    echo "$ME: error: task(s) $(sort -n "$FAILED" | tr '\n' ' ')failed; see their logs in $MODEL_DIR" >&2
    rm -f "$FAILED"; exit 1
fi
rm -f "$FAILED"
echo "$ME: all $(wc -w <<< "$TASKS") task(s) of $SWEEP done"
