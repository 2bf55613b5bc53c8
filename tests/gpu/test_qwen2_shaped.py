"""A Qwen2-shaped model (Qwen2.5-0.5B's widths, 4 layers, random init, bf16, no download) on a CUDA GPU:
batched generation through the decode loop the counselor actors use, then one learner step. With
RLFF_GPU_REPORT=FILE set, the figures are appended to FILE as JSON lines (bench/gpu_check.sh)."""

from __future__ import annotations

import json
import os
import time

import pytest
import torch

from esc.backends.base import SamplingParams
from esc.backends.hf_decode import CausalLM
from esc.config import LearnerConfig
from esc.models import load_tokenizer
from learner.loop import Learner
from learner.policy import candidate, candidate_group

pytestmark = pytest.mark.gpu
BATCH, NEW_TOKENS = 16, 64


def report(name: str, **figures) -> None:
    path = os.environ.get("RLFF_GPU_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"check": name, "device": torch.cuda.get_device_name(0), **figures}) + "\n")


@pytest.fixture(scope="module")
def qwen2():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = load_tokenizer("smollm2-135m")
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=4,
        num_attention_heads=14,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to("cuda", torch.bfloat16).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def test_batched_generation_on_gpu(qwen2):
    model, tokenizer = qwen2
    lm = CausalLM(model, tokenizer)
    prompt = tokenizer("I have been feeling lonely since I moved.")["input_ids"]
    params = [
        SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=NEW_TOKENS, seed=i) for i in range(BATCH)
    ]
    lm.decode([prompt] * BATCH, params)  # warm-up: the first pass at each shape allocates GPU memory
    torch.cuda.synchronize()
    started = time.perf_counter()
    outs = lm.decode([prompt] * BATCH, params)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    tokens = sum(o.completion_tokens for o in outs)
    assert len(outs) == BATCH and all(o.token_ids and len(o.token_logprobs) == len(o.token_ids) for o in outs)
    assert len({tuple(o.token_ids) for o in outs}) > 1  # different seeds, different samples
    report(
        "batched_generation",
        batch=BATCH,
        tokens=tokens,
        seconds=round(seconds, 3),
        tokens_per_s=round(tokens / seconds, 1),
    )


def test_learner_step_on_gpu(qwen2):
    model, tokenizer = qwen2
    lm = CausalLM(model, tokenizer)
    prompt = tokenizer("Work has been overwhelming lately.")["input_ids"]
    params = [SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=32, seed=i) for i in range(8)]
    outs = lm.decode([prompt] * 8, params)
    record = candidate_group("g", "Work has been overwhelming lately.", [candidate(o) for o in outs])
    rewards = [float(i % 2) for i in range(8)]
    config = LearnerConfig(
        lr=1e-5, format_weight=0.0, safety_weight=0.0, placement={"num_gpus": 1}, max_tokens=512
    )
    learner = Learner(config, model, tokenizer.pad_token_id, lambda c, a, i: rewards)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    metrics = learner.update(lambda n: [record], lambda v, s: None, 1)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    moved = sum(not torch.equal(before[n], p) for n, p in model.named_parameters())
    assert metrics["weights_version"] == 1 and metrics["grad_norm"] > 0 and moved > 0
    report(
        "learner_step",
        rows=8,
        seconds=round(seconds, 3),
        peak_gpu_gb=round(torch.cuda.max_memory_allocated() / 2**30, 2),
        completion_tokens=metrics["completion_tokens"],
    )
