"""Reward model: context groups, ranking pairs, training on separable data, save/load, the cached train job.

Fast: the backbone is the 2-layer random `tiny-random` model and the data are built here. Its hidden
states carry little, so the synthetic real replies are told apart by what the head's scalar features
see (shared words with the seeker's turn, length, affect).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from esc.config import RewardModelConfig, build_config
from esc.future_labels import future_labels
from esc.schemas import CandidateGroup, Dialogue, Scenario, Survey, Turn
from jobs import UsageError
from jobs.train_rm import is_trained, run_rm_report, run_train_rm
from learner.reward_model import RewardModel
from learner.rm_data import (
    GENERIC_REPLIES,
    NEGATIVE_KINDS,
    RMExample,
    data_grounded_examples,
    last_seeker_text,
    ranking_pairs,
    simulated_examples,
)
from learner.rm_likelihood import BASELINE_PROMPT, dialogue_prompt
from learner.rm_scalars import scalars

SCENARIO = {"id": "s", "emotion_type": "anxiety", "problem_type": "work", "situation": "Worried."}
TOPICS = ("exam", "boss", "sister", "rent", "landlord", "coach", "thesis", "neighbour", "dentist", "visa")


def dialogue(i: int, survey: tuple[int, int] | None = (5, 2)) -> Dialogue:
    topic = TOPICS[i % len(TOPICS)]
    texts = [
        ("seeker", f"I am so worried about my {topic}, it makes me miserable."),
        ("counselor", f"Your {topic} sounds really stressful, tell me about the {topic}."),
        ("seeker", f"The {topic} is all I think about."),
        ("seeker", "I cannot sleep."),
        ("counselor", f"Not sleeping because of the {topic} must be exhausting."),
        ("seeker", "Thank you, that helps, I feel a bit better."),
    ]
    return Dialogue(
        id=f"d{i}",
        scenario=Scenario(id=f"s{i}", emotion_type="anxiety", problem_type="work", situation=f"{topic}."),
        turns=tuple(Turn(role=role, text=text) for role, text in texts),
        survey=Survey(initial_intensity=survey[0], final_intensity=survey[1]) if survey else None,
        source="esconv",
    )


def tiny_cfg(**overrides) -> RewardModelConfig:
    fields = {"backbone": "tiny-random", "max_tokens": 32, "epochs": 200, "lr": 1e-2, "hidden": 16}
    return RewardModelConfig(**{**fields, **overrides})


def test_last_seeker_text_joins_the_final_run_of_seeker_turns():
    turns = dialogue(0).turns
    assert last_seeker_text(turns[:4]) == "The exam is all I think about. I cannot sleep."
    assert last_seeker_text(turns[:2]) == turns[0].text
    assert last_seeker_text(()) == ""


def test_context_groups_hold_the_real_reply_and_every_negative_kind():
    dialogues = [dialogue(i) for i in range(4)]
    cfg = RewardModelConfig(other_replies=2, future_turns=1)
    examples = data_grounded_examples(dialogues, cfg, seed=0, max_contexts=100)
    groups: dict[str, list[RMExample]] = {}
    for example in examples:
        groups.setdefault(example.group, []).append(example)
    assert len(groups) == 8  # two labelled replies per dialogue (turns 1 and 4)
    for group, members in groups.items():
        real = members[0]
        dialogue_id, index = group.rsplit(":", 1)
        source = dialogues[int(dialogue_id[1:])]
        assert real.kind == "real" and real.reply == source.turns[int(index)].text
        assert real.context == source.turns[: int(index)] and real.intensity == 5
        expected = next(x for x in future_labels(source, 1) if x.index == int(index)).label
        assert real.reward == pytest.approx(expected)
        kinds = [m.kind for m in members[1:]]
        assert kinds == ["other", "other", "empty", "generic", "copy", "padded"]
        assert all(m.reward is None and m.context == real.context for m in members[1:])
        others = [m.reply for m in members if m.kind == "other"]
        assert len(set(others)) == 2 and not any(text in [t.text for t in source.turns] for text in others)
        assert members[3].reply == "" and members[4].reply in GENERIC_REPLIES
        assert members[5].reply == last_seeker_text(real.context)
        assert members[6].reply == f"{real.reply} {others[0]}"
    assert examples == data_grounded_examples(dialogues, cfg, seed=0, max_contexts=100)


def test_max_contexts_is_a_seeded_choice_of_groups():
    dialogues = [dialogue(i) for i in range(10)]
    cfg = RewardModelConfig(other_replies=1)
    first = data_grounded_examples(dialogues, cfg, seed=1, max_contexts=5)
    assert len({e.group for e in first}) == 5 and len(first) == 5 * 6  # 6 kinds
    assert first == data_grounded_examples(dialogues, cfg, seed=1, max_contexts=5)
    assert first != data_grounded_examples(dialogues, cfg, seed=2, max_contexts=5)


def test_ranking_pairs_put_real_above_negatives_and_order_rewards_within_groups_only():
    context = (Turn(role="seeker", text="hi"),)
    examples = [
        RMExample(context, "real", 0.2, "g1"),
        RMExample(context, "", None, "g1", "empty"),
        RMExample(context, "other", None, "g1", "other"),
        RMExample(context, "a", 0.5, "g2", "candidate"),
        RMExample(context, "b", -0.5, "g2", "candidate"),
        RMExample(context, "c", -0.5, "g2", "candidate"),
        RMExample(context, "same", 0.4, "g3", "candidate"),  # e.g. G copies of a crisis reply: no pair
        RMExample(context, "same", -0.1, "g3", "candidate"),
    ]
    assert sorted(ranking_pairs(examples)) == [(0, 1), (0, 2), (3, 4), (3, 5)]


def test_simulated_examples_keep_labelled_candidates_only():
    candidate = {"text": "That sounds hard.", "raw": "x", "well_formed": True, "policy_version": 0}
    record = {
        "id": "run:ctx:v0",
        "scenario": SCENARIO,
        "context": [{"role": "seeker", "text": "I feel alone."}],
        "candidates": [
            {**candidate, "label": 2, "future_reward": 0.5},
            {**candidate, "text": "Whatever.", "label": 0, "future_reward": -1.0},
            {**candidate, "text": "Not simulated."},
        ],
        "policy_version": 0,
        "created_at": 0.0,
    }
    examples = simulated_examples([CandidateGroup.model_validate(record)])
    assert [(e.reply, e.reward, e.group, e.kind) for e in examples] == [
        ("That sounds hard.", 0.5, "run:ctx:v0", "candidate"),
        ("Whatever.", -1.0, "run:ctx:v0", "candidate"),
    ]


def test_token_truncation_keeps_the_end():
    model = RewardModel.from_config(tiny_cfg(max_tokens=16), seed=0)
    long_text = " ".join(f"word{i}" for i in range(200)) + " final words here"
    assert model.encode([long_text])["input_ids"][0].tolist() == model.tokenizer(long_text)["input_ids"][-16:]


def test_head_ranks_real_replies_first_and_scores_are_bounded():
    cfg = tiny_cfg(future_turns=1)
    model = RewardModel.from_config(cfg, seed=0)
    train = data_grounded_examples([dialogue(i) for i in range(8)], cfg, seed=0, max_contexts=100)
    valid = data_grounded_examples([dialogue(i) for i in range(8, 10)], cfg, seed=0, max_contexts=100)
    report = model.fit(train, valid)
    assert report["train_loss_last"] < report["train_loss_first"]
    held_out = report["valid"]
    for kind in NEGATIVE_KINDS:
        assert held_out[f"rank_real_vs_{kind}"]["value"] >= 0.75, kind
    assert held_out["rank_real_vs_other"]["n"] == 4 and held_out["rank_real_vs_other"]["n_pairs"] == 8
    assert held_out["label_correlation"]["n"] == 4
    contexts = [e.context for e in valid]
    scores = model.score(contexts, [e.reply for e in valid], [e.intensity for e in valid])
    assert all(-1.0 <= s <= 1.0 for s in scores) and len(set(scores)) > 2
    with pytest.raises(ValueError, match="one reply per context"):
        model.score(contexts, ["x"])


def test_save_load_round_trip_gives_identical_scores(tmp_path):
    cfg = tiny_cfg(epochs=20)
    model = RewardModel.from_config(cfg, seed=0)
    model.fit(data_grounded_examples([dialogue(i) for i in range(4)], cfg, seed=0, max_contexts=100), [])
    probe = data_grounded_examples([dialogue(7)], cfg, seed=0, max_contexts=100)
    args = ([e.context for e in probe], [e.reply for e in probe], [e.intensity for e in probe])
    before = model.score(*args)
    model.save(tmp_path / "rm")
    assert RewardModel.load(tmp_path / "rm").score(*args) == before
    assert not list((tmp_path / "rm").rglob("*.bin")) and not list((tmp_path / "rm").rglob("*.pt"))


def test_a_saved_model_keeps_the_precision_auto_chose_where_it_trained(tmp_path, monkeypatch):
    """bf16 'auto' is resolved where the model is built and saved so: a copy loaded on a machine that
    would choose otherwise scores in the precision the head was trained in."""
    import esc.models

    for here, there in ((True, False), (False, True)):
        monkeypatch.setattr(esc.models, "_this_cpuinfo", lambda on=here: "flags : avx2" + " amx_bf16" * on)
        model = RewardModel.from_config(tiny_cfg(bf16="auto"), seed=0)
        assert model.bf16 is here
        model.save(tmp_path / str(here))
        assert json.loads((tmp_path / str(here) / "reward_model.json").read_text())["config"]["bf16"] is here
        monkeypatch.setattr(esc.models, "_this_cpuinfo", lambda on=there: "flags : avx2" + " amx_bf16" * on)
        assert RewardModel.load(tmp_path / str(here)).bf16 is here


def test_training_is_deterministic_for_a_seed():
    cfg = tiny_cfg(epochs=5)
    train = data_grounded_examples([dialogue(i) for i in range(3)], cfg, seed=0, max_contexts=100)
    scores = []
    for _ in range(2):
        model = RewardModel.from_config(cfg, seed=7)
        model.fit(train, [])
        scores.append(model.score([e.context for e in train], [e.reply for e in train]))
    assert scores[0] == scores[1]


HASH_SEED_PROBE = """
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
from test_reward_model import RewardModel, data_grounded_examples, dialogue, tiny_cfg
cfg = tiny_cfg(epochs=5)
train = data_grounded_examples([dialogue(i) for i in range(6)], cfg, seed=0, max_contexts=100)
model = RewardModel.from_config(cfg, seed=0)
model.fit(train, [])
print(json.dumps(model.score([e.context for e in train], [e.reply for e in train])))
"""


def test_training_does_not_depend_on_the_process_hash_seed():
    """Set iteration order changes with PYTHONHASHSEED; it once reordered the texts the head's PCA reads."""
    here = Path(__file__).parent
    probes = [  # side by side: each spends most of its time importing torch and transformers
        subprocess.Popen(
            [sys.executable, "-c", HASH_SEED_PROBE, str(here), str(here.parents[1])],
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for hash_seed in ("1", "2")
    ]
    scores = []
    for probe in probes:
        out, err = probe.communicate(timeout=300)
        assert probe.returncode == 0, err[-2000:]
        scores.append(json.loads(out.strip().splitlines()[-1]))
    assert scores[0] == scores[1]


def write_esconv(folder, n_train: int = 6, n_valid: int = 4) -> None:
    """A tiny ESConv folder in the split schema, made of the synthetic dialogues above."""
    folder.mkdir()
    for split, ids in (("train", range(n_train)), ("valid", range(100, 100 + n_valid)), ("test", [])):
        lines = []
        for i in ids:
            d = dialogue(i, survey=(5, 1 + i % 4))
            lines.append(
                {
                    "emotion_type": "anxiety",
                    "problem_type": "work",
                    "situation": d.scenario.situation,
                    "survey_score": {
                        "seeker": {
                            "initial_emotion_intensity": "5",
                            "final_emotion_intensity": str(1 + i % 4),
                        }
                    },
                    "dialog": [
                        {"text": t.text, "speaker": "usr" if t.role == "seeker" else "sys"} for t in d.turns
                    ],
                }
            )
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def run_config(tmp_path, **rm):
    tree = {
        "runs_dir": str(tmp_path / "runs"),
        "name": "rm",
        "reward_model": {**tiny_cfg().model_dump(), **rm},
    }
    return build_config(tree)


def test_train_job_writes_model_and_report_then_skips_unchanged_inputs(tmp_path, capsys):
    write_esconv(tmp_path / "esconv")
    config = run_config(tmp_path, data=f"esconv:{tmp_path / 'esconv'}", epochs=30)
    assert run_train_rm(config) == 0
    folder = tmp_path / "runs" / "rm" / "reward_model"
    report = json.loads((folder / "report.json").read_text())
    per_group = 5 + config.reward_model.other_replies  # real, others, empty, generic, copy, padded
    assert report["n_train"] == 6 * 2 * per_group and report["n_valid"] == 4 * 2 * per_group
    assert report["rank_real_vs_other"]["n"] == 8 and report["label_correlation"]["n"] == 8
    assert report["label_vs_survey"]["n"] == 4
    assert (folder / "head.safetensors").is_file() and "rank_real_vs_other" in capsys.readouterr().out
    stamp = (folder / "inputs.sha256").read_text()
    assert run_train_rm(config) == 0
    assert "up to date" in capsys.readouterr().out
    assert json.loads((folder / "report.json").read_text()) == report  # nothing retrained
    (tmp_path / "elsewhere").symlink_to(tmp_path / "esconv")  # the same files under another path
    assert run_train_rm(config.replace("reward_model", data=f"esconv:{tmp_path / 'elsewhere'}")) == 0
    assert "up to date" in capsys.readouterr().out
    with (tmp_path / "esconv" / "valid.jsonl").open("a") as handle:
        handle.write("\n")  # different bytes, same dialogues: the inputs changed
    assert run_train_rm(config) == 0
    assert "up to date" not in capsys.readouterr().out
    assert (folder / "inputs.sha256").read_text() != stamp


def test_a_deferred_held_out_report_equals_the_one_written_with_the_model(tmp_path, capsys):
    write_esconv(tmp_path / "esconv")
    config = run_config(tmp_path, data=f"esconv:{tmp_path / 'esconv'}", epochs=30)
    with pytest.raises(UsageError, match="train it with `rlff train --stage rm`"):
        run_rm_report(config)  # no model yet
    direct = tmp_path / "direct"
    assert run_train_rm(config, out=str(direct)) == 0
    assert run_train_rm(config, defer_report=True) == 0
    folder = tmp_path / "runs" / "rm" / "reward_model"
    deferred = json.loads((folder / "report.json").read_text())
    assert deferred["held_out"] == "pending" and "n_valid" not in deferred and deferred["fit"]["valid"] == {}
    assert is_trained(config, folder)  # the model is there for the stages that wait on it
    assert "held-out report pending" in capsys.readouterr().out

    assert run_rm_report(config) == 0
    later, written = (
        json.loads((folder / "report.json").read_text()),
        json.loads((direct / "report.json").read_text()),
    )
    keys = ["n_valid", "rank_real_vs_other", "label_correlation", "label_vs_seeker_affect", "label_vs_survey"]
    assert later["held_out"] == written["held_out"] == "done"
    assert [later[k] for k in keys] == [written[k] for k in keys] and later["n_valid"] == 4 * 2 * (
        5 + config.reward_model.other_replies
    )
    assert later["fit"]["valid"] == written["fit"]["valid"] and later["kinds"] == written["kinds"]
    assert later["fit"]["train_loss_last"] == written["fit"]["train_loss_last"]  # the same model
    capsys.readouterr()
    assert run_rm_report(config) == 0 and "complete" in capsys.readouterr().out
    assert json.loads((folder / "report.json").read_text()) == later  # nothing redone

    # a pending report is written by the next run of the stage without --defer-report
    (folder / "report.json").write_text(json.dumps(deferred))
    assert run_train_rm(config) == 0
    assert (
        json.loads((folder / "report.json").read_text())["rank_real_vs_other"]
        == written["rank_real_vs_other"]
    )


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
                "text": f"reply {i} {word}",
                "raw": "r",
                "well_formed": True,
                "policy_version": 0,
                "label": k,
                "future_reward": float(k - 1),
            }
            for k, word in enumerate(("terrible", "okay", "wonderful"))
        ]
        store.put(
            {
                "id": f"rm:c{i}:v0",
                "kind": "group",
                "policy_version": 0,
                "created_at": 0.0,
                "scenario": SCENARIO,
                "context": [{"role": "seeker", "text": f"I am worried {i}."}],
                "candidates": candidates,
            }
        )
    store.close()
    out = tmp_path / "rm_out"
    assert run_train_rm(config, out=str(out)) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["n_train"] + report["n_valid"] == 30 and report["n_train"] % 3 == 0
    assert report["fit"]["n_pairs"] == report["n_train"]  # 3 pairs per group of 3 distinct rewards


