"""The KV-cache sharing interface the learner uses (`esc.backends.shared_start`), on a tiny random
model: rows run after a shared start give the logits and gradients of running every full row."""

from __future__ import annotations

import torch

from esc.backends.shared_start import can_share, common_start, logits_after_start
from esc.models import tiny_random_model

START = list(range(10, 30))  # 20 shared tokens
OWN = [[40, 41, 42], [43], [44, 45, 46, 47]]  # each row's own tokens after the start


def test_common_start():
    assert common_start([[1, 2, 3], [1, 2, 4, 5], (1, 2)]) == 2
    assert common_start([[7], [1]]) == 0
    assert common_start([[1, 2]]) == 2 and common_start([]) == 0


def _full_rows() -> tuple[torch.Tensor, torch.Tensor]:
    width = len(START) + max(map(len, OWN))
    ids, attention = (
        torch.zeros((len(OWN), width), dtype=torch.long),
        torch.zeros((len(OWN), width), dtype=torch.long),
    )
    for i, own in enumerate(OWN):
        row = START + own
        ids[i, width - len(row) :], attention[i, width - len(row) :] = torch.tensor(row), 1
    return ids, attention


def _logits_and_grads(model, shared: bool):
    model.zero_grad(set_to_none=True)
    ids, attention = _full_rows()
    keep = max(map(len, OWN))
    own = torch.tensor([[0] * (keep - len(o)) + [1] * len(o) for o in OWN])  # each row's own columns
    if shared:
        logits = logits_after_start(model, torch.tensor(START), ids[:, -keep:], own, keep)
    else:
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=ids, attention_mask=attention, position_ids=positions, logits_to_keep=keep)
        logits = out.logits
    mask = own.bool()
    logits[mask].logsumexp(-1).sum().backward()
    return logits.detach()[mask], {
        n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None
    }


def test_rows_after_a_shared_start_match_the_full_rows():
    torch.manual_seed(0)
    model = tiny_random_model(64, seed=3)
    plain, plain_grads = _logits_and_grads(model, shared=False)
    shared, shared_grads = _logits_and_grads(model, shared=True)
    assert torch.allclose(shared, plain, atol=1e-5)
    assert plain_grads and plain_grads.keys() == shared_grads.keys()
    for name, grad in plain_grads.items():
        assert torch.allclose(shared_grads[name], grad, atol=1e-5, rtol=1e-4), name


def test_no_sharing_under_activation_checkpointing():
    model = tiny_random_model(64, seed=3)
    assert can_share(model)
    model.gradient_checkpointing_enable()
    assert not can_share(model)
