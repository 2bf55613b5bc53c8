"""The reward model on real data: SmolLM2-135M mean-pooled features of the seeker's last turn and of each
reply, each reply's likelihood gain given the conversation (on here and in make run), future-oriented
labels of ESConv replies, context groups with replies from other dialogues and degraded replies, the
held-out valid split, under bf16 autocast as configs/local.yaml trains it where the CPU has bf16
instructions. A small sample (100 training contexts, 40 held out): 165 s in float32 on a 2-core AMD EPYC
without AVX-512 (259 s at 150 and 60), where real ranked above another dialogue's reply 0.817 [0.733,
0.892] and above a generic one 0.950 [0.875, 1.000]; the features' forward passes dominate. The
full-size figures are in docs/learner.md. Numbers are printed (`pytest -s`).
"""

import json

import pytest
from conftest import ESCONV, needs_esconv

from esc.config import build_config
from jobs.train_rm import run_train_rm
from learner.rm_data import NEGATIVE_KINDS

TRAIN_CONTEXTS, VALID_CONTEXTS = 100, 40


@pytest.mark.slow
@needs_esconv
def test_reward_model_ranks_real_replies_above_degraded_ones_on_esconv_valid(tmp_path, capsys):
    config = build_config(
        {
            "runs_dir": str(tmp_path / "runs"),
            "reward_model": {
                "backbone": "smollm2-135m",
                "data": f"esconv:{ESCONV}",
                "max_contexts": TRAIN_CONTEXTS,
                "valid_contexts": VALID_CONTEXTS,
                "likelihood_turns": 3,
                # as configs/local.yaml runs it: bf16 where the CPU has bf16 instructions (0.36x-0.48x
                # the float32 time there), float32 elsewhere
                "bf16": "auto",
            },
        }
    )
    assert run_train_rm(config, out=str(tmp_path / "rm")) == 0
    report = json.loads((tmp_path / "rm" / "report.json").read_text())
    with capsys.disabled():
        for key in [f"rank_real_vs_{kind}" for kind in NEGATIVE_KINDS]:
            print(f"\n{key}: {report[key]}")
        print(
            f"label_correlation: {report['label_correlation']}\nlabel_vs_survey: {report['label_vs_survey']}"
        )
        print(f"seconds: {report['seconds']:.0f}")
    assert report["kinds"]["valid"] == {
        "copy": VALID_CONTEXTS,
        "empty": VALID_CONTEXTS,
        "padded": VALID_CONTEXTS,
        "generic": VALID_CONTEXTS,
        "other": 3 * VALID_CONTEXTS,
        "real": VALID_CONTEXTS,
    }
    assert report["rank_real_vs_other"]["n"] == VALID_CONTEXTS
    assert report["label_vs_survey"]["n"] > 150  # surveyed valid dialogues with a labelled reply
    assert report["fit"]["train_loss_last"] < report["fit"]["train_loss_first"]
    # At this size (100 training contexts) the goal (real above another dialogue's reply >= 0.80)
    # is not expected; at full size (400) it is 0.825 with the likelihood gain, 0.677 without
    # (docs/learner.md). This pins that training learns something on held-out contexts: the whole 95%
    # interval of real-above-generic, and of real-above-another-dialogue's-reply (the likelihood
    # gain's job), lies above chance.
    assert report["rank_real_vs_generic"]["lo"] > 0.5
    assert report["rank_real_vs_other"]["lo"] > 0.5
