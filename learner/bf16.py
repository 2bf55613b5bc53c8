"""The policy update under bf16 autocast (`learner.bf16`): matrix products in bf16, log-probs in float32.

Autocast casts a float32 weight to bf16 on every call, and keeps the cast for the rest of the pass only
for weights that train. A LoRA policy's base weights (and every weight of a frozen reference) do not,
so `train_in_bf16` gives each frozen linear layer a bf16 copy of its weight that its forward uses while
bf16 autocast is on; outside autocast the layer is float32 as before. The float32 weights themselves are
untouched: state dicts, checkpoints and published weights (`learner.lora.policy_state`) are what they
were, and the copies are not in any state dict. The LM head runs in float32 under autocast as well:
in bf16 its logits (tens of nats) carry errors of about 0.1, which the log-probs of the importance
weights would inherit.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from learner.strategy import unwrap

COPY = "_bf16_weight"  # the attribute holding a frozen layer's bf16 weight


def train_in_bf16(model: nn.Module) -> int:
    """Ready `model` (plain, LoRA-wrapped or a frozen reference) for passes under bf16 autocast, in
    place; returns how many frozen linear layers got a bf16 copy of their weight. Apply after LoRA
    (which freezes the base) and before the model's weights move to another device; applying it again
    changes nothing."""
    head = unwrap(model).get_output_embeddings()
    copied = 0
    for module in model.modules():
        if module is head or not isinstance(module, nn.Linear) or module.weight.requires_grad:
            continue
        if not hasattr(module, COPY):
            setattr(module, COPY, module.weight.detach().to(torch.bfloat16))
            module.forward = _bf16_under_autocast(module, module.forward)
        copied += 1
    if head is not None and not getattr(head, "_float32_head", False):
        head.forward = _float32_always(head)
        head._float32_head = True
    return copied


def _bf16_under_autocast(layer: nn.Linear, forward: Any) -> Any:
    def run(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        kind = x.device.type
        if torch.is_autocast_enabled(kind) and torch.get_autocast_dtype(kind) == torch.bfloat16:
            return F.linear(x, getattr(layer, COPY), layer.bias)  # autocast casts x; the weight is bf16
        return forward(x, *args, **kwargs)

    return run


def _float32_always(head: nn.Linear) -> Any:
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return F.linear(x.float(), head.weight.float(), None if head.bias is None else head.bias.float())

    return run
