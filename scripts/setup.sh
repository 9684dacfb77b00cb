#!/usr/bin/env bash
# Create .venv at the repository root and install optlaw into it (idempotent).
# CPU torch first: torch==2.13.0 is a CPU build on these machines, and installing
# it before optlaw keeps pip from pulling a multi-GB CUDA build for the range.
# On a GPU cluster, install your CUDA torch into .venv first (see README); this
# script then keeps it, because the optlaw range accepts it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
EXTRAS=${OPTLAW_EXTRAS:-}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/pip install -q "torch==${OPTLAW_TORCH_VERSION:-2.13.0}" 2>&1 | grep -v "^WARNING: Location" || true
fi
spec="."
[ -n "$EXTRAS" ] && spec=".[$EXTRAS]"
.venv/bin/pip install -q -e "$spec" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import optlaw, torch; print(f'optlaw ready in .venv (torch {torch.__version__})')"
