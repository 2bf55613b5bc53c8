"""The learner's log-probs of sampled tokens on a real (tiny-random) model: the shared-prefix pass gives
the same log-probs and gradients as one plain pass over the padded rows."""

import pytest
import torch
from support.records import tokens_only

from esc.models import load_model
from learner.policy import build_rows, completion_logprobs

PROMPT = list(range(300, 340))  # 40 shared prompt tokens


def _group(prompt, completions):
    return [tokens_only(prompt, c, [-1.0] * len(c)) for c in completions]


@pytest.fixture(scope="module")
def model():
    return load_model("tiny-random", seed=2)[0]


def _logprobs_and_grads(model, rows, share):
    model.zero_grad(set_to_none=True)
    logp = completion_logprobs(model, rows, share_prefix=share)
    (logp * rows.completion_mask).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logp.detach(), grads


@pytest.mark.parametrize(
    "groups",
    [
        [_group(PROMPT, [[5, 6, 7], [8], [9, 10, 11, 12, 13], [14, 15]])],  # a GRPO group: one prompt
        [_group(PROMPT + [41, 42], [[5, 6]]), _group(PROMPT + [43], [[7, 8, 9, 10]])],  # system part only
    ],
)
def test_shared_prefix_pass_matches_the_plain_pass(model, groups):
    rows = build_rows(groups, max_tokens=512, pad_id=0)
    plain_logp, plain_grads = _logprobs_and_grads(model, rows, share=False)
    shared_logp, shared_grads = _logprobs_and_grads(model, rows, share=True)
    mask = rows.completion_mask.bool()
    assert torch.allclose(shared_logp[mask], plain_logp[mask], atol=1e-5)
    assert plain_grads.keys() == shared_grads.keys() and plain_grads
    for name, grad in plain_grads.items():
        assert torch.allclose(shared_grads[name], grad, atol=1e-5, rtol=1e-4), name


def test_a_micro_batch_whose_completions_are_all_shorter_than_the_batch_widest(model):
    groups = [_group(PROMPT, [list(range(5, 25))]), _group(PROMPT + [50], [[5, 6], [7]])]
    part = build_rows(groups, max_tokens=512, pad_id=0).select(slice(1, 3))  # the learner's micro-batching
    mask = part.completion_mask.bool()
    plain = completion_logprobs(model, part, share_prefix=False)
    assert torch.allclose(completion_logprobs(model, part, share_prefix=True)[mask], plain[mask], atol=1e-5)


def test_rows_without_a_long_shared_start_take_the_plain_pass(model):
    rows = build_rows([_group([1, 2, 3], [[4, 5]]) + _group([9, 2, 3], [[6]])], max_tokens=512, pad_id=0)
    shared = completion_logprobs(model, rows, share_prefix=True)
    assert torch.equal(shared, completion_logprobs(model, rows, share_prefix=False))
