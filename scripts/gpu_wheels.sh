#!/usr/bin/env bash
# Download, on a machine with registry access, the wheels optlaw needs on a GPU machine that has
# Python 3.12, torch and transformers but no internet (issue #17; docs/gpu.md):
#
#   bash scripts/gpu_wheels.sh [WHEEL_DIR]            # default: wheels/
#   bash scripts/gpu_wheels.sh --dry-run [WHEEL_DIR]  # print the pip commands, download nothing
#
# Copy WHEEL_DIR next to the checkout on the GPU machine; `python scripts/gpu_check.py --wheels
# WHEEL_DIR` installs from it (pip --no-index --find-links, into a temporary --target folder).
#
# Wheels only, for CPython 3.12 on manylinux x86-64, whatever this machine runs. The missing
# packages are downloaded with their dependencies (--no-deps would miss real ones, such as antlr4
# for omegaconf), except the two that depend on torch: a torch wheel is what the GPU box must keep.
set -euo pipefail
DRY_RUN=0
if [ "${1:-}" = "--dry-run" ]; then DRY_RUN=1; shift; fi
WHEEL_DIR=${1:-wheels}
PYTHON=${PYTHON:-python3}
PY_VERSION=${OPTLAW_GPU_PYTHON:-3.12}
PLATFORM=${OPTLAW_GPU_PLATFORM:-manylinux2014_x86_64}
# What optlaw's pyproject.toml asks for that the GPU box lacks (same list as scripts/gpu_check.py).
MISSING=(hydra-core omegaconf antlr4-python3-runtime wandb submitit datasets pytorch-optimizer liger-kernel)

common=(download --dest "$WHEEL_DIR" --only-binary=:all: --python-version "$PY_VERSION"
        --implementation cp --abi "cp${PY_VERSION/./}" --abi abi3 --abi none
        --platform "$PLATFORM" --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --platform any)
# pytorch-optimizer and liger-kernel (optional, the fused loss) depend on torch (and triton, which CUDA torch
# ships); the box has them, so those dependencies are skipped (--no-deps)
# and its other requirements are listed explicitly.
cmds=(
  "$PYTHON -m pip ${common[*]} hydra-core omegaconf antlr4-python3-runtime wandb submitit datasets"
  "$PYTHON -m pip ${common[*]} --no-deps pytorch-optimizer liger-kernel"
)
if [ "$DRY_RUN" = 1 ]; then
  printf '%s\n' "${cmds[@]}"
  exit 0
fi
mkdir -p "$WHEEL_DIR"
for cmd in "${cmds[@]}"; do
  echo "+ $cmd" >&2
  eval "$cmd"
done
echo "wheels for ${MISSING[*]} (and their dependencies) in $WHEEL_DIR" >&2
