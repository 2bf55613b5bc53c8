#!/usr/bin/env bash
# Every benchmark of docs/benchmarks.md, one after another on this machine (about 30 minutes on 2 cores),
# then bench/results.json and the table in docs/benchmarks.md. Each script's last line is its JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
last() { tail -n 1; }
started=$(date +%s)
echo "== peak memory of make run (trains the reward model on first use)"
$PY bench/peak_memory.py make run | tee /dev/stderr | last > "$OUT/peak_memory.json"
echo "== async vs sync"
$PY bench/async_vs_sync.py --updates 3 | tee /dev/stderr | last > "$OUT/async_vs_sync.json"
echo "== our GRPO iteration vs TRL GRPOTrainer"
$PY bench/grpo_vs_trl.py --iterations 4 | tee /dev/stderr | last > "$OUT/grpo_vs_trl.json"
echo "== serving: publish -> serve latency, 16 clients vs 1"
$PY bench/serving.py | tee /dev/stderr | last > "$OUT/serving.json"
echo "== batched actor inference"
$PY bench/batched_inference.py | tee /dev/stderr | last > "$OUT/batched_inference.json"
echo "== replay store"
$PY bench/replay_store.py | tee /dev/stderr | last > "$OUT/replay_store.json"
$PY bench/results.py "$OUT" "$(date -u +%Y-%m-%d)"
echo "all benchmarks took $(( ($(date +%s) - started) / 60 )) min; bench/results.json and docs/benchmarks.md updated"
