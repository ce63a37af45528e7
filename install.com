#!/bin/bash
# install.com: create the conda environment for this project on the HEC (Son of Grid Engine).
#
#   qsub install.com                                  # from this folder; log: install.o<JOB_ID>
#   qsub -v CONDA_ENV=$global_storage/conda_environments/other install.com
#
# Creates (or updates) the environment at CONDA_ENV from environment.yml: Python 3.11 from conda,
# then the pip requirements (requirements.txt, the one list of packages). Then checks it: every pin
# of requirements.txt is what is installed, torch and transformers import, and whether CUDA is
# visible (no on a CPU node: the GPU job sees the GPUs). PYTHON=/path/to/python skips the creation
# and only checks that interpreter (another site's venv, say).
# Resources (the #$ lines) are changed on the qsub command line; settings with qsub -v NAME=value.
#
#$ -S /bin/bash
#$ -q serial
#$ -l h_vmem=8G
#$ -l h_rt=01:00:00
#$ -cwd
#$ -j y
#$ -N install

set -uo pipefail
ME=install.com
say() { echo "$ME: $*"; }
die() { echo "$ME: error: $*" >&2; exit 1; }
say "job ${JOB_ID:-(not under Grid Engine)} on $(hostname) at $(date '+%F %T')"

# ------------------------------------------------------------------ HEC software (guarded)
# The HEC: /etc/profile defines `module` and $global_storage; the anaconda module provides conda.
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
G=${global_storage:-}  # the HEC's per-user storage
under_g() { if [ -n "$G" ]; then echo "$G/$1"; fi; }

# ------------------------------------------------------------------ settings (qsub -v NAME=value)
CODE_DIR=${CODE_DIR:-${SGE_O_WORKDIR:-$PWD}}          # where environment.yml is (the folder qsub ran in)
CONDA_ENV=${CONDA_ENV:-$(under_g conda_environments/py3.11-go-emotions)}
ENV_FILE=${ENV_FILE:-$CODE_DIR/environment.yml}
REQUIREMENTS=${REQUIREMENTS:-$CODE_DIR/requirements.txt}

# ------------------------------------------------------------------ CPU threads
# torch (and numpy) start one thread per core of the node, not per CPU granted. Unless OMP_NUM_THREADS
# is set (qsub -v OMP_NUM_THREADS=N): the -l ncpus=N request, else NSLOTS (the slots of a -pe request;
# 1 without one), at most the cores nproc sees. MKL_NUM_THREADS follows unless set.
if [ -z "${OMP_NUM_THREADS:-}" ] && [ -n "${JOB_ID:-}" ]; then
    CPUS=""
    if command -v qstat >/dev/null 2>&1; then
        CPUS=$(qstat -j "$JOB_ID" 2>/dev/null | sed -n 's/^hard resource_list:.*\bncpus=\([0-9][0-9]*\).*/\1/p' | head -n 1)
    fi
    CPUS=${CPUS:-${NSLOTS:-1}}
    OMP_NUM_THREADS=$(( CPUS > $(nproc) ? $(nproc) : CPUS > 1 ? CPUS : 1 ))
fi
if [ -n "${OMP_NUM_THREADS:-}" ]; then
    [[ $OMP_NUM_THREADS =~ ^[1-9][0-9]*$ ]] || die "OMP_NUM_THREADS=$OMP_NUM_THREADS is not a whole number >= 1"
    export OMP_NUM_THREADS MKL_NUM_THREADS=${MKL_NUM_THREADS:-$OMP_NUM_THREADS}
    say "CPU threads: OMP_NUM_THREADS=$OMP_NUM_THREADS MKL_NUM_THREADS=$MKL_NUM_THREADS"
fi

[ -f "$REQUIREMENTS" ] || die "no requirements file REQUIREMENTS=$REQUIREMENTS: qsub from the project folder, or -v CODE_DIR=..."
if [ -z "$PYTHON" ]; then
    [ -n "$CONDA_ENV" ] || die "CONDA_ENV is not set and \$global_storage is not set (the HEC sets it): qsub -v CONDA_ENV=..."
    [ -f "$ENV_FILE" ] || die "no environment file ENV_FILE=$ENV_FILE: qsub from the project folder, or -v CODE_DIR=..."
    command -v conda >/dev/null 2>&1 || die "conda not found (module add $CONDA_MODULE?). Elsewhere: python3.11 -m venv ENV && ENV/bin/pip install -r requirements.txt, then -v PYTHON=ENV/bin/python"
    # pip resolves "-r requirements.txt" in environment.yml beside environment.yml
    if [ -d "$CONDA_ENV/conda-meta" ]; then
        say "updating the conda environment $CONDA_ENV from $ENV_FILE"
        conda env update --prefix "$CONDA_ENV" --file "$ENV_FILE" --prune || die "conda env update failed (exit $?)"
    else
        say "creating the conda environment $CONDA_ENV from $ENV_FILE"
        mkdir -p "$(dirname "$CONDA_ENV")" || die "cannot create the folder of CONDA_ENV=$CONDA_ENV"
        conda env create --prefix "$CONDA_ENV" --file "$ENV_FILE" || die "conda env create failed (exit $?)"
    fi
    set +u; source activate "$CONDA_ENV" || die "'source activate $CONDA_ENV' failed"; set -u
    PYTHON=$CONDA_ENV/bin/python
else
    say "PYTHON=$PYTHON given: not creating a conda environment, only checking it"
fi
if [ ! -x "$PYTHON" ]; then
    FOUND=$(command -v "$PYTHON") || die "PYTHON=$PYTHON is not an executable"
    PYTHON=$FOUND
fi

# ------------------------------------------------------------------ check the environment
"$PYTHON" - "$REQUIREMENTS" <<'EOF' || die "the environment is not usable; see the lines above"
import sys
from importlib.metadata import PackageNotFoundError, version

from packaging.requirements import Requirement

print(f"python {sys.version.split()[0]} at {sys.executable}")
bad = []
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.split("#")[0].strip()
    if not line or line.startswith("-"):
        continue
    req = Requirement(line)
    try:
        have = version(req.name)
    except PackageNotFoundError:
        have = None
    if have is None or not req.specifier.contains(have, prereleases=True):
        bad.append(f"{req.name}: want {req.specifier}, have {have or 'nothing'}")
if bad:
    print(f"install.com: error: {len(bad)} requirement(s) not met: " + "; ".join(bad), file=sys.stderr)
    sys.exit(1)
import torch
import transformers

print(f"torch {torch.__version__}, transformers {transformers.__version__}: all requirements met")
if torch.cuda.is_available():
    names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    print(f"CUDA visible: yes, {torch.cuda.device_count()} GPU(s): {names} (CUDA {torch.version.cuda})")
else:
    print(f"CUDA visible: no (a CPU node; torch built for CUDA {torch.version.cuda or 'none'})")
EOF
say "done: $PYTHON is ready for download_model_data.com and run_transformer_model.com"
