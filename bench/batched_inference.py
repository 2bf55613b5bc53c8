"""Batched hf-backend inference vs sequential requests: tokens/s of 8 concurrent requests against the
same 8 requests one after another, measured in one run on the same loaded model.

    .venv/bin/python bench/batched_inference.py [--model smollm2-135m] [--requests 8] [--tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time

import torch

from esc.backends.base import SamplingParams
from esc.backends.hf import HFBackend
from esc.models import load_model

PROMPTS = [
    "I feel lonely since I moved to a new city.",
    "My exam went badly and I am scared to tell my parents.",
    "I lost my job today and I don't know what to do.",
    "My best friend stopped talking to me.",
    "I can't sleep because I worry about money.",
    "My dog died last week.",
    "I argued with my sister and feel guilty.",
    "I am nervous about starting a new school.",
]


async def run(backend: HFBackend, n: int, tokens: int, concurrent: bool) -> tuple[float, int]:
    params = [SamplingParams(temperature=0.7, max_new_tokens=tokens, seed=i) for i in range(n)]
    messages = [[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}] for i in range(n)]
    started = time.perf_counter()
    if concurrent:
        out = await asyncio.gather(*(backend.generate(m, p) for m, p in zip(messages, params)))
    else:
        out = [await backend.generate(m, p) for m, p in zip(messages, params)]
    return time.perf_counter() - started, sum(g.completion_tokens for g in out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    model, tokenizer = load_model(args.model)
    backend = HFBackend(model, tokenizer, max_batch_size=args.requests, max_wait_ms=20)
    asyncio.run(run(backend, 2, 4, concurrent=True))  # warm-up
    seq_s, seq_tokens = asyncio.run(run(backend, args.requests, args.tokens, concurrent=False))
    bat_s, bat_tokens = asyncio.run(run(backend, args.requests, args.tokens, concurrent=True))
    seq_rate, bat_rate = seq_tokens / seq_s, bat_tokens / bat_s
    result = {
        "name": "batched_inference",
        "model": args.model,
        "requests": args.requests,
        "sequential_tokens_per_s": round(seq_rate, 1),
        "batched_tokens_per_s": round(bat_rate, 1),
        "ratio": round(bat_rate / seq_rate, 2),
        "batch_sizes_seen": sorted(set(backend.batch_sizes)),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
    }
    print(f"sequential: {seq_tokens} tokens in {seq_s:.1f} s = {seq_rate:.1f} tok/s")
    print(f"batched:    {bat_tokens} tokens in {bat_s:.1f} s = {bat_rate:.1f} tok/s")
    print(f"ratio batched/sequential: {bat_rate / seq_rate:.2f}x")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
