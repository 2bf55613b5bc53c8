#!/usr/bin/env bash
# The GPU checks on one CUDA GPU (no Ray, no downloads): tests/gpu (learner step with torch and DeepSpeed,
# vLLM generation and scoring where vLLM is installed, a Qwen2-shaped model's batched generation and
# learner step), then a short table of what they measured. Budget: under 8 minutes on one H100/H200.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
REPORT=$(mktemp)
trap 'rm -f "$REPORT"' EXIT
started=$(date +%s)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
RLFF_GPU_REPORT="$REPORT" timeout 480 "$PY" -m pytest -q -m gpu tests/gpu -p no:cacheprovider -rs
"$PY" - "$REPORT" <<'PYTHON'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print(f"{'check':<20} {'device':<28} figures")
for row in rows:
    figures = ", ".join(f"{k}={v}" for k, v in row.items() if k not in ("check", "device"))
    print(f"{row['check']:<20} {row['device']:<28} {figures}")
PYTHON
echo "gpu_check took $(( $(date +%s) - started )) s"
