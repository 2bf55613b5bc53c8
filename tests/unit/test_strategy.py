"""The learner's step strategies: plain torch clips then steps; the DeepSpeed config is what we mean."""

import sys

import pytest
import torch

from esc.config import LearnerConfig
from learner.strategy import TorchStep, deepspeed_config, deepspeed_engine


def test_torch_step_clips_the_gradient_norm_then_steps():
    weight = torch.nn.Parameter(torch.zeros(2))
    model = torch.nn.Module()
    model.weight = weight
    optimizer = torch.optim.SGD([weight], lr=1.0)
    step = TorchStep(model, optimizer, max_grad_norm=1.0)
    step.backward((weight * torch.tensor([3.0, 4.0])).sum())  # gradient (3, 4): norm 5
    assert step.step() == pytest.approx(5.0)
    # clipped to norm 1: (0.6, 0.8); SGD with lr 1 moves the weight by minus that
    torch.testing.assert_close(weight.detach(), torch.tensor([-0.6, -0.8]))
    assert weight.grad is None  # zeroed for the next update


def test_deepspeed_config_follows_the_learner_config():
    config = deepspeed_config(LearnerConfig(zero_stage=1, max_grad_norm=0.5), world_size=4)
    assert config["zero_optimization"] == {"stage": 1} and config["gradient_clipping"] == 0.5
    assert config["train_batch_size"] == 4 and config["bf16"] == {"enabled": False}
    with pytest.raises(ValueError, match="zero_stage 3"):
        deepspeed_config(LearnerConfig(zero_stage=3), world_size=1)


def test_missing_deepspeed_is_one_clear_sentence(monkeypatch):
    monkeypatch.setitem(sys.modules, "deepspeed", None)  # `import deepspeed` fails, installed or not
    model = torch.nn.Linear(2, 2)
    with pytest.raises(RuntimeError, match=r"pip install 'rlff-esc\[gpu\]'"):
        deepspeed_engine(model, torch.optim.SGD(model.parameters(), lr=0.1), LearnerConfig(), 1)
