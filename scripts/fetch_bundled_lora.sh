#!/usr/bin/env bash
# Fetch the bundled `linear_spec_lora` adapter of a Nemotron-Labs-Diffusion HF model repo into
# miscs/linear_spec_lora/ (needed once before `eval.sh --mode linear_spec --lora`).
#
# Usage:
#   bash scripts/fetch_bundled_lora.sh
#   bash scripts/fetch_bundled_lora.sh --model nvidia/Nemotron-Labs-Diffusion-3B   # another size
#   bash scripts/fetch_bundled_lora.sh --subfolder linear_spec_lora_v2             # another variant
#   bash scripts/fetch_bundled_lora.sh --dest /shared/adapters/8b                  # another target
#
# The files go through the Hugging Face cache ($HF_HOME, with huggingface_hub: resumable, hash-checked),
# then are copied into the target through temp files, so an interrupted run never leaves a file that
# looks complete. Log in first for a gated repo (hf auth login, or export HF_TOKEN=...).
# To stage the model and the benchmark data as well: bash eval.sh --stage --mode linear_spec --lora ...
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

PY="${NLD_PYTHON:-}"
if [[ -z "$PY" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"; else PY="python3"; fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m launchers.staging_lora --dest "$ROOT/miscs/linear_spec_lora" "$@"
