"""The output layer (hidden state -> vocabulary logits) of a batched decode step through oneDNN.

On this machine's CPU (2 cores, float32, SmolLM2's tied 576 x 49,152 output layer, which no cache holds),
MKL's product behind `F.linear` takes about 3 ms for 1 row and 6 for 4, then 11 for 8 rows and 15-18 for
12-15, against 10 for 16: a decode batch of 7 to 15 rows pays up to twice what 16 rows cost. oneDNN's
product on the same weight, as it is, takes 7-9 ms for 7 to 15 rows and the same as MKL for 3-6 and
16-32 (docs/benchmarks.md, "The output layer through oneDNN"). So `use_onednn_head` gives the model an
output layer that takes oneDNN's path for ONEDNN_ROWS rows (a decode step, the last positions of a
prefill) and `F.linear` otherwise. It holds the model's own weight: no copy, and the tie to the input
embeddings and the state dict's names stay. CPU float32 inference only: with gradients on, on a GPU or
in another dtype it is plain `F.linear`. The two can differ in the last bits (about 1e-4 on SmolLM2's
logits).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

ONEDNN_ROWS = range(4, 33)  # rows (every position of every sequence) that take oneDNN's path


def can_use(model: Any) -> bool:
    """Whether `model`'s output layer can take oneDNN's path: a bias-free float32 `nn.Linear` on the CPU,
    with oneDNN built into torch and its linear operator present."""
    head = model.get_output_embeddings()
    return (
        type(head) is torch.nn.Linear
        and head.bias is None
        and head.weight.dtype == torch.float32
        and head.weight.device.type == "cpu"
        and torch.backends.mkldnn.is_available()
        and hasattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise")
    )


class OneDNNHead(torch.nn.Linear):
    """An `nn.Linear` over the model's own output weight (the same Parameter) with oneDNN's product for
    ONEDNN_ROWS rows in float32 inference."""

    def __init__(self, head: torch.nn.Linear):
        super().__init__(head.in_features, head.out_features, bias=False, device="meta")
        self.weight = head.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1]
        if torch.is_grad_enabled() or x.dtype != torch.float32 or rows not in ONEDNN_ROWS:
            return F.linear(x, self.weight)
        flat = torch.ops.mkldnn._linear_pointwise(x.reshape(rows, -1), self.weight, None, "none", [], "")
        return flat.view(*x.shape[:-1], self.out_features)


def use_onednn_head(model: Any) -> bool:
    """Give `model` a OneDNNHead in place of its output layer when `can_use`; True when it did."""
    if not can_use(model):
        return False
    model.set_output_embeddings(OneDNNHead(model.get_output_embeddings()))
    return True
