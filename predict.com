#!/bin/bash
# predict.com: label a corpus with a model bert_model.py saved, on a CPU or a GPU node of the HEC
# (Son of Grid Engine), one shard of it per task of an array job.
#
#   qsub -v INPUT=$global_storage/corpus.txt predict.com             # one job: the whole corpus
#   qsub -t 1-20 -v INPUT=$global_storage/corpus.txt predict.com     # 20 tasks, task K labels part K of 20
#   qsub -hold_jid predict -v INPUT=$global_storage/corpus.txt,MERGE=1 predict.com   # then the 20 parts, in order
#   switch-gpu; qsub -q short -l ngpus=1 -v INPUT=...,DEVICE=cuda predict.com          # on a GPU node
#   qsub -N explain -t 1-20 -v INPUT=...,EXPLAIN=occlusion predict.com   # explain.py instead: why each label
#
# Needs the conda environment from install.com and a model folder from run_transformer_model.com
# (MODEL; GPU nodes get no network: HF_HUB_OFFLINE=1). Writes OUTPUT (default: INPUT without its
# suffix, plus .labels.tsv); in an array job of N tasks, task K writes OUTPUT's part K of N
# (labels.K-of-N.tsv), and MERGE=1 (or `python predict.py --merge --output OUTPUT`) puts them together.
# Each output appears under its name only when complete, with OUTPUT.meta.json beside it.
# EXPLAIN=occlusion (or ig) runs explain.py the same way (shards, MERGE, requeue): a number for every word of
# each text and label (docs/findings.md), into INPUT's .explanations.jsonl; about 13 times slower a text than
# labelling on a CPU (bench/RESULTS.md), so give it more tasks or h_rt.
#
# Resources (the #$ lines) are changed on the qsub command line, which beats them; everything else is
# a setting below, changed with qsub -v NAME=value[,NAME=value...] (no comma inside a value).
#
# Requeue: s_rt (5 minutes before h_rt) and -notify make Grid Engine send SIGUSR1/SIGUSR2 before it
# stops the job. predict.py finishes the chunk it is scoring (seconds), and exits 99 with the output
# so far in OUTPUT.partial; this job exits 99 too, which tells Grid Engine to put it back in the queue.
# The rerun (same job ID, RESTARTED=1) passes --resume, as every run does, and continues after the last
# complete chunk: the result is byte-identical to a run never stopped. In an array job Grid Engine
# requeues that task alone. CPU threads: as the other jobs, the CPUs granted (docs/hec.md, "CPU threads").
#
#$ -S /bin/bash
#$ -q serial
#$ -l ncpus=4
#$ -l h_vmem=8G
#$ -l h_rt=04:00:00
#$ -l s_rt=03:55:00
#$ -notify
#$ -cwd
#$ -j y
#$ -N predict

set -uo pipefail
ME=predict.com
say() { echo "$ME: $*"; }
die() { echo "$ME: error: $*" >&2; exit 1; }
need() { [ -n "${!1}" ] || die "$1 is not set and \$global_storage is not set (the HEC sets it): qsub -v $1=..."; }
int() { [[ ${!1} =~ ^[0-9]+$ ]] && [ "${!1}" -ge "$2" ] || die "$1=${!1} is not a whole number >= $2"; }
granted() {  # NAME: the N of this job's hard -l NAME=N request (qstat -j), empty if none or not under Grid Engine
    if [ -n "${JOB_ID:-}" ] && command -v qstat >/dev/null 2>&1; then
        qstat -j "$JOB_ID" 2>/dev/null | sed -n "s/^hard resource_list:.*\b$1=\([0-9][0-9]*\).*/\1/p" | head -n 1
    fi
}
TASK=${SGE_TASK_ID:-undefined}  # Grid Engine's "undefined": not an array job
[ "$TASK" = undefined ] && IN_ARRAY="" || IN_ARRAY=" task $TASK"
say "job ${JOB_ID:-(not under Grid Engine)}$IN_ARRAY on $(hostname) at $(date '+%F %T')${RESTARTED:+, restarted=$RESTARTED}"

# ------------------------------------------------------------------ HEC software (guarded)
# As in run_transformer_model.com: CONDA_MODULE= (empty) skips the module, PYTHON=... skips conda.
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
G=${global_storage:-}  # the HEC's per-user storage; the defaults below live there
under_g() { if [ -n "$G" ]; then echo "$G/$1"; fi; }

