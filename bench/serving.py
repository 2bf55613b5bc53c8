"""The endpoint under `rlff serve --follow` (real Ray Serve, real HTTP, SmolLM2), two figures:

1. publish -> serve latency: the time from a published version N+1 becoming visible (`LATEST` moved)
   to the endpoint answering a chat request with N+1 (max_tokens 1 requests, sent back to back);
2. load: the same bounded set of requests from 1 client and from 16 concurrent clients (loopback):
   throughput ratio, p50/p99 latency under load, error count.

    .venv/bin/python bench/serving.py [--versions 5] [--requests 16] [--clients 16] [--tokens 64] [--batch N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from support.serving import free_port, start_rlff, stop, wait_healthy  # noqa: E402

from esc.config import RunConfig  # noqa: E402

DEFAULTS = RunConfig()  # the endpoint's settings when nobody changes them

PROMPTS = [
    "I feel lonely since I moved to a new city.",
    "My exam went badly and I am scared to tell my parents.",
    "I lost my job today and I don't know what to do.",
    "My best friend stopped talking to me.",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def chat(text: str, tokens: int) -> dict:
    return {"messages": [{"role": "user", "content": text}], "max_tokens": tokens, "temperature": 0.7}


def publish_latency(url: str, weights_dir: Path, versions: int) -> list[float]:
    """Publish versions 1..N of the embedded model's weights; seconds until a reply carries each."""
    from esc.models import load_model
    from esc.weights import publish

    model, _ = load_model("smollm2-135m")
    state = model.state_dict()
    seconds = []
    with httpx.Client(base_url=url, timeout=120) as http:
        for version in range(1, versions + 1):
            publish(state, weights_dir, version)
            visible = time.perf_counter()
            while True:
                reply = http.post("/v1/chat/completions", json=chat(PROMPTS[0], 1)).json()
                if reply["rlff"]["weights_version"] == version:
                    seconds.append(time.perf_counter() - visible)
                    break
    return seconds


async def load(url: str, requests: int, clients: int, tokens: int) -> dict:
    """`requests` chat requests with at most `clients` in flight: wall time, latencies, errors."""
    slots = asyncio.Semaphore(clients)
    latencies: list[float] = []
    errors = 0

    async def one(http: httpx.AsyncClient, i: int) -> None:
        nonlocal errors
        async with slots:
            started = time.perf_counter()
            reply = await http.post("/v1/chat/completions", json=chat(PROMPTS[i % len(PROMPTS)], tokens))
            latencies.append(time.perf_counter() - started)
            errors += reply.status_code != 200

    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        started = time.perf_counter()
        await asyncio.gather(*(one(http, i) for i in range(requests)))
        wall = time.perf_counter() - started
    return {"wall_s": wall, "requests_per_s": requests / wall, "latencies": latencies, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=5)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64, help="max_tokens of each request")
    parser.add_argument(
        "--batch",
        type=int,
        default=DEFAULTS.serve.max_batch_size,
        help="serve.max_batch_size (default: the default)",
    )
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="rlff-bench-serve-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    sets = [f"serve.port={port}", f"runs_dir={folder}", "name=bench"]
    sets += [f"serve.max_batch_size={args.batch}"]
    log = folder / "serve.log"
    process = start_rlff(
        ["serve", "--config", "configs/local.yaml", "--follow", *[a for s in sets for a in ("--set", s)]], log
    )
    try:
        wait_healthy(url, process, log)
        asyncio.run(load(url, 4, 4, 4))  # warm-up
        latency = publish_latency(url, folder / "bench" / "weights", args.versions)
        single = asyncio.run(load(url, args.requests, 1, args.tokens))
        many = asyncio.run(load(url, args.requests, args.clients, args.tokens))
        batches = httpx.get(f"{url}/healthz", timeout=30).json()["decode_batches"]
    finally:
        stop(process)
        shutil.rmtree(folder / "bench" / "weights", ignore_errors=True)  # the versions published: GBs
    ratio = many["requests_per_s"] / single["requests_per_s"]
    result = {
        "name": "serving",
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs",
        "publish_to_serve_s": [round(s, 3) for s in latency],
        "publish_to_serve_median_s": round(statistics.median(latency), 3),
        "publish_to_serve_max_s": round(max(latency), 3),
        "requests": args.requests,
        "clients": args.clients,
        "max_tokens": args.tokens,
        "batch": args.batch,
        "one_client_requests_per_s": round(single["requests_per_s"], 3),
        "many_clients_requests_per_s": round(many["requests_per_s"], 3),
        "throughput_ratio": round(ratio, 2),
        "many_clients_p50_s": round(percentile(many["latencies"], 50), 3),
        "many_clients_p99_s": round(percentile(many["latencies"], 99), 3),
        "one_client_p50_s": round(percentile(single["latencies"], 50), 3),
        "errors": single["errors"] + many["errors"],
        "decode_batches_last": batches,
    }
    median, worst = result["publish_to_serve_median_s"], result["publish_to_serve_max_s"]
    print(f"publish -> serve: median {median} s, max {worst} s")
    print(
        f"{args.clients} clients vs 1: {result['many_clients_requests_per_s']} vs"
        f" {result['one_client_requests_per_s']} requests/s = {ratio:.2f}x;"
        f" p50 {result['many_clients_p50_s']} s, p99 {result['many_clients_p99_s']} s;"
        f" errors {result['errors']}; last decode batches {batches[-4:]}"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
