"""What every role actor does on start-up: read its config, size torch's thread pool."""

from __future__ import annotations

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
