"""Two learner ranks (two processes, gloo, the policy DDP-wrapped as under Ray Train) make the same
decisions: both step when either kept a group, a rank with fewer micro-batches or none does not hang
the other, both end with identical weights, and those weights equal one process's step on the union
of both ranks' groups. A hang fails the test (the processes are joined with a timeout)."""

from __future__ import annotations

import pytest
from support.two_ranks import SPLITS, check_split, run_two_ranks


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ranks")
    run_two_ranks(folder, "ddp")
    return folder


@pytest.mark.parametrize("split", list(SPLITS))
def test_two_ranks_step_together_and_equal_one_step_on_the_union(two_ranks, split):
    check_split(two_ranks, split, tolerance=1e-5)
