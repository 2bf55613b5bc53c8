"""What every role actor does on start-up: read its config, size torch's thread pool, set its priority;
and how an actor checks that its peers answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

from esc import placement
from esc.config import RunConfig


def actor_setup(config: dict[str, Any], role: str) -> RunConfig:
    """Validate the run config an actor was given (a plain dict) and apply the process side of
    `actors.<role>` (`esc.placement.apply`: torch threads; a raised niceness, so on a small machine the
    learner wins contended cores)."""
    run = RunConfig.model_validate(config)
    placement.apply(getattr(run.actors, role))
    return run


class Throughput:
    """Tokens a role actor's backends have processed (prompt + generated) since the actor started."""

    def __init__(self, backend: Any):
        self.backend, self.started = backend, time.monotonic()

    def __call__(self) -> dict[str, float]:
        return {"tokens": _tokens(self.backend), "elapsed_s": time.monotonic() - self.started}


def _tokens(backend: Any) -> int:
    stats = getattr(backend, "stats", {})
    return stats.get("prompt_tokens", 0) + stats.get("completion_tokens", 0)


async def peers_answer(calls: list[Awaitable[Any]], timeout_s: float) -> bool:
    """Whether every call (e.g. each peer actor's `ready.remote()`) answered within `timeout_s`; a call
    that raised counts as answered (the actor is reachable, or Ray gave up on it and said so)."""
    try:
        await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), timeout_s)
    except (TimeoutError, asyncio.TimeoutError):  # distinct classes before Python 3.11
        return False
    return True
