"""The learner's update on a CUDA GPU (torch strategy, then DeepSpeed ZeRO where installed), with the
tiny model and a rule-based reward: the step runs on the GPU and moves the weights the right way."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from esc.backends.base import SamplingParams
from esc.backends.hf_decode import CausalLM
from esc.config import LearnerConfig
from esc.models import load_model
from esc.schemas import CandidateGroup
from learner.loop import Learner
from learner.policy import build_rows, candidate, candidate_group, completion_logprobs
from learner.strategy import deepspeed_step

pytestmark = pytest.mark.gpu


def _groups(lm: CausalLM, prompt: list[int]) -> list[CandidateGroup]:
    params = [SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=8, seed=i) for i in range(4)]
    outs = lm.decode([prompt] * 4, params)
    return [candidate_group("g", "hi", [candidate(o) for o in outs])]


def _update_raises_the_rewarded_reply(strategy: str) -> None:
    model, tokenizer = load_model("tiny-random", device="cuda")
    lm = CausalLM(model, tokenizer)
    records = _groups(lm, tokenizer("I feel lonely")["input_ids"])
    rewards = [1.0, 0.0, 0.0, 0.0]  # only the first reply is rewarded
    config = LearnerConfig(
        lr=1e-2, format_weight=0.0, safety_weight=0.0, placement={"num_gpus": 1}, zero_stage=1
    )
    engine = deepspeed_step(config, world_size=1) if strategy == "deepspeed" else None
    learner = Learner(config, model, tokenizer.pad_token_id, lambda c, a, i: rewards, engine=engine)
    rows = build_rows([list(records[0].candidates)], 256, tokenizer.pad_token_id)
    with torch.no_grad():
        before = (completion_logprobs(model, rows) * rows.completion_mask.cuda()).sum(1)
    metrics = learner.update(lambda n: records, lambda v, s: None, 1)
    with torch.no_grad():
        after = (completion_logprobs(model, rows) * rows.completion_mask.cuda()).sum(1)
    gain = (after - before).tolist()
    assert metrics["weights_version"] == 1 and metrics["grad_norm"] > 0
    assert gain[0] > max(gain[1:]), gain


def test_torch_step_on_cuda():
    _update_raises_the_rewarded_reply("torch")


@pytest.mark.skipif(
    importlib.util.find_spec("deepspeed") is None, reason="DeepSpeed (gpu extra) not installed"
)
def test_deepspeed_zero_step_on_cuda():
    _update_raises_the_rewarded_reply("deepspeed")
