#!/usr/bin/env bash
# README command two: set up from scratch and run the whole test suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k fit -x).
set -euo pipefail
cd "$(dirname "$0")/.."
OPTLAW_EXTRAS=test bash scripts/setup.sh
# The SLURM tests need a single-node cluster; start one when we are root on Debian.
if [ -x scripts/slurm_cluster.sh ]; then
  bash scripts/slurm_cluster.sh start || echo "warning: could not start SLURM; the slurm tests will say why" >&2
fi
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
