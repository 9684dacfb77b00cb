#!/usr/bin/env bash
# README command one: set up from scratch and run the main job on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/optlaw demo "$@"
