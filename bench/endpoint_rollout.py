"""Future simulation against a slow OpenAI-compatible endpoint: what `max_concurrent` buys.

A loopback server (tests/support/openai_server.py) answers every chat request after a fixed delay,
as a remote API would, with a canned, well-formed reply for the role its system prompt names (a
seeker sentence, a plain counselor reply, a verdict word) and usage counts. The project's own roles
(`Roles.from_config`: seeker, system agent, judge with scorer 'sample', all on the openai backend and
so on one shared OpenAIBackend) compute `future_rewards` for N candidates at once, first with
`max_concurrent` 8, then 1. Prints candidates/s for each and their ratio; the goal is >= 4.
No Ray, no model.

    .venv/bin/python bench/endpoint_rollout.py [--candidates 16] [--delay 0.25] [--horizon 2]
        [--samples 2] [--record DATE]   # --record: add the row to bench/results.json and the docs table
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))
import results  # noqa: E402
from support.openai_server import start_server  # noqa: E402

from esc import prompts  # noqa: E402
from esc.backends import BackendError, BackendPool, Generation  # noqa: E402
from esc.config import FutureConfig, build_config  # noqa: E402
from esc.episode import Roles, future_rewards  # noqa: E402
from esc.schemas import Scenario, Turn  # noqa: E402

MODEL = "remote-model"
SEEKER = "I keep thinking about losing my job and I can't sleep at night."
COUNSELOR = "That sounds exhausting. What goes through your mind when you lie awake?"
VERDICT = "better"
SCENARIO = Scenario(id="b1", emotion_type="anxiety", problem_type="job crisis", situation="I lost my job.")
CONTEXT = [Turn(role="seeker", text="I lost my job last week and I feel lost.")]


class SlowEndpoint:
    """An InferenceBackend that answers like a remote API: after `delay_s`, the canned reply of the
    role the system prompt names. Counts the requests it holds at once (all on the server's loop)."""

    name = "slow-endpoint"
    supports_logprobs = False

    def __init__(self, delay_s: float):
        self.delay_s = delay_s
        self.in_flight = self.most_in_flight = self.answered = 0

    async def generate(self, messages, params) -> Generation:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1
        system = messages[0]["content"]
        if system == prompts.JUDGE_SYSTEM:
            text = VERDICT
        elif system.startswith("You are a person seeking emotional support"):
            text = SEEKER
        else:
            text = COUNSELOR
        self.answered += 1
        prompt_tokens = sum(len(m["content"].split()) for m in messages)
        return Generation(text, prompt_tokens, len(text.split()), "stop")

    async def continuation_logprobs(self, messages, continuations) -> list[float]:
        raise BackendError("the benchmark endpoint scores nothing; use judge.scorer: sample")

    async def close(self) -> None:
        pass


def rollout(base_url: str, endpoint: SlowEndpoint, limit: int, args: argparse.Namespace) -> dict:
    """Future rewards of `args.candidates` candidates at once with `limit` requests in flight."""
    role = {"backend": "openai", "base_url": base_url, "model": MODEL, "max_concurrent": limit}
    config = build_config(
        {
            "seeker": role,
            "counselor": role,
            "system_agent": role,
            "judge": {**role, "scorer": "sample", "num_samples": args.samples},
        }
    )
    candidates = [
        Turn(role="counselor", text=f"That sounds hard ({i}). What worries you most?")
        for i in range(args.candidates)
    ]
    items = [(SCENARIO, CONTEXT, candidate) for candidate in candidates]
    endpoint.most_in_flight, answered = 0, endpoint.answered

    async def run() -> tuple[list, dict]:
        pool = BackendPool()
        try:
            roles = Roles.from_config(config, pool, future=True)
            rewards = await future_rewards(items, roles, FutureConfig(horizon=args.horizon))
            return rewards, dict(pool.get(config.judge).stats)
        finally:
            await pool.close()

    started = time.perf_counter()
    rewards, stats = asyncio.run(run())
    wall = time.perf_counter() - started
    assert all(r.reward == 0.5 and len(r.future) == 2 * args.horizon for r in rewards), rewards[:2]
    return {
        "max_concurrent": limit,
        "wall_s": round(wall, 2),
        "candidates_per_s": round(args.candidates / wall, 2),
        "requests": endpoint.answered - answered,
        "most_in_flight": endpoint.most_in_flight,
        "tokens": stats["prompt_tokens"] + stats["completion_tokens"],
        "retries": stats["retries"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=16)
    parser.add_argument("--delay", type=float, default=0.25, help="seconds the endpoint takes per request")
    parser.add_argument("--horizon", type=int, default=2)
    parser.add_argument("--samples", type=int, default=2, help="judge.num_samples (scorer sample)")
    parser.add_argument("--record", metavar="DATE", help="add the row to bench/results.json and the docs")
    args = parser.parse_args()
    endpoint = SlowEndpoint(args.delay)
    with start_server(endpoint, model=MODEL) as (base_url, _):
        many = rollout(base_url, endpoint, 8, args)
        one = rollout(base_url, endpoint, 1, args)
    raw = {
        "name": "endpoint_rollout",
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs",
        "candidates": args.candidates,
        "horizon": args.horizon,
        "judge_samples": args.samples,
        "delay_s": args.delay,
        "concurrent": many,
        "sequential": one,
        "ratio": round(many["candidates_per_s"] / one["candidates_per_s"], 2),
    }
    for case in (many, one):
        print(
            f"max_concurrent {case['max_concurrent']}: {case['candidates_per_s']} candidates/s"
            f" ({case['wall_s']} s, {case['requests']} requests, at most {case['most_in_flight']} in flight)"
        )
    print(f"ratio {raw['ratio']}x (goal >= 4)")
    if args.record:
        results.add(raw, args.record)
    print(json.dumps(raw))


if __name__ == "__main__":
    main()
