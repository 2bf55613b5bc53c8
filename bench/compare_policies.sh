#!/usr/bin/env bash
# Base vs SFT vs RLFF policy on held-out ESConv test scenarios (SR, AT, format, BLEU/ROUGE-L/Distinct),
# with the embedded model. Needs a finished `make run` (the RLFF weights in runs/local/weights).
# Usage: bench/compare_policies.sh [EPISODES] [SFT_STEPS]   (ESCONV=PATH, default ../shared/data/esconv)
set -euo pipefail
EPISODES=${1:-5}
SFT_STEPS=${2:-6}
ESCONV=${ESCONV:-../shared/data/esconv}
RLFF=${RLFF:-runs/local/weights/v$(cat runs/local/weights/LATEST)}
OUT=runs/compare
RLFF_BIN=${RLFF_BIN:-.venv/bin/rlff}
mkdir -p "$OUT"
test -f "$OUT/sft/config.json" || "$RLFF_BIN" train --stage sft --config configs/local.yaml --set name=compare \
    --set "sft.data=esconv:$ESCONV#train" --set "sft.max_steps=$SFT_STEPS" --out "$OUT/sft"
for policy in base "$OUT/sft" "$RLFF"; do
    name=$(basename "$policy")
    "$RLFF_BIN" evaluate --config configs/local.yaml --set name=compare --policy "$policy" \
        --scenarios "esconv:$ESCONV#test" --limit "$EPISODES" --out "$OUT/eval-$name.json"
done
.venv/bin/python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
for path in sorted(Path(sys.argv[1]).glob("eval-*.json")):
    r = json.loads(path.read_text())
    quality = {k: round(v, 3) for k, v in r["quality"].items()}
    print(f"{path.stem}: n={r['n']} SR={r['sr']:.3f} AT={r['at']:.2f} format={r['format_rate']} {quality}")
PY