def test_layers_runs_only_the_first_backbone_layers():
    full = RewardModel.from_config(tiny_cfg(), seed=0)
    shallow = RewardModel.from_config(tiny_cfg(layers=1), seed=0)
    assert len(full.backbone.layers) == 2 and len(shallow.backbone.layers) == 1
    text = "I failed my exam."
    assert not bool((full.embed([text])[text] == shallow.embed([text])[text]).all())


def test_cutting_layers_and_likelihood_features_together_is_refused_in_one_sentence():
    with pytest.raises(ValueError, match="set layers 0 or likelihood_turns 0"):
        tiny_cfg(layers=1, likelihood_turns=3)


def test_dialogue_prompt_names_the_speakers_of_the_last_turns():
    turns = dialogue(0).turns[:5]
    assert dialogue_prompt(turns, 2) == (
        "Seeker: I cannot sleep.\nCounselor: Not sleeping because of the exam must be exhausting.\nCounselor:"
    )
    assert dialogue_prompt((), 3) == BASELINE_PROMPT


def _log_p(model: RewardModel, prompt: str, reply: str) -> float:
    """log p(reply | prompt) by one plain forward pass of prompt + reply: the reference for the fast path."""
    head = model.tokenizer(prompt, add_special_tokens=False).input_ids
    tail = model.tokenizer(" " + reply, add_special_tokens=False).input_ids
    with torch.inference_mode():
        logits = model.lm(torch.tensor([head + tail])).logits[0, len(head) - 1 : -1].float()
    return float(logits.log_softmax(-1).gather(1, torch.tensor(tail).unsqueeze(1)).sum())


