"""Reward model: example builders, truncation, training on separable data, save/load, the train job.

Fast: the backbone is the 2-layer random `tiny-random` model and the data are built here. Its hidden
states carry little beyond the last token's own embedding, so synthetic replies put the word that
decides their class last.
"""

import json

import pytest
from conftest import FIXTURES

from esc.config import RewardModelConfig, build_config
from esc.schemas import Dialogue, Scenario, Survey, Turn
from jobs import UsageError
from jobs.train_rm import run_train_rm
from learner.reward_model import RewardModel
from learner.rm_data import (
    NEGATIVE_REWARD,
    RMExample,
    data_grounded_examples,
    improvement_label,
    ranking_pairs,
    rm_text,
    simulated_examples,
)

CLASS_WORDS = ("terrible", "okay", "wonderful")  # the last word of a synthetic reply decides its class


def dialogue(i: int, survey: tuple[int, int] | None) -> Dialogue:
    scenario = Scenario(id=f"s{i}", emotion_type="sadness", problem_type="work", situation=f"Problem {i}.")
    turns = (
        Turn(role="seeker", text=f"Hello, I am seeker {i}."),
        Turn(role="counselor", text=f"Reference reply {i}."),
    )
    return Dialogue(
        id=f"d{i}",
        scenario=scenario,
        turns=turns,
        survey=Survey(initial_intensity=survey[0], final_intensity=survey[1]) if survey else None,
        source="esconv",
    )


def synthetic(n: int, offset: int = 0) -> list[RMExample]:
    examples = []
    for i in range(offset, offset + n):
        label = i % 3
        context = (Turn(role="seeker", text=f"I lost my job number {i} and feel low."),)
        examples.append(
            RMExample(context, f"Reply {i}. {CLASS_WORDS[label]}", label, float(label - 1), f"c{i}")
        )
    return examples


def tiny_cfg(**overrides) -> RewardModelConfig:
    fields = {"backbone": "tiny-random", "max_tokens": 48, "epochs": 60, "lr": 1e-2, "batch_size": 16}
    return RewardModelConfig(**{**fields, **overrides})


def test_labels_come_from_survey_improvement_and_unsurveyed_dialogues_are_skipped():
    assert [improvement_label(5, 5 - k, [1.5, 2.5]) for k in range(5)] == [0, 0, 1, 2, 2]
    dialogues = [
        dialogue(0, (5, 4)),
        dialogue(1, (5, 3)),
        dialogue(2, (5, 2)),
        dialogue(3, (4, 1)),
        dialogue(4, None),
    ]
    examples = data_grounded_examples(dialogues, RewardModelConfig(negatives=0.0), seed=0)
    assert [e.label for e in examples] == [0, 1, 2, 2]
    assert [e.reply for e in examples] == [f"Reference reply {i}." for i in range(4)]
    assert [e.reward for e in examples] == [0.25, 0.5, 0.75, 0.75]
    assert all(
        e.context == (Turn(role="seeker", text=f"Hello, I am seeker {i}."),) for i, e in enumerate(examples)
    )


def test_negatives_pair_a_context_with_another_dialogues_reply_in_class_zero():
    dialogues = [dialogue(i, (5, 2)) for i in range(8)]
    examples = data_grounded_examples(dialogues, RewardModelConfig(negatives=0.25), seed=3)
    real, negatives = examples[:8], examples[8:]
    assert len(negatives) == 2 and all(e.label == 2 for e in real)
    for negative in negatives:
        host = next(e for e in real if e.group == negative.group)
        assert negative.label == 0 and negative.reward == NEGATIVE_REWARD
        assert negative.context == host.context and negative.reply != host.reply
        assert negative.reply in {e.reply for e in real}
    assert examples == data_grounded_examples(dialogues, RewardModelConfig(negatives=0.25), seed=3)


def test_max_examples_caps_with_a_seeded_choice():
    dialogues = [dialogue(i, (5, 3)) for i in range(20)]
    cfg = RewardModelConfig(negatives=0.5, max_examples=12)
    first = data_grounded_examples(dialogues, cfg, seed=1)
    assert len(first) == 12 and first == data_grounded_examples(dialogues, cfg, seed=1)
    assert first != data_grounded_examples(dialogues, cfg, seed=2)


