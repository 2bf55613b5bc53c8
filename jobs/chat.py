"""`rlff chat`: talk to the counselor in a terminal (one message, a scripted demo, or a loop)."""

from __future__ import annotations

import asyncio
import time

from esc.backends import BackendPool
from esc.config import RunConfig
from esc.roles import Counselor
from esc.schemas import Turn
from jobs import UsageError

DEMO_MESSAGES = (
    "Hi. I've been feeling really lonely since I moved to a new city for work.",
    "I don't know anyone here and the weekends are the worst.",
    "Maybe. I used to play in a band back home.",
)


async def _chat(config: RunConfig, messages: list[str] | None, show_reasoning: bool) -> None:
    started = time.perf_counter()
    pool = BackendPool(seed=config.seed)
    counselor = Counselor.from_config(config, pool)
    print(f"[counselor {config.counselor.model} loaded in {time.perf_counter() - started:.1f} s]", flush=True)
    history: list[Turn] = []
    scripted = messages is not None
    turn = 0
    while True:
        if scripted:
            if turn >= len(messages):
                break
            text = messages[turn]
            print(f"you: {text}")
        else:
            try:
                text = input("you: ").strip()
            except EOFError:
                break
            if text.lower() in {"quit", "exit"}:
                break
            if not text:
                continue
        history.append(Turn(role="seeker", text=text))
        output = await counselor.respond(history, seed=config.seed + turn)
        if show_reasoning and output.turn.reasoning:
            print(f"  (thinking: {output.turn.reasoning})")
        print(f"counselor: {output.turn.text}" + ("  [crisis resources]" if output.turn.crisis else ""))
        history.append(output.turn)
        turn += 1
    await pool.close()


def run_chat(config: RunConfig, message: str | None, demo: bool, show_reasoning: bool) -> int:
    scripted = [message] if message is not None else list(DEMO_MESSAGES) if demo else None
    if message is not None and not message.strip():
        raise UsageError("--message must not be empty")
    asyncio.run(_chat(config, scripted, show_reasoning))
    return 0