def test_likelihood_gains_equal_plain_forward_passes_and_blank_replies_gain_nothing():
    model = RewardModel.from_config(tiny_cfg(likelihood_turns=2), seed=0)
    contexts, replies = [], []
    for i in range(6):  # 6 contexts x 3 non-blank replies: more tails than one pass takes (TAIL_ROWS)
        turns = dialogue(i).turns[:4]
        for reply in (
            f"Your {TOPICS[i]} worries you.",
            "Okay.",
            "",
            f"Tell me more about it, {i} times over.",
        ):
            contexts.append(turns)
            replies.append(reply)
    gains = model.likelihood_gains(contexts, replies)
    for context, reply, (total, mean) in zip(contexts, replies, gains, strict=True):
        if not reply:
            assert (total, mean) == (0.0, 0.0)
            continue
        expected = _log_p(model, dialogue_prompt(context, 2), reply) - _log_p(model, BASELINE_PROMPT, reply)
        length = len(model.tokenizer(" " + reply, add_special_tokens=False).input_ids)
        assert total == pytest.approx(expected, abs=1e-3)
        assert mean == pytest.approx(expected / length, abs=1e-3)
    off = RewardModel.from_config(tiny_cfg(likelihood_turns=0), seed=0)
    assert off.likelihood_gains(contexts[:2], replies[:2]) == [(0.0, 0.0), (0.0, 0.0)]


