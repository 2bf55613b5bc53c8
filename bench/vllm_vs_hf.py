"""The vLLM backend (vLLM's CPU build) vs the hf backend in one run: rollout tokens/s of the same
concurrent requests under the same sampling, the time to swap in published weights (`load_weights`,
from a file and from bytes), and how far vLLM's per-token log-probs are from transformers'.

    .venv-vllm/bin/python bench/vllm_vs_hf.py [--requests 8] [--tokens 64] [--repeats 5] [--out FILE]

hf and vLLM (fp32) are loaded in one child process and their runs alternate, so a neighbour's load on
a shared machine falls on both alike; vLLM bf16 runs in a second child. The parent prints one line per
backend and one JSON object (also written to --out) for bench/results.json.
Needs the `.venv-vllm` environment (docs/vllm.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from batched_inference import PROMPTS

# hf and vLLM fp32 share a process, so their runs interleave; a second in-process vLLM engine does not
# start in a process that had one, so bf16 gets its own.
GROUPS = ("hf-float32+vllm-float32", "vllm-bfloat16")


async def rollouts(backend, requests: int, tokens: int) -> tuple[float, list]:
    """Seconds for `requests` concurrent replies of up to `tokens` tokens (temperature 0.7, seeded)."""
    from esc.backends.base import SamplingParams

    params = [
        SamplingParams(temperature=0.7, top_p=0.95, max_new_tokens=tokens, seed=i) for i in range(requests)
    ]
    messages = [[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}] for i in range(requests)]
    started = time.perf_counter()
    out = await asyncio.gather(*(backend.generate(m, p) for m, p in zip(messages, params)))
    return time.perf_counter() - started, out


def logprob_gap(model, generations) -> float:
    """Largest |log p| difference between the backend's token_logprobs and transformers' (fp32)."""
    import torch

    worst = 0.0
    for g in generations:
        ids = torch.tensor([list(g.prompt_ids) + list(g.token_ids)])
        with torch.no_grad():
            logits = model(ids).logits[0, len(g.prompt_ids) - 1 : -1].float()
        picked = torch.log_softmax(logits, -1).gather(1, torch.tensor(g.token_ids)[:, None])[:, 0]
        worst = max(worst, (picked - torch.tensor(g.token_logprobs)).abs().max().item())
    return worst


def start(kind: str, dtype: str, requests: int):
    """(backend, seconds to start it) for the embedded model."""
    from esc.config import CounselorConfig
    from esc.models import EMBEDDED, load_model

    started = time.perf_counter()
    if kind == "hf":
        from esc.backends.hf import HFBackend

        model, tokenizer = load_model(EMBEDDED, device="cpu", dtype=dtype)
        backend = HFBackend(model, tokenizer, max_batch_size=requests, max_wait_ms=20)
    else:
        from esc.backends.vllm import VLLMBackend

        role = CounselorConfig(backend="vllm", model=EMBEDDED, dtype=dtype, max_batch_size=requests)
        backend = VLLMBackend.from_config(role, seed=0, max_model_len=2048)
    return backend, time.perf_counter() - started


def measure(configs: list[str], requests: int, tokens: int, repeats: int) -> dict[str, dict]:
    """Backends in this process, their rollouts interleaved (hf, vLLM, hf, vLLM, ...) so that a
    neighbour's load on a shared machine falls on both alike: tokens/s (median of `repeats`),
    weight-swap seconds (median), the log-prob gap to transformers fp32 and the startup time."""
    import torch

    from esc.models import EMBEDDED, load_model
    from esc.weights import publish, to_bytes

    reference, _ = load_model(EMBEDDED, device="cpu", dtype="float32")
    backends = {c: start(*c.split("-"), requests) for c in configs}

    async def runs():
        for backend, _ in backends.values():
            await rollouts(backend, 2, 4)  # warm-up
        timed = {c: [] for c in configs}
        for _ in range(repeats):
            for config, (backend, _) in backends.items():
                timed[config].append(await rollouts(backend, requests, tokens))
        return timed

    timed = asyncio.run(runs())
    swaps = {c: {"file": [], "bytes": []} for c in configs}
    with tempfile.TemporaryDirectory() as folder:
        path = str(publish(reference.state_dict(), folder, 1))
        data = to_bytes(reference.state_dict())
        for version in range(2, 2 + repeats):
            for config, (backend, _) in backends.items():
                for source, key in ((path, "file"), (data, "bytes")):
                    started = time.perf_counter()
                    backend.load_weights(version, source)
                    swaps[config][key].append(time.perf_counter() - started)
    results = {}
    for config, (backend, startup_s) in backends.items():
        rates = [sum(g.completion_tokens for g in out) / seconds for seconds, out in timed[config]]
        asyncio.run(backend.close())
        results[config] = {
            "startup_s": round(startup_s, 1),
            "tokens_per_s": round(statistics.median(rates), 1),
            "tokens_per_s_runs": [round(r, 1) for r in rates],
            "completion_tokens": sum(g.completion_tokens for g in timed[config][-1][1]),
            "load_weights_file_s": round(statistics.median(swaps[config]["file"]), 3),
            "load_weights_bytes_s": round(statistics.median(swaps[config]["bytes"]), 3),
            "max_logprob_gap_vs_transformers_fp32": round(logprob_gap(reference, timed[config][-1][1]), 5),
            "torch_threads": torch.get_num_threads(),
        }
    peak = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    return {c: {**r, "process_peak_rss_gb": peak} for c, r in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--groups",
        default=",".join(GROUPS),
        help="comma-separated process groups; configs joined by + share a process and interleave",
    )
    parser.add_argument("--out", type=Path, help="also write the JSON result here")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child mode: measure one group, print JSON
    args = parser.parse_args()
    if args.one:
        measured = measure(args.one.split("+"), args.requests, args.tokens, args.repeats)
        print("RESULT " + json.dumps(measured), flush=True)
        return

    results, load = {}, os.getloadavg()[0]
    for group in args.groups.split(","):
        sizes = [
            "--requests",
            str(args.requests),
            "--tokens",
            str(args.tokens),
            "--repeats",
            str(args.repeats),
        ]
        child = subprocess.run(
            [sys.executable, __file__, "--one", group, *sizes], capture_output=True, text=True
        )
        lines = [line for line in child.stdout.splitlines() if line.startswith("RESULT ")]
        if child.returncode != 0 or not lines:
            sys.exit(f"{group} failed (exit {child.returncode}):\n{child.stderr[-3000:]}")
        for config, r in json.loads(lines[-1].removeprefix("RESULT ")).items():
            results[config] = r
            print(
                f"{config:<14} {r['tokens_per_s']:>6} tok/s {r['tokens_per_s_runs']} start {r['startup_s']} s"
                f"  load_weights file {r['load_weights_file_s']} s, bytes {r['load_weights_bytes_s']} s"
                f"  max |dlogp| {r['max_logprob_gap_vs_transformers_fp32']}  {r['torch_threads']} threads",
                flush=True,
            )
    hf = results.get("hf-float32")
    result = {
        "name": "vllm_vs_hf",
        "model": "smollm2-135m",
        "requests": args.requests,
        "tokens": args.tokens,
        "repeats": args.repeats,
        "sampling": "temperature 0.7, top_p 0.95, seeded",
        "results": results,
        "speedup_vs_hf_fp32": {
            c: round(r["tokens_per_s"] / hf["tokens_per_s"], 2)
            for c, r in results.items()
            if hf and c != "hf-float32"
        },
        "load_1m_at_start": round(load, 2),
        "load_1m_at_end": round(os.getloadavg()[0], 2),
        "machine": f"{platform.machine()} Linux, {os.cpu_count()} CPUs",
    }
    print(json.dumps(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
