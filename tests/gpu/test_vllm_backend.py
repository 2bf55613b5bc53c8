"""VLLMBackend on a real vLLM engine, over a tiny random-init Qwen2 model written to a temporary folder.

Needs a CUDA GPU and vLLM (the `gpu` extra); skipped otherwise.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math

import pytest

from esc.backends import SamplingParams
from esc.backends.vllm import VLLMBackend
from esc.config import CounselorConfig

MESSAGES = [
    {"role": "system", "content": "You are a kind listener."},
    {"role": "user", "content": "I failed my driving test today and feel awful."},
]
VERDICTS = ["worse", "same", "better", "solved"]
HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.fixture(scope="module")
def tiny_qwen2(tmp_path_factory):
    """(folder, hf model, tokenizer): a 2-layer Qwen2 with the SmolLM2 tokenizer, saved as safetensors."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    if not HAS_VLLM:
        pytest.skip('needs vLLM: pip install "rlff-esc[gpu]"')
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from esc.models import load_tokenizer

    tokenizer = load_tokenizer("smollm2-135m")
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,  # head_dim 64: every vLLM attention backend supports it
        num_key_value_heads=1,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).eval()
    folder = tmp_path_factory.mktemp("tiny-qwen2")
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder, model, tokenizer


@pytest.mark.gpu
def test_vllm_generates_and_scores(tiny_qwen2):
    from esc.backends.hf import HFBackend

    folder, hf_model, tokenizer = tiny_qwen2
    config = CounselorConfig(backend="vllm", model=str(folder), dtype="bfloat16", max_batch_size=8)
    backend = VLLMBackend.from_config(
        config, seed=0, gpu_memory_utilization=0.2, max_model_len=512, enforce_eager=True
    )

    async def main():
        try:
            greedy = await backend.generate(MESSAGES, SamplingParams(temperature=0.0, max_new_tokens=8))
            sampled = await asyncio.gather(
                *(
                    backend.generate(MESSAGES, SamplingParams(temperature=1.0, max_new_tokens=8, seed=s))
                    for s in range(4)
                )
            )
            prefilled = await backend.generate(
                MESSAGES, SamplingParams(temperature=0.0, max_new_tokens=4, prefill="<think>")
            )
            scores = await backend.continuation_logprobs(MESSAGES, VERDICTS)
            return greedy, sampled, prefilled, scores
        finally:
            await backend.close()

    greedy, sampled, prefilled, scores = asyncio.run(main())

    hf = HFBackend(hf_model, tokenizer)
    prompt_ids = hf.encode_prompt(MESSAGES)
    assert greedy.text != "" and 1 <= greedy.completion_tokens <= 8
    assert greedy.prompt_tokens == len(prompt_ids)
    assert greedy.finish_reason in ("stop", "length")
    assert all(1 <= g.completion_tokens <= 8 for g in sampled)
    assert prefilled.text.startswith("<think>") and prefilled.prompt_tokens == len(
        hf.encode_prompt(MESSAGES, "<think>")
    )

    # vLLM (bf16) and the hf reference (fp32) score the same weights: same token counts, close values.
    expected = hf.score_continuations(MESSAGES, VERDICTS)
    assert all(math.isfinite(s) and s < 0 for s in scores)
    assert scores == pytest.approx(expected, abs=0.25)
