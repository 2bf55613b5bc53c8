"""The two shortcuts that skip repeated prompt work, on CUDA: the decode loop's prefix KV cache and the
learner's shared-prompt pass each give what the plain computation gives (tiny-random, fp32)."""

from __future__ import annotations

import pytest
import torch
from support.records import tokens_only

from esc.backends.base import SamplingParams
from esc.backends.hf_decode import CausalLM
from esc.backends.prefix_cache import PrefixCache
from esc.models import load_model
from learner.policy import build_rows, completion_logprobs

pytestmark = pytest.mark.gpu
SYSTEM = {"role": "system", "content": "You are a warm, patient counselor. Listen first, then help."}


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny-random", device="cuda", seed=4)


def _encode(tokenizer, text: str) -> list[int]:
    chat = [SYSTEM, {"role": "user", "content": text}]
    rendered = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    return tokenizer(rendered, add_special_tokens=False)["input_ids"]


def test_prefix_cache_on_cuda_changes_no_token(tiny):
    model, tokenizer = tiny
    plain, cached = CausalLM(model, tokenizer), CausalLM(model, tokenizer, PrefixCache())
    prompts = [_encode(tokenizer, t) for t in ("I feel lonely.", "I cannot sleep before exams.", "Hi")]
    greedy = [SamplingParams(temperature=0.0, max_new_tokens=8)] * len(prompts)
    expected = plain.decode(prompts, greedy)
    for _ in range(2):  # the second call reads the shared system prompt from the cache
        got = cached.decode(prompts, greedy)
        assert [g.token_ids for g in got] == [e.token_ids for e in expected]
        for g, e in zip(got, expected, strict=True):
            assert g.token_logprobs == pytest.approx(e.token_logprobs, abs=1e-3)
    assert cached.prefix_cache.reused_tokens > 20


def test_shared_prompt_pass_on_cuda_matches_the_plain_pass(tiny):
    model, tokenizer = tiny
    prompt = _encode(tokenizer, "Work has been overwhelming lately.")
    completions = [[5, 6, 7], [8], [9, 10, 11, 12, 13], [14, 15]]
    group = [tokens_only(prompt, c, [-1.0] * len(c)) for c in completions]
    rows = build_rows([group], max_tokens=512, pad_id=tokenizer.pad_token_id)
    mask = rows.completion_mask.cuda().bool()
    results = []
    for share in (False, True):
        model.zero_grad(set_to_none=True)
        logp = completion_logprobs(model, rows, share_prefix=share)
        (logp * mask).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((logp.detach()[mask], grads))
    (plain, plain_grads), (shared, shared_grads) = results
    assert torch.allclose(shared, plain, atol=1e-4)
    assert plain_grads and plain_grads.keys() == shared_grads.keys()
    for name, grad in plain_grads.items():
        assert torch.allclose(shared_grads[name], grad, atol=1e-4, rtol=1e-3), name
