"""The crisis probe's fitting pieces (jobs/crisis_probe.py) and its labelled files (esc/safety_probe.py)."""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path

import pytest
import torch

from esc import safety_probe
from esc.safety_probe import TRAIN_FILE, CrisisProbe, load_labelled
from jobs.crisis_probe import fit_logistic, out_of_fold, predict, threshold_for


def test_threshold_allows_at_most_the_given_share_of_ordinary_messages():
    ordinary = [0.1, 0.95, 0.3, 0.8, 0.2, 0.6, 0.05, 0.4, 0.7, 0.5]  # sorted: .95 .8 .7 .6 ...
    # 10% of 10 = 1 allowed: the threshold sits just above the 2nd highest (0.8), so only 0.95 reaches it
    t = threshold_for(ordinary, 0.10)
    assert t == pytest.approx(0.8 + 1e-6)
    assert sum(p >= t for p in ordinary) == 1
    assert sum(p >= threshold_for(ordinary, 0.0) for p in ordinary) == 0
    assert sum(p >= threshold_for(ordinary, 0.25) for p in ordinary) == 2  # floor(2.5) = 2
    assert threshold_for(ordinary, 1.0) == 0.0  # everything may be flagged


def test_logistic_regression_separates_a_separable_set_and_standardises():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(60, 5, generator=gen) * torch.tensor([1.0, 100.0, 1.0, 1.0, 1.0])
    y = x[:, 0] > 0  # only the first feature matters
    model = fit_logistic(x, y, weight_decay=1e-3)
    mean, std, weight, _ = model
    assert torch.allclose(mean, x.mean(0)) and torch.allclose(std, x.std(0))
    assert weight.abs().argmax().item() == 0
    assert ((predict(model, x) >= 0.5) == y).all()


def test_out_of_fold_probabilities_come_from_models_that_never_saw_the_row():
    x = torch.tensor([[0.0], [1.0], [0.0], [1.0], [0.0], [1.0], [0.0], [1.0], [0.0], [1.0]])
    y = torch.tensor([False, True] * 5)
    probs = out_of_fold(x, y, folds=5)
    assert probs.shape == (10,)
    assert (probs[y] > 0.5).all() and (probs[~y] < 0.5).all()
    # a row whose label contradicts every other row's pattern is predicted by the others, not itself
    y_odd = y.clone()
    y_odd[0] = True  # x = 0 but labelled crisis
    assert out_of_fold(x, y_odd, folds=5)[0] < 0.5