def test_simulated_examples_keep_labelled_candidates_only():
    candidate = {"text": "That sounds hard.", "raw": "x", "well_formed": True, "policy_version": 0}
    record = {
        "id": "run:ctx:v0",
        "context": [{"role": "seeker", "text": "I feel alone."}],
        "candidates": [
            {**candidate, "label": 2, "future_reward": 0.5},
            {**candidate, "text": "Whatever.", "label": 0, "future_reward": -1.0},
            {**candidate, "text": "Not simulated."},
        ],
    }
    examples = simulated_examples([record])
    assert [(e.reply, e.label, e.reward, e.group) for e in examples] == [
        ("That sounds hard.", 2, 0.5, "run:ctx:v0"),
        ("Whatever.", 0, -1.0, "run:ctx:v0"),
    ]
    assert examples[0].context == (Turn(role="seeker", text="I feel alone."),)


def test_ranking_pairs_within_groups_and_across_labels():
    context = (Turn(role="seeker", text="hi"),)
    examples = [
        RMExample(context, "a", 2, 0.5, "g1"),
        RMExample(context, "b", 0, -1.0, "g1"),
        RMExample(context, "c", 0, 0.0, "g1"),  # same label as b, higher reward
        RMExample(context, "d", 1, 0.25, "g2"),
    ]
    assert sorted(ranking_pairs(examples, across_groups=False, seed=0)) == [(0, 1), (0, 2), (2, 1)]
    across = ranking_pairs(examples, across_groups=True, seed=0)[3:]
    assert len(across) == 4
    for i, j in across:
        assert examples[i].group != examples[j].group and examples[i].label > examples[j].label


def test_rm_text_lists_turns_then_the_candidate_and_keeps_the_end():
    context = (Turn(role="seeker", text="I  failed\nmy exam."), Turn(role="counselor", text="I'm sorry."))
    text = rm_text(context, "What happened?")
    assert text == "Seeker: I failed my exam.\nCounselor: I'm sorry.\nCounselor (candidate): What happened?"
    assert rm_text(context, "What happened?", max_chars=20) == text[-20:]


def test_token_truncation_keeps_the_end():
    model = RewardModel.from_config(tiny_cfg(max_tokens=16), seed=0)
    long_text = " ".join(f"word{i}" for i in range(200)) + " final words here"
    full = model.tokenizer(long_text)["input_ids"]
    assert model.encode([long_text])["input_ids"][0].tolist() == full[-16:]
    context_a = (Turn(role="seeker", text="A completely different beginning " * 30),)
    context_b = (Turn(role="seeker", text="Another opening altogether " * 30),)
    reply = "the same long ending " * 10
    score_a, score_b = model.score([context_a, context_b], [reply, reply])
    assert score_a == pytest.approx(score_b, abs=1e-6)


def test_head_learns_a_separable_set_and_scores_stay_in_range():
    model = RewardModel.from_config(tiny_cfg(), seed=0)
    report = model.fit(synthetic(60), synthetic(30, offset=100))
    valid = report["valid"]
    assert valid["n"] == 30 and valid["majority_baseline"] == pytest.approx(1 / 3)
    assert valid["accuracy"] >= 0.9 and valid["macro_f1"] >= 0.9
    assert report["train_loss_last"] < report["train_loss_first"]
    held_out = synthetic(9, offset=200)
    scores = model.score([e.context for e in held_out], [e.reply for e in held_out])
    assert all(-1.0 <= s <= 1.0 for s in scores)
    by_label = {k: [s for s, e in zip(scores, held_out) if e.label == k] for k in range(3)}
    assert max(by_label[0]) < min(by_label[2])


