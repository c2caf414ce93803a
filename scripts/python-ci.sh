#!/usr/bin/env bash
# Builds the `pipeblocks` Python package and runs its tests (python/tests) against PyTorch.
#
# The virtual environment lives OUTSIDE the repository and is reused between runs, because PyTorch
# from PyPI is several GB (the default Linux wheel brings NVIDIA's CUDA libraries, which are not
# used on a CPU-only machine but let torch import). Packages are installed only when missing.
#
# Environment:
#   PIPEBLOCKS_VENV        the virtual environment (default ~/.cache/pipeblocks/venv)
#   PIPEBLOCKS_TORCH       pip requirement used when torch is missing (default torch==2.15.0)
#   PIPEBLOCKS_PY_TARGET   cargo target dir of the extension (default ~/.cache/pipeblocks/py-target)
#   PYTHON                 interpreter that creates the environment (default python3)
#   extra arguments are passed to pytest.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/pipeblocks"
venv="${PIPEBLOCKS_VENV:-$cache/venv}"
torch_req="${PIPEBLOCKS_TORCH:-torch==2.15.0}"
export CARGO_TARGET_DIR="${PIPEBLOCKS_PY_TARGET:-$cache/py-target}"
python="${PYTHON:-python3}"

say() { printf '[python-ci %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
elapsed() { echo $(( $(date +%s) - $1 ))s; }

mkdir -p "$(dirname "$venv")"
# One run at a time per environment: two installs into one venv would break it.
exec 9>"$venv.lock"
flock 9

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
    say "creating the virtual environment $venv"
    rm -rf "$venv"
    "$python" -m venv "$venv"
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off

if python -c 'import torch' 2>/dev/null; then
    say "torch $(python -c 'import torch; print(torch.__version__)') already in $venv"
else
    t=$(date +%s)
    say "installing $torch_req from PyPI (several GB, first run only)"
    python -m pip install --quiet "$torch_req"
    say "torch installed in $(elapsed "$t"); environment now $(du -sh "$venv" | cut -f1)"
fi

missing=()
python -c 'import pytest' 2>/dev/null || missing+=(pytest)
python -c 'import numpy' 2>/dev/null || missing+=(numpy)
command -v maturin >/dev/null 2>&1 || missing+=("maturin>=1.5,<2")
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    python -m pip install --quiet "${missing[@]}"
fi

t=$(date +%s)
say "building the extension (maturin develop --release, target $CARGO_TARGET_DIR)"
(cd "$repo/python" && maturin develop --release)
python -c 'import pipeblocks, pipeblocks.torch' || {
    say "the built package does not import; see the output above"
    exit 1
}
say "built in $(elapsed "$t")"

t=$(date +%s)
set +e
# -p no:cacheprovider: leave no .pytest_cache in the checkout.
# PIPEBLOCKS_REQUIRE_TORCH=1: a torch that does not import fails the run instead of skipping tests.
(cd "$repo/python" && PIPEBLOCKS_REQUIRE_TORCH=1 python -m pytest -p no:cacheprovider -q tests "$@")
rc=$?
set -e
say "pytest finished in $(elapsed "$t") with exit code $rc"
if [ "$rc" -eq 5 ]; then
    say "pytest ran no tests: python/tests is missing, a -k/-m filter deselected everything, or every module"
    say "was skipped at module level (gloo unavailable). Treating this as a failure."
    exit 1
fi
exit "$rc"
