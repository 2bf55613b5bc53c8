"""Time to first token of streamed replies under load: `rlff serve` (real Ray Serve, real HTTP,
SmolLM2, configs/local.yaml's counselor), `--clients` concurrent streaming clients, each sending
`--rounds` requests one after another.

Two cases, since the counselor thinks before it answers:
- `reasoning`: the request asks for the reasoning (`"rlff": {"reasoning": true}`); the first token is
  the first chunk with text of either kind, so it measures how soon decoding output reaches a client;
- `answer`: the default request, reasoning hidden; the first token is the first answer text, which
  comes after the model's `<think>` part.

For each: time to first token p50/p99, time to the last chunk p50, errors (non-200 or a stream that
ended without `[DONE]`), and whether every stream assembled to a non-empty answer.

    .venv/bin/python bench/streaming.py [--clients 16] [--rounds 2] [--tokens N] [--batch N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))
from serving import PROMPTS, percentile  # noqa: E402
from support.serving import free_port, start_rlff, stop, wait_healthy  # noqa: E402

from esc.config import RunConfig, load_config  # noqa: E402

DEFAULTS, LOCAL = RunConfig(), load_config(ROOT / "configs" / "local.yaml")


async def stream_one(http: httpx.AsyncClient, text: str, tokens: int, reasoning: bool, seed: int) -> dict:
    """One streamed request: seconds to the first text chunk and to the end, and the answer."""
    body = {
        "messages": [{"role": "user", "content": text}],
        "max_tokens": tokens,
        "temperature": 0.7,
        "seed": seed,
        "stream": True,
        "rlff": {"reasoning": reasoning},
    }
    started, first, answer, done = time.perf_counter(), None, "", False
    async with http.stream("POST", "/v1/chat/completions", json=body) as reply:
        if reply.status_code != 200:
            return {"error": f"HTTP {reply.status_code}"}
        async for line in reply.aiter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                done = True
                break
            delta = json.loads(line[6:])["choices"][0]["delta"]
            text_now = delta.get("content") or (delta.get("reasoning_content") if reasoning else None)
            if text_now and first is None:
                first = time.perf_counter() - started
            answer += delta.get("content") or ""
    if not done or first is None:
        return {"error": "stream ended without [DONE] or without text"}
    return {"first_s": first, "total_s": time.perf_counter() - started, "answer": answer}


async def load(url: str, clients: int, rounds: int, tokens: int, reasoning: bool) -> dict:
    async def client(http: httpx.AsyncClient, c: int) -> list[dict]:
        results = []
        for r in range(rounds):
            try:
                text = PROMPTS[(c + r) % len(PROMPTS)]
                results.append(await stream_one(http, text, tokens, reasoning, seed=c * 100 + r))
            except httpx.HTTPError as error:
                results.append({"error": type(error).__name__})
        return results

    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        started = time.perf_counter()
        per_client = await asyncio.gather(*(client(http, c) for c in range(clients)))
        wall = time.perf_counter() - started
    results = [r for rs in per_client for r in rs]
    ok = [r for r in results if "error" not in r]
    firsts = [r["first_s"] for r in ok]
    return {
        "requests": len(results),
        "errors": len(results) - len(ok),
        "empty_answers": sum(not r["answer"].strip() for r in ok),
        "ttft_p50_s": round(percentile(firsts, 50), 3) if firsts else None,
        "ttft_p99_s": round(percentile(firsts, 99), 3) if firsts else None,
        "total_p50_s": round(percentile([r["total_s"] for r in ok], 50), 3) if ok else None,
        "wall_s": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--tokens",
        type=int,
        default=LOCAL.counselor.max_new_tokens,
        help="max_tokens (default: local.yaml's budget)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=DEFAULTS.serve.max_batch_size,
        help="serve.max_batch_size (default: the default)",
    )
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="rlff-bench-stream-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    sets = [f"serve.port={port}", f"runs_dir={folder}", "name=bench", f"serve.max_batch_size={args.batch}"]
    log = folder / "serve.log"
    process = start_rlff(
        ["serve", "--config", "configs/local.yaml", *[a for s in sets for a in ("--set", s)]], log
    )
    try:
        wait_healthy(url, process, log)
        asyncio.run(load(url, 4, 1, 8, True))  # warm-up
        cases = {
            name: asyncio.run(load(url, args.clients, args.rounds, args.tokens, name == "reasoning"))
            for name in ("reasoning", "answer")
        }
    finally:
        stop(process)
    result = {
        "name": "streaming",
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs",
        "clients": args.clients,
        "rounds": args.rounds,
        "max_tokens": args.tokens,
        "batch": args.batch,
        **cases,
    }
    for name, case in cases.items():
        print(
            f"{name}: {args.clients} streaming clients x {args.rounds}: first token"
            f" p50 {case['ttft_p50_s']} s, p99 {case['ttft_p99_s']} s;"
            f" whole reply p50 {case['total_p50_s']} s; errors {case['errors']},"
            f" empty answers {case['empty_answers']}"
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
