#!/usr/bin/env bash
# eval.sh - evaluate a tri-mode diffusion LM on SLURM (or locally). Thin front end: all flags,
# defaults (configs/modes.yaml) and validation live in the Python planner, launchers/.
# Run `bash eval.sh --help` for every flag and examples.
set -euo pipefail
ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"

# Interpreter: $NLD_PYTHON, else the project's .venv, else python3 on PATH.
PY="${NLD_PYTHON:-}"
if [[ -z "$PY" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"; else PY="python3"; fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m launchers "$@"
