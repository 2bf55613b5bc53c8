"""`rlff run` with `learner.strategy: deepspeed`, ZeRO stage 2 and two Ray Train workers on CPU (gloo),
on a real local Ray instance with the tiny model: both ranks make every update with the same weights,
checkpoints hold each rank's part of the optimizer state, and `--resume` continues from them.
Opt-in: make test-deepspeed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.own_ray import OwnRay
from support.tiny_run import tiny_run

from esc.config import RewardModelConfig
from learner import checkpoint
from learner.reward_model import RewardModel

pytest.importorskip("deepspeed", reason="DeepSpeed is not installed: make test-deepspeed installs it")
ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 900


def settings(runs: Path) -> list[str]:
    return tiny_run(
        runs, "ds", "rollout.future_fraction=0", "learner.strategy=deepspeed", "learner.zero_stage=2",
        "learner.lora_rank=0", "learner.placement.replicas=2", "learner.max_updates=4",
        "learner.checkpoint_every=2",
    )  # fmt: skip


def rlff(*args: str, log: Path) -> int:
    own = OwnRay()
    try:
        with log.open("w") as out:
            command = [sys.executable, "-m", "jobs.cli", *args]
            done = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=own.env(),
                                  timeout=RUN_TIMEOUT_S)  # fmt: skip
        return done.returncode
    finally:
        own.stop()


def updates(run: Path, rank: int) -> list[dict]:
    path = run / "learner" / f"updates-r{rank}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_deepspeed_zero2_on_two_ray_train_workers_updates_checkpoints_and_resumes(tmp_path):
    run = tmp_path / "runs" / "ds"
    RewardModel.from_config(RewardModelConfig(backbone="tiny-random")).save(run / "reward_model")
    first = rlff(
        "run", "--config", "configs/local.yaml", *settings(tmp_path / "runs"), log=tmp_path / "a.log"
    )
    assert first == 0, (tmp_path / "a.log").read_text()[-3000:]
    done = checkpoint.latest(run / "checkpoints")
    assert done.name == "step-4" and {"optimizer-r0.pt", "optimizer-r1.pt"} <= {
        p.name for p in done.iterdir()
    }

    second = rlff("run", "--resume", str(run), "--set", "learner.max_updates=6", log=tmp_path / "b.log")
    assert second == 0, (tmp_path / "b.log").read_text()[-3000:]
    r0, r1 = updates(run, 0), updates(run, 1)
    assert [u["update"] for u in r0] == [u["update"] for u in r1] == [1, 2, 3, 4, 5, 6]
    assert [u["weights"] for u in r0] == [u["weights"] for u in r1], "the ranks' weights differ"
    assert len({u["weights"] for u in r0}) == 6, "an update left the weights as they were"
    ids = [rid for u in r0 + r1 for rid in u["ids"]]
    assert len(ids) == len(set(ids)) == 12  # 2 groups an update, one per rank, none twice
    assert checkpoint.read_state(checkpoint.latest(run / "checkpoints")).updates == 6
