"""LoRA for the policy (`learner.lora_rank > 0`, via peft): train low-rank adapters, publish full weights.

Counselor actors and the Serve endpoint load plain model weights, so `policy_state` merges the adapters
into a copy of the weights for publishing and leaves the training model unmerged. Checkpoints hold the
adapter-wrapped state as it is (base and adapter tensors), which `checkpoint.restore` loads back into
the same wrapped model.
"""

from __future__ import annotations

import torch

from learner.strategy import unwrap


def add_lora(model: torch.nn.Module, rank: int) -> torch.nn.Module:
    """`model` with rank-`rank` adapters on every linear layer but the LM head; only adapters train."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules="all-linear")
    return get_peft_model(model, config)


def policy_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The plain model's weights (DDP / DeepSpeed wrappers removed, LoRA adapters merged)."""
    model = unwrap(model)
    if not hasattr(model, "merge_adapter"):
        return model.state_dict()
    model.merge_adapter()
    try:
        merged = model.get_base_model().state_dict()
        return {
            k.replace(".base_layer", ""): v.detach().clone() for k, v in merged.items() if "lora_" not in k
        }
    finally:
        model.unmerge_adapter()
