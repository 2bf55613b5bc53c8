"""`rlff run` end to end on a real local Ray instance with the tiny model and two learner ranks (Ray
Train, DDP over gloo): the learner publishes versions while rollout workers stream groups. The run is
stopped with Ctrl-C (which checkpoints its last update, so the resumed run redoes none), resumed,
killed with SIGKILL after a checkpoint, and resumed to the end. Both ranks make every update with
identical weights, and no record is consumed twice or lost."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.own_ray import OwnRay
from support.tiny_run import tiny_run

from actors.replay_store import ReplayStore
from esc.config import RewardModelConfig
from esc.learning import METRIC_KEYS
from jobs.heldout import read_points
from learner import checkpoint
from learner.reward_model import RewardModel

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 600
FIXTURES = ROOT / "tests" / "fixtures" / "esconv_split"


def settings(runs: Path) -> list[str]:
    return tiny_run(
        runs, "t", "rollout.future_fraction=0", "learner.max_updates=8", "learner.checkpoint_every=100",
        "learner.placement.replicas=2", f"evaluation.heldout=esconv:{FIXTURES}#valid",
        "evaluation.heldout_samples=2",
    )  # fmt: skip


def rlff(*args: str, log: Path, own: OwnRay) -> subprocess.Popen:
    command = [sys.executable, "-m", "jobs.cli", *args]
    # its own session, so the kill below takes the driver; its own Ray folder, so `own.stop()` takes
    # the Ray instance it started and nothing else
    return subprocess.Popen(
        command, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        env=own.env(),
    )  # fmt: skip


def updates(run: Path, rank: int = 0) -> list[dict]:
    path = run / "learner" / f"updates-r{rank}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def wait_for(process: subprocess.Popen, log: Path, done) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not done():
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.5)  # watching files another process writes; there is no event to wait on


def kill_after_an_unsaved_update(process, log: Path, own: OwnRay, run: Path, stopped: int) -> None:
    """SIGKILL the driver and every Ray process of `own` at once, when the learner has checkpointed
    after update `stopped` and logged an update past its last checkpoint. Killing the driver alone
    left the actors a moment to make (and checkpoint) one more update, so the instance is frozen
    while the files are read, and killed or let go on that frozen state."""
    while True:
        wait_for(process, log, lambda: len(updates(run)) > latest(run).updates > stopped)
        own.pause()
        if len(updates(run)) > latest(run).updates:
            own.stop()
            process.wait(60)
            return
        own.carry_on()


def latest(run: Path) -> checkpoint.LearnerState:
    return checkpoint.read_state(checkpoint.latest(run / "checkpoints"))


def test_run_stops_gracefully_resumes_after_sigkill_and_keeps_two_ranks_in_step(tmp_path):
    run = tmp_path / "runs" / "t"
    RewardModel.from_config(RewardModelConfig(backbone="tiny-random")).save(run / "reward_model")

    # 1. Ctrl-C after 2 updates: the learner finishes its update and checkpoints it (no scheduled one)
    own, log = OwnRay(), tmp_path / "first.log"
    first = rlff("run", "--config", "configs/local.yaml", *settings(tmp_path / "runs"), log=log, own=own)
    try:
        wait_for(first, log, lambda: len(updates(run)) >= 2)
        first.send_signal(signal.SIGINT)  # to the driver alone, as a terminal's Ctrl-C
        assert first.wait(RUN_TIMEOUT_S) == 0, log.read_text()[-3000:]
    finally:
        own.stop()
    stopped = latest(run)
    assert stopped.updates == len(updates(run)) >= 2, "the graceful stop left updates uncheckpointed"

    # 2. resumed with scheduled checkpoints, then SIGKILL after a checkpoint and one update more
    own, log = OwnRay(), tmp_path / "second.log"
    second = rlff("run", "--resume", str(run), "--set", "learner.checkpoint_every=2", log=log, own=own)
    try:
        kill_after_an_unsaved_update(second, log, own, run, stopped.updates)
    finally:
        own.stop()
    killed = latest(run)

    # 3. resumed to the end
    own, log = OwnRay(), tmp_path / "third.log"
    third = rlff("run", "--resume", str(run), log=log, own=own)
    try:
        assert third.wait(RUN_TIMEOUT_S) == 0, log.read_text()[-3000:]
    finally:
        own.stop()

    sessions = list(dict.fromkeys(u["session"] for u in updates(run)))
    assert len(sessions) == 3
    by_session = [[u for u in updates(run) if u["session"] == s] for s in sessions]
    assert [u["update"] for u in by_session[0]] == list(range(1, stopped.updates + 1))
    # nothing redone after the graceful stop; after the SIGKILL, only what followed the checkpoint
    assert by_session[1][0]["update"] == stopped.updates + 1
    assert by_session[2][0]["update"] == killed.updates + 1 and by_session[2][-1]["update"] == 8
    for rank in (0, 1):  # both ranks made every update, with the same weights after each
        assert [(u["update"], u["session"]) for u in updates(run, rank)] == [
            (u["update"], u["session"]) for u in updates(run)
        ]
    assert [u["weights"] for u in updates(run, 1)] == [u["weights"] for u in updates(run)]

    # the updates after the last checkpoint of the killed run were lost with it; their records came back
    lost = {(sessions[1], n) for n in range(killed.updates + 1, by_session[1][-1]["update"] + 1)}
    assert lost, "the kill lost no update; nothing was resumed from a checkpoint"
    kept = [u for rank in (0, 1) for u in updates(run, rank) if (u["session"], u["update"]) not in lost]
    ids = [rid for u in kept for rid in u["ids"]]
    assert len(ids) == len(set(ids)), "a record was consumed twice"
    final = latest(run)
    assert (final.updates, final.version) == (8, 8) and set(final.consumed) == set(ids)
    store = ReplayStore(run / "store")
    assert set(ids) == store.ids(consumer="learner-r0") | store.ids(consumer="learner-r1")
    store.close()

    # the held-out learning report: version 0 from the first run, version 8 after the last
    learning = json.loads((run / "learning.json").read_text())
    assert (learning["base_version"], learning["final_version"]) == (0, 8)
    assert (learning["contexts"], learning["samples"]) == (2, 2)
    assert set(learning["metrics"]) == set(METRIC_KEYS)
    for parts in learning["metrics"].values():
        for part in ("base", "final", "diff"):
            assert parts[part]["n"] == 2 and all(math.isfinite(parts[part][k]) for k in ("value", "lo", "hi"))
    assert "final - base" in log.read_text()
    # the base point is cached for the next run with the same inputs, exactly as it was recorded
    base = [json.loads(line) for line in (run / "heldout_base" / "rows.jsonl").read_text().splitlines()]
    recorded = read_points(run / "heldout.jsonl")[0]
    assert [(r["id"], r["reward"], r["samples"]) for r in base] == [
        (r["id"], r["reward"], r["samples"]) for r in recorded
    ]
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    heldout = sorted(e["weights_version"] for e in events if e["source"] == "heldout")
    assert heldout == [0, stopped.version, 8]  # a graceful stop ends with its own held-out point
    assert (run / "weights" / "LATEST").read_text().strip() == "8"
    learner = [e for e in events if e["source"] == "learner"]
    assert learner and all("stage_update_s" in e and "staleness_hist" in e for e in learner)
    assert learner[-1]["weights_version"] == 8
