"""The DeepSpeed learner strategy with two ranks on CPU (gloo), ZeRO stages 1 and 2: the same checks as
the DDP test in tests/unit/test_learner_ranks.py. Both ranks step together (DeepSpeed reduces the
gradients once, after the last micro-batch), a rank with fewer micro-batches or none does not hang the
other, and the weights equal one plain step on the union of the groups. Opt-in: make test-deepspeed."""

from __future__ import annotations

import pytest
from support.two_ranks import SPLITS, check_split, run_resume, run_two_ranks

pytest.importorskip("deepspeed", reason="DeepSpeed is not installed: make test-deepspeed installs it")


@pytest.fixture(scope="module", params=[1, 2], ids=["zero1", "zero2"])
def two_ranks(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"zero{request.param}")
    run_two_ranks(folder, "deepspeed", zero_stage=request.param)
    return folder


@pytest.mark.parametrize("split", list(SPLITS))
def test_deepspeed_ranks_step_together_and_equal_one_step_on_the_union(two_ranks, split):
    check_split(two_ranks, split, tolerance=1e-5)


@pytest.mark.parametrize("stage", [2])
def test_a_zero_checkpoint_resumes_each_ranks_optimizer_part(tmp_path, stage):
    """Each rank saves its part of the AdamW state; a fresh learner restores it (and DeepSpeed's fp32
    copy of the weights), and its next update equals the one made without stopping."""
    run_resume(tmp_path, "deepspeed", zero_stage=stage)
    assert sorted(p.name for p in (tmp_path / "resume" / "checkpoints" / "step-1").iterdir()) == [
        "optimizer-r0.pt", "optimizer-r1.pt", "policy.safetensors", "rng.safetensors", "state.json",
    ]  # fmt: skip
