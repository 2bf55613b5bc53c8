"""The paper's pipeline online, on a real local Ray instance: the seeker, system agent and judge answer
from an OpenAI-compatible server (the loopback test server, backed by the tiny model, with
`top_logprobs`, so the judge scores by label likelihood over HTTP), every candidate gets a simulated
future, and the reward-model trainer retrains the reward model every 2 simulated groups while the
learner goes on. The trainer is SIGKILLed in the middle of a refresh: the run goes on, the trainer
restarts, and every simulated label is used exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.openai_server import start_server
from support.own_ray import OwnRay
from support.tiny_run import tiny_run

from actors.replay_store import ReplayStore
from esc.backends.hf import HFBackend
from esc.config import RewardModelConfig
from esc.models import load_model
from learner import rm_versions
from learner.reward_model import RewardModel

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 600
UPDATES = 8


def settings(runs: Path, base_url: str) -> list[str]:
    sets = []
    for role in ("seeker", "judge", "system_agent"):
        sets += [f"{role}.backend=openai", f"{role}.base_url={base_url}", f"{role}.max_new_tokens=8"]
    sets += [
        "judge.scorer=likelihood",
        "seeker.examples=null",
        "rollout.future_fraction=1",
        "future.horizon=1",
    ]
    # a refresh of a few seconds, so the kill below lands inside one
    sets += ["reward_refresh.every=2", "reward_refresh.holdout=0.25", "reward_model.epochs=8000"]
    return tiny_run(runs, "t", f"learner.max_updates={UPDATES}", *sets)


def trainer_state(run: Path) -> dict:
    path = rm_versions.online_dir(run / "reward_model") / "trainer.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def test_reward_model_refreshes_online_and_a_killed_trainer_loses_no_label(tmp_path):
    run = tmp_path / "runs" / "t"
    RewardModel.from_config(RewardModelConfig(backbone="tiny-random")).save(run / "reward_model")
    model, tokenizer = load_model("tiny-random")
    own, log = OwnRay(), tmp_path / "run.log"
    with start_server(HFBackend(model, tokenizer, max_batch_size=8), model="tiny-random") as (url, server):
        command = [sys.executable, "-m", "jobs.cli", "run", "--config", "configs/local.yaml"]
        process = subprocess.Popen(
            [*command, *settings(tmp_path / "runs", url)], cwd=ROOT, stdout=log.open("w"),
            stderr=subprocess.STDOUT, start_new_session=True, env=own.env(),
        )  # fmt: skip
        try:
            # the second refresh (version 1 published, training version 2): kill the trainer in it
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while not (trainer_state(run).get("state") == "training" and trainer_state(run)["version"] >= 1):
                assert process.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "the trainer never started a second refresh"
                time.sleep(0.1)  # watching a file another process writes; there is no event to wait on
            killed = trainer_state(run)
            os.kill(killed["pid"], signal.SIGKILL)
            killed_at = time.time()
            assert process.wait(RUN_TIMEOUT_S) == 0, log.read_text()[-3000:]
        finally:
            own.stop()
        logprob_requests = sum(1 for p in server.payloads if p.get("logprobs"))

    rm_dir = run / "reward_model"
    newest = rm_versions.latest(rm_dir)
    manifest = rm_versions.manifest(rm_dir, newest)
    assert newest >= 2, "the reward-model version rose fewer than two times"
    assert manifest["finished"] > killed_at, "no version was published after the trainer was killed"
    assert trainer_state(run)["pid"] != killed["pid"], "the trainer did not restart"
    assert logprob_requests > 0, "the judge never asked the server for label log-probs"

    # every simulated label used exactly once: the newest version lists each record once, and what the
    # trainer consumed is exactly that list; the rest waits unconsumed in the store
    store = ReplayStore(run / "store")
    try:
        simulated = {r["id"] for r in store.iter_records(kind="simulated")}
        taken = store.ids(consumer="rm-trainer")
        unconsumed = store.ids(consumed=False) & simulated
    finally:
        store.close()
    used = manifest["ids"]
    assert len(used) == len(set(used)) >= 4
    assert taken == set(used)
    assert set(used) | unconsumed == simulated and not (set(used) & unconsumed)

    # the learner's records say which version scored them; it switched between updates, never waiting
    updates = lines(run / "learner" / "updates-r0.jsonl")
    assert [u["update"] for u in updates] == list(range(1, UPDATES + 1))
    scored_by = [u["rm_version"] for u in updates]
    assert scored_by == sorted(scored_by) and scored_by[-1] >= 1, scored_by
    assert all(u["rm_switch_s"] < 1.0 and "stage_update_s" in u for u in updates)
    refreshes = [e for e in lines(run / "metrics.jsonl") if e["source"] == "rm_trainer"]
    assert [e["rm_version"] for e in refreshes][-1] == newest
    assert all("rm_judge_gap" in e and e["rm_refresh_s"] > 0 for e in refreshes)
