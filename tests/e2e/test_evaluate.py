"""`rlff evaluate` and `rlff judge-check` end to end, as subprocesses, with real models."""

import asyncio
import json
import subprocess
import sys

import pytest
from conftest import ESCONV, FIXTURES, REPO, needs_esconv

from esc.backends import BackendPool
from esc.config import load_config
from esc.episode import Roles, run_episode
from esc.metrics import QUALITY_KEYS
from esc.parsing import parse_counselor
from esc.roles import FALLBACK_ANSWER, expected_reward
from esc.schemas import Scenario


def rlff(*args, timeout=900):
    return subprocess.run(
        [sys.executable, "-m", "jobs.cli", *args], capture_output=True, text=True, cwd=REPO, timeout=timeout
    )


def tiny_overrides(max_turns=2):
    sets = [f"{role}.model=tiny-random" for role in ("seeker", "counselor", "judge", "system_agent")]
    sets += [f"{role}.max_new_tokens=8" for role in ("seeker", "counselor")]
    sets += [f"episode.max_turns={max_turns}"]
    return [arg for s in sets for arg in ("--set", s)]


def test_evaluate_report_with_tiny_model(tmp_path):
    out = tmp_path / "e.json"
    run = rlff(
        "evaluate",
        "--config",
        "configs/local.yaml",
        *tiny_overrides(),
        "--scenarios",
        f"esconv:{FIXTURES / 'esconv_split'}#train",
        "--limit",
        "2",
        "--out",
        str(out),
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    assert report["n"] == 2 and len(report["episodes"]) == 2
    assert len(report["success_curve"]) == 2
    expected_at = sum(e["turns"] for e in report["episodes"]) / 2
    assert report["at"] == pytest.approx(expected_at)
    assert report["sr"] == pytest.approx(sum(e["success"] for e in report["episodes"]) / 2)
    assert set(report["quality"]) == set(QUALITY_KEYS) and report["quality_n"] == 2
    records = [r for e in report["episodes"] for r in e["records"]]
    assert report["format_rate"] == pytest.approx(sum(r["well_formed"] for r in records) / len(records))
    assert report["config"]["counselor"]["model"] == "tiny-random"
    for episode in report["episodes"]:
        counselor_turns = [t for t in episode["dialogue"]["turns"] if t["role"] == "counselor"]
        assert len(counselor_turns) == len(episode["records"])
        assert all("<think>" not in t["text"] for t in counselor_turns)
    assert "success rate (SR)" in run.stdout
    # the scenarios are the train split: a note says how to get held-out figures instead
    assert "includes the train split, which the policy may have trained on" in run.stdout


def test_greedy_episode_is_deterministic():
    config = load_config(
        "configs/local.yaml",
        [f"{r}.model=tiny-random" for r in ("seeker", "counselor", "judge")]
        + [
            "seeker.temperature=0",
            "counselor.temperature=0",
            "seeker.max_new_tokens=6",
            "counselor.max_new_tokens=6",
            "episode.max_turns=2",
        ],
    )
    scenario = Scenario(id="x", emotion_type="fear", problem_type="health", situation="I found a lump.")

    async def once():
        pool = BackendPool()
        episode = await run_episode(scenario, Roles.from_config(config, pool), config.episode, seed=7)
        await pool.close()
        return episode

    a, b = asyncio.run(once()), asyncio.run(once())
    assert a.dialogue.turns == b.dialogue.turns
    assert [r.reward for r in a.records] == [r.reward for r in b.records]


def test_bad_policy_path_and_limit_are_one_line_errors(tmp_path):
    run = rlff("evaluate", "--policy", str(tmp_path / "nope"), "--limit", "1")
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "config.json" in run.stderr
    run = rlff("evaluate", "--limit", "0")
    assert run.returncode == 2 and "--limit" in run.stderr


@pytest.mark.slow
def test_evaluate_with_the_embedded_model(tmp_path):
    run = rlff(
        "evaluate", "--config", "configs/local.yaml", "--set", "episode.max_turns=2",
        "--set", "counselor.max_new_tokens=32", "--set", "seeker.max_new_tokens=24", "--set",
        f"runs_dir={tmp_path}", "--scenarios", "builtin", "--limit", "2",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "train split" not in run.stdout  # the built-in scenarios are no training data
    report = json.loads((tmp_path / "local" / "evaluate.json").read_text())
    assert json.loads((tmp_path / "local" / "config.json").read_text())["episode"]["max_turns"] == 2
    assert report["n"] == 2 and report["quality"] == {}  # built-in scenarios have no reference replies
    turns = [t for e in report["episodes"] for t in e["dialogue"]["turns"]]
    assert all(t["text"].strip() for t in turns)
    for episode in report["episodes"]:
        answers = [t["text"] for t in episode["dialogue"]["turns"] if t["role"] == "counselor"]
        for answer, record in zip(answers, episode["records"], strict=True):
            assert answer == (parse_counselor(record["raw"]).answer or FALLBACK_ANSWER)
            assert -1.0 <= record["reward"] <= 1.0


@pytest.mark.slow
@needs_esconv
def test_judge_check_on_real_esconv(tmp_path):
    out = tmp_path / "j.json"
    run = rlff(
        "judge-check",
        "--config",
        "configs/local.yaml",
        "--data",
        f"esconv:{ESCONV}#valid",
        "--limit",
        "6",
        "--out",
        str(out),
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    assert report["n"] == 6 and len(report["items"]) == 6
    assert sum(report["verdict_distribution"].values()) == pytest.approx(1.0)
    assert "accuracy" in run.stdout and "verdicts" in run.stdout
    # every surveyed ESConv split dialogue improved, so the command must say accuracy is uninformative
    assert report["survey_distribution"]["better"] == 1.0
    assert any("every survey outcome here is 'better'" in w for w in report["warnings"])
    for item in report["items"]:
        assert sum(item["probs"].values()) == pytest.approx(1.0)
        assert item["reward"] == pytest.approx(expected_reward(item["probs"]))
