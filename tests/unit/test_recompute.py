"""Recomputed MLPs (`learner.recompute`): the same log-probs and gradients as the plain model, through
the shared-prompt path the learner uses, with far fewer bytes kept for the backward pass."""

from __future__ import annotations

import torch

from esc.backends.shared_start import logits_after_start
from esc.models import tiny_random_model
from learner.lora import add_lora
from learner.recompute import recompute_mlps

START = torch.arange(10, 40)  # 30 shared tokens
OWN = torch.tensor([[40, 41, 42, 43], [0, 44, 45, 46]])  # rows are left-padded
ATTENTION = torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1]])


def _grads_and_saved(model) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
    """Log-probs of the rows' tokens after the shared start, the gradients of their sum, and how many
    bytes the forward pass kept for the backward one."""
    model.zero_grad(set_to_none=True)
    saved = 0

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        logits = logits_after_start(model, START, OWN, ATTENTION, OWN.shape[1])
        logp = logits[:, :-1].log_softmax(-1).gather(-1, OWN[:, 1:, None]).squeeze(-1)
    (logp * ATTENTION[:, 1:]).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logp.detach(), grads, saved


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a and a.keys() == b.keys()
    for name, grad in a.items():
        assert torch.allclose(b[name], grad, atol=1e-6, rtol=1e-5), name


def test_recomputed_mlps_give_the_same_gradients_and_keep_less():
    plain = tiny_random_model(64, seed=5)
    logp, grads, saved = _grads_and_saved(plain)
    names = [n for n, _ in plain.named_parameters()]
    assert recompute_mlps(plain) == 2  # the tiny model's two decoder layers
    assert recompute_mlps(plain) == 0  # wrapping twice would recompute twice
    assert [n for n, _ in plain.named_parameters()] == names  # checkpoints and published weights unchanged
    logp_r, grads_r, saved_r = _grads_and_saved(plain)
    assert torch.allclose(logp_r, logp, atol=1e-6)
    _same(grads, grads_r)
    # each layer no longer keeps the gate and up projections and the activation: 3 x 128 floats a token
    # (30 shared + 7 own tokens); the MLP's input (64 wide) is kept instead of being read from the norm
    tokens, layers, width = 30 + int(ATTENTION.sum()), 2, 128
    assert saved - saved_r >= layers * tokens * 3 * width * 4 - layers * tokens * 64 * 4


def test_recompute_under_lora_matches_lora_alone():
    alone = add_lora(tiny_random_model(64, seed=6), 4)
    wrapped = tiny_random_model(64, seed=6)
    recompute_mlps(wrapped)
    wrapped = add_lora(wrapped, 4)
    wrapped.load_state_dict(alone.state_dict())  # the same (randomly initialised) adapters
    logp, grads, _ = _grads_and_saved(alone)
    logp_r, grads_r, _ = _grads_and_saved(wrapped)
    assert torch.allclose(logp_r, logp, atol=1e-6)
    assert all("lora_" in n for n in grads)
    _same(grads, grads_r)


def test_inference_runs_the_plain_forward():
    model = tiny_random_model(64, seed=7)
    ids = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():
        before = model(input_ids=ids).logits
    recompute_mlps(model)
    with torch.no_grad(), torch.autograd.graph.saved_tensors_hooks(_refuse, _refuse):
        after = model(input_ids=ids).logits  # nothing is saved, and checkpoint() would save the input
    assert torch.equal(before, after)


def _refuse(tensor):
    raise AssertionError("inference saved a tensor for a backward pass")
