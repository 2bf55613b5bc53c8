"""`rlff run` with a vLLM counselor (the embedded SmolLM2 on vLLM's CPU build) on a real local Ray
instance; the other roles and the reward model are tiny-random. The learner publishes 3 versions and
the counselor actor loads each into its engine: every group's candidates carry the version that made
them and vLLM's behaviour log-probs, and the versions rise to 3. Opt-in: make test-vllm."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="needs vLLM's CPU build: see docs/vllm.md")
from support.own_ray import OwnRay  # noqa: E402

from actors.replay_store import ReplayStore  # noqa: E402
from esc.config import RewardModelConfig  # noqa: E402
from learner.reward_model import RewardModel  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 900
UPDATES = 3


def settings(runs: Path) -> list[str]:
    sets = [f"{r}.model=tiny-random" for r in ("seeker", "judge", "system_agent")]
    sets += ["counselor.backend=vllm", "counselor.model=smollm2-135m", "counselor.max_new_tokens=16"]
    sets += ["counselor.reasoning=false", "rollout.group_size=2", "rollout.in_flight=1"]
    sets += ["rollout.future_fraction=0", "learner.batch_size=1", f"learner.max_updates={UPDATES}"]
    sets += [
        "reward_model.backbone=tiny-random",
        "sft.cold_start=false",
        "seeker_sft.cold_start=false",
        "episode.max_turns=2",
    ]
    sets += [f"runs_dir={runs}", "name=v", "serve.enabled=false", "evaluation.every=0"]
    return [arg for s in sets for arg in ("--set", s)]


def test_run_trains_a_vllm_counselor_that_loads_each_published_version(tmp_path):
    run = tmp_path / "runs" / "v"
    RewardModel.from_config(RewardModelConfig(backbone="tiny-random")).save(run / "reward_model")
    own, log = OwnRay(), tmp_path / "run.log"
    try:
        with log.open("w") as out:
            command = [sys.executable, "-m", "jobs.cli", "run", "--config", "configs/local.yaml"]
            done = subprocess.run([*command, *settings(tmp_path / "runs")], cwd=ROOT, stdout=out,
                                  stderr=subprocess.STDOUT, env=own.env(), timeout=RUN_TIMEOUT_S)  # fmt: skip
    finally:
        own.stop()
    assert done.returncode == 0, log.read_text()[-3000:]
    assert (run / "weights" / "LATEST").read_text().strip() == str(UPDATES)
    lines = [json.loads(x) for x in (run / "learner" / "updates-r0.jsonl").read_text().splitlines()]
    assert [u["version"] for u in lines] == list(range(1, UPDATES + 1))
    store = ReplayStore(run / "store")
    groups = list(store.iter_records("group"))
    store.close()
    versions = []
    for group in groups:
        for c in group["candidates"]:
            assert c["policy_version"] == group["policy_version"]
            assert len(c["token_ids"]) == len(c["token_logprobs"]) > 0
            assert all(lp <= 0 for lp in c["token_logprobs"])
        versions.append(group["policy_version"])
    # the counselor served the published weights: the third update needs a group made by version 1 or
    # later (staleness bound 1), and every group reports the version its engine held
    assert 0 in versions and max(versions) >= 1
