"""What every role actor does on start-up: read its config, size torch's thread pool, set its priority."""

from __future__ import annotations

import os
import time
from typing import Any

from esc.config import RunConfig


def actor_setup(config: dict[str, Any], role: str) -> RunConfig:
    """Validate the run config an actor was given (a plain dict), apply its torch threads and lower its
    CPU priority by `actors.<role>.nice` (on a small machine the learner then wins contended cores)."""
    run = RunConfig.model_validate(config)
    actor = getattr(run.actors, role)
    if actor.torch_threads:
        import torch

        torch.set_num_threads(actor.torch_threads)
    if actor.nice:
        os.nice(actor.nice)  # raising niceness needs no privilege; Ray starts workers at 15, capped at 19
    return run


class Throughput:
    """Tokens a role actor's backend has processed (prompt + generated) since the actor started."""

    def __init__(self, backend: Any):
        self.backend, self.started = backend, time.monotonic()

    def __call__(self) -> dict[str, float]:
        stats = getattr(self.backend, "stats", {})
        tokens = stats.get("prompt_tokens", 0) + stats.get("completion_tokens", 0)
        return {"tokens": tokens, "elapsed_s": time.monotonic() - self.started}
