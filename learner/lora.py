"""LoRA for the policy (`learner.lora_rank > 0`, via peft): train low-rank adapters, publish full weights.

Counselor actors and the Serve endpoint load plain model weights, so `policy_state` merges the adapters
into copies of the weights they adapt for publishing and leaves the training model unmerged.
Checkpoints hold the adapter-wrapped state as it is (base and adapter tensors), which
`checkpoint.restore` loads back into the same wrapped model.
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
    """The plain model's weights (DDP / DeepSpeed wrappers removed, LoRA adapters merged).

    Each adapted weight is merged into a new tensor (base + the adapters' delta). The base weights are
    never written, so they stay the pages transformers memory-maps from the model's safetensors file,
    shared with every other process that loaded the same file."""
    model = unwrap(model)
    if not hasattr(model, "get_base_model"):
        return model.state_dict()
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    state = {k.replace(".base_layer", ""): v for k, v in base.state_dict().items() if "lora_" not in k}
    with torch.no_grad():
        for name, module in base.named_modules():
            if isinstance(module, LoraLayer):
                weight = module.get_base_layer().weight
                deltas = [module.get_delta_weight(a) for a in module.active_adapters if a in module.lora_A]
                if deltas:
                    state[f"{name}.weight"] = weight + sum(deltas).to(weight.dtype)
    return state