# ------------------------------------------------------------------ settings (qsub -v NAME=value)
CODE_DIR=${CODE_DIR:-${SGE_O_WORKDIR:-$PWD}}          # where predict.py is (the folder qsub ran in)
CONDA_ENV=${CONDA_ENV:-$(under_g conda_environments/py3.11-go-emotions)}  # made by install.com
MODEL=${MODEL:-$(under_g models/go-emotions/bert-base-uncased)}  # the model folder (SAVE_FP of the training job)
INPUT=${INPUT:-}                                      # the corpus: .txt (a text a line) .tsv .csv .jsonl .parquet
EXPLAIN=${EXPLAIN:-}                                  # occlusion | ig: explain.py, not predict.py (empty: label)
if [ -n "$EXPLAIN" ]; then SCRIPT=explain.py; SUFFIX=explanations.jsonl; else SCRIPT=predict.py; SUFFIX=labels.tsv; fi
OUTPUT=${OUTPUT:-${INPUT:+${INPUT%.*}.$SUFFIX}}       # .tsv, .csv or .jsonl (explain.py: .jsonl)
INPUT_FORMAT=${INPUT_FORMAT:-auto}                    # auto (from the suffix) | lines | goemotions | tsv | csv | jsonl | parquet
TEXT_COLUMN=${TEXT_COLUMN:-}                          # default: text
ID_COLUMN=${ID_COLUMN:-}                              # default: id where there is one, else the line number
THRESHOLD=${THRESHOLD:-model}                         # model | tuned | a number
AT_LEAST_ONE=${AT_LEAST_ONE:-0}                       # 1: the top label where none passes its threshold
TOP_K=${TOP_K:-0}                                     # 0: every label's score; K: the K highest only
DEVICE=${DEVICE:-cpu}                                 # cpu | cuda
PRECISION=${PRECISION:-}                              # default: fp32 on cpu, fp16 on cuda (fp32 bf16 fp16 int8); not EXPLAIN
BATCH_SIZE=${BATCH_SIZE:-}                            # default: predict.py's (64 on cpu, 256 on cuda)
CHUNK_SIZE=${CHUNK_SIZE:-$([ -n "$EXPLAIN" ] && echo 64 || echo 4096)}  # texts a step (a requeue waits for one)
SHARDS=${SHARDS:-}                                    # default: the array job's task count (SGE_TASK_LAST)
MERGE=${MERGE:-0}                                     # 1: only merge the finished shards of OUTPUT
LABELS=${LABELS:-predicted}                           # EXPLAIN: predicted | all | label names, separated by ;
EXTRA_ARGS=${EXTRA_ARGS:-}                            # more predict.py (or explain.py) options
DRY_RUN=${DRY_RUN:-0}                                 # 1: print the command, do not run it
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1

# ------------------------------------------------------------------ check the settings
need INPUT
need OUTPUT
[ -f "$CODE_DIR/$SCRIPT" ] || die "no $SCRIPT in CODE_DIR=$CODE_DIR: qsub from the project folder, or -v CODE_DIR=..."
case $EXPLAIN in
    "") ;;
    occlusion|ig) [ -z "$PRECISION" ] && [ "$TOP_K" = 0 ] && [ "$AT_LEAST_ONE" = 0 ] \
                      || die "EXPLAIN=$EXPLAIN takes no PRECISION, TOP_K or AT_LEAST_ONE (predict.py's settings)" ;;
    *) die "EXPLAIN=$EXPLAIN: use occlusion or ig (or leave it empty to label)" ;;
esac
case $DEVICE in
    cuda) DEVICE_FLAG=(--cuda); PRECISION=${PRECISION:-fp16}; BATCH_SIZE=${BATCH_SIZE:-256} ;;
    cpu) DEVICE_FLAG=(); PRECISION=${PRECISION:-fp32}; BATCH_SIZE=${BATCH_SIZE:-64} ;;
    *) die "DEVICE=$DEVICE: use cpu or cuda" ;;
esac
case $PRECISION in fp32|bf16|fp16|int8) ;; *) die "PRECISION=$PRECISION: use fp32, bf16, fp16 or int8" ;; esac
case $AT_LEAST_ONE in 0) ALO=() ;; 1) ALO=(--at-least-one) ;; *) die "AT_LEAST_ONE=$AT_LEAST_ONE: use 0 or 1" ;; esac
for v in TOP_K; do int $v 0; done
for v in BATCH_SIZE CHUNK_SIZE; do int $v 1; done
if [ "$MERGE" != 1 ]; then
    need MODEL
    [ -f "$MODEL/config.json" ] || die "MODEL=$MODEL is not a model folder (no config.json): the SAVE_FP of run_transformer_model.com"
    [ -f "$INPUT" ] || die "INPUT=$INPUT: no such file"
fi
SHARD=()
if [ "$TASK" != undefined ] && [ "$MERGE" != 1 ]; then
    int SGE_TASK_ID 1
    if [ -z "$SHARDS" ]; then
        [ "${SGE_TASK_FIRST:-1}" = 1 ] && [ "${SGE_TASK_STEPSIZE:-1}" = 1 ] || die "submit the shards as qsub -t 1-N (not -t ${SGE_TASK_FIRST:-}-${SGE_TASK_LAST:-}:${SGE_TASK_STEPSIZE:-}), or set SHARDS"
        SHARDS=${SGE_TASK_LAST:-}
    fi
    int SHARDS 1
    [ "$TASK" -le "$SHARDS" ] || die "task $TASK, but SHARDS=$SHARDS"
    SHARD=(--shard "$TASK/$SHARDS")
