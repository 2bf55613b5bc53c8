"""Recompute each decoder layer's MLP in the backward pass instead of keeping its activations.

An MLP of SmolLM2 keeps four tensors 1,536 wide per token for its backward pass (the gate and up
projections, the activation and their product): more than the rest of the layer together. Wrapped
here, a layer keeps only the MLP's input and runs the MLP's forward once more during the backward.
Unlike transformers' gradient checkpointing, attention is left alone, so the KV cache that lets a
group's rows share their prompt (`learner.policy.completion_logprobs`) still works.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.checkpoint import checkpoint


def recompute_mlps(model: torch.nn.Module) -> int:
    """Make every decoder layer's `mlp` (a module beside `self_attn`) recompute its forward in the
    backward pass while gradients are recorded; returns how many were wrapped. Module names and
    weights are unchanged (the wrap replaces the instance's `forward`), so checkpoints, LoRA and
    published weights see the same model. Apply once, before or after LoRA."""
    wrapped = 0
    for module in model.modules():
        mlp = getattr(module, "mlp", None)
        if mlp is None or not hasattr(module, "self_attn") or getattr(mlp, "_recomputed", False):
            continue
        mlp.forward = _recomputing(mlp.forward)
        mlp._recomputed = True
        wrapped += 1
    return wrapped


def _recomputing(forward: Any) -> Any:
    def run(hidden: torch.Tensor) -> torch.Tensor:
        if not (torch.is_grad_enabled() and hidden.requires_grad):
            return forward(hidden)  # inference, or nothing upstream trains: nothing to save
        # no randomness inside an MLP (LoRA's dropout is 0 here), so the RNG state need not be replayed
        return checkpoint(forward, hidden, use_reentrant=False, preserve_rng_state=False)

    return run
