"""The held-out learning report: context rows, point estimates, the base vs final table, learning.json,
and the reward composition the learner and the report share. Hand-made per-context results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actors.metrics_hub import METRICS
from esc.config import RunConfig
from esc.learning import (
    METRIC_KEYS,
    context_row,
    hub_metrics,
    learning_report,
    learning_table,
    point_estimates,
    point_version,
)
from jobs.heldout import (
    Scorer,
    append_point,
    background_due,
    heldout_contexts,
    needs_final_point,
    read_points,
    sample_seed,
    write_learning,
)
from learner.loop import grpo_reward

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "esconv_split"
GOOD = (
    "<think>They feel alone after the move.</think><answer>That sounds really lonely, tell me more.</answer>"
)
BROKEN = "<think>They feel alone and I keep thinking"


def sample(answer: str, reward: float, well_formed: bool, version: int = 0, tokens: int = 10) -> dict:
    return {
        "answer": answer,
        "version": version,
        "well_formed": well_formed,
        "reward": reward,
        "rm_score": reward / 2,
        "format_reward": 1.0 if well_formed else 0.0,
        "answer_tokens": tokens,
        "rouge_l": 10.0 * reward,
    }


def rows(rewards: list[list[float]], version: int, formed: bool) -> list[dict]:
    texts = ("a b c", "a b c", "d e f", "g h i")
    return [
        context_row(f"c{i}", [sample(texts[j], r, formed, version) for j, r in enumerate(group)])
        for i, group in enumerate(rewards)
    ]


def test_context_row_averages_a_contexts_samples():
    row = context_row("c0", [sample("a b c", 1.0, True), sample("a b c", 0.0, False, tokens=20)])
    assert row["format_rate"] == 0.5 and row["reward"] == 0.5 and row["answer_tokens"] == 15
    assert row["rm_score"] == 0.25 and row["rouge_l"] == 5.0
    assert row["distinct2"] == 0.5  # bigrams (a b), (b c) twice: 2 distinct of 4
    assert row["versions"] == [0] and len(row["samples"]) == 2
    with pytest.raises(ValueError, match="lack"):
        context_row("c1", [{"answer": "x"}])


def test_point_version_takes_the_majority_and_flags_a_mix():
    mixed = [context_row("c0", [sample("x", 0, True, 3), sample("x", 0, True, 4), sample("x", 0, True, 4)])]
    assert point_version(mixed) == (4, False)
    assert point_version(rows([[1.0, 1.0]], 2, True)) == (2, True)


def test_learning_report_pairs_base_and_final_by_context():
    base = rows([[0.0, 0.0], [0.2, 0.0], [0.0, 0.4], [0.1, 0.1]], version=0, formed=False)
    final = rows([[1.0, 0.8], [0.9, 1.0], [1.0, 1.0], [0.7, 0.9]], version=8, formed=True)
    report = learning_report(base, final, seed=0)
    assert (report["base_version"], report["final_version"], report["contexts"], report["samples"]) == (
        0,
        8,
        4,
        2,
    )
    assert set(report["metrics"]) == set(METRIC_KEYS)
    reward = report["metrics"]["reward"]
    assert reward["base"]["value"] == pytest.approx(0.1)  # context means 0, 0.1, 0.2, 0.1
    assert reward["final"]["value"] == pytest.approx(0.9125)
    assert reward["diff"]["value"] == pytest.approx(0.8125)
    assert 0 < reward["diff"]["lo"] <= reward["diff"]["value"] <= reward["diff"]["hi"]
    for key in METRIC_KEYS:
        for part in ("base", "final", "diff"):
            assert set(report["metrics"][key][part]) == {"value", "lo", "hi", "n"}
            assert report["metrics"][key][part]["n"] == 4
    assert report["metrics"]["format_rate"]["diff"]["value"] == 1.0
    table = learning_table(report)
    assert all(key in table for key in METRIC_KEYS)
    assert "reward         0.100 [" in table and "+0.812 [" in table
    assert "*" in table.splitlines()[2]  # format_rate rose 0 -> 1 on every context: CI excludes 0
    with pytest.raises(ValueError, match="same contexts"):
        learning_report(base, final[::-1])


def test_hub_event_uses_registered_names():
    event = hub_metrics(point_estimates(rows([[0.5, 0.1], [0.2, 0.3]], 0, True)), version=3)
    assert event["weights_version"] == 3 and event["heldout_reward"] == pytest.approx(0.275)
    assert event["rm_version"] == 0  # held-out points score with the reward model trained before the run
    assert event["heldout_reward_lo"] <= event["heldout_reward"] <= event["heldout_reward_hi"]
    assert set(event) <= set(METRICS)
    assert {f"heldout_{k}{s}" for k in METRIC_KEYS for s in ("", "_lo", "_hi")} <= set(event)


def test_learning_json_from_heldout_jsonl(tmp_path, capsys):
    config = RunConfig.model_validate({"runs_dir": str(tmp_path), "name": "r"})
    config.run_dir().mkdir(parents=True)
    path = config.run_dir() / "heldout.jsonl"
    append_point(path, 0, rows([[0.0, 0.1], [0.3, 0.2], [0.1, 0.1]], 0, False), True)
    append_point(path, 4, rows([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]], 4, True), True)
    append_point(path, 8, rows([[9.0, 9.0], [9.0, 9.0], [9.0, 9.0]], 8, True), True)
    append_point(path, 8, rows([[0.9, 0.8], [0.7, 0.9], [0.6, 1.0]], 8, True), True)  # replaces v8
    assert sorted(read_points(path)) == [0, 4, 8] and len(read_points(path)[8]) == 3
    write_learning(config, path)
    saved = json.loads((config.run_dir() / "learning.json").read_text())
    assert (saved["base_version"], saved["final_version"], saved["contexts"], saved["samples"]) == (
        0,
        8,
        3,
        2,
    )
    assert saved["metrics"]["reward"]["final"]["value"] == pytest.approx(0.8167, abs=1e-3)
    assert saved["metrics"]["format_rate"]["diff"]["value"] == 1.0
    assert "held-out learning report: 3 contexts x 2 samples, version 0 -> 8" in capsys.readouterr().out


def test_grpo_reward_composition_is_the_learners():
    parts = grpo_reward([0.5, -1.0], [GOOD, BROKEN], reward_weight=2.0, format_weight=0.5, safety_weight=1.0)
    assert parts.format_reward.tolist() == [1.0, 0.0]
    assert parts.reward.tolist() == pytest.approx([2.0 * 0.5 + 0.5, -2.0])
    unsafe = grpo_reward([0.0], ["<think>x y z</think><answer>you'd be better off dead</answer>"], 1, 0, 1)
    assert unsafe.unsafe.tolist() == [1.0] and unsafe.reward.tolist() == [-1.0]


def test_format_gate_puts_every_malformed_reply_below_every_well_formed_one():
    half = "<think>they feel low</think><answer>That sounds hard, what happened next"  # unclosed: 0.25
    parts = grpo_reward([-0.9, 0.9, 0.9], [GOOD, half, BROKEN], 1.0, 0.5, 1.0, format_gate=True)
    assert parts.format_reward.tolist() == [1.0, 0.25, 0.0]
    assert parts.reward.tolist() == pytest.approx([-0.9 + 0.5, -1.0 + 0.125, -1.0])
    assert parts.rm_score.tolist() == pytest.approx([-0.9, 0.9, 0.9])  # the RM's own scores are kept
    ungated = grpo_reward([-0.9, 0.9], [GOOD, half], 1.0, 0.5, 1.0)
    assert ungated.reward.tolist() == pytest.approx([-0.4, 1.025])


def test_heldout_contexts_come_with_real_replies_and_fixed_seeds():
    config = RunConfig.model_validate(
        {"evaluation": {"heldout": f"esconv:{FIXTURE}#valid", "heldout_contexts": 48}}
    )
    contexts = heldout_contexts(config)
    assert 1 <= len(contexts) <= 2  # the fixture's valid split has two dialogues
    assert all(c.reference is not None and c.turns[-1].role == "seeker" for c in contexts)
    assert [c.id for c in heldout_contexts(config)] == [c.id for c in contexts]
    assert sample_seed(config, 1, 2) == config.seed + 1 * 4 + 2  # G defaults to rollout.group_size


def test_background_points_leave_the_learners_last_version_to_the_final_point():
    # evaluation.every 8, learner.max_updates 16: a point in the background at 8 (or once past it), none
    # at 16, where the final point runs alone after the learner
    assert [v for v in range(0, 18) if background_due(v, 8, 16)] == list(range(8, 16))
    assert not background_due(16, 16, 16) and not background_due(17, 8, 16)


def test_scorer_refuses_a_folder_without_a_reward_model(tmp_path):
    """The scorer loads its reward model only when it scores, so it checks the folder when it is built:
    a run with no reward model fails before its actors start, not at its first held-out point."""
    with pytest.raises(FileNotFoundError, match="rlff train --stage rm"):
        Scorer(RunConfig(), tmp_path)


def test_the_final_point_is_taken_unless_the_served_version_wrote_a_whole_recorded_one(tmp_path):
    path = tmp_path / "heldout.jsonl"
    assert needs_final_point(path, 8)  # nothing recorded
    append_point(path, 0, rows([[0.0, 0.1], [0.3, 0.2]], 0, False), True)
    append_point(path, 8, rows([[0.5, 0.5], [0.5, 0.5]], 8, True), False)  # a background point over v7-v8
    assert needs_final_point(path, 8)  # mixed versions: taken again, alone
    assert not needs_final_point(path, 0)
    append_point(path, 8, rows([[0.9, 0.8], [0.7, 0.9]], 8, True), True)  # the final point replaces it
    assert not needs_final_point(path, 8)
