#!/usr/bin/env bash
# Every benchmark of docs/benchmarks.md, one after another on this machine, then bench/results.json and
# the table in docs/benchmarks.md. Each script's last line is its JSON. It prints its own wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT=${BENCH_OUT:-$(mktemp -d)}
mkdir -p "$OUT"
# run NAME COMMAND...: show the output, keep it in $OUT/NAME.log and its last line in $OUT/NAME.json
run() { local name=$1; shift; "$@" | tee "$OUT/$name.log"; tail -n 1 "$OUT/$name.log" > "$OUT/$name.json"; }
started=$(date +%s)
echo "== serving: publish -> serve latency, 16 clients vs 1"
run serving $PY bench/serving.py
echo "== streaming: time to first token, 16 streaming clients"
run streaming $PY bench/streaming.py
echo "== our GRPO iteration vs TRL GRPOTrainer"
run grpo_vs_trl $PY bench/grpo_vs_trl.py --iterations 4
echo "== decode against the weight-streaming bound (float32 and bfloat16)"
run decode_bound $PY bench/decode_bound.py
if test -x .venv-vllm/bin/python; then  # the opt-in vLLM environment (docs/vllm.md, make test-vllm)
    echo "== the hf backend against vLLM's CPU build"
    run vllm_vs_hf .venv-vllm/bin/python bench/vllm_vs_hf.py
else
    echo "== skipped: hf against vLLM (no .venv-vllm; build it with make .venv-vllm/.installed)"
fi
echo "== batched actor inference"
run batched_inference $PY bench/batched_inference.py
echo "== endpoint rollouts: 8 requests in flight vs 1 (loopback server with a fixed delay)"
run endpoint_rollout $PY bench/endpoint_rollout.py
echo "== replay store"
run replay_store $PY bench/replay_store.py
echo "== replay store through its Ray actor: concurrent one-group puts with fsync, sample latency"
run store_actor $PY bench/store_actor.py
echo "== async vs sync (needs the reward model and the two SFT models make run trains; each trains if missing)"
make stages ESCONV="${ESCONV:-../shared/data/esconv}"
run async_vs_sync $PY bench/async_vs_sync.py --updates 8
echo "== peak memory of make run"
run peak_memory $PY bench/peak_memory.py make run
minutes=$(( ($(date +%s) - started + 30) / 60 ))
echo "{\"name\": \"run_all\", \"minutes\": $minutes, \"machine\": \"$(uname -m) $(uname -s), $(nproc) CPUs\"}" > "$OUT/run_all.json"
$PY bench/results.py "$OUT" "$(date -u +%Y-%m-%d)"
echo "all benchmarks took $minutes min; bench/results.json and docs/benchmarks.md updated"