def test_ranking_puts_the_preferred_reply_higher():
    def groups(n: int, offset: int) -> list[RMExample]:
        out = []
        for i in range(offset, offset + n):
            context = (Turn(role="seeker", text=f"My dog {i} died yesterday."),)
            out.append(RMExample(context, f"I am here for you {i}. {CLASS_WORDS[2]}", None, 1.0, f"g{i}"))
            out.append(RMExample(context, f"Get over it {i}. {CLASS_WORDS[0]}", None, -1.0, f"g{i}"))
        return out

    model = RewardModel.from_config(tiny_cfg(formulation="ranking", labels="simulated"), seed=0)
    report = model.fit(groups(30, 0), groups(10, 100))
    assert report["valid"] == {"pairwise_accuracy": 1.0, "n_pairs": 10}
    held_out = groups(5, 200)
    scores = model.score([e.context for e in held_out], [e.reply for e in held_out])
    assert all(good > bad for good, bad in zip(scores[::2], scores[1::2]))


@pytest.mark.parametrize("train", ["head", "full"])
def test_save_load_round_trip_gives_identical_scores(tmp_path, train):
    model = RewardModel.from_config(tiny_cfg(train=train, epochs=2 if train == "full" else 20), seed=0)
    model.fit(synthetic(24), synthetic(6, offset=50))
    probe = synthetic(6, offset=80)
    before = model.score([e.context for e in probe], [e.reply for e in probe])
    model.save(tmp_path / "rm")
    assert (tmp_path / "rm" / "backbone").is_dir() == (train == "full")
    loaded = RewardModel.load(tmp_path / "rm")
    assert loaded.score([e.context for e in probe], [e.reply for e in probe]) == before
    assert not list((tmp_path / "rm").rglob("*.bin")) and not list((tmp_path / "rm").rglob("*.pt"))


def test_training_is_deterministic_for_a_seed():
    scores = []
    for _ in range(2):
        model = RewardModel.from_config(tiny_cfg(epochs=5), seed=7)
        model.fit(synthetic(24), [])
        probe = synthetic(4, offset=40)
        scores.append(model.score([e.context for e in probe], [e.reply for e in probe]))
    assert scores[0] == scores[1]


def run_config(tmp_path, **rm):
    tree = {
        "runs_dir": str(tmp_path / "runs"),
        "name": "rm",
        "reward_model": {**tiny_cfg().model_dump(), **rm},
    }
    return build_config(tree)


def test_train_job_on_esconv_fixture_writes_model_and_report(tmp_path, capsys):
    config = run_config(tmp_path, data=f"esconv:{FIXTURES / 'esconv_split'}", epochs=3)
    assert run_train_rm(config) == 0
    folder = tmp_path / "runs" / "rm" / "reward_model"
    report = json.loads((folder / "report.json").read_text())
    assert report["n_train"] >= 2 and report["n_valid"] >= 1
    assert set(report["fit"]["valid"]) >= {"accuracy", "macro_f1", "majority_baseline", "per_class_f1", "n"}
    assert (folder / "head.safetensors").is_file() and "majority baseline" in capsys.readouterr().out


def test_train_job_explains_missing_data_in_one_sentence(tmp_path):
    with pytest.raises(UsageError, match="reward_model.data"):
        run_train_rm(run_config(tmp_path))
    with pytest.raises(UsageError, match="no replay store"):
        run_train_rm(run_config(tmp_path, labels="simulated"))


def test_train_job_reads_simulated_labels_from_the_store(tmp_path):
    from actors.replay_store import ReplayStore

    config = run_config(tmp_path, labels="simulated", epochs=3)
    store = ReplayStore(config.store_dir())
    for i in range(10):
        candidates = [
            {
                "text": f"reply {i} {CLASS_WORDS[k]}",
                "raw": "r",
                "well_formed": True,
                "policy_version": 0,
                "label": k,
                "future_reward": float(k - 1),
            }
            for k in range(3)
        ]
        store.put(
            {
                "id": f"rm:c{i}:v0",
                "kind": "group",
                "policy_version": 0,
                "created_at": 0.0,
                "context": [{"role": "seeker", "text": f"I am worried {i}."}],
                "candidates": candidates,
            }
        )
    store.close()
    out = tmp_path / "rm_out"
    assert run_train_rm(config, out=str(out)) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["n_train"] + report["n_valid"] == 30 and report["n_train"] % 3 == 0
