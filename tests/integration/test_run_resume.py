"""`rlff run` end to end on a real local Ray instance with the tiny model: the learner (Ray Train)
publishes versions while rollout workers stream groups; the run is killed with SIGKILL after a
checkpoint and resumed, and no record is consumed twice or lost."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actors.replay_store import ReplayStore
from esc.config import RewardModelConfig
from esc.learning import METRIC_KEYS
from learner import checkpoint
from learner.reward_model import RewardModel

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 600
FIXTURES = ROOT / "tests" / "fixtures" / "esconv_split"


def settings(runs: Path) -> list[str]:
    sets = [f"{r}.model=tiny-random" for r in ("seeker", "counselor", "judge", "system_agent")]
    sets += ["counselor.max_new_tokens=8", "counselor.reasoning=false", "rollout.group_size=2"]
    sets += ["rollout.in_flight=2", "rollout.future_fraction=0", "learner.batch_size=2", "learner.lr=1e-3"]
    sets += ["learner.max_updates=8", "learner.checkpoint_every=2", "reward_model.backbone=tiny-random"]
    sets += [f"runs_dir={runs}", "name=t", "serve.enabled=false", "evaluation.every=0"]
    sets += ["sft.cold_start=false"]
    sets += [f"evaluation.heldout=esconv:{FIXTURES}#valid", "evaluation.heldout_samples=2"]
    return [arg for s in sets for arg in ("--set", s)]


def rlff(*args: str, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "jobs.cli", *args]
    # its own session, so the kill below takes the driver and the Ray instance it started
    return subprocess.Popen(
        command, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def updates(run: Path) -> list[dict]:
    path = run / "learner" / "updates-r0.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def test_run_publishes_versions_and_resumes_after_sigkill(tmp_path):
    run = tmp_path / "runs" / "t"
    RewardModel.from_config(RewardModelConfig(backbone="tiny-random")).save(run / "reward_model")
    first = rlff(
        "run", "--config", "configs/local.yaml", *settings(tmp_path / "runs"), log=tmp_path / "first.log"
    )
    deadline = time.monotonic() + RUN_TIMEOUT_S
    # wait for a checkpoint and one update after it, so the kill loses an uncheckpointed update
    while not (checkpoint.latest(run / "checkpoints") and len(updates(run)) >= 3):
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.5)  # watching files another process writes; there is no event to wait on
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(60)
    ray_cli = str(Path(sys.executable).with_name("ray"))
    subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=120)  # what outlived the driver
    before = checkpoint.read_state(checkpoint.latest(run / "checkpoints"))
    killed_sessions = {u["session"] for u in updates(run)}

    second = rlff("run", "--resume", str(run), log=tmp_path / "second.log")
    assert second.wait(RUN_TIMEOUT_S) == 0, (tmp_path / "second.log").read_text()[-3000:]

    resumed = [u for u in updates(run) if u["session"] not in killed_sessions]
    assert resumed, "the killed run had already finished; nothing was resumed"
    after = [rid for u in resumed for rid in u["ids"]]
    assert len(after) == len(set(after)), "a record was consumed twice after resuming"
    assert set(before.consumed).isdisjoint(after)
    store = ReplayStore(run / "store")
    assert set(before.consumed) | set(after) == store.ids(consumer="learner-r0")
    store.close()
    final = checkpoint.read_state(checkpoint.latest(run / "checkpoints"))
    assert final.updates == 8 and final.version == 8
    # the held-out learning report: version 0 from the killed run, version 8 after the resumed one
    learning = json.loads((run / "learning.json").read_text())
    assert (learning["base_version"], learning["final_version"]) == (0, 8)
    assert (learning["contexts"], learning["samples"]) == (2, 2)
    assert set(learning["metrics"]) == set(METRIC_KEYS)
    for parts in learning["metrics"].values():
        for part in ("base", "final", "diff"):
            assert parts[part]["n"] == 2 and all(math.isfinite(parts[part][k]) for k in ("value", "lo", "hi"))
    assert "final - base" in (tmp_path / "second.log").read_text()
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert sorted(e["weights_version"] for e in events if e["source"] == "heldout") == [0, 8]
    assert [u["version"] for u in resumed] == list(range(before.version + 1, 9))
    assert (run / "weights" / "LATEST").read_text().strip() == "8"
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    learner = [e for e in events if e["source"] == "learner"]
    assert learner and all("stage_update_s" in e and "staleness_hist" in e for e in learner)
    versions = [e["weights_version"] for e in learner]
    assert versions[-1] == 8
