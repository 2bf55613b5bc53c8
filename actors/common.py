"""What every role actor does on start-up: read its config, size torch's thread pool."""

from __future__ import annotations

import time
from typing import Any

from esc.config import RunConfig


def actor_setup(config: dict[str, Any], role: str) -> RunConfig:
    """Validate the run config an actor was given (a plain dict) and apply its torch threads."""
    run = RunConfig.model_validate(config)
    threads = getattr(run.actors, role).torch_threads
    if threads:
        import torch

        torch.set_num_threads(threads)
    return run


class Throughput:
    """Tokens a role actor's backend has processed (prompt + generated) since the actor started."""

    def __init__(self, backend: Any):
        self.backend, self.started = backend, time.monotonic()

    def __call__(self) -> dict[str, float]:
        stats = getattr(self.backend, "stats", {})
        tokens = stats.get("prompt_tokens", 0) + stats.get("completion_tokens", 0)
        return {"tokens": tokens, "elapsed_s": time.monotonic() - self.started}