fi

# CPU threads per process: as run_transformer_model.com (docs/hec.md, "CPU threads").
if [ -n "${OMP_NUM_THREADS:-}" ]; then
    int OMP_NUM_THREADS 1; WHY="OMP_NUM_THREADS given"
elif [ -n "${JOB_ID:-}" ]; then
    CPUS=$(granted ncpus); WHY="-l ncpus=$CPUS granted"
    if [ -z "$CPUS" ]; then CPUS=${NSLOTS:-1}; WHY="NSLOTS=$CPUS, no -l ncpus request"; fi
    if [ "$CPUS" -gt "$(nproc)" ]; then CPUS=$(nproc); WHY="$WHY, $CPUS cores here"; fi
    OMP_NUM_THREADS=$CPUS
fi
if [ -n "${OMP_NUM_THREADS:-}" ]; then
    export OMP_NUM_THREADS MKL_NUM_THREADS=${MKL_NUM_THREADS:-$OMP_NUM_THREADS}
    say "CPU threads: OMP_NUM_THREADS=$OMP_NUM_THREADS MKL_NUM_THREADS=$MKL_NUM_THREADS ($WHY)"
else
    say "CPU threads: torch's default (not under Grid Engine, OMP_NUM_THREADS unset)"
fi

# Python: the given one, else the conda environment install.com made.
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

# ------------------------------------------------------------------ label (or merge)
read -r -a EXTRA <<< "$EXTRA_ARGS"
COLUMNS=()
if [ -n "$TEXT_COLUMN" ]; then COLUMNS+=(--text-column "$TEXT_COLUMN"); fi
if [ -n "$ID_COLUMN" ]; then COLUMNS+=(--id-column "$ID_COLUMN"); fi
IFS=';' read -r -a LABEL_LIST <<< "$LABELS"  # a name may hold spaces ("Software Development")
if [ "$MERGE" = 1 ]; then
    CMD=("$PYTHON" "$CODE_DIR/$SCRIPT" --merge --output "$OUTPUT")
elif [ -n "$EXPLAIN" ]; then
    CMD=("$PYTHON" "$CODE_DIR/explain.py" "$MODEL" --input "$INPUT" --output "$OUTPUT" --input-format "$INPUT_FORMAT"
         "${COLUMNS[@]}" --threshold "$THRESHOLD" --labels "${LABEL_LIST[@]}" --method "$EXPLAIN"
         --batch-size "$BATCH_SIZE" --chunk-size "$CHUNK_SIZE" "${SHARD[@]}" --resume "${DEVICE_FLAG[@]}" "${EXTRA[@]}")
else
    CMD=("$PYTHON" "$CODE_DIR/predict.py" "$MODEL" --input "$INPUT" --output "$OUTPUT" --input-format "$INPUT_FORMAT"
         "${COLUMNS[@]}" --threshold "$THRESHOLD"
         --top-k "$TOP_K" --precision "$PRECISION" --batch-size "$BATCH_SIZE" --chunk-size "$CHUNK_SIZE"
         "${ALO[@]}" "${SHARD[@]}" --resume "${DEVICE_FLAG[@]}" "${EXTRA[@]}")
fi
say "command: $(printf '%q ' "${CMD[@]}")"
if [ "$DRY_RUN" = 1 ]; then say "DRY_RUN=1: not running it"; exit 0; fi
mkdir -p "$(dirname "$OUTPUT")" || die "cannot create the folder of OUTPUT=$OUTPUT"

# Grid Engine signals the job's whole process group: predict.py (explain.py) gets the signal itself and stops after
# its chunk. This shell only notes it: the traps keep it alive until it has stopped.
GOT_SIGNAL=""
trap 'GOT_SIGNAL=USR1' USR1
trap 'GOT_SIGNAL=USR2' USR2
trap 'GOT_SIGNAL=TERM' TERM
START=$(date +%s)
"${CMD[@]}"
RC=$?
say "$SCRIPT exited $RC after $(( $(date +%s) - START )) s"
# 99: stopped on a signal after its last complete chunk. A signal that came before the script could
# catch it (while loading) killed it: requeue as well; the rerun resumes from OUTPUT.partial, if any.
if [ "$RC" = 99 ] || { [ "$RC" != 0 ] && [ -n "$GOT_SIGNAL" ]; }; then
    say "stopped by ${GOT_SIGNAL:+SIG$GOT_SIGNAL }with its output so far in OUTPUT.partial: exit 99, so Grid Engine requeues this job and the rerun resumes"
    exit 99
fi
[ "$RC" = 0 ] || die "$SCRIPT failed (exit $RC); see the lines above"
if [ ${#SHARD[@]} -gt 0 ]; then say "done: part $TASK of $SHARDS of $OUTPUT ($SCRIPT's last line names it)"; else say "done: $OUTPUT"; fi
