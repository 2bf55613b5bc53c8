"""The hf backend's decode speed against this machine's weight-streaming bound.

A decode step of one row reads every weight of the model once (the tied embedding matrix too: it is the
output layer), so a step can be no faster than model bytes / memory bandwidth. This script measures,
in one run:

1. memory bandwidth: the best of 5 passes of summing a 1 GiB float32 tensor (read only, far larger
   than any cache) at the backend's torch threads, and of copying it (read + write, counted as 2x);
2. the model's bytes (every parameter once, tied ones once);
3. decode tokens/s of the hf backend at batch 1 and 8, in float32 (the default) and in bfloat16
   (`dtype`; on a CPU with AMX its batched matrix products are much faster): `--tokens` + 1 new tokens
   minus 1 new token (so the prompt's prefill cancels out), over all rows, medians of 3. The bench
   turns end-of-text off in its backend so that every row decodes exactly that many tokens;
4. the matrix products alone: every linear layer of the model (the output layer too) applied once, in
   forward order, to 1 row and to 8 rows (medians of 5): 8 x (1 row's time / 8 rows') is the speedup
   of batch 8 over batch 1 in a step that did nothing else. The rest of a step (Python, attention,
   sampling) costs about the same at both sizes, so it raises the decode speedup above that figure,
   and making the rest cheaper lowers it.

    .venv/bin/python bench/decode_bound.py [--model smollm2-135m] [--tokens 64]

Goals (issue 21): batch 1 at >= 50% of the bound; batch 8 >= 6x batch 1's tokens/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from esc.backends.base import SamplingParams
from esc.backends.decode_linear import use_decode_linear
from esc.backends.hf import HFBackend
from esc.models import in_passing_thread, load_model

PROMPT = "I feel lonely since I moved to a new city and I don't know anyone here."
GIB = 2**30


def bandwidth_gb_s(passes: int = 5) -> dict[str, float]:
    """Read bandwidth (sum) and copy bandwidth (read + write) of a 1 GiB float32 tensor, GB/s, best pass."""
    x = torch.ones(GIB // 4, dtype=torch.float32)
    y = torch.empty_like(x)
    read, copy = [], []
    for _ in range(passes):
        started = time.perf_counter()
        x.sum()
        read.append(GIB / (time.perf_counter() - started) / 1e9)
        started = time.perf_counter()
        y.copy_(x)
        copy.append(2 * GIB / (time.perf_counter() - started) / 1e9)
    return {"read": max(read), "copy": max(copy)}


def model_bytes(model: torch.nn.Module) -> int:
    seen, total = set(), 0
    for p in model.parameters():
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            total += p.numel() * p.element_size()
    return total


async def decode_seconds(backend: HFBackend, rows: int, tokens: int) -> float:
    """Wall seconds of `rows` concurrent requests of exactly `tokens` new tokens (no early stop)."""
    params = [SamplingParams(temperature=1.0, max_new_tokens=tokens, seed=i) for i in range(rows)]
    messages = [{"role": "user", "content": PROMPT}]
    started = time.perf_counter()
    out = await asyncio.gather(*(backend.generate(messages, p) for p in params))
    assert all(g.completion_tokens == tokens for g in out), [g.completion_tokens for g in out]
    return time.perf_counter() - started


def decode_rate(backend: HFBackend, rows: int, tokens: int) -> float:
    """Decode tokens/s over all rows: (tokens) more steps' tokens over the time they add, median of 3."""
    rates = []
    for _ in range(3):
        short = asyncio.run(decode_seconds(backend, rows, 1))
        long = asyncio.run(decode_seconds(backend, rows, tokens + 1))
        rates.append(rows * tokens / (long - short))
    return statistics.median(rates)


