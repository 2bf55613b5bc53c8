"""Learner checkpoints round-trip policy, optimizer, RNG and state; a half-written one is never LATEST."""

import torch

from learner import checkpoint
from learner.checkpoint import LearnerState


def _model_and_optimizer(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    model.config = None  # load_into looks for tied-weight settings on .config
    return model, torch.optim.AdamW(model.parameters(), lr=0.1)


def test_round_trip_restores_everything(tmp_path):
    model, optimizer = _model_and_optimizer(0)
    model(torch.ones(1, 4)).sum().backward()
    optimizer.step()
    torch.manual_seed(123)
    folder = checkpoint.save(
        tmp_path, model, optimizer, LearnerState(version=3, updates=3, consumed=("a", "b"))
    )
    expected_draw = torch.rand(3)  # what the RNG gives right after the checkpoint

    fresh, fresh_optimizer = _model_and_optimizer(1)
    torch.manual_seed(999)
    assert checkpoint.latest(tmp_path) == folder == tmp_path / "step-3"
    state = checkpoint.restore(folder, fresh, fresh_optimizer)
    assert state == LearnerState(version=3, updates=3, consumed=("a", "b"))
    for a, b in zip(model.parameters(), fresh.parameters()):
        torch.testing.assert_close(a, b)
    moments = fresh_optimizer.state_dict()["state"][0]
    torch.testing.assert_close(moments["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    torch.testing.assert_close(torch.rand(3), expected_draw)


def test_a_partial_checkpoint_does_not_replace_latest(tmp_path):
    model, optimizer = _model_and_optimizer(0)
    checkpoint.save(tmp_path, model, optimizer, LearnerState(version=2, updates=2, consumed=()))
    (tmp_path / ".step-4.partial").mkdir()  # a crash while writing step 4
    assert checkpoint.latest(tmp_path) == tmp_path / "step-2"
    assert checkpoint.read_state(checkpoint.latest(tmp_path)).updates == 2
