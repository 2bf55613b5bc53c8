"""The seeker simulator's SFT: its examples are real seekers' turns behind the simulator's own prompt,
its cache key, and the run's seeker started from its folder. Synthetic dialogues, no model (the SFT
loop itself is the counselor's, trained in tests/e2e/test_sft_training.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.sft_data import SCENARIO, dialogue, sft_config

from esc import prompts
from esc.config import build_config
from esc.data import parse_spec
from jobs import UsageError
from jobs.fingerprint import mark
from jobs.train_sft import cold_start, inputs_fingerprint, run_train_sft
from learner.seeker_sft import seeker_examples


def test_one_example_per_seeker_turn_after_a_counselor_turn_with_the_simulators_prompt():
    d = dialogue()
    examples = seeker_examples([d], max_examples=100, seed=0)
    # turn 1 follows the opening counselor turn, turn 4 follows two counselor turns; turn 5 continues
    # turn 4 (a second seeker turn in a row) and turn 7 ("Yes.") has under 3 words: both skipped
    assert [e["completion"] for e in examples] == [
        [{"role": "assistant", "content": "I am afraid I will lose my job (0)."}],
        [{"role": "assistant", "content": "My leave ends soon."}],
    ]
    assert [e["prompt"] for e in examples] == [
        prompts.seeker_messages(SCENARIO, list(d.turns[:1])),
        prompts.seeker_messages(SCENARIO, list(d.turns[:4])),
    ]
    assert examples[1]["prompt"][-1] == {"role": "user", "content": "Why do you think so?\nTake your time."}


def test_history_cap_style_examples_and_reply_cap_shape_the_examples():
    d = dialogue()
    shown = ["I feel lost at work these days and cannot sleep."]
    examples = seeker_examples(
        [d],
        max_examples=100,
        seed=0,
        cap=lambda t: None if "leave" in t else t[:20],
        max_turns=2,
        style=lambda scenario: shown if scenario is SCENARIO else [],
    )
    (only,) = examples  # the cap left out "My leave ends soon."
    assert only["completion"][0]["content"] == "I am afraid I will l"
    assert only["prompt"] == prompts.seeker_messages(SCENARIO, list(d.turns[:1]), shown, 2)
    assert shown[0] in only["prompt"][0]["content"]
    late = seeker_examples([d], max_examples=100, seed=0, max_turns=2)[1]["prompt"]
    assert late == prompts.seeker_messages(SCENARIO, list(d.turns[2:4]))  # the last 2 turns only
    with pytest.raises(ValueError, match="positive"):
        seeker_examples([d], max_examples=0, seed=0)


def test_a_subset_is_seeded_and_kept_in_data_order():
    dialogues = [dialogue(n) for n in range(3)]
    every = seeker_examples(dialogues, max_examples=100, seed=0)
    assert len(every) == 6
    picked = seeker_examples(dialogues, max_examples=4, seed=1)
    assert picked == seeker_examples(dialogues, max_examples=4, seed=1)
    assert len(picked) == 4 and picked == [e for e in every if e in picked]


def test_fingerprint_follows_what_the_seeker_model_depends_on(tmp_path):
    config = sft_config(tmp_path, f"seeker_sft.data={sft_config(tmp_path).sft.data}")
    spec = parse_spec(config.seeker_sft.data)
    base = inputs_fingerprint(config, spec, "seeker")
    assert base != inputs_fingerprint(config, spec, "counselor")
    for change in ("seeker_sft.max_steps=7", "seeker.max_history_turns=3", "seeker.model=tiny-random"):
        changed = sft_config(tmp_path, f"seeker_sft.data={config.seeker_sft.data}", change)
        assert inputs_fingerprint(changed, spec, "seeker") != base, change
    same = sft_config(tmp_path, f"seeker_sft.data={config.seeker_sft.data}", "seeker_sft.cold_start=true")
    assert inputs_fingerprint(same, spec, "seeker") == base


def test_cold_start_points_the_seeker_at_the_absolute_seeker_sft_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    on = build_config({"runs_dir": "runs", "name": "x"}, ["seeker_sft.cold_start=true"])
    with pytest.raises(UsageError, match=r"seeker_sft.cold_start is on .* `rlff train --stage seeker`"):
        cold_start(on)
    folder = tmp_path / "runs" / "x" / "seeker_sft"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    mark(folder, "abc")
    started = cold_start(on)
    assert started.seeker.model == str(folder) and Path(started.seeker.model).is_absolute()
    assert started.model_dump(exclude={"seeker"}) == on.model_dump(exclude={"seeker"})


def test_train_needs_seeker_sft_data(tmp_path):
    with pytest.raises(UsageError, match=r"seeker_sft.data is not set"):
        run_train_sft(build_config({"runs_dir": str(tmp_path)}), role="seeker")
    with pytest.raises(UsageError, match="builtin"):
        run_train_sft(build_config({"runs_dir": str(tmp_path)}, ["seeker_sft.data=builtin"]), role="seeker")