def test_the_summed_gain_enters_on_a_signed_log_scale_and_the_per_token_gain_as_it_is():
    """A copy of the seeker's words gains ~55 nats, a real reply ~10: on a log scale the copy no longer sets
    the feature's scale (ln 51 = 3.93 against ln 8 = 2.08)."""
    turns = dialogue(0).turns[:4]
    seeker = last_seeker_text(turns)
    cases = (((50.0, 2.5), 3.9318), ((7.0, 0.5), 2.0794), ((-3.0, -0.2), -1.3863), ((0.0, 0.0), 0))
    for gain, expected in cases:
        row = scalars(turns, seeker, "Tell me more.", 0.1, gain)
        assert row[-2] == pytest.approx(expected, abs=1e-4) and row[-1] == gain[1]


def test_bf16_runs_the_backbone_under_autocast_and_keeps_the_features_close():
    """`bf16` changes every backbone-derived feature a little (bf16 matrix products) and nothing much."""
    contexts = [dialogue(i).turns[:4] for i in range(4)]
    replies = [f"Your {TOPICS[i]} sounds hard, tell me more." for i in range(4)]
    exact = RewardModel.from_config(tiny_cfg(likelihood_turns=2), seed=0)
    rounded = RewardModel.from_config(tiny_cfg(likelihood_turns=2, bf16=True), seed=0)
    a = exact.features(contexts, replies, [3] * 4)
    b = rounded.features(contexts, replies, [3] * 4)
    assert not torch.equal(a, b)
    assert torch.allclose(a, b, rtol=0.05, atol=0.05)
    # the same embeddings on both sides: what still differs is the likelihood gain's forward passes
    rounded.memo = exact.embed([last_seeker_text(c) for c in contexts] + replies)
    c = rounded.features(contexts, replies, [3] * 4)
    assert not torch.equal(a, c) and torch.allclose(a, c, rtol=0.05, atol=0.05)


