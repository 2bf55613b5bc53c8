"""A decode step's attention (esc/backends/decode_attention.py): the compiled kernel against torch's SDPA,
and the attention implementation on a tiny Llama."""

import platform

import pytest
import torch
import torch.nn.functional as F

from esc.backends import decode_attention, decode_linear
from esc.backends.decode_attention import NAME, attend, use_decode_attention
from esc.backends.hf_decode import CausalLM
from esc.models import load_model

needs_kernel = pytest.mark.skipif(decode_attention.kernel() is None, reason="no C compiler for the kernel")


def cache_views(rows, kv_heads, length, dim, room=7, seed=0):
    """Keys and values as a KV cache with room holds them: views of longer buffers."""
    generator = torch.Generator().manual_seed(seed)
    key = torch.randn(rows, kv_heads, length + room, dim, generator=generator)[:, :, :length]
    value = torch.randn(rows, kv_heads, length + room, dim, generator=generator)[:, :, :length]
    return key, value


def sdpa(query, key, value, mask, scale):
    """What transformers' SDPA path gives, as [rows, 1, heads, dim]."""
    out = F.scaled_dot_product_attention(query, key, value, mask, scale=scale, enable_gqa=True)
    return out.transpose(1, 2)


@needs_kernel
@pytest.mark.parametrize("rows", [1, 3, 16])
@pytest.mark.parametrize(("heads", "kv_heads"), [(9, 3), (4, 4), (4, 1)])
@pytest.mark.parametrize("dim", [16, 64, 128])
@pytest.mark.parametrize("length", [1, 17, 230])
def test_the_kernel_gives_sdpa_s_attention(rows, heads, kv_heads, dim, length):
    key, value = cache_views(rows, kv_heads, length, dim, seed=rows * dim + length)
    query = torch.randn(rows, heads, 1, dim)
    mask = torch.ones(rows, 1, 1, length, dtype=torch.bool)
    mask[1:, ..., : length // 3] = False  # left padding on every row but the first
    got = attend(decode_attention.kernel(), query, key, value, mask, dim**-0.5)
    assert got.shape == (rows, 1, heads, dim)
    assert torch.allclose(got, sdpa(query, key, value, mask, dim**-0.5), atol=1e-5, rtol=1e-5)


@needs_kernel
def test_without_a_mask_or_with_one_for_every_row_every_key_counts():
    key, value = cache_views(4, 2, 40, 64)
    query = torch.randn(4, 6, 1, 64)
    want = sdpa(query, key, value, None, 0.125)
    run = decode_attention.kernel()
    assert torch.allclose(attend(run, query, key, value, None, 0.125), want, atol=1e-5)
    shared = torch.ones(1, 1, 1, 40, dtype=torch.bool)  # one mask broadcast over the rows
    assert torch.allclose(attend(run, query, key, value, shared, 0.125), want, atol=1e-5)


@needs_kernel
def test_large_scores_keep_the_softmax_finite_and_exact_where_one_key_dominates():
    key, value = cache_views(2, 1, 30, 64)
    query = key[:, :, 11:12].clone() * 50  # each row's query points straight at its key 11
    got = attend(decode_attention.kernel(), query, key, value, None, 1.0)
    assert torch.isfinite(got).all()
    assert torch.allclose(got[:, 0, 0], value[:, 0, 11], atol=1e-6)


@needs_kernel
def test_a_row_s_result_does_not_depend_on_the_rows_beside_it():
    key, value = cache_views(8, 3, 50, 64)
    query = torch.randn(8, 9, 1, 64)
    mask = torch.rand(8, 1, 1, 50) > 0.2
    run = decode_attention.kernel()
    together = attend(run, query, key, value, mask, 0.125)
    for i in range(8):
        alone = attend(run, query[i : i + 1], key[i : i + 1], value[i : i + 1], mask[i : i + 1], 0.125)
        assert torch.equal(together[i : i + 1], alone)


@needs_kernel
def test_a_head_size_the_kernel_lacks_is_declined_and_sdpa_answers():
    key, value = cache_views(2, 2, 9, 20)  # 20 floats: not whole vectors of 8 or of 16
    query = torch.randn(2, 4, 1, 20)
    assert attend(decode_attention.kernel(), query, key, value, None, 0.2) is None
    module = type("Attention", (), {"num_key_value_groups": 2, "is_causal": True})()
    with torch.inference_mode():
        out, _ = decode_attention.decode_attention_forward(module, query, key, value, None, scaling=0.2)
    assert torch.allclose(out, sdpa(query, key, value, None, 0.2), atol=1e-6)


def test_the_model_switches_to_it_decodes_the_same_and_trains_through_sdpa(monkeypatch):
    model, tokenizer = load_model("tiny-random")
    model.eval()
    prompts = [tokenizer("I feel so alone lately")["input_ids"], tokenizer("Hi there, you")["input_ids"]]
    before = greedy(model, tokenizer, prompts)
    assert model.config._attn_implementation == "sdpa"
    assert use_decode_attention(model) is True
    assert model.config._attn_implementation == NAME
    calls = []
    real = decode_attention.attend
    monkeypatch.setattr(decode_attention, "attend", lambda *a: calls.append(a[1].shape) or real(*a))
    assert greedy(model, tokenizer, prompts) == before
    if decode_attention.kernel() is not None:  # every decode step of every layer took the kernel
        steps = max(map(len, before))
        assert len(calls) == 2 * steps and {shape[2] for shape in calls} == {1}  # 2 layers
    calls.clear()
    ids = torch.tensor([prompts[0]])
    loss = model(input_ids=ids, labels=ids).loss  # gradients on: SDPA
    loss.backward()
    assert not calls and model.model.layers[0].self_attn.q_proj.weight.grad is not None


def greedy(model, tokenizer, prompts):
    from esc.backends.base import SamplingParams

    lm = CausalLM(model, tokenizer)
    params = [SamplingParams(temperature=0.0, max_new_tokens=12, seed=0) for _ in prompts]
    return [g.token_ids for g in lm.decode(prompts, params)]


def test_an_eager_model_is_left_as_it_is():
    model, _ = load_model("tiny-random")
    model.set_attn_implementation("eager")
    assert use_decode_attention(model) is False
    assert model.config._attn_implementation == "eager"


def test_the_environment_can_turn_it_off(monkeypatch):
    monkeypatch.setenv("RLFF_DECODE_KERNEL", "0")
    decode_linear.library.cache_clear()
    decode_attention.kernel.cache_clear()
    try:
        assert decode_attention.kernel() is None
        key, value = cache_views(2, 2, 9, 64)
        query = torch.randn(2, 4, 1, 64)
        module = type("Attention", (), {"num_key_value_groups": 2, "is_causal": True})()
        with torch.inference_mode():
            out, _ = decode_attention.decode_attention_forward(module, query, key, value, None, scaling=0.2)
        assert torch.allclose(out, sdpa(query, key, value, None, 0.2), atol=1e-6)
    finally:
        decode_linear.library.cache_clear()
        decode_attention.kernel.cache_clear()


@pytest.mark.skipif(
    decode_linear.compiler() is None or platform.machine() != "x86_64", reason="an x86 build with a compiler"
)
def test_the_kernel_built_without_avx512_gives_sdpa_s_attention_too(tmp_path):
    """Where the compiler may not use AVX-512 (most laptops), the kernel takes 8-float vectors."""
    target = tmp_path / "kernel.so"
    assert decode_linear._compile(decode_linear.compiler(), target, ("-mno-avx512f", "-Wno-psabi")) is None
    run = decode_attention.load(target)
    for rows, heads, kv_heads, dim, length in [(1, 9, 3, 64, 230), (5, 4, 2, 16, 19), (3, 2, 1, 128, 8)]:
        key, value = cache_views(rows, kv_heads, length, dim)
        query = torch.randn(rows, heads, 1, dim)
        mask = torch.ones(rows, 1, 1, length, dtype=torch.bool)
        mask[-1, ..., :3] = False
        got = attend(run, query, key, value, mask, dim**-0.5)
        assert torch.allclose(got, sdpa(query, key, value, mask, dim**-0.5), atol=1e-5), (rows, dim)