def linear_seconds(model: torch.nn.Module, rows: int, plain: bool = False, passes: int = 5) -> float:
    """Median seconds of one pass of every linear layer (output layer included) over `rows` rows, in
    forward order, so that each weight comes from memory as in a decode step; `plain`: through torch's
    `F.linear` instead of the layers' own forward (decode_linear.py's kernel)."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    dtype = layers[0].weight.dtype
    inputs = {m.in_features: torch.randn(rows, m.in_features, dtype=dtype) for m in layers}
    times = []
    with torch.inference_mode():
        for _ in range(passes + 1):  # the first pass warms up
            started = time.perf_counter()
            for layer in layers:
                x = inputs[layer.in_features]
                F.linear(x, layer.weight, layer.bias) if plain else layer(x)
            times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def measure(spec: str, dtype: str, tokens: int, read_gb_s: float) -> dict:
    model, tokenizer = load_model(spec, dtype=dtype)
    use_decode_linear(model)  # what HFBackend does to it, so the linear layers below are the backend's
    # before the backend's model thread exists: with two OpenMP teams on 2 cores, each slows the other
    one, eight = (in_passing_thread(linear_seconds, model, rows) for rows in (1, 8))
    plain_one, plain_eight = (in_passing_thread(linear_seconds, model, rows, True) for rows in (1, 8))
    backend = HFBackend(model, tokenizer, max_batch_size=8, max_wait_ms=20)
    backend.lm.eos_ids = set()  # every row decodes exactly the tokens asked for: steps are comparable
    asyncio.run(decode_seconds(backend, 2, 4))  # warm-up
    b1, b8 = decode_rate(backend, 1, tokens), decode_rate(backend, 8, tokens)
    size = model_bytes(model)
    bound = read_gb_s * 1e9 / size
    print(
        f"{dtype}: model {size / 1e6:.0f} MB, bound {bound:.1f} tokens/s a row; decode batch 1 {b1:.1f}"
        f" tokens/s ({b1 / bound:.0%} of the bound), batch 8 {b8:.1f} ({b8 / b1:.2f}x batch 1); linear"
        f" layers alone {one * 1e3:.1f} ms at 1 row, {eight * 1e3:.1f} ms at 8 (8 rows"
        f" {8 * one / eight:.2f}x 1 row's speed); through torch's F.linear {plain_one * 1e3:.1f} and"
        f" {plain_eight * 1e3:.1f} ms"
    )
    return {
        "model_mb": round(size / 1e6, 1),
        "bound_tokens_per_s": round(bound, 1),
        "b1_tokens_per_s": round(b1, 1),
        "b8_tokens_per_s": round(b8, 1),
        "b1_share_of_bound": round(b1 / bound, 3),
        "b8_over_b1": round(b8 / b1, 2),
        "linear_b1_ms": round(one * 1e3, 1),
        "linear_b8_ms": round(eight * 1e3, 1),
        "linear_b8_over_b1": round(8 * one / eight, 2),
        "linear_torch_b1_ms": round(plain_one * 1e3, 1),
        "linear_torch_b8_ms": round(plain_eight * 1e3, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--dtype", help=argparse.SUPPRESS)  # one dtype, in a process of its own
    parser.add_argument("--read-gb-s", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dtype:
        print(json.dumps(measure(args.model, args.dtype, args.tokens, args.read_gb_s)))
        return
    bw = in_passing_thread(bandwidth_gb_s)  # on the main thread it would slow the decodes below
    print(
        f"memory bandwidth: read {bw['read']:.1f} GB/s, copy {bw['copy']:.1f} GB/s"
        f" ({torch.get_num_threads()} threads)"
    )
    result = {
        "name": "decode_bound",
        "model": args.model,
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs",
        "torch_threads": torch.get_num_threads(),
        "read_gb_s": round(bw["read"], 2),
        "copy_gb_s": round(bw["copy"], 2),
    }
    for dtype in ("float32", "bfloat16"):  # each in its own process: a second model thread's OpenMP
        # team would slow the first's steps (esc.models.in_passing_thread)
        command = [sys.executable, __file__, "--model", args.model, "--tokens", str(args.tokens)]
        command += ["--dtype", dtype, "--read-gb-s", str(bw["read"])]
        out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=1200)
        print(out.stdout.strip().splitlines()[-2])
        result[dtype] = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