def test_bf16_keeps_linear_weights_in_bf16_and_the_features_equal_casting_them_every_pass():
    """Autocast casts a float32 linear weight to bf16 on each call; stored in bf16 already, the features
    are the same bit for bit. Embeddings and norms stay float32."""
    contexts = [dialogue(i).turns[:4] for i in range(4)]
    replies = [f"Your {TOPICS[i]} sounds hard, tell me more." for i in range(4)]
    stored = RewardModel.from_config(tiny_cfg(likelihood_turns=2, bf16=True), seed=0)
    linears = [m for m in stored.backbone.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 14 and all(m.weight.dtype == torch.bfloat16 for m in linears)  # 2 layers x 7
    others = [p for n, p in stored.lm.named_parameters() if "norm" in n or "embed" in n]
    assert others and all(p.dtype == torch.float32 for p in others)
    cast = RewardModel.from_config(tiny_cfg(likelihood_turns=2), seed=0)  # float32 weights ...
    cast.bf16 = True  # ... run under the same autocast
    assert torch.equal(stored.features(contexts, replies, [3] * 4), cast.features(contexts, replies, [3] * 4))
    embedding = stored.lm.get_input_embeddings().weight.data_ptr()
    RewardModel(stored.cfg, stored.lm, stored.tokenizer, 0)  # an online refresh wraps the same model again
    assert stored.lm.get_input_embeddings().weight.data_ptr() == embedding  # nothing copied a second time