def test_labelled_files_say_which_line_is_wrong(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine", "category": "ordinary"}\n\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:3: each line needs a string 'text' and 'category'"):
        load_labelled(bad)
    bad.write_text('{"text": "fine", "category": "ordinary"}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not a JSON object"):
        load_labelled(bad)


def test_the_shipped_training_set_covers_every_category():
    rows = load_labelled(TRAIN_FILE)
    counts = Counter(r["category"] for r in rows)
    crisis = {"wish_to_be_dead", "ideation", "method", "intent", "plan", "behaviour", "self_harm", "abuse",
              "threat", "harm_to_others"}  # fmt: skip
    assert set(counts) == crisis | {"ordinary"}
    assert min(counts[c] for c in crisis) >= 20 and counts["ordinary"] >= 200
    assert len({r["text"] for r in rows}) == len(rows)  # no message twice
    for name in ("crisis_probes_blind.jsonl", "crisis_probes_blind2.jsonl"):
        blind_file = Path(__file__).parents[1] / "fixtures" / name
        blind = {json.loads(line)["text"] for line in blind_file.read_text().splitlines()}
        assert len(blind) >= 160 and not blind & {r["text"] for r in rows}  # never trained on


class CountingBackbone:
    """Stands in for the model: the hidden state of a message is its length, and it counts messages."""

    config = type("Config", (), {"hidden_size": 1})()

    def __init__(self):
        self.seen = 0

    def __call__(self, input_ids, attention_mask, use_cache=True):
        self.seen += len(input_ids)
        return type("Out", (), {"last_hidden_state": input_ids.unsqueeze(-1).float()})()


def fake_tokenizer(texts, **kwargs):
    ids = torch.tensor([[float(len(t))] for t in texts])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_the_probe_reads_each_message_once_and_survives_its_memo_starting_over(monkeypatch):
    probe = object.__new__(CrisisProbe)
    probe.backbone, probe.tokenizer, probe.threshold = CountingBackbone(), fake_tokenizer, 0.5
    probe.mean, probe.std = torch.zeros(1), torch.ones(1)
    probe.weight, probe.bias = torch.tensor([1.0]), torch.tensor([-10.0])  # p >= 0.5 from 10 characters
    probe._memo, probe._lock = {}, threading.Lock()
    assert probe.flags(["short", "a much longer message"]) == [False, True]
    assert probe.flags(["short", "short", "a much longer message"]) == [False, False, True]
    assert probe.backbone.seen == 2  # nothing read twice
    monkeypatch.setattr(safety_probe, "MEMO_SIZE", 2)
    assert probe.flags(["short", "new and long enough"]) == [False, True]  # the memo starts over here
    assert probe.backbone.seen == 3


@pytest.mark.parametrize(
    "argv, message",
    [
        (["measure"], "measure needs labelled files"),
        (["measure", "/nope.jsonl"], "/nope.jsonl is not a file"),
        (["train", "--max-false-alarm", "1.5"], "--max-false-alarm must be from 0 to below 1, got 1.5"),
    ],
)
def test_crisis_probe_command_refuses_bad_input_in_one_line(argv, message, capsys):
    from jobs.cli import main

    assert main(["crisis-probe", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_measure_without_a_probe_file_says_how_to_build_it(tmp_path, capsys):
    from jobs.cli import main

    labelled = tmp_path / "probes.jsonl"
    labelled.write_text('{"text": "hello", "category": "ordinary"}\n')
    assert main(["crisis-probe", "measure", str(labelled), "--out", str(tmp_path / "none.safetensors")]) == 2
    assert "run `rlff crisis-probe train` to build it" in capsys.readouterr().err


def test_a_file_that_is_no_probe_and_a_labelled_file_that_is_not_utf8_are_named_in_one_line(tmp_path):
    from jobs import UsageError
    from jobs.crisis_probe import run_crisis_probe

    notes = tmp_path / "notes.json"
    notes.write_text('{"not": "a probe"}')
    with pytest.raises(ValueError, match="notes.json is not a crisis probe file"):
        CrisisProbe(notes)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"text": "caf\xe9", "category": "ordinary"}\n')
    with pytest.raises(ValueError, match=r"latin.jsonl is not UTF-8 text \(byte 13\)"):
        load_labelled(latin)
    labelled = tmp_path / "ok.jsonl"
    labelled.write_text('{"text": "hello", "category": "ordinary"}\n')
    with pytest.raises(UsageError, match="notes.json is not a crisis probe file"):
        run_crisis_probe("measure", [str(labelled)], str(notes), 0.05)
    with pytest.raises(UsageError, match="it is a folder"):  # refused before any training
        run_crisis_probe("train", [str(labelled)], str(tmp_path), 0.05)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(UsageError, match="empty.jsonl holds no labelled messages"):
        run_crisis_probe("measure", [str(tmp_path / "empty.jsonl")], str(notes), 0.05)


def test_writable_output_refuses_a_folder_and_leaves_no_empty_file(tmp_path):
    from jobs import UsageError
    from jobs.progress import writable_output

    assert writable_output(tmp_path / "new" / "out.json") == tmp_path / "new" / "out.json"
    assert not (tmp_path / "new" / "out.json").exists() and (tmp_path / "new").is_dir()
    with pytest.raises(UsageError, match="it is a folder"):
        writable_output(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="cannot write --out"):
        writable_output(tmp_path / "file" / "out.json")  # a file where its folder would be
