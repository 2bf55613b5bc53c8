"""`rlff chat`: talk to the counselor in a terminal (one message, a scripted demo, or a loop)."""

from __future__ import annotations

import asyncio
import time

from esc.backends import make_backend
from esc.config import RunConfig
from esc.roles import Counselor
from esc.schemas import Turn
from jobs import UsageError


async def _chat(config: RunConfig, messages: list[str] | None, show_reasoning: bool) -> None:
    started = time.perf_counter()
    backend = make_backend(config.counselor, seed=config.seed)
    print(f"[counselor {config.counselor.model} loaded in {time.perf_counter() - started:.1f} s]", flush=True)
    counselor = Counselor(backend, config.counselor, config.safety)
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
    await backend.close()


def run_chat(config: RunConfig, message: str | None, demo: bool, show_reasoning: bool) -> int:
    from jobs.cli import DEMO_MESSAGES

    scripted = [message] if message is not None else list(DEMO_MESSAGES) if demo else None
    if message is not None and not message.strip():
        raise UsageError("--message must not be empty")
    asyncio.run(_chat(config, scripted, show_reasoning))
    return 0
